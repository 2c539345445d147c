"""The panoptic family (UPSNet): training is ``LossDictModule``'s (the model returns its named losses);
evaluation scores panoptic quality (``metrics.panoptic_quality``, the reference ``pq_compute`` to 1e-9,
synced across ranks, DDP-padded images counted once) on val and test; ``zoo predict`` writes COCO
panoptic PNGs + JSON; W&B overlays show the predicted and true semantic classes with segment outlines.

The model's eval output per image, in the input image's pixel frame: Mask R-CNN's ``boxes``, ``labels``,
``scores``, ``masks``, plus ``panoptic`` (H, W) int64 segment ids 1..M (0 void / unknown) and
``segment_classes`` (M,) int64, the semantic class of segment id m + 1 (``datamodules.batch``'s layout:
stuff 0..S-1, then thing label l as S + l - 1). A model may add a second merge of the same network,
``heuristic_panoptic`` and ``heuristic_segment_classes`` (UPSNet's heuristic-merge baseline), scored
beside the first under ``<split>/heuristic/...`` -- the paper's ablation in every run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from datamodules.batch import Batch, Target
from datamodules.metadata import DatasetMetadata
from lightning_modules.loss_dict import LossDictModule
from lightning_modules.overlay_log import OverlayLog
from lightning_modules.prediction_writers import CocoPanopticWriter
from lightning_modules.wandb_overlays import panoptic_overlay
from metrics.panoptic_quality import PanopticQuality, PanopticSegmentation, SegmentInfo

EVALUATED_SPLITS = ("val", "test")
MERGES = {  # metric prefix -> the eval output's (segment ids, segment classes) keys
    "panoptic": ("panoptic", "segment_classes"),
    "heuristic": ("heuristic_panoptic", "heuristic_segment_classes"),
}
SUMMARY_METRICS = tuple(
    f"{name}{group}" for group in ("", "_things", "_stuff") for name in ("PQ", "SQ", "RQ")
)


def ground_truth_segmentation(target: Target) -> PanopticSegmentation:
    """A batch target's ``panoptic`` ids and ``segments`` rows [id, category_id, iscrowd]."""
    rows = target["segments"].reshape(-1, 3).tolist()
    segments = {int(i): SegmentInfo(int(category), bool(crowd)) for i, category, crowd in rows}
    return PanopticSegmentation(target["panoptic"], segments)


