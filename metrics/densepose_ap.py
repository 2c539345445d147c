"""DensePose AP (GPS and GPSm modes of the DensePose-COCO protocol, ``metrics.densepose_cocoeval``) of
per-image detections with box-frame chart results (``models.densepose_results``), as a function and as a
torchmetrics Metric over DDP ranks.

Predictions per image: ``boxes`` XYXY (N, 4) image pixels, ``scores``, ``labels`` 1..C (mapped to category
ids by ``label_to_category_id`` as ``metrics.coco_evaluation`` does; detections of unmapped labels are
dropped), ``densepose``: per detection ``(labels, uv)``, uint8 (h, w) parts 0..24 and float (2, h, w), in
the box's integer size (``box_int_sizes``). U, V are quantized to uint8 as detectron2 does before its
evaluator reads them (``quantize_chart_result``); only each image's top ``MAX_DETECTIONS`` per category,
all that the protocol reads, are kept. Results are fractions (detectron2 prints percentages); with no
detection AP is 0 (detectron2's evaluator returns -1 for all when there are none at all), -1 where there
is no ground truth; only the evaluated images count (detectron2: every image of the file).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor
from torchmetrics import Metric

from metrics.coco_evaluation import KEYPOINT_STAT_NAMES, _cat
from metrics.densepose_cocoeval import MAX_DETECTIONS, MODES, Detection, GroundTruth, evaluate_densepose
from metrics.densepose_geodesic import PointDistance
from metrics.rank_zero_evaluation import evaluate_once
from models.densepose_results import box_int_sizes, quantize_chart_result

STAT_NAMES = KEYPOINT_STAT_NAMES  # AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl (maxDets 20)
ROW_COLUMNS = 7  # image id, category id, box XYWH, score
log = logging.getLogger(__name__)


def detection_arrays(
    pred: dict[str, Any], image_id: int, label_to_category_id: dict[int, int] | None
) -> tuple[np.ndarray, list[Tensor]]:
    """One image's kept detections: (N, 7) float64 rows and the uint8 (3, h, w) quantized chart results."""
    labels = pred["labels"].reshape(-1).tolist()
    charts = list(pred["densepose"])
    boxes = pred["boxes"].detach().reshape(-1, 4).cpu()
    if not len(labels) == len(charts) == len(boxes) == pred["scores"].numel():
        raise ValueError(
            f"image_id {image_id}: {len(boxes)} boxes, {len(labels)} labels, {len(charts)} charts"
        )
    known = [label_to_category_id is None or label in label_to_category_id for label in labels]
    if not all(known):
        log.warning("image_id %d: dropped %d detections of unmapped labels", image_id, known.count(False))
    mapping = label_to_category_id or {}
    categories = np.array([mapping.get(label, label) for label in labels], np.float64)
    scores = pred["scores"].detach().reshape(-1).to("cpu", torch.float64).numpy()
    sizes = box_int_sizes(boxes).tolist()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)  # in the boxes' dtype, as detectron2
    rows = np.concatenate(
        [
            np.full((len(boxes), 1), float(image_id)),
            categories[:, None],
            xywh.double().numpy(),
            scores[:, None],
        ],
        axis=1,
    )
    keep = np.zeros(len(rows), bool)
    for category in set(categories[np.array(known, bool)].tolist()):
        chosen = np.nonzero((categories == category) & np.array(known, bool))[0]
        keep[chosen[np.argsort(-scores[chosen], kind="mergesort")[:MAX_DETECTIONS]]] = True
    iuv = []
    for i in np.nonzero(keep)[0].tolist():
        chart_labels, uv = charts[i]
        if tuple(chart_labels.shape) != tuple(sizes[i]) or tuple(uv.shape) != (2, *sizes[i]):
            raise ValueError(
                f"image_id {image_id}: detection {i} has a chart of {tuple(chart_labels.shape)} labels and "
                f"{tuple(uv.shape)} uv, need {tuple(sizes[i])} (its box's integer size, box_int_sizes)"
            )
        iuv.append(quantize_chart_result(chart_labels, uv).cpu())
    return rows[keep], iuv


def _detections(rows: np.ndarray, iuv: Sequence[np.ndarray]) -> list[Detection]:
    return [
        Detection(n + 1, int(row[0]), int(row[1]), row[2:6].tolist(), float(row[6]), chart)
        for n, (row, chart) in enumerate(zip(rows, iuv, strict=True))
    ]


def _load_gt(annotation_file: str | Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotation_file))


def _category_ids(coco_gt: COCO, label_to_category_id: dict[int, int] | None) -> list[int]:
    return sorted(set(label_to_category_id.values()) if label_to_category_id else coco_gt.getCatIds())


def _named(stats: dict[str, np.ndarray]) -> dict[str, float]:
    return {
        f"{mode}/{name}": float(v)
        for mode, row in stats.items()
        for name, v in zip(STAT_NAMES, row, strict=True)
    }


