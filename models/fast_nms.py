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


def batched_pairwise_iou(boxes: Tensor) -> Tensor:
    """(G, N, 4) XYXY -> (G, N, N) IoU within each group (torchvision's ``box_iou`` is not batched)."""
    area = (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    top_left = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    bottom_right = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    return inter / (area[:, :, None] + area[:, None, :] - inter).clamp(min=1e-12)


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
    candidates = (scores.max(dim=0).values > score_threshold).nonzero().squeeze(1)
    empty = boxes.new_zeros(0, dtype=torch.long)
    if candidates.numel() == 0:
        return empty, empty, scores.new_zeros(0)
    class_scores, order = scores[:, candidates].sort(dim=1, descending=True)
    class_scores, order = class_scores[:, :top_k], order[:, :top_k]
    anchor_index = candidates[order]  # (C, k)
    iou = batched_pairwise_iou(boxes[anchor_index]).triu_(diagonal=1)
    keep = iou.max(dim=1).values <= iou_threshold
    classes = torch.arange(scores.shape[0], device=scores.device)[:, None].expand_as(keep)[keep]
    kept_scores, best = class_scores[keep].sort(descending=True)
    best = best[:max_detections]
    return anchor_index[keep][best], classes[best], kept_scores[:max_detections]
