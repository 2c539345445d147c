"""Face detection with landmarks (RetinaFace): training is ``LossDictModule``'s (the model returns its named
losses); evaluation scores WIDER FACE AP for easy, medium and hard (``metrics.wider_face_ap``; main metric
``val/widerface/AP_hard``) and the landmarks by NME normalised by the face box (sqrt(w h); the landmark
metric of ``metrics.keypoint_metrics``) over the annotated faces a detection finds (IoU >= 0.5, the
best-overlapping one); a face no detection finds has no landmark error (AP counts the miss).

``zoo predict`` (on the test split or on a folder, ``data.predict_images``) writes per image its id (and
file name), and per face the box (XYXY), score and 5 landmarks as JSON (``<run>/predictions.json``), plus
an overlay image per input (``<run>/overlays/``; ``prediction_writers.FacePredictionWriter``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchvision.ops import box_iou

from datamodules.batch import Batch, Target
from datamodules.metadata import DatasetMetadata
from lightning_modules.loss_dict import LossDictModule
from lightning_modules.prediction_writers import FacePredictionWriter
from metrics.keypoint_metrics import NormalizedMeanError
from metrics.wider_face_ap import WiderFaceAP

EVALUATED_SPLITS = ("val", "test")
MATCH_IOU = 0.5
FACES_PER_IMAGE_ID = 100_000  # landmark instance ids: image_id * this + face index


def matched_landmarks(prediction: dict[str, Tensor], target: Target) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For the target faces with landmarks that a detection overlaps at IoU >= 0.5: the best detection's
    landmarks (M, 5, 2), the target's as (M, 5, 3) with visibility 2, their boxes (M, 4) and face indices."""
    boxes, landmarks = target["boxes"], target.get("landmarks")
    empty = (
        boxes.new_zeros(0, 5, 2),
        boxes.new_zeros(0, 5, 3),
        boxes.new_zeros(0, 4),
        torch.zeros(0, dtype=torch.int64),
    )
    if landmarks is None or len(boxes) == 0 or len(prediction["boxes"]) == 0:
        return empty
    overlaps = box_iou(boxes.float(), prediction["boxes"].float().to(boxes.device))
    best_overlap, best = overlaps.max(dim=1)
    faces = torch.where((best_overlap >= MATCH_IOU) & ~torch.isnan(landmarks).any(dim=(1, 2)))[0]
    truth = torch.cat([landmarks[faces], torch.full_like(landmarks[faces][..., :1], 2.0)], dim=-1)
    return prediction["landmarks"].to(boxes.device)[best[faces]], truth, boxes[faces], faces.cpu()


class FaceDetectionModule(LossDictModule):
    """RetinaFace-style face detection (module docstring). Args as ``LossDictModule``'s."""

    main_metric = "val/widerface/AP_hard"

    def __init__(
        self,
        model: nn.Module,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
        loss_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(model, metadata, optimizer, lr_scheduler, loss_weights)
        self.evaluators = nn.ModuleDict(
            {
                split: nn.ModuleDict({"widerface": WiderFaceAP(), "landmarks": NormalizedMeanError()})
                for split in EVALUATED_SPLITS
            }
        )

    def evaluation_step(self, batch: Batch, split: str) -> None:
        images, targets = batch
        predictions = self(images)
        metrics = self.evaluators[split]
        metrics["widerface"].update(predictions, targets)
        for prediction, target in zip(predictions, targets, strict=True):
            predicted, truth, boxes, faces = matched_landmarks(prediction, target)
            if len(faces):
                ids = int(target["image_id"]) * FACES_PER_IMAGE_ID + faces
                metrics["landmarks"].update(predicted, truth, boxes, instance_ids=ids.to(truth.device))

    def evaluation_epoch_end(self, split: str) -> None:
        metrics = self.evaluators[split]
        results = {
            f"{split}/widerface/{name}": value for name, value in metrics["widerface"].compute().items()
        }
        if metrics["landmarks"].update_called:
            landmarks = metrics["landmarks"].compute()
            results.update({f"{split}/landmarks/{name}": value for name, value in landmarks.items()})
        for metric in metrics.values():
            metric.reset()
        self.log_dict(results)

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        images, targets = batch
        return [
            {
                "image_id": int(target["image_id"]),
                "faces": [
                    {"bbox": box.tolist(), "score": float(score), "landmarks": points.tolist()}
                    for box, score, points in zip(
                        output["boxes"].cpu(), output["scores"].cpu(), output["landmarks"].cpu(), strict=True
                    )
                ],
            }
            for output, target in zip(self(images), targets, strict=True)
        ]

    def prediction_writer(self, run_dir: Path) -> BasePredictionWriter:
        """``<run>/predictions.json`` (per image its id and faces: XYXY box, score, 5 landmarks) and
        ``<run>/overlays/<image_id:06d>.png``."""
        return FacePredictionWriter(run_dir)
