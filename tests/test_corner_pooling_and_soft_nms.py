"""Corner pooling by ``cummax`` against a naive loop over the official scan directions, the official
corner-pool module's parameter count, and the vectorised soft-NMS against a transcription of the official
sequential loop (``external/nms.pyx``)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from models.corner_pooling import CornerPool, corner_pool
from models.soft_nms import soft_nms


def naive_corner_pool(vertical: Tensor, horizontal: Tensor, corner: str) -> Tensor:
    """Each output pixel as the official pools define it, one pixel at a time."""
    _, _, height, width = vertical.shape
    out = torch.empty_like(vertical)
    for i in range(height):
        for j in range(width):
            if corner == "top_left":  # TopPool: rows i..H-1, LeftPool: columns j..W-1
                down = vertical[:, :, i:, j].amax(dim=2)
                across = horizontal[:, :, i, j:].amax(dim=2)
            else:  # BottomPool: rows 0..i, RightPool: columns 0..j
                down = vertical[:, :, : i + 1, j].amax(dim=2)
                across = horizontal[:, :, i, : j + 1].amax(dim=2)
            out[:, :, i, j] = down + across
    return out


@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_corner_pool_equals_the_naive_loop(corner: str) -> None:
    generator = torch.Generator().manual_seed(0)
    vertical, horizontal = (torch.randn(2, 3, 7, 9, generator=generator) for _ in range(2))
    assert torch.equal(
        corner_pool(vertical, horizontal, corner), naive_corner_pool(vertical, horizontal, corner)
    )


def test_corner_pool_gradient_reaches_the_maxima_only() -> None:
    x = torch.zeros(1, 1, 3, 3, requires_grad=True)
    with torch.no_grad():
        x[0, 0, 2, 2] = 5.0
    corner_pool(x, torch.zeros(1, 1, 3, 3), "top_left")[0, 0, 0, 2].backward()
    assert x.grad[0, 0, 2, 2] == 1 and float(x.grad.abs().sum()) == 1


def test_corner_pool_module_has_the_official_parameter_count() -> None:
    """The official ``pool`` module at 256 channels: 1,542,144 parameters (the issue's figure)."""
    for corner in ("top_left", "bottom_right"):
        module = CornerPool(256, corner)
        assert sum(p.numel() for p in module.parameters()) == 1_542_144
        assert module(torch.randn(1, 256, 8, 8)).shape == (1, 256, 8, 8)
    with pytest.raises(ValueError, match="corner must be"):
        CornerPool(8, "top_right")


def official_soft_nms(
    boxes: list[list[float]], sigma: float = 0.5, nt: float = 0.3, threshold: float = 0.001, method: int = 2
) -> list[list[float]]:
    """The official Cython ``soft_nms`` transcribed to Python: boxes are [x1, y1, x2, y2, score] rows,
    modified in place; returns the kept rows in selection order."""
    boxes = [list(b) for b in boxes]
    n = len(boxes)
    i = 0
    while i < n:
        max_pos = max(range(i, n), key=lambda k: (boxes[k][4], -k))
        boxes[i], boxes[max_pos] = boxes[max_pos], boxes[i]
        tx1, ty1, tx2, ty2, _ = boxes[i]
        pos = i + 1
        while pos < n:
            x1, y1, x2, y2, score = boxes[pos]
            area = (x2 - x1 + 1) * (y2 - y1 + 1)
            iw = min(tx2, x2) - max(tx1, x1) + 1
            if iw > 0:
                ih = min(ty2, y2) - max(ty1, y1) + 1
                if ih > 0:
                    ua = (tx2 - tx1 + 1) * (ty2 - ty1 + 1) + area - iw * ih
                    ov = iw * ih / ua
                    if method == 1:
                        weight = 1 - ov if ov > nt else 1
                    elif method == 2:
                        weight = math.exp(-(ov * ov) / sigma)
                    else:
                        weight = 0 if ov > nt else 1
                    boxes[pos][4] = weight * score
                    if boxes[pos][4] < threshold:
                        boxes[pos] = boxes[n - 1]
                        n -= 1
                        pos -= 1
            pos += 1
        i += 1
    return boxes[:n]


@pytest.mark.parametrize(("method", "code"), [("gaussian", 2), ("linear", 1), ("hard", 0)])
def test_soft_nms_equals_the_official_loop(method: str, code: int) -> None:
    generator = torch.Generator().manual_seed(1)
    corners = torch.rand(60, 2, generator=generator) * 80
    sizes = torch.rand(60, 2, generator=generator) * 30 + 2
    boxes = torch.cat([corners, corners + sizes], dim=1)
    scores = torch.rand(60, generator=generator) * 0.9 + 0.01
    scores[7] = 0.0005  # below the threshold from the start: kept unless something overlapping decays it
    boxes[7] = torch.tensor([300.0, 300.0, 310.0, 310.0])
    keep, new_scores = soft_nms(boxes, scores, method=method, iou_threshold=0.3)
    rows = [[*b, s] for b, s in zip(boxes.double().tolist(), scores.double().tolist(), strict=True)]
    expected = official_soft_nms(rows, method=code)
    assert len(keep) == len(expected)
    assert torch.allclose(
        boxes[keep].double(), torch.tensor([r[:4] for r in expected], dtype=torch.float64), atol=1e-5
    )
    assert torch.allclose(
        new_scores.double(), torch.tensor([r[4] for r in expected], dtype=torch.float64), atol=1e-6
    )
    assert 7 in keep.tolist()
    if method != "hard":
        assert len(keep) > 30  # soft decays rather than removes


def test_soft_nms_per_class_equals_one_run_per_class() -> None:
    generator = torch.Generator().manual_seed(2)
    corners = torch.rand(40, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + 20], dim=1)
    scores = torch.rand(40, generator=generator)
    classes = torch.randint(0, 3, (40,), generator=generator)
    keep, new_scores = soft_nms(boxes, scores, classes)
    together = dict(zip(keep.tolist(), new_scores.tolist(), strict=True))
    apart: dict[int, float] = {}
    for c in range(3):
        members = torch.where(classes == c)[0]
        class_keep, class_scores = soft_nms(boxes[members], scores[members])
        apart.update(zip(members[class_keep].tolist(), class_scores.tolist(), strict=True))
    assert together.keys() == apart.keys()
    assert all(together[k] == pytest.approx(apart[k], abs=1e-9) for k in together)
    empty_keep, empty_scores = soft_nms(boxes[:0], scores[:0])
    assert empty_keep.shape == (0,) and empty_scores.shape == (0,)
