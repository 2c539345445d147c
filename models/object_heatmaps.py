"""Heatmap targets of objects as points (CornerNet's corners, CenterNet's centres): one channel per class,
an unnormalised Gaussian "bump" at each object's point, overlapping bumps merged by max, drawn through
the shared codec (``models.heatmaps.gaussian_heatmaps``), not a second implementation.

The bump's radius r comes from the box size (``gaussian_radius``), its window is the (2r + 1)^2 square
around the point and sigma = (2r + 1) / 6, as the official ``draw_umich_gaussian``. The point is placed at
its integer cell (``int()`` of the output-stride coordinates: the official ``ct_int``); the sub-cell
remainder is the offset target that the networks regress.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from models.heatmaps import gaussian_heatmaps


def gaussian_radius(
    heights: Tensor, widths: Tensor, min_overlap: float = 0.7, corrected: bool = False
) -> Tensor:
    """The largest radius r by which a pair of corners may move and still give a box of IoU >= ``min_overlap``
    with the (h, w) box (CornerNet Sec. 3.3), the smallest of three cases. Elementwise over tensors.

    Each case is a quadratic a r^2 - b r + c = 0 (with b >= 0 in cases 1 and 2) whose smaller root is the
    answer: (1) one corner inside and one outside the box, a = 1, b = h + w,
    c = w h (1 - o) / (1 + o); (2) both corners inside, a = 4, b = 2 (h + w), c = (1 - o) w h; (3) both
    outside, a = 4 o, b = -2 o (h + w), c = (o - 1) w h, whose positive root is (-b + sqrt) / 2a.

    ``corrected=False`` (the default, for faithfulness) is the official ``gaussian_radius`` of CornerNet
    and CenterNet: it takes (b + sqrt(b^2 - 4ac)) / 2 in every case -- the larger root of cases 1 and 2,
    and no division by 2a. Its cases 1 and 2 then exceed (h + w) / 2 while its case 3 stays below
    (h + w) / 4, so the official radius is always case 3's root times a = 4 o (5.47 instead of 1.63 for a
    20 x 20 box at o = 0.7). ``corrected=True`` takes the
    derivation's roots: (b - sqrt) / 2a, (b - sqrt) / 2a and (b + sqrt) / 2a."""
    heights, widths = torch.as_tensor(heights).double(), torch.as_tensor(widths).double()
    o = min_overlap
    size_sum, area = heights + widths, heights * widths
    cases = (
        (1.0, size_sum, area * (1 - o) / (1 + o)),
        (4.0, 2 * size_sum, (1 - o) * area),
        (4 * o, -2 * o * size_sum, (o - 1) * area),
    )
    radii = []
    for case, (a, b, c) in enumerate(cases):
        root = torch.sqrt(b**2 - 4 * a * c)
        if not corrected:
            radii.append((b + root) / 2)
        elif case < 2:
            radii.append((b - root) / (2 * a))
        else:
            radii.append((b + root) / (2 * a))
    return torch.minimum(torch.minimum(radii[0], radii[1]), radii[2])


def bump_radius(heights: Tensor, widths: Tensor, min_overlap: float = 0.7, corrected: bool = False) -> Tensor:
    """The integer bump radius of boxes (h, w) in output cells, as the official data code computes it:
    ``max(0, int(gaussian_radius((ceil(h), ceil(w)))))``."""
    radius = gaussian_radius(torch.ceil(heights), torch.ceil(widths), min_overlap, corrected)
    return torch.trunc(radius).clamp_min(0).to(torch.int64)


def point_heatmaps(
    points: Tensor,
    classes: Tensor,
    radii: Tensor,
    valid: Tensor,
    num_classes: int,
    heatmap_size: tuple[int, int],
) -> Tensor:
    """(B, C, h, w) class heatmaps with a bump of integer radius ``radii`` (B, M) at each valid point.

    Args:
        points: (B, M, 2) x, y in output cells (input pixels / stride), placed at ``int()`` of them.
        classes: (B, M) int64 channel of each point, 0..C-1.
        radii: (B, M) int64 bump radii (``bump_radius``).
        valid: (B, M) bool; invalid points (padding, degenerate boxes) draw nothing.
        num_classes: C.
        heatmap_size: (w, h).

    Each bump is exactly 1 at its point's cell, so the focal loss counts one positive per object (two
    objects of a class on one cell make one positive, as in the official targets)."""
    width, height = heatmap_size
    cells = torch.trunc(points)
    on_map = (cells[..., 0] >= 0) & (cells[..., 0] < width) & (cells[..., 1] >= 0) & (cells[..., 1] < height)
    radii = radii.to(points.dtype)
    return gaussian_heatmaps(
        cells,
        classes,
        valid & on_map,
        num_classes,
        heatmap_size,
        sigma=(2 * radii + 1) / 6,
        window_radius=radii,
    )


def pad_objects(boxes: Sequence[Tensor], labels: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image (N_i, 4) boxes and (N_i,) labels 1..C -> (B, M, 4) float boxes, (B, M) int64 class channels
    (label - 1) and (B, M) bool "present", M the most objects of any image (zeros in the padding)."""
    batch = len(boxes)
    most = max([len(b) for b in boxes], default=0)
    device = boxes[0].device if batch else torch.device("cpu")
    padded = torch.zeros(batch, most, 4, device=device)
    classes = torch.zeros(batch, most, dtype=torch.int64, device=device)
    present = torch.zeros(batch, most, dtype=torch.bool, device=device)
    for i, (image_boxes, image_labels) in enumerate(zip(boxes, labels, strict=True)):
        padded[i, : len(image_boxes)] = image_boxes.float()
        classes[i, : len(image_labels)] = image_labels - 1
        present[i, : len(image_boxes)] = True
    return padded, classes, present
