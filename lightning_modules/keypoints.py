"""The top-down keypoint family: one instance per item, cropped by its box (``datamodules.coco_keypoints``),
its K keypoints predicted in the crop and mapped back to the source image through the target's
``crop_to_image``, where every metric lives.

``TopDownKeypointModule`` is the family base: the metrics (NME with failure rate and AUC, PCK@0.05/0.1
box-normalised, PCKh@0.5 where the data has head boxes, COCO keypoint AP through COCOeval where the
dataset has OKS sigmas), the flip test, the overlays and the COCO keypoint results of ``zoo predict``.
A method says how it trains (``compute_losses``) and how it predicts one batch of crops
(``predict_crops``). ``HeatmapKeypointModule`` (SimpleBaseline, Stacked Hourglass) and
``RegressionKeypointModule`` (DeepPose) are the two ways of doing it that the landmark comparison sets
side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from datamodules.batch import Batch
from datamodules.keypoint_layouts import flip_permutation
from datamodules.metadata import DatasetMetadata
from lightning_modules.base import ZooModule
from lightning_modules.overlay_log import OverlayLog
from lightning_modules.prediction_writers import JsonPredictionWriter
from lightning_modules.wandb_overlays import keypoint_overlay
from metrics.coco_evaluation import COCOEvaluation
from metrics.coco_results import coco_keypoint_detections
from metrics.keypoint_metrics import NormalizedMeanError, PCKh, PercentageCorrectKeypoints
from models.heatmaps import DECODERS, GaussianHeatmapCodec

EVALUATED_SPLITS = ("val", "test")
RESCORING_THRESHOLD = 0.2  # SimpleBaseline / mmpose ``in_vis_thre``


@dataclass
class CropPrediction:
    """A batch of crops' predictions, in crop pixels: ``keypoints`` (B, K, 2), ``scores`` (B, K) in [0, 1]
    (1 where the method has no confidence), the ``heatmaps`` (B, K, h, w) they were decoded from, if any,
    and ``alternatives``: the same crops decoded otherwise (name -> (B, K, 2)), scored on the side."""

    keypoints: Tensor
    scores: Tensor
    heatmaps: Tensor | None = None
    alternatives: dict[str, Tensor] = field(default_factory=dict)


def crop_to_source(points: Tensor, crop_to_image: Tensor) -> Tensor:
    """(B, K, 2) crop pixels -> source-image pixels through each item's (B, 2, 3) affine, in float64."""
    matrices = crop_to_image.to(torch.float64)
    return points.to(torch.float64) @ matrices[:, :, :2].transpose(1, 2) + matrices[:, None, :, 2]


def boxes_to_source(boxes: Tensor, crop_to_image: Tensor) -> Tensor:
    """(B, 4) XYXY crop boxes -> the bounds of their four corners in the source image (B, 4), float64."""
    corners = boxes.to(torch.float64)[:, [[0, 1], [2, 1], [2, 3], [0, 3]]]
    moved = crop_to_source(corners, crop_to_image)
    return torch.cat([moved.amin(1), moved.amax(1)], dim=1)


def visible_in_crop(keypoints: Tensor, crop_size: tuple[int, int]) -> Tensor:
    """(B, K, 3) -> (B, K) bool: annotated (v > 0), finite, and inside the crop [0, W) x [0, H)."""
    width, height = crop_size
    x, y = keypoints[..., 0], keypoints[..., 1]
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    return (keypoints[..., 2] > 0) & torch.isfinite(keypoints[..., :2]).all(-1) & inside


