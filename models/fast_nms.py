"""Fast NMS (Bolya et al. 2019, "YOLACT", Sec. 3.4), as the official ``Detect.fast_nms`` runs it.

Per class, the top ``top_k`` candidates by score; their pairwise IoU matrix with the diagonal and
lower triangle zeroed; a detection is kept when its largest IoU with any higher-scoring detection of
its class is <= ``iou_threshold`` -- so, unlike greedy NMS, an already suppressed detection may still
suppress others (the paper's trade: one matrix operation instead of a sequential loop). Then the
``max_detections`` highest scores over all classes. Candidates are the anchors whose best class
score exceeds ``score_threshold``; as in the official code a kept detection's own class score is not
thresholded again (its ``second_threshold`` is off). ``tests/test_fast_nms.py`` measures how often
the kept set differs from torchvision's ``batched_nms``; ``benchmarks/yolact.py`` times both.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms


def batched_pairwise_iou(boxes: Tensor) -> Tensor:
    """(G, N, 4) XYXY -> (G, N, N) IoU within each group (torchvision's ``box_iou`` is not batched)."""
    area = (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    top_left = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    bottom_right = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    return inter / (area[:, :, None] + area[:, None, :] - inter).clamp(min=1e-12)


def nms_candidates(scores: Tensor, top_k: int, score_threshold: float) -> tuple[Tensor, Tensor] | None:
    """Per class, the ``top_k`` best of the anchors whose best class score passes ``score_threshold``:
    their anchor indices and scores, both (C, k) sorted by score; None when no anchor passes."""
    candidates = (scores.max(dim=0).values > score_threshold).nonzero().squeeze(1)
    if candidates.numel() == 0:
        return None
    class_scores, order = scores[:, candidates].sort(dim=1, descending=True)
    return candidates[order[:, :top_k]], class_scores[:, :top_k]


def _top_detections(anchor_index: Tensor, classes: Tensor, scores: Tensor, max_detections: int):
    kept_scores, best = scores.sort(descending=True)
    best = best[:max_detections]
    return anchor_index[best], classes[best], kept_scores[:max_detections]


def fast_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
    score_threshold: float = 0.05,
) -> tuple[Tensor, Tensor, Tensor]:
    """``boxes`` (P, 4) XYXY and per-class ``scores`` (C, P) (no background row) -> the kept
    detections' anchor indices (into P), classes (0..C-1) and scores, highest score first."""
    selected = nms_candidates(scores, top_k, score_threshold)
    if selected is None:
        empty = boxes.new_zeros(0, dtype=torch.long)
        return empty, empty, scores.new_zeros(0)
    anchor_index, class_scores = selected
    iou = batched_pairwise_iou(boxes[anchor_index]).triu_(diagonal=1)
    keep = iou.max(dim=1).values <= iou_threshold
    classes = torch.arange(scores.shape[0], device=scores.device)[:, None].expand_as(keep)
    return _top_detections(anchor_index[keep], classes[keep], class_scores[keep], max_detections)


def greedy_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
    score_threshold: float = 0.05,
) -> tuple[Tensor, Tensor, Tensor]:
    """``fast_nms``'s reference: torchvision's greedy ``batched_nms`` on the same candidates, same outputs."""
    selected = nms_candidates(scores, top_k, score_threshold)
    if selected is None:
        empty = boxes.new_zeros(0, dtype=torch.long)
        return empty, empty, scores.new_zeros(0)
    anchor_index, class_scores = selected
    classes = torch.arange(scores.shape[0], device=scores.device)[:, None].expand_as(anchor_index)
    anchor_index, classes, class_scores = (
        anchor_index.reshape(-1),
        classes.reshape(-1),
        class_scores.reshape(-1),
    )
    keep = batched_nms(boxes[anchor_index], class_scores, classes, iou_threshold)
    return _top_detections(anchor_index[keep], classes[keep], class_scores[keep], max_detections)