class PanopticModule(LossDictModule):
    """Panoptic segmentation scored by PQ (``val/panoptic/PQ``).

    Args:
        model: the network (see the module docstring); its ``num_classes`` (things) and, where it has
            them, ``num_stuff_classes`` and ``num_semantic_classes`` (stuff + things) equal the dataset's.
        metadata, optimizer, lr_scheduler, loss_weights: see ``LossDictModule``; the metadata names the
            stuff classes (``stuff_names``, ``stuff_category_ids``) and maps every thing label.
        overlay_images: validation images drawn to W&B per evaluation.

    Logged per evaluated split and merge (``panoptic``, and ``heuristic`` when the model returns it):
    ``PQ``, ``SQ``, ``RQ`` and their ``_things`` and ``_stuff`` values (a group without any category seen
    has none and is not logged), and ``PQ/<class name>`` for every stuff and thing class.
    """

    main_metric = "val/panoptic/PQ"

    def __init__(
        self,
        model: nn.Module,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
        loss_weights: Mapping[str, float] | None = None,
        overlay_images: int = 8,
    ) -> None:
        super().__init__(model, metadata, optimizer, lr_scheduler, loss_weights)
        metadata = self.metadata
        stuff, things = len(metadata.stuff_names), metadata.num_classes
        self.require_model_setting("num_stuff_classes", stuff, f"{stuff} stuff classes")  # UPSNet's
        self.require_model_setting(
            "num_semantic_classes",
            metadata.num_semantic_classes,
            f"{metadata.num_semantic_classes} semantic classes ({stuff} stuff + {things} thing classes)",
        )
        self.semantic_category_ids = metadata.semantic_category_ids  # refuses unmapped thing labels
        self.evaluators = nn.ModuleDict(
            {
                split: nn.ModuleDict({merge: PanopticQuality(metadata.category_isthing) for merge in MERGES})
                for split in EVALUATED_SPLITS
            }
        )
        self.names_by_category = dict(zip(self.semantic_category_ids, metadata.semantic_names, strict=True))
        self.overlays = OverlayLog(overlay_images)

    def category_ids(self, segment_classes: Tensor) -> list[int]:
        """The dataset category id of each predicted segment's semantic class."""
        classes = segment_classes.reshape(-1).tolist()
        count = len(self.semantic_category_ids)
        if any(not 0 <= c < count for c in classes):
            raise ValueError(
                f"segment classes must lie in 0..{count - 1} (the semantic classes), got {classes}"
            )
        return [self.semantic_category_ids[c] for c in classes]

    def predicted_segmentation(self, ids: Tensor, segment_classes: Tensor) -> PanopticSegmentation:
        categories = self.category_ids(segment_classes)
        return PanopticSegmentation(ids, {m: SegmentInfo(c) for m, c in enumerate(categories, start=1)})

    # -- evaluation ---------------------------------------------------------------------------------
    def evaluation_step(self, batch: Batch, split: str) -> None:
        images, targets = batch
        outputs = self(images)
        truths = [ground_truth_segmentation(target) for target in targets]
        image_ids = [int(target["image_id"]) for target in targets]
        for merge, (ids_key, classes_key) in MERGES.items():
            if merge != "panoptic" and not all(ids_key in output for output in outputs):
                continue  # the optional second merge
            predictions = [self.predicted_segmentation(out[ids_key], out[classes_key]) for out in outputs]
            self.evaluators[split][merge].update(predictions, truths, image_ids=image_ids)
        self.overlays.add_per_image(
            self,
            split,
            panoptic_overlay,
            images,
            outputs,
            targets,
            self.metadata.semantic_names,
            self.semantic_category_ids,
        )

    def evaluation_epoch_end(self, split: str) -> None:
        for merge, metric in self.evaluators[split].items():
            if not metric.update_called:
                continue
            results = metric.compute()
            metric.reset()
            self.log_dict(self.named_results(results, f"{split}/{merge}", metric.category_ids))
        self.overlays.flush(self, split)

    def named_results(
        self, results: Mapping[str, Tensor], prefix: str, category_ids: Sequence[int]
    ) -> dict[str, Tensor]:
        """``PanopticQuality``'s output under ``prefix`` (``val/panoptic``): the summary values (those of
        a group never seen, NaN, left out; the overall ones kept) and PQ per class name (the per-class
        values come in the order of ``category_ids``)."""
        named = {
            f"{prefix}/{name}": results[name]
            for name in SUMMARY_METRICS
            if name in ("PQ", "SQ", "RQ") or not torch.isnan(results[name])
        }
        for category, value in zip(category_ids, results["PQ_per_class"], strict=True):
            named[f"{prefix}/PQ/{self.names_by_category[category]}"] = value
        return named

    # -- prediction ---------------------------------------------------------------------------------
    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        """Per image its id, ``panoptic`` segment ids and each segment's category id, which
        ``CocoPanopticWriter`` writes as a PNG and a ``segments_info`` entry."""
        images, targets = batch
        return [
            {
                "image_id": int(target["image_id"]),
                "panoptic": output["panoptic"].detach().cpu(),
                "category_ids": self.category_ids(output["segment_classes"]),
            }
            for output, target in zip(self(images), targets, strict=True)
        ]

    def prediction_writer(self, run_dir: Path) -> CocoPanopticWriter:
        """``<run>/panoptic/<image_id:012d>.png`` and ``<run>/panoptic.json``, ready for ``pq_compute``."""
        return CocoPanopticWriter(run_dir, self.categories())

    def categories(self) -> Sequence[dict[str, Any]]:
        """The COCO panoptic ``categories`` of the dataset's semantic classes, by category id."""
        isthing, names = self.metadata.category_isthing, self.names_by_category
        return [{"id": c, "name": names[c], "isthing": int(isthing[c])} for c in sorted(names)]
