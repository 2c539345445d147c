"""RetinaFace's prior boxes and its SSD-style box and landmark encoding (Deng et al. 2020, "RetinaFace:
Single-shot Multi-level Face Localisation in the Wild", CVPR; Sec. 4.2 "Anchor Settings"), as the widely
used PyTorch implementation biubug6/Pytorch_Retinaface computes them (``layers/functions/prior_box.py``,
``utils/box_utils.py``: ``encode``, ``decode``, ``encode_landm``, ``decode_landm``; ``data/config.py``).

Priors are (cx, cy, w, h) normalised by the image size: on the level of stride ``steps[k]`` (a
ceil(H / step) x ceil(W / step) grid) every cell holds one square prior per size of ``min_sizes[k]``,
centred on the cell; rows are ordered level, grid row, grid column, size -- the order of the network's
flattened (B, P, .) outputs. 640 x 640 gives 2 * (80^2 + 40^2 + 20^2) = 16,800 priors.

Encoding (variances v0 = 0.1, v1 = 0.2): a box's centre offset from the prior's centre in units of
v0 * prior size and the log of its size over the prior's in units of v1; each landmark's offset from the
prior's centre in units of v0 * prior size. Everything here is in normalised coordinates and vectorised
over any leading (batch) dimensions. Hand-written because the priors are centre-size and the same
arithmetic serves the landmarks (torchvision's private ``BoxCoder`` works from XYXY priors, boxes only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

MIN_SIZES: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
"""Prior sizes in pixels per level (``cfg_mnet`` / ``cfg_re50`` ``min_sizes``)."""
STEPS: tuple[int, ...] = (8, 16, 32)
"""Level strides in pixels (``steps``)."""
VARIANCES: tuple[float, float] = (0.1, 0.2)
"""Centre and size variances (``variance``)."""


def prior_boxes(
    image_size: tuple[int, int],
    min_sizes: Sequence[Sequence[int]] = MIN_SIZES,
    steps: Sequence[int] = STEPS,
    clip: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    """float32 (P, 4) priors (cx, cy, w, h) normalised by ``image_size`` = (H, W): the implementation's
    ``PriorBox(cfg, image_size).forward()`` (level, row, column, size order; ``clip`` clamps to [0, 1]).
    Computed in float64 and rounded once, as the implementation builds its list in Python floats."""
    height, width = image_size
    levels = []
    for sizes, step in zip(min_sizes, steps, strict=True):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy = (torch.arange(rows, dtype=torch.float64) + 0.5) * step / height
        cx = (torch.arange(cols, dtype=torch.float64) + 0.5) * step / width
        size = torch.tensor(sizes, dtype=torch.float64)
        shape = (rows, cols, len(sizes))
        level = torch.stack(
            [
                cx.view(1, -1, 1).expand(shape),
                cy.view(-1, 1, 1).expand(shape),
                (size / width).view(1, 1, -1).expand(shape),
                (size / height).view(1, 1, -1).expand(shape),
            ],
            dim=-1,
        )
        levels.append(level.reshape(-1, 4))
    priors = torch.cat(levels).to(torch.float32)
    if clip:
        priors = priors.clamp(min=0, max=1)
    return priors.to(device)


def center_to_corners(priors: Tensor) -> Tensor:
    """(..., 4) (cx, cy, w, h) -> XYXY: the implementation's ``point_form``."""
    return torch.cat([priors[..., :2] - priors[..., 2:] / 2, priors[..., :2] + priors[..., 2:] / 2], dim=-1)


def encode_boxes(boxes: Tensor, priors: Tensor, variances: Sequence[float] = VARIANCES) -> Tensor:
    """(..., P, 4) normalised XYXY boxes matched to (P, 4) priors -> (..., P, 4) regression targets
    (the implementation's ``encode``)."""
    centre = ((boxes[..., :2] + boxes[..., 2:]) / 2 - priors[..., :2]) / (variances[0] * priors[..., 2:])
    size = torch.log((boxes[..., 2:] - boxes[..., :2]) / priors[..., 2:]) / variances[1]
    return torch.cat([centre, size], dim=-1)


def decode_boxes(deltas: Tensor, priors: Tensor, variances: Sequence[float] = VARIANCES) -> Tensor:
    """(..., P, 4) regression outputs and (P, 4) priors -> (..., P, 4) normalised XYXY boxes (the
    implementation's ``decode``, unclipped)."""
    centre = priors[..., :2] + deltas[..., :2] * variances[0] * priors[..., 2:]
    size = priors[..., 2:] * torch.exp(deltas[..., 2:] * variances[1])
    corner = centre - size / 2
    return torch.cat([corner, corner + size], dim=-1)


def encode_landmarks(landmarks: Tensor, priors: Tensor, variances: Sequence[float] = VARIANCES) -> Tensor:
    """(..., P, L, 2) normalised landmarks matched to (P, 4) priors -> (..., P, 2 L) targets, x0 y0 x1 y1 ...
    (the implementation's ``encode_landm``, L = 5)."""
    offsets = (landmarks - priors[..., None, :2]) / (variances[0] * priors[..., None, 2:])
    return offsets.flatten(-2)


def decode_landmarks(deltas: Tensor, priors: Tensor, variances: Sequence[float] = VARIANCES) -> Tensor:
    """(..., P, 2 L) landmark outputs and (P, 4) priors -> (..., P, L, 2) normalised landmarks (the
    implementation's ``decode_landm``)."""
    offsets = deltas.unflatten(-1, (-1, 2))
    return priors[..., None, :2] + offsets * variances[0] * priors[..., None, 2:]
