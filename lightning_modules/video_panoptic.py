"""The video panoptic family (VPSNet, and UPSNet run frame by frame as its baseline) on Cityscapes-VPS
clips (``datamodules.cityscapes_vps_datamodule``).

Training: a VPSNet (a model with ``track_video``) trains on (reference, target) items -- the item's first
frame is the reference, its last the target (``VPSNet.forward``); an image model (UPSNet) trains on the
items' last frames, so the frame-by-frame baseline sees the same frames.

Evaluation, per whole video (``val_clip_length`` unset), per evaluated split:

- ``<split>/VPQ`` (and ``_things``, ``_stuff``, per window size ``<split>/k<k>/PQ``, ...): video panoptic
  quality (``metrics.video_panoptic_quality``) of the model's own ids -- VPSNet's track head; for an image
  model its frames linked by mask IoU (``models.mask_iou_tracking``, the issue's baseline);
- ``<split>/id_switches`` (``metrics.id_switches``: CLEAR-MOT id switches of the ground-truth thing tracks,
  with ``matches`` and ``tracks``);
- for VPSNet, the same two under ``<split>/mask_iou/`` with the same network's frames linked by mask IoU
  instead of the track head: the association ablation on one checkpoint;
- ``<split>/panoptic/PQ`` ... : image panoptic quality of every frame (``PanopticModule``'s).

Each evaluated item (a whole video, or a clip with ``val_clip_length``: the tracker starts afresh per
item) counts once even when the DDP sampler's padding repeats it on another rank (keyed by its first
frame's ``image_id``, as frame PQ is keyed by image).

``zoo predict`` writes the Cityscapes-VPS prediction files the official ``eval_vpq.py`` reads
(``CityscapesVPSWriter``: ``pan_pred/<image_id>.png`` and ``pred.json``) from whole videos (a set
``val_clip_length`` is refused: ids would restart per clip), and W&B shows clips with one colour per
tracked id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from datamodules.batch import Target
from datamodules.metadata import DatasetMetadata
from datamodules.video_clips import ClipBatch
from lightning_modules.panoptic import EVALUATED_SPLITS, PanopticModule, ground_truth_segmentation
from lightning_modules.prediction_writers import CityscapesVPSWriter
from lightning_modules.stage_checkpoint import load_stage_checkpoint
from lightning_modules.wandb_overlays import video_panoptic_overlay
from metrics.id_switches import IdSwitches
from metrics.panoptic_quality import PanopticSegmentation, SegmentInfo
from metrics.video_panoptic_quality import (
    CITYSCAPES_VPS_FRAME_STEP,
    CITYSCAPES_VPS_WINDOW_SIZES,
    VideoPanopticQuality,
)
from models.mask_iou_tracking import link_by_mask_iou

LINKINGS = {"own": "the model's own ids", "mask_iou": "the model's frames linked by mask IoU"}


class VideoPanopticModule(PanopticModule):
    """Video panoptic segmentation scored by VPQ (``val/VPQ``; see the module docstring).

    Args:
        model: a VPSNet (``models.vpsnet.VPSNet``) or an image panoptic model (``models.upsnet.UPSNet``).
        metadata, optimizer, lr_scheduler, loss_weights, overlay_images: ``PanopticModule``'s
            (``overlay_images`` counts clips).
        window_sizes, frame_step: the VPQ windows in raw frames and the raw frames between two evaluated
            frames (Cityscapes-VPS: 0, 5, 10, 15 and 5; a world annotated at every frame: step 1).
        mask_iou_threshold: the mask IoU above which the baseline links a segment to the previous frame's.
        checkpoint: a Lightning checkpoint whose ``model.*`` weights start this run
            (``stage_checkpoint.load_stage_checkpoint``, strict).
        checkpoint_submodule: the part of the model the checkpoint fills -- ``upsnet`` starts a VPSNet from
            an image run of its UPSNet (the official FuseTrack training starts from the image model);
            default: the whole model.
    """

    main_metric = "val/VPQ"

    def __init__(
        self,
        model: nn.Module,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
        loss_weights: Mapping[str, float] | None = None,
        overlay_images: int = 4,
        window_sizes: Sequence[int] = CITYSCAPES_VPS_WINDOW_SIZES,
        frame_step: int = CITYSCAPES_VPS_FRAME_STEP,
        mask_iou_threshold: float = 0.5,
        checkpoint: Path | None = None,
        checkpoint_submodule: str = "",
    ) -> None:
        super().__init__(model, metadata, optimizer, lr_scheduler, loss_weights, overlay_images)
        categories = self.metadata.category_isthing
        self.window_sizes, self.frame_step = tuple(window_sizes), frame_step
        self.mask_iou_threshold = mask_iou_threshold
        self.video_evaluators = nn.ModuleDict(
            {
                split: nn.ModuleDict(
                    {
                        linking: nn.ModuleDict(
                            {
                                "vpq": VideoPanopticQuality(categories, self.window_sizes, frame_step),
                                "id_switches": IdSwitches(categories),
                            }
                        )
                        for linking in self.linkings
                    }
                )
                for split in EVALUATED_SPLITS
            }
        )
        if checkpoint is not None:
            load_stage_checkpoint(self.model.get_submodule(checkpoint_submodule), checkpoint)

    @property
    def is_video_model(self) -> bool:
        return hasattr(self.model, "track_video")

    @property
    def linkings(self) -> tuple[str, ...]:
        """The id linkings scored: the model's own, and for VPSNet also mask IoU (``LINKINGS``)."""
        return ("own", "mask_iou") if self.is_video_model else ("own",)

    # -- training -----------------------------------------------------------------------------------
    def compute_losses(self, clips: list[list[Tensor]], targets: list[list[Target]]) -> dict[str, Tensor]:
        if self.is_video_model:
            if any(len(clip) != 2 for clip in clips):
                lengths = sorted({len(clip) for clip in clips})
                raise ValueError(
                    f"VPSNet trains on (reference, target) pairs; got items of {lengths} frames "
                    "(set the DataModule's num_references to 1)"
                )
            return self.model(
                [clip[-1] for clip in clips],
                [clip[0] for clip in clips],
                [t[-1] for t in targets],
                [t[0] for t in targets],
            )
        return self.model([clip[-1] for clip in clips], [t[-1] for t in targets])

    # -- inference ----------------------------------------------------------------------------------
    def video_outputs(self, frames: list[Tensor], mask_iou: bool = True) -> list[dict[str, Tensor]]:
        """One video's per-frame outputs with ``panoptic`` video ids, ``segment_ids``, ``segment_classes``
        (the model's own linking) and ``frame_panoptic`` / ``frame_segment_classes`` (the frame's ids);
        with ``mask_iou``, a video model's frames linked by mask IoU too (``mask_iou``: an image model's
        own linking is that)."""
        if self.is_video_model:
            outputs = self.model.track_video(frames)
        else:
            outputs = [self.model([frame])[0] for frame in frames]
            for output in outputs:
                output["frame_panoptic"], output["frame_segment_classes"] = (
                    output["panoptic"],
                    output["segment_classes"],
                )
        if self.is_video_model and not mask_iou:
            return outputs
        linked = self.linked_by_mask_iou(outputs)
        for output, link in zip(outputs, linked, strict=True):
            if self.is_video_model:
                output["mask_iou"] = link
            else:
                output["panoptic"], output["segment_ids"], output["segment_classes"] = link
        return outputs

    def linked_by_mask_iou(self, outputs: list[dict[str, Tensor]]) -> list[tuple[Tensor, Tensor, Tensor]]:
        frames = [(o["frame_panoptic"], o["frame_segment_classes"]) for o in outputs]
        return link_by_mask_iou(frames, self.model.num_stuff_classes, self.mask_iou_threshold)

    def video_segmentation(
        self, ids: Tensor, segment_ids: Tensor, segment_classes: Tensor
    ) -> PanopticSegmentation:
        categories = self.category_ids(segment_classes)
        segments = {int(i): SegmentInfo(c) for i, c in zip(segment_ids.tolist(), categories, strict=True)}
        return PanopticSegmentation(ids, segments)

    # -- evaluation ---------------------------------------------------------------------------------
    def evaluation_step(self, batch: ClipBatch, split: str) -> None:
        clips, targets = batch
        for frames, frame_targets in zip(clips, targets, strict=True):
            outputs = self.video_outputs(frames)
            truths = [ground_truth_segmentation(t) for t in frame_targets]
            image_ids = [int(t["image_id"]) for t in frame_targets]
            frame_predictions = [
                self.predicted_segmentation(o["frame_panoptic"], o["frame_segment_classes"]) for o in outputs
            ]
            self.evaluators[split]["panoptic"].update(frame_predictions, truths, image_ids=image_ids)
            own = [(o["panoptic"], o["segment_ids"], o["segment_classes"]) for o in outputs]
            for linking in self.linkings:
                rows = own if linking == "own" else [o[linking] for o in outputs]
                predictions = [self.video_segmentation(*row) for row in rows]
                for metric in self.video_evaluators[split][linking].values():
                    metric.update(predictions, truths, video_id=image_ids[0])  # a padded repeat counts once
            self.overlays.add_while_wanted(
                self,
                split,
                [
                    partial(
                        video_panoptic_overlay,
                        frames,
                        outputs,
                        frame_targets,
                        self.metadata.semantic_names,
                        self.semantic_category_ids,
                        self.model.num_stuff_classes,
                    )
                ],
            )

    def evaluation_epoch_end(self, split: str) -> None:
        results: dict[str, Tensor] = {}
        for linking in self.linkings:
            prefix = split if linking == "own" else f"{split}/{linking}"
            metrics = self.video_evaluators[split][linking]
            # compute() syncs across ranks: every rank takes this branch, or none
            updated = torch.tensor(float(metrics["vpq"].update_called), device=self.device)
            if float(self.trainer.strategy.reduce(updated, reduce_op="sum")) == 0:
                continue
            vpq = metrics["vpq"].compute()
            results.update(
                {f"{prefix}/{name}": value.float() for name, value in vpq.items() if value.numel() == 1}
            )
            results.update(
                {
                    f"{prefix}/{name}": value.float()
                    for name, value in metrics["id_switches"].compute().items()
                }
            )
            for metric in metrics.values():
                metric.reset()
        self.log_dict(results)
        super().evaluation_epoch_end(split)

    # -- prediction ---------------------------------------------------------------------------------
    def predict_step(self, batch: ClipBatch, batch_idx: int) -> list[dict[str, Any]]:
        """Per frame its ``image_id`` (``video_clips.frame_image_id``; the writer names it by the predict
        dataset's Cityscapes-VPS id), video ``panoptic`` ids, ``segment_ids`` and their category ids."""
        clips, targets = batch
        if getattr(self.trainer.datamodule, "val_clip_length", None) is not None:
            raise ValueError(
                "prediction writes one video's ids for all its frames: predict whole videos "
                "(the DataModule's val_clip_length unset); a clip's tracker starts afresh"
            )
        rows = []
        for frames, frame_targets in zip(clips, targets, strict=True):
            for output, target in zip(self.video_outputs(frames, mask_iou=False), frame_targets, strict=True):
                rows.append(
                    {
                        "image_id": int(target["image_id"]),
                        "panoptic": output["panoptic"].detach().cpu(),
                        "segment_ids": output["segment_ids"].tolist(),
                        "category_ids": self.category_ids(output["segment_classes"]),
                    }
                )
        return rows

    def prediction_writer(self, run_dir: Path) -> CityscapesVPSWriter:
        """``<run>/pan_pred/<image_id>.png`` and ``<run>/pred.json``, ready for ``eval_vpq.py``."""
        return CityscapesVPSWriter(run_dir, self.categories())
