"""The detection family: a box-only base (main metric ``val/bbox/AP``) and instance segmentation
under it (``val/segm/AP``). COCO evaluation (pycocotools, synced across ranks) on val and test, COCO
results from ``zoo predict`` and W&B overlays; training (the weighted sum of the model's named losses)
is ``LossDictModule``'s. A method needs a class of its own only when its training differs from "the
model returns its losses in training mode" (torchvision's detection convention)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from datamodules.batch import Batch
from datamodules.metadata import DatasetMetadata
from lightning_modules.loss_dict import LossDictModule
from lightning_modules.overlay_log import OverlayLog
from lightning_modules.prediction_writers import JsonPredictionWriter
from lightning_modules.wandb_overlays import detection_overlay
from metrics.coco_evaluation import IOU_TYPES, COCOEvaluation
from metrics.coco_results import coco_detections, keep_mapped_labels

log = logging.getLogger(__name__)
EVALUATED_SPLITS = ("val", "test")


class DetectionModule(LossDictModule):
    """Object detection: ``model(images, targets)`` returns a dict of named losses in training mode
    (``LossDictModule``) and, in eval mode, per image ``boxes`` XYXY, ``labels`` (1..C), ``scores`` (and
    ``masks`` for instance segmentation) in the input image's pixel frame.

    Args:
        model, metadata, optimizer, lr_scheduler, loss_weights: see ``LossDictModule``.
        iou_types: what COCO evaluation scores, a subset of ``("bbox", "segm")`` holding the main metric's.
        evaluation_backend: ``pycocotools`` (the reference) or ``faster_coco_eval`` (same numbers to
            1e-12, about 5x faster on 2,000 images: ``benchmarks/coco_evaluation.py``).
        overlay_images: validation images drawn to W&B per evaluation.
        overlay_score_threshold: detections drawn in the overlays score at least this.
    """

    main_metric = "val/bbox/AP"
    default_iou_types: tuple[str, ...] = ("bbox",)

    def __init__(
        self,
        model: nn.Module,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
        loss_weights: Mapping[str, float] | None = None,
        iou_types: Sequence[str] | None = None,
        evaluation_backend: str = "pycocotools",
        overlay_images: int = 8,
        overlay_score_threshold: float = 0.5,
    ) -> None:
        super().__init__(model, metadata, optimizer, lr_scheduler, loss_weights)
        self.iou_types = tuple(iou_types or self.default_iou_types)
        task = self.main_metric.split("/")[1]
        if (task in IOU_TYPES and task not in self.iou_types) or not set(self.iou_types) <= set(IOU_TYPES):
            raise ValueError(
                f"iou_types {list(self.iou_types)} must be a subset of {list(IOU_TYPES)} that includes "
                f"{task!r}, which {type(self).__name__}'s main metric {self.main_metric} needs"
            )
        self.evaluation_backend = evaluation_backend
        self.overlay_score_threshold = overlay_score_threshold
        self.evaluators = nn.ModuleDict()
        self.overlays = OverlayLog(overlay_images)

    # -- set-up -------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        for split in EVALUATED_SPLITS:
            if split not in self.evaluators and split in self.metadata.annotation_files:
                self.evaluators[split] = COCOEvaluation(
                    self.metadata.annotation_file(split),
                    self.metadata.label_to_category_id,
                    self.iou_types,
                    self.evaluation_backend,
                )

    # -- evaluation ---------------------------------------------------------------------------------
    def evaluation_step(self, batch: Batch, split: str) -> None:
        images, targets = batch
        if split not in self.evaluators:
            raise ValueError(f"the datamodule's metadata has no {split} annotation file to evaluate against")
        predictions = self(images)
        self.evaluators[split].update(predictions, targets)
        self.overlays.add_per_image(
            self,
            split,
            detection_overlay,
            images,
            predictions,
            targets,
            self.metadata.label_names,
            self.overlay_score_threshold,
        )

    def evaluation_epoch_end(self, split: str) -> None:
        results = self.evaluators[split].compute()
        self.evaluators[split].reset()
        self.log_dict({f"{split}/{name}": value for name, value in results.items()}, prog_bar=False)
        self.overlays.flush(self, split)

    # -- prediction ---------------------------------------------------------------------------------
    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        """COCO results (RLE masks) rather than full-size mask probabilities, which for a whole split
        would not fit in memory; detections of labels without a category id are dropped and logged."""
        images, targets = batch
        results = []
        for prediction, target in zip(self(images), targets, strict=True):
            results += self.image_results(prediction, int(target["image_id"]))
        return results

    def image_results(self, prediction: dict[str, Any], image_id: int) -> list[dict[str, Any]]:
        """One image's COCO results, in the order of its detections whose label has a category id (the
        others are dropped and logged)."""
        label_to_category_id = self.metadata.label_to_category_id
        prediction, dropped = keep_mapped_labels(prediction, label_to_category_id)
        if dropped:
            log.warning(
                "image_id %d: %d detections of labels %s without a category id were not written",
                image_id, len(dropped), sorted(set(dropped)),
            )  # fmt: skip
        if "segm" not in self.iou_types:
            prediction = {key: value for key, value in prediction.items() if key != "masks"}
        return coco_detections(prediction, image_id, label_to_category_id)

    def prediction_writer(self, run_dir: Path) -> BasePredictionWriter:
        """COCO results JSON: ``<run>/predictions.json``, ready for ``COCO.loadRes`` or the test server."""
        return JsonPredictionWriter(run_dir)


class InstanceSegmentationModule(DetectionModule):
    """Instance segmentation (Mask R-CNN, YOLACT): detection plus per-instance ``masks`` (N, 1, H, W)
    probabilities pasted at image size, scored by COCO mask AP."""

    main_metric = "val/segm/AP"
    default_iou_types = ("bbox", "segm")
