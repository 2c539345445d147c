"""Point-level DensePose accuracy: the part under each ground-truth point through its best detection."""

from __future__ import annotations

import pytest
import torch

from metrics.densepose_points import DensePosePointAccuracy, point_predictions
from models.densepose_results import ChartResult

BOX = [10.0, 10.0, 50.0, 50.0]  # 40 x 40 pixels


def _chart() -> ChartResult:
    rows, cols = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    labels = 1 + (cols >= 20).long() + 2 * (rows >= 20).long()
    uv = torch.stack([(cols + 0.5) / 40, (rows + 0.5) / 40]).float()
    return ChartResult(labels.to(torch.uint8), uv)


def _target() -> dict[str, torch.Tensor]:
    frame = torch.tensor([[32.0, 32.0], [200.0, 40.0], [50.0, 220.0], [250.0, 250.0]])  # 256-frame positions
    pixels = frame * 40 / 256
    parts = 1 + (pixels[:, 0] >= 20).float() + 2 * (pixels[:, 1] >= 20).float()
    uv = pixels / 40
    points = torch.cat([frame, parts[:, None], uv], dim=1)
    padded = torch.cat([points, torch.full((2, 5), float("nan"))])[None]
    return {"boxes": torch.tensor([BOX]), "labels": torch.tensor([1]), "dense_points": padded}


def _prediction(box: list[float]) -> dict:
    return {"boxes": torch.tensor([box]), "scores": torch.tensor([0.9]), "densepose": [_chart()]}


def test_a_right_chart_names_every_part() -> None:
    gt, predicted, errors = point_predictions(_prediction(BOX), _target())
    assert gt.tolist() == predicted.tolist() == [1, 2, 3, 4]
    assert float(errors.max()) <= 0.5 * 2**0.5 / 40 + 1e-6  # within half a chart pixel (float32 U, V)


def test_missed_or_shifted_detections_count_as_wrong() -> None:
    metric = DensePosePointAccuracy()
    metric.update([_prediction([60.0, 60.0, 90.0, 90.0])], [_target()])  # no overlap: all four wrong
    shifted = _prediction([30.0, 10.0, 70.0, 50.0])  # IoU 1/3 < 0.5: unmatched
    metric.update([shifted], [_target()])
    metric.update([_prediction(BOX)], [_target()])
    result = metric.compute()
    assert float(result["points"]) == 12
    assert float(result["I_accuracy"]) == pytest.approx(4 / 12)
    assert float(result["UV_error"]) < 0.02