def densepose_ap(
    annotation_file: str | Path | COCO,
    predictions: Sequence[dict[str, Any]],
    image_ids: Sequence[int],
    distance: PointDistance,
    label_to_category_id: dict[int, int] | None = None,
    modes: Sequence[str] = MODES,
) -> dict[str, float]:
    """``{"GPS/AP": ..., "GPSm/ARl": ...}`` of ``predictions`` (one per image of ``image_ids``) against the
    DensePose-COCO file (or loaded COCO)."""
    coco_gt = annotation_file if isinstance(annotation_file, COCO) else _load_gt(annotation_file)
    rows, iuv = [np.zeros((0, ROW_COLUMNS))], []
    for pred, image_id in zip(predictions, image_ids, strict=True):
        image_rows, image_iuv = detection_arrays(pred, int(image_id), label_to_category_id)
        rows.append(image_rows)
        iuv.extend(chart.numpy() for chart in image_iuv)
    detections = _detections(np.concatenate(rows), iuv)
    categories = _category_ids(coco_gt, label_to_category_id)
    ids = [int(i) for i in image_ids]
    return _named(evaluate_densepose(coco_gt, detections, ids, categories, distance, tuple(modes)))


class DensePoseAP(Metric):
    """DensePose GPS / GPSm AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl per mode.

    ``update(preds, targets)`` as ``COCOEvaluation`` (targets supply ``image_id``; an image seen twice
    counts once), predictions with ``densepose`` (module docstring). The detections are kept as tensors:
    (N, 7) float64 rows, (N, 2) int64 chart sizes and the flat uint8 quantized charts, so torchmetrics
    gathers them; under DDP rank 0 evaluates and broadcasts the stats. ``compute()`` returns float64
    tensors ``{"GPS/AP": ..., "GPSm/APl": ...}``; ``distance`` is a ``metrics.densepose_geodesic``
    ``PointDistance``.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(
        self,
        annotation_file: str | Path,
        distance: PointDistance,
        label_to_category_id: dict[int, int] | None = None,
        modes: Sequence[str] = MODES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not modes or set(modes) - set(MODES):
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {tuple(modes)}")
        self.annotation_file, self.distance, self.modes = annotation_file, distance, tuple(modes)
        self.label_to_category_id = label_to_category_id
        self.coco_gt = _load_gt(annotation_file)
        self._ground_truths: dict[int, GroundTruth] = {}  # parsed once, reused every epoch
        self.add_state("images", default=[], dist_reduce_fx="cat")  # (M, 3): image id, id, detections
        self.add_state("detections", default=[], dist_reduce_fx="cat")  # (N, 7) float64
        self.add_state("chart_sizes", default=[], dist_reduce_fx="cat")  # (N, 2) int64 h, w
        self.add_state("chart_bytes", default=[], dist_reduce_fx="cat")  # (sum 3 h w,) uint8

    def update(self, preds: list[dict[str, Any]], targets: list[dict[str, Tensor]]) -> None:
        units, rows, sizes, charts = [], [np.zeros((0, ROW_COLUMNS))], [], [torch.zeros(0, dtype=torch.uint8)]
        for pred, target in zip(preds, targets, strict=True):
            image_id = int(target["image_id"])
            if image_id not in self.coco_gt.imgs:
                raise ValueError(f"image_id {image_id} is not in the annotation file")
            image_rows, image_iuv = detection_arrays(pred, image_id, self.label_to_category_id)
            units.append([image_id, image_id, len(image_rows)])
            rows.append(image_rows)
            sizes.extend(list(chart.shape[1:]) for chart in image_iuv)
            charts.extend(chart.reshape(-1) for chart in image_iuv)
        self.images.append(torch.tensor(units, dtype=torch.int64, device=self.device).reshape(-1, 3))
        self.detections.append(torch.from_numpy(np.concatenate(rows)).to(self.device))
        self.chart_sizes.append(torch.tensor(sizes, dtype=torch.int64, device=self.device).reshape(-1, 2))
        self.chart_bytes.append(torch.cat(charts).to(self.device))

    def compute(self) -> dict[str, Tensor]:
        stats = evaluate_once(
            self, self._evaluate_all, len(self.modes) * len(STAT_NAMES), "DensePose evaluation"
        )
        rows = stats.split(len(STAT_NAMES))
        return {
            f"{m}/{n}": v
            for m, row in zip(self.modes, rows, strict=True)
            for n, v in zip(STAT_NAMES, row, strict=True)
        }

    def _evaluate_all(self) -> Tensor:
        units = _cat(self.images, (0, 3), torch.int64).cpu().numpy()
        rows = _cat(self.detections, (0, ROW_COLUMNS), torch.float64).cpu().numpy()
        sizes = _cat(self.chart_sizes, (0, 2), torch.int64).cpu().numpy()
        data = _cat(self.chart_bytes, (0,), torch.uint8).cpu().numpy()
        ends = np.cumsum(3 * sizes[:, 0] * sizes[:, 1])
        charts = [data[e - 3 * h * w : e].reshape(3, h, w) for (h, w), e in zip(sizes, ends, strict=True)]
        keep, seen, start = [], set(), 0  # the first occurrence of each image (DistributedSampler padding)
        for image_id, _, count in units.tolist():
            keep.extend(range(start, start + count) if image_id not in seen else [])
            seen.add(image_id)
            start += count
        detections = _detections(rows[keep], [charts[i] for i in keep])
        stats = evaluate_densepose(
            self.coco_gt,
            detections,
            sorted(seen),
            _category_ids(self.coco_gt, self.label_to_category_id),
            self.distance,
            self.modes,
            self.annotation_file,
            self._ground_truths,
        )
        return torch.tensor(
            np.concatenate([stats[m] for m in self.modes]), dtype=torch.float64, device=self.device
        )
