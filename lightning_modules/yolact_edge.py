"""YolactEdge training in the paper's stages and its video evaluation (Liu et al. 2021, "YolactEdge",
Sec. III-C and IV; the official ``train.py`` and ``data/config.py`` of haotian-liu/yolact_edge, whose
README trains "the image based model", then "the flow (warping) module", then "fine tune the network
jointly", each stage ``--resume``-ing the previous one's weights -- here ``checkpoint``).

Batches are YouTube-VIS clips (``datamodules.video_clips.ClipBatch``). Every stage evaluates the same way,
as the official ``eval.py`` does on YouTube-VIS (``--eval_stride 5``): a clip is a keyframe and the
non-keyframes that follow it (``model.keyframe_interval``: validation clips of 5 frames); each frame is
scored by COCO mask and box AP against the frames' COCO view (``datamodules.youtube_vis_coco``), separately
for keyframes (``val/keyframe/segm/AP``), non-keyframes (``val/non_keyframe/segm/AP``) and all frames
(``val/segm/AP``, the main metric: with non-overlapping clips of 5, one frame in 5 is a keyframe, as in the
official evaluation's 5 passes of shifted keyframes). ``non_keyframes`` chooses what a non-keyframe runs
(``models.yolact_edge.NON_KEYFRAME_MODES``: warped features, the keyframe's unwarped, or the full network).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from datamodules.batch import Target
from datamodules.metadata import DatasetMetadata
from datamodules.video_clips import ClipBatch, split_frame_image_id
from datamodules.youtube_vis_checks import read_youtube_vis_json
from datamodules.youtube_vis_coco import youtube_vis_frames_as_coco
from lightning_modules.detection import EVALUATED_SPLITS, InstanceSegmentationModule
from lightning_modules.stage_checkpoint import load_stage_checkpoint
from lightning_modules.wandb_overlays import clip_overlay
from metrics.coco_evaluation import COCOEvaluation
from models.yolact import relative_targets
from models.yolact_edge import FrameFeatures, YolactEdge
from models.yolact_edge_loss import feature_matching_loss, official_matching_convs

FRAME_KINDS = ("keyframe", "non_keyframe", "all")


class YolactEdgeModule(InstanceSegmentationModule):
    """The stages' shared part: the previous stage's ``checkpoint``, the parameters the stage freezes
    (``frozen``: name prefixes of the model's parameters; those modules also run in eval mode while
    training, as the official ``fine_tune_layers`` does) and the clip evaluation (module docstring).

    Args:
        model: a ``models.yolact_edge.YolactEdge``.
        metadata, optimizer, lr_scheduler, loss_weights, iou_types, evaluation_backend: ``DetectionModule``'s.
        checkpoint: a previous stage's Lightning checkpoint whose ``model.*`` weights start this stage.
        checkpoint_strict: refuse a checkpoint with missing or unexpected weights (all stages share one
            model, so stage to stage loads are strict); the names are logged either way.
        non_keyframes: ``"warp"`` (YolactEdge), ``"copy"`` (no warping: the keyframe's P4, P5 as they are)
            or ``"full"`` (the image model on every frame) during evaluation and prediction.
        overlay_clips: validation clips drawn to W&B per evaluation, frames side by side.
        overlay_score_threshold: detections drawn in the overlays score at least this.
    """

    frozen: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        model: YolactEdge,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
        loss_weights: Mapping[str, float] | None = None,
        checkpoint: Path | None = None,
        checkpoint_strict: bool = True,
        non_keyframes: Literal["warp", "copy", "full"] = "warp",
        iou_types: Sequence[str] | None = None,
        evaluation_backend: str = "pycocotools",
        overlay_clips: int = 1,
        overlay_score_threshold: float = 0.5,
    ) -> None:
        super().__init__(
            model, metadata, optimizer, lr_scheduler, loss_weights, iou_types, evaluation_backend,
            overlay_clips, overlay_score_threshold,
        )  # fmt: skip
        if checkpoint is not None:
            load_stage_checkpoint(self.model, checkpoint, checkpoint_strict)
        self.non_keyframes = non_keyframes
        for name, parameter in self.model.named_parameters():
            if name.startswith(tuple(f"{prefix}." for prefix in self.frozen)):
                parameter.requires_grad_(False)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        for prefix in self.frozen:
            self.model.get_submodule(prefix).eval()

    # -- evaluation ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "predict":
            return
        for split in EVALUATED_SPLITS:
            if f"{split}_all" in self.evaluators or split not in self.metadata.annotation_files:
                continue
            data = read_youtube_vis_json(self.metadata.annotation_file(split), require_annotations=False)
            frames = youtube_vis_frames_as_coco(data)
            for kind in FRAME_KINDS:
                self.evaluators[f"{split}_{kind}"] = COCOEvaluation(
                    frames, self.metadata.label_to_category_id, self.iou_types, self.evaluation_backend
                )

    def clip_detections(self, clips: list[list[Tensor]]) -> list[list[dict[str, Tensor]]]:
        """Detections ``[t][b]`` of frame t of clip b; frame 0 is a keyframe (``YolactEdge.video``)."""
        frames = [[clip[t] for clip in clips] for t in range(len(clips[0]))]
        return self.model.video(frames, self.non_keyframes)

    def evaluation_step(self, batch: ClipBatch, split: str) -> None:
        clips, targets = batch
        if f"{split}_all" not in self.evaluators:
            raise ValueError(f"the datamodule's metadata has no {split} annotation file to evaluate against")
        detections = self.clip_detections(clips)
        for t, predictions in enumerate(detections):
            kind = "keyframe" if t % self.model.keyframe_interval == 0 else "non_keyframe"
            frame_targets = [clip_targets[t] for clip_targets in targets]
            self.evaluators[f"{split}_{kind}"].update(predictions, frame_targets)
            self.evaluators[f"{split}_all"].update(predictions, frame_targets)
        draws = []
        for b, clip in enumerate(clips):
            captions = []
            for t, target in enumerate(targets[b]):
                video_id, frame = split_frame_image_id(int(target["image_id"]))
                key = " (key)" if t % self.model.keyframe_interval == 0 else ""
                captions.append(f"video {video_id} frame {frame}{key}")
            per_frame = [detections[t][b] for t in range(len(clip))]
            draws.append(partial(clip_overlay, clip, per_frame, captions, self.overlay_score_threshold))
        self.overlays.add_while_wanted(self, split, draws)

    def evaluation_epoch_end(self, split: str) -> None:
        results = {}
        for kind in FRAME_KINDS:
            evaluator = self.evaluators[f"{split}_{kind}"]
            if evaluator.update_count == 0:  # e.g. no non-keyframes in clips of one frame
                continue
            prefix = split if kind == "all" else f"{split}/{kind}"
            results.update({f"{prefix}/{name}": value for name, value in evaluator.compute().items()})
            evaluator.reset()
        self.log_dict(results, prog_bar=False)
        self.overlays.flush(self, split)

    def predict_step(self, batch: ClipBatch, batch_idx: int) -> list[dict[str, Any]]:
        """COCO results per frame (``image_id`` = the frame's), keyframes as in evaluation."""
        clips, targets = batch
        results = []
        for t, predictions in enumerate(self.clip_detections(clips)):
            for b, prediction in enumerate(predictions):
                results += self.image_results(prediction, int(targets[b][t]["image_id"]))
        return results


class YolactEdgeImageModule(YolactEdgeModule):
    """Stage 1, the image model (official ``yolact_edge_youtubevis_config``: ``warp_mode='none'``): YOLACT's
    losses on single frames -- every frame of every clip of the batch is an image (train on clips of one
    frame) -- with FeatFlowNet and SPA unused and frozen. Evaluate it with ``non_keyframes="full"``."""

    frozen = ("flow", "spa")

    def compute_losses(self, clips: list[list[Tensor]], targets: list[list[Target]]) -> dict[str, Tensor]:
        images = [frame for clip in clips for frame in clip]
        return self.model(images, [target for clip_targets in targets for target in clip_targets])


class _FramePairModule(YolactEdgeModule):
    """A training pair per clip: the keyframe (the clip's first frame) and the frame ``offset`` frames later,
    ``offset`` drawn per batch uniformly from ``frame_offsets`` (official ``frame_offset_lb``/``_ub`` 2, 5
    with ``all_frame_direction='forward'``: the reference frame precedes the annotated frame). Training
    clips need ``frame_offsets[1] + 1`` frames (with ``frame_stride`` 1)."""

    def __init__(
        self,
        model: YolactEdge,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
        loss_weights: Mapping[str, float] | None = None,
        checkpoint: Path | None = None,
        checkpoint_strict: bool = True,
        non_keyframes: Literal["warp", "copy", "full"] = "warp",
        frame_offsets: tuple[int, int] = (2, 5),
        matching_locations: Literal["L", "P", "L+P"] = "L+P",
        matching_distance: Literal["cosine", "SmoothL1"] = "cosine",
        iou_types: Sequence[str] | None = None,
        evaluation_backend: str = "pycocotools",
        overlay_clips: int = 1,
        overlay_score_threshold: float = 0.5,
    ) -> None:
        super().__init__(
            model, metadata, optimizer, lr_scheduler, loss_weights, checkpoint, checkpoint_strict,
            non_keyframes, iou_types, evaluation_backend, overlay_clips, overlay_score_threshold,
        )  # fmt: skip
        if not 1 <= frame_offsets[0] <= frame_offsets[1]:
            raise ValueError(f"frame_offsets must be 1 <= low <= high, got {tuple(frame_offsets)}")
        self.frame_offsets = tuple(frame_offsets)
        self.matching_locations, self.matching_distance = matching_locations, matching_distance

    def pair(self, clips: list[list[Tensor]]) -> int:
        if len(clips[0]) <= self.frame_offsets[0]:
            raise ValueError(
                f"training clips of {len(clips[0])} frames, but frame_offsets are {self.frame_offsets}"
            )
        high = min(self.frame_offsets[1], len(clips[0]) - 1)
        return int(torch.randint(self.frame_offsets[0], high + 1, ()).item())

    def matching_loss(self, warped: FrameFeatures, target: FrameFeatures) -> Tensor:
        """The feature-matching loss (``models.yolact_edge_loss``) of the warped P4, P5 against the full
        network's on the same frame (official ``fm_loss_loc='L+P'``, ``feature_matching_loss='cosine'``)."""
        convs = official_matching_convs(self.model.fpn)
        return feature_matching_loss(
            warped.levels, target.levels, convs, self.matching_locations, self.matching_distance
        )


class YolactEdgeFlowModule(_FramePairModule):
    """Stage 2, the feature transform: FeatFlowNet and SPA trained alone (backbone, FPN, heads frozen) by
    the feature-matching loss only: the keyframe's P4, P5 warped to the later frame against what the full
    network computes on that frame. The official stage 2 (``yolact_edge_vid_trainflow_config``) instead
    trains FeatFlowNet on FlyingChairs with ground-truth flow (``OpticalFlowLoss``) and leaves SPA to
    stage 3; this stage learns the same transform from the video itself."""

    frozen = ("backbone", "fpn", "protonet", "head", "semantic_head")

    def compute_losses(self, clips: list[list[Tensor]], targets: list[list[Target]]) -> dict[str, Tensor]:
        offset = self.pair(clips)
        with torch.no_grad():
            _, keyframe = self.model.forward_keyframe([clip[0] for clip in clips])
            _, target = self.model.forward_keyframe([clip[offset] for clip in clips])
        _, warped = self.model.forward_non_keyframe([clip[offset] for clip in clips], keyframe)
        return {"loss_feature_matching": self.matching_loss(warped, target)}


class YolactEdgeFineTuneModule(_FramePairModule):
    """Stage 3, joint fine-tuning (official ``yolact_edge_vid_config``, ``train.py``'s video branch with
    ``base_backward=True``): on the later frame of each pair, YOLACT's losses of the full network and of the
    network on features warped from the keyframe (``<loss>_warped``), plus the feature-matching loss;
    trained: FeatFlowNet, SPA, the FPN's output and downsampling convs, protonet, heads and semantic conv
    (``fine_tune_layers``); frozen: the backbone and the FPN's laterals. The official joint COCO batch per
    step is not reproduced."""

    frozen = ("backbone", "fpn.lateral")

    def compute_losses(self, clips: list[list[Tensor]], targets: list[list[Target]]) -> dict[str, Tensor]:
        offset = self.pair(clips)
        images = [clip[offset] for clip in clips]
        relative = relative_targets(images, [clip_targets[offset] for clip_targets in targets])
        with torch.no_grad():
            _, keyframe = self.model.forward_keyframe([clip[0] for clip in clips])
        outputs, target = self.model.forward_keyframe(images)
        warped_outputs, warped = self.model.forward_non_keyframe(images, keyframe)
        losses = self.model.criterion(outputs, relative)
        warped_losses = self.model.criterion(warped_outputs, relative)
        return {
            **losses,
            **{f"{name}_warped": value for name, value in warped_losses.items()},
            "loss_feature_matching": self.matching_loss(warped, target),
        }
