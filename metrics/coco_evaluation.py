"""COCO box, mask and keypoint AP with pycocotools (or faster-coco-eval), as a torchmetrics Metric over
DDP ranks.

Follows the COCO detection and keypoint evaluation protocols (https://cocodataset.org/#detection-eval,
https://cocodataset.org/#keypoints-eval): COCOeval on the real annotation file, restricted to the images
that were evaluated; keypoints are scored by OKS with COCO's 17 sigmas or the dataset's own. Detections
are stored as tensors (one numeric row per detection, its 3K keypoint numbers, mask RLE strings as uint8
bytes) so that torchmetrics can gather them.
Call `update` per batch and `compute` once per epoch (not `forward`, which would run COCOeval per batch).
Under DDP, COCOeval is single-threaded Python work of the same size on every rank: only rank 0 runs it
on the gathered detections and broadcasts the stats, so the other ranks do not repeat it.
"""

import contextlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from metrics.coco_results import encode_masks, keep_mapped_labels, keypoint_results
from metrics.rank_zero_evaluation import evaluate_once

# The default IoU types (instance segmentation); "keypoints" is asked for explicitly.
IOU_TYPES = ("bbox", "segm")
SUPPORTED_IOU_TYPES = ("bbox", "segm", "keypoints")
# The first six numbers of COCOeval.stats for "bbox" and "segm", in COCOeval.summarize() order.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# The length of COCOeval.stats for "bbox" and "segm": 6 APs, then 6 ARs.
STATS_PER_IOU_TYPE = 12
# COCOeval.stats for "keypoints" (summarize's _summarizeKps): 10 numbers, all returned; no small area
# range (persons under 32^2 px carry no keypoint annotations) and one maxDets (20).
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
STATS_LENGTHS = {
    "bbox": STATS_PER_IOU_TYPE,
    "segm": STATS_PER_IOU_TYPE,
    "keypoints": len(KEYPOINT_STAT_NAMES),
}
OUTPUT_NAMES = {"bbox": STAT_NAMES, "segm": STAT_NAMES, "keypoints": KEYPOINT_STAT_NAMES}
# pycocotools' default OKS sigmas are COCO's, for its 17 person keypoints.
COCO_NUM_KEYPOINTS = 17
# Columns of the per-detection rows: image id, category id, box XYWH, score.
DETECTION_COLUMNS = 7
# Who implements COCO and COCOeval: pycocotools, the reference, or faster-coco-eval's C++ port of it.
BACKENDS = ("pycocotools", "faster_coco_eval")
log = logging.getLogger(__name__)


