"""Shared plumbing of the instance-segmentation family (Mask R-CNN, YOLACT, ...): SGD with warm-up
and step decay from config, COCO evaluation (pycocotools, synced across ranks) on val and test,
and W&B overlays. A method subclass only says how its losses are computed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn

from lightning_modules.lr_schedules import warmup_multistep
from lightning_modules.wandb_overlays import instance_overlay
from metrics.coco_evaluation import COCOEvaluation
from metrics.coco_results import coco_detections, keep_mapped_labels

Batch = tuple[list[Tensor], list[dict[str, Tensor]]]
log = logging.getLogger(__name__)


class InstanceSegmentationModule(LightningModule):
    """Base LightningModule; the datamodule provides ``class_names``, ``num_classes``,
    ``label_to_category_id`` and ``val_annotation_file`` (and optionally ``test_annotation_file``)."""

    main_metric = "val/segm/AP"
    main_metric_mode = "max"

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.02,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        warmup_steps: int = 1000,
        warmup_factor: float = 0.001,
        lr_milestones: Sequence[int] = (60_000, 80_000),
        lr_gamma: float = 0.1,
        overlay_images: int = 8,
        overlay_score_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.model = model
        self.save_hyperparameters(ignore=["model"])
        self.evaluators = nn.ModuleDict()
        self.class_names: list[str] = []
        self.label_to_category_id: dict[int, int] = {}
        self._overlays: list = []

    def compute_losses(self, images: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must say how its losses are computed")

    # -- set-up -------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        required = ("class_names", "num_classes", "label_to_category_id", "val_annotation_file")
        missing = [name for name in required if not hasattr(datamodule, name)]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs a COCO-style datamodule; "
                f"{type(datamodule).__name__} lacks {missing}"
            )
        model_classes = getattr(self.model, "num_classes", None)
        needed = max(datamodule.label_to_category_id) + 1
        if model_classes is not None and model_classes != needed:
            raise ValueError(
                f"model.num_classes={model_classes} (background included), but the dataset's labels run to "
                f"{needed - 1}: set model.init_args.num_classes to {needed}"
            )
        self.class_names = list(datamodule.class_names)
        self.label_to_category_id = dict(datamodule.label_to_category_id)
        annotation_files = {
            "val": datamodule.val_annotation_file,
            "test": getattr(datamodule, "test_annotation_file", None) or datamodule.val_annotation_file,
        }
        for split, annotation_file in annotation_files.items():
            if split not in self.evaluators:
                self.evaluators[split] = COCOEvaluation(annotation_file, datamodule.label_to_category_id)

    def configure_optimizers(self):
        parameters = [parameter for parameter in self.model.parameters() if parameter.requires_grad]
        hparams = self.hparams
        optimizer = torch.optim.SGD(
            parameters, lr=hparams.lr, momentum=hparams.momentum, weight_decay=hparams.weight_decay
        )
        scheduler = warmup_multistep(
            optimizer, hparams.warmup_steps, hparams.warmup_factor, hparams.lr_milestones, hparams.lr_gamma
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- training -----------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.compute_losses(images, targets)
        loss = sum(losses.values())
        self.log_dict({f"train/{name}": value for name, value in losses.items()}, batch_size=len(images))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    # -- evaluation ---------------------------------------------------------------------------------
    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return self.model(images)

    def _evaluation_step(self, batch: Batch, split: str) -> None:
        images, targets = batch
        predictions = self(images)
        self.evaluators[split].update(predictions, targets)
        wants_overlays = (
            split == "val" and isinstance(self.logger, WandbLogger) and self.trainer.is_global_zero
        )
        if wants_overlays and not self.trainer.sanity_checking:
            for image, prediction, target in zip(images, predictions, targets, strict=True):
                if len(self._overlays) >= self.hparams.overlay_images:
                    break
                self._overlays.append(
                    instance_overlay(
                        image, prediction, target, self.class_names, self.hparams.overlay_score_threshold
                    )
                )

    def _evaluation_epoch_end(self, split: str) -> None:
        results = self.evaluators[split].compute()
        self.evaluators[split].reset()
        self.log_dict({f"{split}/{name}": value for name, value in results.items()}, prog_bar=False)
        if self._overlays:
            self.logger.experiment.log(
                {f"{split}/predictions": self._overlays, "trainer/global_step": self.global_step}
            )
            self._overlays = []

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._evaluation_epoch_end("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._evaluation_epoch_end("test")

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        """COCO results (RLE masks) rather than full-size mask probabilities, which for a whole split
        would not fit in memory; detections of labels without a category id are dropped and logged."""
        images, targets = batch
        results = []
        for prediction, target in zip(self(images), targets, strict=True):
            image_id = int(target["image_id"])
            prediction, dropped = keep_mapped_labels(prediction, self.label_to_category_id)
            if dropped:
                log.warning(
                    "image_id %d: %d detections of labels %s without a category id were not written",
                    image_id,
                    len(dropped),
                    sorted(set(dropped)),
                )
            results += coco_detections(prediction, image_id, self.label_to_category_id)
        return results
