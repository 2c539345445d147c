"""FPNRoIAlign: torchvision's MultiScaleRoIAlign when ``aligned=False``; detectron2's half-pixel
RoIAlign (torchvision ``roi_align(aligned=True)``) on the mapped level when ``aligned=True``."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

from models.roi_align import FPNRoIAlign

IMAGE = 512


def _features() -> OrderedDict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return OrderedDict(
        (str(i), torch.rand(2, 5, IMAGE // s, IMAGE // s, generator=generator))
        for i, s in enumerate((4, 8, 16, 32))
    )


def _boxes() -> list[torch.Tensor]:
    """Square-ish boxes from 6 to 500 px so that every FPN level gets some."""
    generator = torch.Generator().manual_seed(1)
    boxes = []
    for count in (12, 7):
        scale = 6 * (500 / 6) ** torch.linspace(0, 1, count)
        sizes = scale[:, None] * (0.7 + 0.6 * torch.rand(count, 2, generator=generator))
        corners = torch.rand(count, 2, generator=generator) * (IMAGE - sizes).clamp(min=0)
        boxes.append(torch.cat([corners, corners + sizes], dim=1))
    return boxes


def test_unaligned_equals_torchvision_multiscale_roi_align() -> None:
    features, boxes = _features(), _boxes()
    expected = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)(features, boxes, [(IMAGE, IMAGE)] * 2)
    assert torch.equal(FPNRoIAlign(7, 2)(features, boxes), expected)


def test_aligned_pools_each_box_with_half_pixel_roi_align_on_its_level() -> None:
    features, boxes = _features(), _boxes()
    pooler = FPNRoIAlign(14, 2, aligned=True)
    pooled = pooler(features, boxes)
    levels = pooler.map_levels(boxes)
    assert len(set(levels.tolist())) == 4
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)])
    for roi, level, result in zip(rois, levels.tolist(), pooled, strict=True):
        expected = roi_align(features[str(level)], roi[None], (14, 14), 1 / 4 / 2**level, 2, aligned=True)
        assert torch.equal(result, expected[0])
    assert not torch.allclose(pooled, FPNRoIAlign(14, 2, aligned=False)(features, boxes))


def test_single_level_and_empty_boxes() -> None:
    feature = torch.rand(1, 3, 16, 16)
    box = torch.tensor([[2.0, 3.0, 40.0, 30.0]])
    pooler = FPNRoIAlign(5, 0, aligned=True, featmap_names=("p",), strides=(4,))
    expected = roi_align(feature, [box], (5, 5), 0.25, 0, aligned=True)
    assert torch.equal(pooler({"p": feature}, [box]), expected)
    assert FPNRoIAlign(7)(_features(), [torch.zeros(0, 4), torch.zeros(0, 4)]).shape == (0, 5, 7, 7)