class TopDownKeypointModule(ZooModule):
    """Top-down keypoint localisation: ``model`` maps a (B, 3, H, W) batch of crops to what the method's
    ``predict_crops`` and ``compute_losses`` read. Every crop of a batch has one size (the datamodule's
    ``input_size``) and holds one instance (``datamodules.batch``).

    Args:
        model: the network; its ``num_keypoints``, if it has one, must equal the dataset's K.
        metadata, optimizer, lr_scheduler: see ``ZooModule``; the metadata's keypoint names, flip pairs,
            skeleton, OKS sigmas and NME normaliser are the dataset's layout.
        flip_test: also predict the horizontally mirrored crop and average (Newell et al. 2016, Sec. 5.1;
            SimpleBaseline), left and right keypoints swapped back through the flip pairs.
        overlay_images: validation crops drawn to W&B per evaluation.
    """

    main_metric = "val/keypoints/NME"
    main_metric_mode = "min"

    def __init__(
        self,
        model: nn.Module,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
        flip_test: bool = True,
        overlay_images: int = 8,
    ) -> None:
        super().__init__(metadata, optimizer, lr_scheduler)
        metadata = self.metadata
        self.num_keypoints = len(metadata.keypoint_names)
        if self.num_keypoints == 0:
            raise ValueError(
                f"{type(self).__name__} needs a keypoint dataset: the metadata names no keypoints "
                "(use a keypoint datamodule, e.g. "
                "datamodules.coco_keypoints_datamodule.CocoKeypointsDataModule)"
            )
        model_keypoints = getattr(model, "num_keypoints", None)
        if model_keypoints is not None and model_keypoints != self.num_keypoints:
            raise ValueError(
                f"the model predicts num_keypoints={model_keypoints} but the dataset has "
                f"{self.num_keypoints}; set "
                f"--model.init_args.model.init_args.num_keypoints={self.num_keypoints}"
            )
        self.model = model
        self.flip_test = flip_test
        self.flip_permutation = flip_permutation(self.num_keypoints, metadata.flip_pairs)
        self.save_hyperparameters(ignore=["model", "metadata", "optimizer", "lr_scheduler"])
        self.evaluators = nn.ModuleDict()
        self.overlays = OverlayLog(overlay_images)

    # -- what a method defines ------------------------------------------------------------------------
    def compute_losses(self, images: Tensor, keypoints: Tensor) -> dict[str, Tensor]:
        """Named losses of crops ``images`` (B, 3, H, W) with ``keypoints`` (B, K, 3) in crop pixels."""
        raise NotImplementedError

    def predict_crops(self, images: Tensor) -> CropPrediction:
        """The keypoints of crops ``images`` (B, 3, H, W), with the flip test if ``self.flip_test``."""
        raise NotImplementedError

    def alternative_names(self) -> tuple[str, ...]:
        """The names of ``CropPrediction.alternatives`` this method returns (each scored by NME and PCK
        under ``<split>/keypoints_<name>/``)."""
        return ()

    # -- set-up ---------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        metadata = self.metadata
        for split in EVALUATED_SPLITS:
            if split in self.evaluators:
                continue
            metrics = nn.ModuleDict(
                {
                    "keypoints_nme": NormalizedMeanError(metadata.normalizing_keypoints),
                    "keypoints_pck": PercentageCorrectKeypoints(),
                    "keypoints_pckh": PCKh(),
                }
            )
            if metadata.oks_sigmas and split in metadata.annotation_files:
                metrics["keypoints_coco"] = COCOEvaluation(
                    metadata.annotation_file(split),
                    metadata.label_to_category_id,
                    iou_types=("keypoints",),
                    oks_sigmas=metadata.oks_sigmas,
                    per_instance=True,
                )
            for name in self.alternative_names():
                metrics[f"keypoints_{name}_nme"] = NormalizedMeanError(metadata.normalizing_keypoints)
                metrics[f"keypoints_{name}_pck"] = PercentageCorrectKeypoints()
            self.evaluators[split] = metrics

    # -- training -------------------------------------------------------------------------------------
    @staticmethod
    def stack(batch: Batch) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) crops and (B, K, 3) keypoints of a top-down batch (one instance per target)."""
        images, targets = batch
        shapes = {tuple(image.shape) for image in images}
        if len(shapes) != 1:
            raise ValueError(f"top-down crops must share one size, got {sorted(shapes)}")
        keypoints = [target["keypoints"] for target in targets]
        if any(k.ndim != 3 or k.shape[0] != 1 for k in keypoints):
            raise ValueError("top-down targets hold exactly one instance: keypoints (1, K, 3)")
        return torch.stack(images), torch.cat(keypoints)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, keypoints = self.stack(batch)
        losses = self.compute_losses(images, keypoints)
        loss = sum(losses.values())
        self.log_dict({f"train/{name}": value for name, value in losses.items()}, batch_size=len(images))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    # -- evaluation -----------------------------------------------------------------------------------
    def forward(self, images: Tensor) -> CropPrediction:
        return self.predict_crops(images)

    def flipped(self, images: Tensor) -> Tensor:
        return images.flip(-1)

    def evaluation_step(self, batch: Batch, split: str) -> None:
        images, keypoints = self.stack(batch)
        targets = batch[1]
        prediction = self(images)
        to_image = torch.stack([target["crop_to_image"] for target in targets]).to(images.device)
        source_targets = torch.cat([crop_to_source(keypoints[..., :2], to_image), keypoints[..., 2:]], dim=-1)
        boxes = boxes_to_source(torch.cat([target["boxes"] for target in targets]), to_image)
        metrics = self.evaluators[split]
        # DistributedSampler pads the last batches with repeated items: each annotation counts once
        ids = torch.cat([target["annotation_ids"] for target in targets])
        predicted = crop_to_source(prediction.keypoints, to_image)
        metrics["keypoints_nme"].update(predicted, source_targets, boxes, instance_ids=ids)
        metrics["keypoints_pck"].update(predicted, source_targets, boxes, instance_ids=ids)
        if all("head_boxes" in target for target in targets):
            heads = boxes_to_source(torch.cat([target["head_boxes"] for target in targets]), to_image)
            metrics["keypoints_pckh"].update(predicted, source_targets, heads, instance_ids=ids)
        if "keypoints_coco" in metrics:
            metrics["keypoints_coco"].update(self._coco_predictions(predicted, prediction.scores), targets)
        for name, alternative in prediction.alternatives.items():
            alternative = crop_to_source(alternative, to_image)
            metrics[f"keypoints_{name}_nme"].update(alternative, source_targets, boxes, instance_ids=ids)
            metrics[f"keypoints_{name}_pck"].update(alternative, source_targets, boxes, instance_ids=ids)
        if self.overlays.wants(self, split):
            skeleton = self.metadata.skeleton
            heatmaps = prediction.heatmaps if prediction.heatmaps is not None else [None] * len(images)
            self.overlays.add_while_wanted(
                self,
                split,
                [
                    partial(keypoint_overlay, image, points, target, skeleton, maps, f"annotation {int(id_)}")
                    for image, points, target, maps, id_ in zip(
                        images, prediction.keypoints, keypoints, heatmaps, ids, strict=True
                    )
                ],
            )

    @staticmethod
    def _coco_predictions(keypoints: Tensor, scores: Tensor) -> list[dict[str, Tensor]]:
        """One COCO keypoint detection per crop: x, y, score per keypoint, the instance scored as
        SimpleBaseline's rescoring (``in_vis_thre``): the mean of the keypoint scores above
        ``RESCORING_THRESHOLD`` (0 when none is), times the box score (1: ground-truth boxes)."""
        confident = scores > RESCORING_THRESHOLD
        instance_scores = (scores * confident).sum(1) / confident.sum(1).clamp_min(1)
        return [
            {
                "keypoints": torch.cat([points, point_scores[:, None].to(points.dtype)], dim=1)[None],
                "scores": instance_score.reshape(1),
                "labels": torch.ones(1, dtype=torch.int64),
            }
            for points, point_scores, instance_score in zip(keypoints, scores, instance_scores, strict=True)
        ]

    def evaluation_epoch_end(self, split: str) -> None:
        results: dict[str, Tensor] = {}
        for name, metric in self.evaluators[split].items():
            if not metric.update_called:  # PCKh without head boxes
                continue
            if name == "keypoints_coco":
                results.update(metric.compute())  # named "keypoints/AP", ... already
            else:  # "keypoints_nme" -> "keypoints/NME", "keypoints_dark_pck" -> "keypoints_dark/PCK@0.1"
                task = name.rsplit("_", 1)[0]
                results.update({f"{task}/{key}": value for key, value in metric.compute().items()})
            metric.reset()
        self.log_dict({f"{split}/{name}": value for name, value in results.items()})
        self.overlays.flush(self, split)

    # -- prediction -----------------------------------------------------------------------------------
    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        """COCO keypoint results, one per crop, in source-image pixels."""
        images, _ = self.stack(batch)
        targets = batch[1]
        prediction = self(images)
        to_image = torch.stack([target["crop_to_image"] for target in targets]).to(images.device)
        predicted = crop_to_source(prediction.keypoints, to_image)
        results = []
        for detection, target in zip(
            self._coco_predictions(predicted, prediction.scores), targets, strict=True
        ):
            results += coco_keypoint_detections(
                detection, int(target["image_id"]), self.metadata.label_to_category_id
            )
        return results

    def prediction_writer(self, run_dir: Path) -> BasePredictionWriter:
        """COCO keypoint results JSON: ``<run>/predictions.json``, ready for ``COCO.loadRes``."""
        return JsonPredictionWriter(run_dir)


class HeatmapKeypointModule(TopDownKeypointModule):
    """Keypoints as Gaussian heatmaps (SimpleBaseline; Stacked Hourglass with intermediate supervision).

    The model returns heatmaps (B, K, h, w), or (B, S, K, h, w) for S stacks. Targets are encoded on
    the fly by ``codec`` (``models.heatmaps``: the same code CenterNet and RetinaFace use), keypoints that
    are unannotated or fall off the heatmap weighing 0. Loss: the mean squared error over pixels of each
    keypoint's map times its weight, averaged over keypoints and crops, summed over stacks -- the
    intermediate supervision of Newell et al. 2016, Sec. 3.4 (summed over stacks as the original Torch
    code; the PyTorch port averages them, which only rescales the loss; SimpleBaseline's ``JointsMSELoss``
    with target weights for one stack). Prediction: the last
    stack, with the flip test averaging the mirrored crop's heatmaps brought back by ``codec.unflip``
    (exact for the ``"corners"`` convention, mmpose's one-cell shift for ``"centres"``), then
    ``codec.decode``.

    Args:
        codec: input and heatmap sizes, sigma, centre convention, decoder.
        compare_decoders: also decode with every decoder (``argmax``, ``dark``, ``soft_argmax``) and log
            NME and PCK of each under ``<split>/keypoints_<decoder>/`` (the landmark comparison).
        others: see ``TopDownKeypointModule``.
    """

    def __init__(
        self,
        model: nn.Module,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        codec: GaussianHeatmapCodec,
        lr_scheduler: LRSchedulerCallable | None = None,
        flip_test: bool = True,
        compare_decoders: bool = False,
        overlay_images: int = 8,
    ) -> None:
        super().__init__(model, metadata, optimizer, lr_scheduler, flip_test, overlay_images)
        self.codec = codec
        self.compare_decoders = compare_decoders

    def alternative_names(self) -> tuple[str, ...]:
        return DECODERS if self.compare_decoders else ()

    def stacked_heatmaps(self, images: Tensor) -> Tensor:
        """(B, S, K, h, w) heatmaps, checked against the codec's sizes."""
        width, height = self.codec.input_size
        if tuple(images.shape[-2:]) != (height, width):
            raise ValueError(
                f"crops are {images.shape[-1]} x {images.shape[-2]} but the codec's input_size is "
                f"{width} x {height}: make data.init_args.input_size and "
                "model.init_args.codec.input_size agree"
            )
        heatmaps = self.model(images)
        if heatmaps.ndim == 4:
            heatmaps = heatmaps[:, None]
        if tuple(heatmaps.shape[-2:]) != (self.codec.heatmap_size[1], self.codec.heatmap_size[0]):
            raise ValueError(
                f"the model's heatmaps are {heatmaps.shape[-1]} x {heatmaps.shape[-2]} but the codec's "
                f"heatmap_size is {self.codec.heatmap_size[0]} x {self.codec.heatmap_size[1]}"
            )
        return heatmaps

    def compute_losses(self, images: Tensor, keypoints: Tensor) -> dict[str, Tensor]:
        heatmaps = self.stacked_heatmaps(images)
        target, weights = self.codec.encode(keypoints)
        squared = (heatmaps.float() - target[:, None]).pow(2).mean(dim=(-2, -1))  # (B, S, K)
        per_stack = (squared * weights[:, None]).mean(dim=(0, 2))  # (S,)
        return {"loss_heatmap": per_stack.sum()}

    def predict_crops(self, images: Tensor) -> CropPrediction:
        heatmaps = self.stacked_heatmaps(images)[:, -1]
        if self.flip_test:
            mirrored = self.stacked_heatmaps(self.flipped(images))[:, -1]
            heatmaps = 0.5 * (heatmaps.float() + self.codec.unflip(mirrored.float(), self.flip_permutation))
        # decoded in float32 even under bf16 autocast (DARK's modulation is a convolution)
        with torch.autocast(images.device.type, enabled=False):
            heatmaps = heatmaps.float()
            keypoints, scores = self.codec.decode(heatmaps)
            alternatives = {
                name: self.codec.with_decoder(name).decode(heatmaps)[0] for name in self.alternative_names()
            }
        return CropPrediction(keypoints, scores.clamp(0, 1), heatmaps, alternatives)


class RegressionKeypointModule(TopDownKeypointModule):
    """Keypoints as regressed coordinates (DeepPose, Toshev and Szegedy 2014, Sec. 3: the L2 loss on
    normalised coordinates; L1 as mmpose's ResNet DeepPose baseline). The model returns (B, K, 2)
    coordinates normalised to the crop (x / W, y / H); the loss is taken over the keypoints that are
    annotated and inside the crop (the same keypoints the heatmap targets draw), averaged over them.
    Scores are 1: a regressor has no confidence.

    Args:
        loss: ``"l1"`` or ``"mse"``.
        others: see ``TopDownKeypointModule``.
    """

    def __init__(
        self,
        model: nn.Module,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
        loss: Literal["l1", "mse"] = "l1",
        flip_test: bool = True,
        overlay_images: int = 8,
    ) -> None:
        super().__init__(model, metadata, optimizer, lr_scheduler, flip_test, overlay_images)
        if loss not in ("l1", "mse"):
            raise ValueError(f"loss must be 'l1' or 'mse', got {loss!r}")
        self.loss = loss

    def compute_losses(self, images: Tensor, keypoints: Tensor) -> dict[str, Tensor]:
        height, width = images.shape[-2:]
        scale = keypoints.new_tensor([width, height])
        predicted = self.model(images).float()
        target = torch.nan_to_num(keypoints[..., :2] / scale)
        weights = visible_in_crop(keypoints, (width, height)).float()[..., None]
        error = F.l1_loss if self.loss == "l1" else F.mse_loss
        per_coordinate = error(predicted, target, reduction="none") * weights
        # averaged over the weighted coordinates; a batch without any gives 0, not NaN
        return {f"loss_{self.loss}": per_coordinate.sum() / (2 * weights.sum()).clamp_min(1)}

    def predict_crops(self, images: Tensor) -> CropPrediction:
        height, width = images.shape[-2:]
        normalised = self.model(images).float()
        if self.flip_test:
            mirrored = self.model(self.flipped(images)).float()[:, self.flip_permutation]
            mirrored = torch.stack([1 - mirrored[..., 0], mirrored[..., 1]], dim=-1)
            normalised = 0.5 * (normalised + mirrored)
        keypoints = normalised * normalised.new_tensor([width, height])
        return CropPrediction(keypoints, torch.ones(keypoints.shape[:2], device=keypoints.device))
