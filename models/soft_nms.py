"""Soft-NMS (Bodla et al., ICCV 2017), as CornerNet's test code applies it per class (official
``external/nms.pyx``, ``soft_nms``): repeatedly take the highest-scoring remaining box and decay the scores
of the others by their IoU with it -- Gaussian exp(-IoU^2 / sigma) (CornerNet's default, "exp_soft_nms"),
linear (1 - IoU above ``iou_threshold``) or hard (0 above it) -- dropping the overlapping boxes whose
score falls below ``score_threshold`` (a box that never overlaps a selected one is kept whatever its
score, as in the official loop).

Written here because torchvision has no soft-NMS. Vectorised: the IoU matrix is computed once, each step
is a handful of tensor operations over all boxes, and classes are independent (cross-class IoU is set to
0, which decays nothing), so all classes run in one pass of at most N steps. IoU uses the official "+1"
pixel convention (``pixel_offset=1``: area (x2 - x1 + 1)(y2 - y1 + 1)); ``pixel_offset=0`` gives
continuous-coordinate IoU.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torchvision.ops import box_iou

Method = Literal["gaussian", "linear", "hard"]


def pairwise_iou(boxes: Tensor, pixel_offset: float = 1.0) -> Tensor:
    """(N, N) IoU of (N, 4) XYXY boxes, widths and heights taken as x2 - x1 + ``pixel_offset``: torchvision's
    IoU of the boxes grown by ``pixel_offset`` right and down."""
    grown = boxes + boxes.new_tensor([0.0, 0.0, pixel_offset, pixel_offset])
    return box_iou(grown, grown)


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    classes: Tensor | None = None,
    method: Method = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.3,
    score_threshold: float = 0.001,
    pixel_offset: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS of (N, 4) XYXY ``boxes`` with (N,) ``scores``, per class when ``classes`` (N,) is given.

    Returns ``(keep, new_scores)``: the indices of the kept boxes in the order they were selected
    (decreasing decayed score within a class) and their decayed scores. The official defaults: sigma 0.5,
    IoU threshold 0.3 (CornerNet passes its ``nms_threshold`` 0.5; Gaussian decay ignores it), score
    threshold 0.001."""
    if method not in ("gaussian", "linear", "hard"):
        raise ValueError(f"method must be 'gaussian', 'linear' or 'hard', got {method!r}")
    count = len(boxes)
    if count == 0:
        return scores.new_zeros(0, dtype=torch.int64), scores.new_zeros(0)
    iou = pairwise_iou(boxes.double(), pixel_offset)
    if classes is not None:
        iou = torch.where(classes[:, None] == classes[None], iou, 0.0)
    # the official loop decays, and drops below the score threshold, only the boxes that overlap
    overlaps = iou > 0
    if method == "gaussian":
        decay = torch.exp(-(iou**2) / sigma)
    elif method == "linear":
        decay = torch.where(iou > iou_threshold, 1 - iou, 1.0)
    else:
        decay = torch.where(iou > iou_threshold, 0.0, 1.0)
    current = scores.double().clone()
    active = current >= -math.inf  # all True: boxes start active whatever their score
    keep, kept_scores = [], []
    for _ in range(count):
        if not bool(active.any()):
            break
        chosen = int(torch.where(active, current, -math.inf).argmax())
        keep.append(chosen)
        kept_scores.append(current[chosen])
        active[chosen] = False
        current = torch.where(active, current * decay[chosen], current)
        active &= ~(overlaps[chosen] & (current < score_threshold))
    return (
        torch.tensor(keep, dtype=torch.int64, device=boxes.device),
        torch.stack(kept_scores).to(scores.dtype),
    )