class COCOEvaluation(Metric):
    """COCO AP, AP50, AP75, APs, APm, APl for each of `iou_types` ("bbox", "segm"), and for "keypoints"
    OKS AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl.

    `update(preds, targets)` takes the model's eval output (per image: contiguous `labels`, `scores`,
    `boxes` XYXY (needed for "bbox"), for "segm" `masks` (N,1,H,W) probabilities in the original image
    size, for "keypoints" `keypoints` (N, K, 3): x, y, score per keypoint in source-image pixels) and
    targets with `image_id`. Images seen twice (DistributedSampler padding) count once; with
    `per_instance` (top-down keypoint models: one prediction and one target per instance, several per
    image) the unit is the target's single annotation id instead of the image. `compute()` returns
    `{"bbox/AP": ..., "segm/APl": ..., "keypoints/ARl": ...}` as float64 tensors, -1 where COCOeval has no
    ground truth for a value; the full COCOeval stats per IoU type (12 for bbox and segm, 10 for
    keypoints) are kept in `last_stats` (on every rank). `backend` chooses the COCO/COCOeval
    implementation (one of `BACKENDS`). Only the categories of `label_to_category_id` are scored (all of
    the file's without it): a keypoint model of one category of a multi-category file (the synthetic
    world's stars) is not charged with the others. `oks_sigmas`: the per-keypoint OKS sigmas (``params.
    kpt_oks_sigmas``, e.g. ``DatasetMetadata.oks_sigmas``); without them COCO's 17 apply, so K must be 17.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(
        self,
        annotation_file: str | Path | dict[str, Any],
        label_to_category_id: dict[int, int] | None = None,
        iou_types: Sequence[str] = IOU_TYPES,
        backend: str = "pycocotools",
        oks_sigmas: Sequence[float] | None = None,
        per_instance: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        unknown = set(iou_types) - set(SUPPORTED_IOU_TYPES)
        if unknown or not iou_types:
            raise ValueError(
                f"iou_types must be a non-empty subset of {SUPPORTED_IOU_TYPES}, got {tuple(iou_types)}"
            )
        self.iou_types = tuple(iou_types)
        if oks_sigmas is not None and (not oks_sigmas or min(oks_sigmas) <= 0):
            raise ValueError(f"oks_sigmas must be positive, one per keypoint, got {tuple(oks_sigmas)}")
        self.oks_sigmas = None if oks_sigmas is None else tuple(float(s) for s in oks_sigmas)
        self.num_keypoints = COCO_NUM_KEYPOINTS if oks_sigmas is None else len(oks_sigmas)
        self.label_to_category_id = label_to_category_id
        self.per_instance = per_instance
        self.backend = backend
        self._coco_class, self._cocoeval_class = coco_api(backend)
        self.coco_gt = self._ground_truth(annotation_file)
        self.last_stats: dict[str, np.ndarray] = {}
        self.unmapped_detections = 0
        # (M, 3) int64 per evaluated unit (an image, or with per_instance an annotation): image id, the key
        # that repeats when DistributedSampler pads (the image id or the annotation id), number of its
        # detections (in the order of `detections`).
        self.add_state("images", default=[], dist_reduce_fx="cat")
        self.add_state("detections", default=[], dist_reduce_fx="cat")  # (N, DETECTION_COLUMNS) float64
        if "segm" in self.iou_types:
            self.add_state("rle_lengths", default=[], dist_reduce_fx="cat")  # (N,) int64
            self.add_state("rle_bytes", default=[], dist_reduce_fx="cat")  # (sum of lengths,) uint8
        if "keypoints" in self.iou_types:
            self.add_state("keypoints", default=[], dist_reduce_fx="cat")  # (N, 3 K) float64: x, y, score

    def _ground_truth(self, annotation_file: str | Path | dict[str, Any]) -> Any:
        """The COCO ground truth from a file, or from a COCO-format dict built in memory (e.g. the frames
        of a video dataset, ``datamodules.youtube_vis_coco``)."""
        with contextlib.redirect_stdout(io.StringIO()):
            if not isinstance(annotation_file, dict):
                return self._coco_class(str(annotation_file))
            coco = self._coco_class()
            coco.dataset = annotation_file
            coco.createIndex()
            return coco

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        """Store one batch of detections; `targets` only supply `image_id`."""
        units: list[list[int]] = []
        detections = [torch.zeros(0, DETECTION_COLUMNS, dtype=torch.float64)]
        rle_lengths: list[int] = []
        rle_bytes = [torch.zeros(0, dtype=torch.uint8)]
        keypoints = [torch.zeros(0, 3 * self.num_keypoints, dtype=torch.float64)]
        for pred, target in zip(preds, targets, strict=True):
            image_id = int(target["image_id"])
            if image_id not in self.coco_gt.imgs:
                raise ValueError(f"image_id {image_id} is not in the annotation file")
            pred = self._drop_unmapped_labels(pred, image_id)
            scores = pred["scores"].detach().to("cpu", torch.float64).reshape(-1)
            boxes = self._xywh_boxes(pred, len(scores), image_id)
            category_ids = torch.tensor(
                [self._category_id(label) for label in pred["labels"].tolist()], dtype=torch.float64
            )
            image_column = torch.full_like(scores, float(image_id))
            rows = torch.cat([image_column[:, None], category_ids[:, None], boxes, scores[:, None]], dim=1)
            units.append([image_id, self._unit_key(target, image_id), len(rows)])
            detections.append(rows)
            if "segm" in self.iou_types:
                rles = self._encode_masks(pred["masks"], image_id)
                if len(rles) != len(rows):
                    raise ValueError(f"image_id {image_id}: {len(rles)} masks for {len(rows)} boxes")
                for rle in rles:
                    rle_bytes.append(torch.from_numpy(np.frombuffer(rle["counts"], dtype=np.uint8).copy()))
                    rle_lengths.append(len(rle["counts"]))
            if "keypoints" in self.iou_types:
                keypoints.append(self._keypoint_rows(pred, len(rows), image_id))
        self.images.append(torch.tensor(units, dtype=torch.int64, device=self.device).reshape(-1, 3))
        self.detections.append(torch.cat(detections).to(self.device))
        if "segm" in self.iou_types:
            self.rle_lengths.append(torch.tensor(rle_lengths, dtype=torch.int64, device=self.device))
            self.rle_bytes.append(torch.cat(rle_bytes).to(self.device))
        if "keypoints" in self.iou_types:
            self.keypoints.append(torch.cat(keypoints).to(self.device))

    def compute(self) -> dict[str, Tensor]:
        """COCOeval per IoU type on the gathered detections of the evaluated images, run by rank 0 only
        when the states were gathered across ranks (the stats are broadcast), else by this process."""
        size = sum(STATS_LENGTHS[iou_type] for iou_type in self.iou_types)
        stats = evaluate_once(self, self._evaluate_all, size, "COCO evaluation")
        output = {}
        rows = stats.split([STATS_LENGTHS[iou_type] for iou_type in self.iou_types])
        for iou_type, row in zip(self.iou_types, rows, strict=True):
            self.last_stats[iou_type] = row.cpu().numpy().copy()
            for name, value in zip(OUTPUT_NAMES[iou_type], row, strict=False):
                output[f"{iou_type}/{name}"] = value
        return output

    def _evaluate_all(self) -> Tensor:
        """The float64 COCOeval stats of the detections in the states, of each IoU type in turn
        (``STATS_LENGTHS``), concatenated."""
        units = _cat(self.images, (0, 3), torch.int64).cpu().numpy()
        detections = _cat(self.detections, (0, DETECTION_COLUMNS), torch.float64).cpu().numpy()
        # Keep the first occurrence of each unit, so that padded duplicates do not count twice.
        ends = np.cumsum(units[:, 2])
        keep = np.zeros(len(detections), dtype=bool)
        first_seen: set[int] = set()
        for (_, key, count), end in zip(units.tolist(), ends.tolist(), strict=True):
            if key not in first_seen:
                first_seen.add(key)
                keep[end - count : end] = True
        image_ids = sorted(set(units[:, 0].tolist()))
        results = {}
        if "bbox" in self.iou_types:
            results["bbox"] = self._box_results(detections[keep])
        if "segm" in self.iou_types:
            lengths = _cat(self.rle_lengths, (0,), torch.int64).cpu().numpy()
            data = _cat(self.rle_bytes, (0,), torch.uint8).cpu().numpy().tobytes()
            starts = np.cumsum(lengths) - lengths
            counts = [data[s : s + n] for s, n, k in zip(starts, lengths, keep, strict=True) if k]
            results["segm"] = self._mask_results(detections[keep], counts)
        if "keypoints" in self.iou_types:
            width = 3 * self.num_keypoints
            keypoints = _cat(self.keypoints, (0, width), torch.float64).cpu().numpy()[keep]
            rows = detections[keep]
            results["keypoints"] = keypoint_results(
                rows[:, 0].astype(np.int64).tolist(),
                rows[:, 1].astype(np.int64).tolist(),
                keypoints.reshape(len(rows), self.num_keypoints, 3),
                rows[:, 6].tolist(),
            )

        stats = [self._evaluate(results[iou_type], iou_type, image_ids) for iou_type in self.iou_types]
        return torch.tensor(np.concatenate(stats), dtype=torch.float64, device=self.device)

    def _unit_key(self, target: dict[str, Tensor], image_id: int) -> int:
        """What identifies a repeated unit: the image id, or with ``per_instance`` the annotation id."""
        if not self.per_instance:
            return image_id
        if "annotation_ids" not in target or target["annotation_ids"].numel() != 1:
            raise ValueError(
                f"image_id {image_id}: per_instance evaluation takes targets of one instance each, with "
                "its 'annotation_ids' (the top-down convention, datamodules.batch)"
            )
        return int(target["annotation_ids"].reshape(-1)[0])

    def _drop_unmapped_labels(self, pred: dict[str, Tensor], image_id: int) -> dict[str, Tensor]:
        """Detections of labels with no category (e.g. the unused ids of torchvision's 91-way COCO head)
        cannot be scored: they are dropped, counted in ``unmapped_detections`` and logged."""
        pred, dropped = keep_mapped_labels(pred, self.label_to_category_id)
        if dropped:
            self.unmapped_detections += len(dropped)
            log.warning(
                "image_id %d: dropped %d detections whose labels %s have no category id (%d so far)",
                image_id,
                len(dropped),
                sorted(set(dropped)),
                self.unmapped_detections,
            )
        return pred

    def _xywh_boxes(self, pred: dict[str, Tensor], count: int, image_id: int) -> Tensor:
        """(count, 4) float64 XYWH boxes; NaN when the prediction has none (keypoints alone: COCOeval
        takes the keypoints' extent then)."""
        if "boxes" not in pred:
            if "bbox" in self.iou_types:
                raise ValueError(f"image_id {image_id}: the prediction has no 'boxes', needed for box AP")
            return torch.full((count, 4), torch.nan, dtype=torch.float64)
        boxes = pred["boxes"].detach().to("cpu", torch.float64).reshape(-1, 4)
        boxes[:, 2:] -= boxes[:, :2]
        return boxes

    def _keypoint_rows(self, pred: dict[str, Tensor], count: int, image_id: int) -> Tensor:
        """(count, 3 K) float64: each detection's x, y, score per keypoint, as COCO results flatten them."""
        if "keypoints" not in pred:
            raise ValueError(
                f"image_id {image_id}: the prediction has no 'keypoints', needed for keypoint AP"
            )
        keypoints = pred["keypoints"].detach().to("cpu", torch.float64)
        if keypoints.ndim != 3 or keypoints.shape[0] != count or keypoints.shape[2] != 3:
            raise ValueError(
                f"image_id {image_id}: keypoints must be ({count}, K, 3) (x, y, score per keypoint), "
                f"got {tuple(keypoints.shape)}"
            )
        if keypoints.shape[1] != self.num_keypoints:
            if self.oks_sigmas is None:
                raise ValueError(
                    f"image_id {image_id}: {keypoints.shape[1]} keypoints per instance, but without "
                    f"oks_sigmas COCO's {COCO_NUM_KEYPOINTS} OKS sigmas apply: pass oks_sigmas (one per "
                    "keypoint, e.g. DatasetMetadata.oks_sigmas)"
                )
            raise ValueError(
                f"image_id {image_id}: {keypoints.shape[1]} keypoints per instance, but "
                f"{len(self.oks_sigmas)} oks_sigmas"
            )
        return keypoints.reshape(count, 3 * keypoints.shape[1])

    def _category_id(self, label: int) -> int:
        if self.label_to_category_id is None:
            return label
        return self.label_to_category_id[label]

    def _encode_masks(self, masks: Tensor, image_id: int) -> list[dict[str, Any]]:
        image = self.coco_gt.imgs[image_id]
        if tuple(masks.shape[-2:]) != (image["height"], image["width"]):
            raise ValueError(
                f"masks for image_id {image_id} are {masks.shape[-2]}x{masks.shape[-1]}, but the image is "
                f"{image['height']}x{image['width']} in the annotation file: paste masks in the original size"
            )
        return encode_masks(masks)

    def _box_results(self, detections: np.ndarray) -> list[dict[str, Any]]:
        return [
            {"image_id": int(row[0]), "category_id": int(row[1]), "bbox": row[2:6].tolist(), "score": row[6]}
            for row in detections
        ]

    def _mask_results(self, detections: np.ndarray, counts: list[bytes]) -> list[dict[str, Any]]:
        """No "bbox" key: with one, loadRes would use the box area for the segm area ranges."""
        results = []
        for row, rle_counts in zip(detections, counts, strict=True):
            image = self.coco_gt.imgs[int(row[0])]
            rle = {"size": [image["height"], image["width"]], "counts": rle_counts}
            results.append(
                {"image_id": int(row[0]), "category_id": int(row[1]), "segmentation": rle, "score": row[6]}
            )
        return results

    def _evaluate(self, results: list[dict[str, Any]], iou_type: str, image_ids: list[int]) -> np.ndarray:
        with contextlib.redirect_stdout(io.StringIO()):
            if results:
                coco_dt = self.coco_gt.loadRes(results)
            else:  # loadRes rejects an empty list; no detections gives AP 0 (-1 where there is no GT).
                coco_dt = self._coco_class()
                coco_dt.dataset = {**self.coco_gt.dataset, "annotations": []}
                coco_dt.createIndex()
            coco_eval = self._cocoeval_class(self.coco_gt, coco_dt, iou_type)
            coco_eval.params.imgIds = image_ids
            if self.label_to_category_id is not None:  # the categories the model predicts, not every one
                coco_eval.params.catIds = sorted(set(self.label_to_category_id.values()))
            if iou_type == "keypoints" and self.oks_sigmas is not None:
                coco_eval.params.kpt_oks_sigmas = np.asarray(self.oks_sigmas, dtype=np.float64)
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        stats = np.asarray(coco_eval.stats, dtype=np.float64)
        if stats.shape != (STATS_LENGTHS[iou_type],):
            raise RuntimeError(
                f"{self.backend} gave {iou_type} stats of shape {stats.shape}, not {STATS_LENGTHS[iou_type]}"
            )
        return stats.copy()


def coco_api(backend: str) -> tuple[type, type]:
    """The COCO and COCOeval classes of `backend`; faster-coco-eval is imported only when chosen."""
    if backend == "pycocotools":
        return COCO, COCOeval
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO as FasterCOCO
        from faster_coco_eval import COCOeval_faster

        return FasterCOCO, COCOeval_faster
    raise ValueError(f"unknown COCO evaluation backend {backend!r}: choose one of {BACKENDS}")


def _cat(state: list[Tensor] | Tensor, empty_shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A list state concatenated (it is already one tensor after a DDP sync); empty if nothing was stored."""
    if isinstance(state, list) and not state:
        return torch.zeros(empty_shape, dtype=dtype)
    return dim_zero_cat(state).to(dtype)
