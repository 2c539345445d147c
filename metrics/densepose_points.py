"""Point-level DensePose accuracy: how often the detections name the annotated part of a ground-truth point
(I accuracy, the per-pixel part classification of Güler et al. 2018, Sec. 4 / Table 2's "I" ablations) and
how far their (U, V) are from the annotated ones where they do. A diagnostic next to the GPS / GPSm AP of
``metrics.densepose_ap``, which folds parts, coordinates and detection into one number.

Each ground-truth instance with points is read through the detection that overlaps its box most (box IoU
>= ``MATCH_IOU``); a point takes the label and (U, V) of the detection's box-frame chart result
(``models.densepose_results``) at the pixel under it. Points of instances no detection overlaps, or that
fall outside the detection's box, count as wrong (background). Sums are DDP-synced.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchvision.ops import box_iou

from datamodules.densepose_annotations import FRAME_SIZE

MATCH_IOU = 0.5


def point_predictions(prediction: dict[str, Any], target: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """For every ground-truth point of ``target``: its annotated part (K,), the predicted part (K,) (0 where
    no detection covers it) and the (U, V) error (K,) (NaN where the parts differ)."""
    points = target["dense_points"].reshape(len(target["boxes"]), -1, 5).cpu()
    boxes = target["boxes"].cpu().double()
    annotated = ~torch.isnan(points[..., 0])
    gt_parts, predicted, errors = [], [], []
    detections = prediction["boxes"].detach().cpu().double()
    overlaps = box_iou(boxes, detections) if len(detections) and len(boxes) else torch.zeros(len(boxes), 0)
    for index in torch.where(annotated.any(dim=1))[0].tolist():
        rows = points[index][annotated[index]].double()
        box = boxes[index]
        xy = box[:2] + rows[:, :2] * (box[2:] - box[:2]) / FRAME_SIZE
        parts = torch.zeros(len(rows), dtype=torch.int64)
        uv = torch.full((len(rows), 2), float("nan"), dtype=torch.float64)
        if overlaps.shape[1] and float(overlaps[index].max()) >= MATCH_IOU:
            best = int(overlaps[index].argmax())
            labels, chart_uv = (t.cpu() for t in prediction["densepose"][best])
            offset = (xy - detections[best, :2]).floor().long()
            h, w = labels.shape
            inside = (offset[:, 0] >= 0) & (offset[:, 0] < w) & (offset[:, 1] >= 0) & (offset[:, 1] < h)
            cols, rows_ = offset[inside, 0], offset[inside, 1]
            parts[inside] = labels[rows_, cols].long()
            uv[inside] = chart_uv[:, rows_, cols].T.double()
        gt = rows[:, 2].long()
        gt_parts.append(gt)
        predicted.append(parts)
        error = torch.linalg.vector_norm(uv - rows[:, 3:], dim=1)
        errors.append(torch.where(parts == gt, error, torch.full_like(error, float("nan"))))
    if not gt_parts:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty, torch.zeros(0, dtype=torch.float64)
    return torch.cat(gt_parts), torch.cat(predicted), torch.cat(errors)


class DensePosePointAccuracy(Metric):
    """``I_accuracy`` (fraction of ground-truth points whose part the detections name), ``UV_error`` (mean
    Euclidean (U, V) error over the points whose part is right) and ``points`` (how many were scored)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("points", "correct", "uv_error_sum"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predictions: list[dict[str, Any]], targets: list[dict[str, Tensor]]) -> None:
        for prediction, target in zip(predictions, targets, strict=True):
            if "dense_points" not in target:
                continue
            gt, predicted, errors = point_predictions(prediction, target)
            right = predicted == gt
            self.points += len(gt)
            self.correct += int(right.sum())
            self.uv_error_sum += float(errors[right].sum())

    def compute(self) -> dict[str, Tensor]:
        points = self.points.clamp(min=1)
        return {
            "I_accuracy": self.correct / points,
            "UV_error": self.uv_error_sum / self.correct.clamp(min=1),
            "points": self.points,
        }
