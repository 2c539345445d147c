"""RetinaFace's inference post-processing (Deng et al. 2020, "RetinaFace: Single-shot Multi-level Face
Localisation in the Wild", CVPR), as the widely used PyTorch implementation biubug6/Pytorch_Retinaface
does it in ``detect.py`` and ``test_widerface.py``: face probability = softmax over (background, face);
boxes and landmarks decoded from the priors (``face_anchors``) and scaled to pixels of the network's
input; faces with probability > ``score_threshold`` (0.02) kept, the ``top_k`` (5000) most probable
taken into NMS at IoU 0.4, and the first ``keep_top_k`` (750) of NMS's survivors returned.

``test_widerface.py`` (the WIDER FACE evaluation) has its ``top_k`` and ``keep_top_k`` lines commented
out, keeping every face above the threshold; pass ``top_k=None, keep_top_k=None`` for that.

NMS is torchvision's ``nms``. The implementation's ``py_cpu_nms`` measures boxes in the legacy
inclusive-pixel convention (width x2 - x1 + 1); ``legacy_pixel_nms`` (the default) reproduces it exactly
by handing ``nms`` the boxes widened by 1 pixel (the same intersections, areas and so IoUs); turn it
off for the project's continuous pixel convention (``datamodules.batch``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import nms

from models.face_anchors import VARIANCES, decode_boxes, decode_landmarks


@torch.no_grad()
def decode_detections(
    box_deltas: Tensor,
    class_logits: Tensor,
    landmark_deltas: Tensor,
    priors: Tensor,
    image_size: tuple[int, int],
    score_threshold: float = 0.02,
    top_k: int | None = 5000,
    nms_threshold: float = 0.4,
    keep_top_k: int | None = 750,
    legacy_pixel_nms: bool = True,
    variances: Sequence[float] = VARIANCES,
) -> list[dict[str, Tensor]]:
    """Per image of the batch a dict ``boxes`` (N, 4) XYXY and ``landmarks`` (N, 5, 2) in pixels of the
    (H, W) = ``image_size`` input the ``priors`` were made for, ``scores`` (N,) face probabilities in
    decreasing order and ``labels`` (N,) all 1. ``box_deltas`` (B, P, 4), ``class_logits`` (B, P, 2)
    (background, face), ``landmark_deltas`` (B, P, 10): the network's raw outputs."""
    height, width = image_size
    box_scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=priors.device)
    scores = class_logits.float().softmax(dim=-1)[..., 1]
    boxes = decode_boxes(box_deltas.float(), priors, variances) * box_scale
    landmarks = decode_landmarks(landmark_deltas.float(), priors, variances) * box_scale[:2]
    detections = []
    for image_scores, image_boxes, image_landmarks in zip(scores, boxes, landmarks, strict=True):
        candidates = (image_scores > score_threshold).nonzero().squeeze(1)
        order = image_scores[candidates].argsort(descending=True)[:top_k]
        candidates = candidates[order]
        nms_boxes = image_boxes[candidates]
        if legacy_pixel_nms:
            nms_boxes = nms_boxes + nms_boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
        keep = candidates[nms(nms_boxes, image_scores[candidates], nms_threshold)[:keep_top_k]]
        detections.append(
            {
                "boxes": image_boxes[keep],
                "scores": image_scores[keep],
                "landmarks": image_landmarks[keep],
                "labels": torch.ones(keep.shape[0], dtype=torch.long, device=keep.device),
            }
        )
    return detections
