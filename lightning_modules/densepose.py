"""DensePose R-CNN's module: detection training and box AP (``DetectionModule``), plus on val and test:

- the DensePose AP of the DensePose-COCO protocol in its GPS and GPSm modes (``metrics.densepose_ap``; main
  metric ``val/densepose/GPSm/AP``) with the point distance the experiment gives (the SMPL geodesic data
  for DensePose-COCO, the chart distance for the synthetic world: ``metrics.densepose_geodesic``);
- the points' part accuracy and (U, V) error (``metrics.densepose_points``: ``val/densepose/I_accuracy``,
  ``val/densepose/UV_error``);
- W&B overlays of the part map and the U/V iso-lines (``lightning_modules.densepose_overlay``).

``zoo predict`` writes COCO results with each detection's chart result, as detectron2 writes them
(``densepose`` = base64 PNG of the (h, w, 3) uint8 labels, U and V in the box)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from PIL import Image
from torch import nn

from datamodules.batch import Batch
from datamodules.metadata import DatasetMetadata
from lightning_modules.densepose_overlay import densepose_overlay
from lightning_modules.detection import EVALUATED_SPLITS, DetectionModule
from metrics.densepose_ap import DensePoseAP
from metrics.densepose_geodesic import PointDistance
from metrics.densepose_points import DensePosePointAccuracy
from models.densepose_results import ChartResult, chart_outputs_to_box_results, quantize_chart_result

PART_NAMES = {part: f"part {part}" for part in range(1, 25)}


def compressed_chart(result: ChartResult) -> dict[str, Any]:
    """A chart result as detectron2's ``compress_quantized_densepose_chart_result`` stores it: the quantized
    (labels, U, V) as an RGB PNG, base64-encoded, with its (h, w)."""
    quantized = quantize_chart_result(result.labels, result.uv).permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(quantized).save(buffer, format="PNG")
    return {
        "size": list(quantized.shape[:2]),
        "png_base64": base64.b64encode(buffer.getvalue()).decode("ascii"),
    }


class DensePoseModule(DetectionModule):
    """Training and box AP as ``DetectionModule``; DensePose GPS / GPSm AP on val and test.

    Args:
        model, metadata, optimizer, lr_scheduler, loss_weights, evaluation_backend, overlay_images,
            overlay_score_threshold: see ``DetectionModule``.
        distance: the ``metrics.densepose_geodesic.PointDistance`` that scores predicted points
            (``SmplGeodesicDistance`` with the user's SMPL data for DensePose-COCO).
    """

    main_metric = "val/densepose/GPSm/AP"
    unsaved_arguments = ("distance",)

    def __init__(
        self,
        model: nn.Module,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        distance: PointDistance,
        lr_scheduler: LRSchedulerCallable | None = None,
        loss_weights: Mapping[str, float] | None = None,
        evaluation_backend: str = "pycocotools",
        overlay_images: int = 8,
        overlay_score_threshold: float = 0.5,
    ) -> None:
        super().__init__(
            model,
            metadata,
            optimizer,
            lr_scheduler,
            loss_weights,
            ("bbox",),
            evaluation_backend,
            overlay_images,
            overlay_score_threshold,
        )
        self.distance = distance
        self.densepose_evaluators = nn.ModuleDict()
        self.point_accuracy = nn.ModuleDict({split: DensePosePointAccuracy() for split in EVALUATED_SPLITS})

    def setup(self, stage: str) -> None:
        super().setup(stage)
        for split in EVALUATED_SPLITS:
            if split not in self.densepose_evaluators and split in self.metadata.annotation_files:
                self.densepose_evaluators[split] = DensePoseAP(
                    self.metadata.annotation_file(split), self.distance, self.metadata.label_to_category_id
                )

    def evaluation_step(self, batch: Batch, split: str) -> None:
        images, targets = batch
        if split not in self.evaluators:
            raise ValueError(f"the datamodule's metadata has no {split} annotation file to evaluate against")
        predictions = self(images)
        charted = [
            {**p, "densepose": chart_outputs_to_box_results(p["densepose"], p["boxes"])} for p in predictions
        ]
        self.evaluators[split].update(predictions, targets)
        self.densepose_evaluators[split].update(charted, targets)
        self.point_accuracy[split].update(charted, targets)
        self.overlays.add_per_image(
            self,
            split,
            densepose_overlay,
            images,
            charted,
            targets,
            self.metadata.label_names,
            self.overlay_score_threshold,
            PART_NAMES,
        )

    def evaluation_epoch_end(self, split: str) -> None:
        results = {**self.densepose_evaluators[split].compute(), **self.point_accuracy[split].compute()}
        self.densepose_evaluators[split].reset()
        self.point_accuracy[split].reset()
        self.log_dict({f"{split}/densepose/{name}": value for name, value in results.items()}, prog_bar=False)
        super().evaluation_epoch_end(split)

    def image_results(self, prediction: dict[str, Any], image_id: int) -> list[dict[str, Any]]:
        """``DetectionModule.image_results`` with each detection's ``densepose`` chart (compressed)."""
        charts = chart_outputs_to_box_results(prediction["densepose"], prediction["boxes"])
        mapped = self.metadata.label_to_category_id
        kept = [
            chart
            for chart, label in zip(charts, prediction["labels"].tolist(), strict=True)
            if label in mapped
        ]
        results = super().image_results(prediction, image_id)
        for result, chart in zip(results, kept, strict=True):
            result["densepose"] = compressed_chart(chart)
        return results
