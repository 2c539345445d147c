"""The shared pieces of the keypoint detectors (CornerNet, CenterNet): the focal loss on heatmaps, the
Gaussian radius (official and corrected), the object heatmap targets drawn through the codec, and the
peak extraction -- each against a plain transcription of the official algorithm."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.heatmap_focal_loss import heatmap_focal_loss
from models.heatmap_peaks import gather_at, heatmap_nms, top_peaks
from models.object_heatmaps import bump_radius, gaussian_radius, point_heatmaps


def official_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """The official ``gaussian_radius`` (CornerNet/CenterNet ``utils/image.py``), transcribed."""
    a1, b1 = 1, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def official_bump(heatmap: np.ndarray, centre: tuple[int, int], radius: int) -> None:
    """The official ``draw_umich_gaussian`` (max-merge into ``heatmap`` in place), transcribed."""
    diameter = 2 * radius + 1
    sigma = diameter / 6
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    gaussian = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    gaussian[gaussian < np.finfo(gaussian.dtype).eps * gaussian.max()] = 0
    cx, cy = centre
    height, width = heatmap.shape
    left, right = min(cx, radius), min(width - cx, radius + 1)
    top, bottom = min(cy, radius), min(height - cy, radius + 1)
    patch = heatmap[cy - top : cy + bottom, cx - left : cx + right]
    bump = gaussian[radius - top : radius + bottom, radius - left : radius + right]
    if min(bump.shape) > 0 and min(patch.shape) > 0:
        np.maximum(patch, bump, out=patch)


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("min_overlap", [0.3, 0.7])
def test_official_radius_equals_the_official_formula(min_overlap: float) -> None:
    sizes = [(1.0, 1.0), (3.0, 17.0), (40.0, 40.0), (128.0, 9.0), (200.0, 350.0)]
    heights = torch.tensor([h for h, _ in sizes])
    widths = torch.tensor([w for _, w in sizes])
    ours = gaussian_radius(heights, widths, min_overlap)
    for value, (h, w) in zip(ours.tolist(), sizes, strict=True):
        assert value == pytest.approx(official_radius(h, w, min_overlap), rel=1e-12)
    # the official value is always case 3's root times a = 4 o (the function's docstring)
    corrected = gaussian_radius(heights, widths, min_overlap, corrected=True)
    assert torch.all(ours >= corrected)
    size_sum, area = heights.double() + widths.double(), heights.double() * widths.double()
    b3, c3 = -2 * min_overlap * size_sum, (min_overlap - 1) * area
    case3 = (b3 + torch.sqrt(b3**2 - 16 * min_overlap * c3)) / (8 * min_overlap)
    assert torch.allclose(ours, case3 * 4 * min_overlap, rtol=1e-12)


@pytest.mark.parametrize("min_overlap", [0.3, 0.5, 0.7])
def test_corrected_radius_keeps_the_overlap_in_all_three_cases(min_overlap: float) -> None:
    """At the corrected radius each of the three corner displacements gives IoU >= min_overlap, and the
    limiting case gives exactly min_overlap; the official radius can break it in that case."""
    for h, w in [(20.0, 20.0), (10.0, 60.0), (100.0, 37.0)]:
        r = float(gaussian_radius(torch.tensor(h), torch.tensor(w), min_overlap, corrected=True))
        box = (0.0, 0.0, w, h)
        cases = [
            (r, r, w + r, h + r),  # one corner inside, one outside
            (r, r, w - r, h - r),  # both inside
            (-r, -r, w + r, h + r),  # both outside
        ]
        ious = [box_iou(box, moved) for moved in cases]
        assert min(ious) >= min_overlap - 1e-9
        assert min(ious) == pytest.approx(min_overlap, abs=1e-9)
    official = float(gaussian_radius(torch.tensor(20.0), torch.tensor(20.0), 0.7))
    assert official == pytest.approx(5.47, abs=0.01)
    assert float(
        gaussian_radius(torch.tensor(20.0), torch.tensor(20.0), 0.7, corrected=True)
    ) == pytest.approx(1.63, abs=0.01)
    assert box_iou((0, 0, 20, 20), (official, official, 20 + official, 20 + official)) < 0.7


def test_bump_radius_truncates_like_the_data_code() -> None:
    heights, widths = torch.tensor([0.4, 5.2, 30.0, 0.0]), torch.tensor([0.7, 9.9, 12.0, 3.0])
    expected = [
        max(0, int(official_radius(math.ceil(h), math.ceil(w))))
        for h, w in zip(heights.tolist(), widths.tolist(), strict=True)
    ]
    assert bump_radius(heights, widths).tolist() == expected


def test_point_heatmaps_equal_the_official_drawing() -> None:
    """Overlapping bumps of one class merge by max, a bump at the border is cut, an invalid point and a
    point off the map draw nothing; every drawn peak is exactly 1."""
    size = (24, 18)  # w, h
    points = torch.tensor([[[5.7, 4.2], [8.1, 6.9], [0.3, 17.5], [12.0, 9.0], [30.0, 3.0]]])
    classes = torch.tensor([[0, 0, 1, 1, 0]])
    radii = torch.tensor([[3, 2, 4, 5, 2]])
    valid = torch.tensor([[True, True, True, False, True]])
    ours = point_heatmaps(points, classes, radii, valid, 2, size)
    expected = np.zeros((2, size[1], size[0]))
    for (x, y), c, r, v in zip(
        points[0].tolist(), classes[0].tolist(), radii[0].tolist(), valid[0].tolist(), strict=True
    ):
        if v and 0 <= int(x) < size[0] and 0 <= int(y) < size[1]:
            official_bump(expected[c], (int(x), int(y)), r)
    assert torch.allclose(ours[0].double(), torch.from_numpy(expected), atol=1e-6)
    assert int((ours == 1).sum()) == 3


def test_focal_loss_equals_the_official_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=generator) * 3
    targets = torch.rand(2, 3, 8, 8, generator=generator) * 0.9
    targets[0, 1, 2, 3] = targets[1, 2, 5, 5] = targets[1, 0, 0, 0] = 1.0
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    positive = targets == 1
    pos = (torch.log(p) * (1 - p) ** 2)[positive].sum()
    neg = (torch.log(1 - p) * p**2 * (1 - targets) ** 4)[~positive].sum()
    assert float(heatmap_focal_loss(logits, targets)) == pytest.approx(float(-(pos + neg) / 3), rel=1e-6)
    # no positive: the negative term alone, not divided
    empty = torch.zeros_like(targets)
    neg_only = -(torch.log(1 - p) * p**2).sum()
    assert float(heatmap_focal_loss(logits, empty)) == pytest.approx(float(neg_only), rel=1e-6)


def test_focal_loss_stays_finite_on_saturated_logits() -> None:
    logits = torch.tensor([[[[1e4, -1e4], [0.0, 50.0]]]], requires_grad=True)
    targets = torch.tensor([[[[0.0, 1.0], [0.5, 1.0]]]])
    loss = heatmap_focal_loss(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert float(loss.detach()) > 0


def test_nms_keeps_local_maxima_and_top_peaks_order_them() -> None:
    heat = torch.zeros(1, 2, 6, 7)
    heat[0, 0, 1, 1], heat[0, 0, 1, 2] = 0.9, 0.5  # 0.5 is next to a higher value: suppressed
    heat[0, 1, 4, 5] = 0.7
    heat[0, 0, 4, 0] = 0.3
    kept = heatmap_nms(heat)
    assert float(kept[0, 0, 1, 2]) == 0 and float(kept[0, 0, 1, 1]) == pytest.approx(0.9)
    peaks = top_peaks(kept, k=3)
    assert peaks.scores[0].tolist() == pytest.approx([0.9, 0.7, 0.3])
    assert peaks.classes[0].tolist() == [0, 1, 0]
    assert peaks.xs[0].tolist() == [1, 5, 0] and peaks.ys[0].tolist() == [1, 4, 4]
    sizes = torch.arange(2 * 42, dtype=torch.float32).view(1, 2, 6, 7)
    gathered = gather_at(sizes, peaks.indices)
    assert gathered.shape == (1, 3, 2)
    assert gathered[0, 1].tolist() == [4 * 7 + 5, 42 + 4 * 7 + 5]
    assert top_peaks(kept, k=500).scores.shape == (1, 84)
