"""``zoo predict``'s writers of what a model's ``predict_step`` returns: a list of JSON-ready records
per batch (COCO results for detection methods) to ``<run>/predictions.json``, one file per rank under
DDP (``predictions-rank<k>.json``), ready for ``COCO.loadRes`` or a benchmark server; panoptic
segmentations as COCO panoptic PNGs + JSON (``CocoPanopticWriter``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from datamodules.coco_panoptic_png import write_coco_panoptic_png


class JsonPredictionWriter(BasePredictionWriter):
    def __init__(self, run_dir: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.run_dir = Path(run_dir)
        self._records: list[Any] = []

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        self._records.extend(prediction)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        name = (
            "predictions.json" if trainer.world_size == 1 else f"predictions-rank{trainer.global_rank}.json"
        )
        path = self.run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self._records))
        rank_zero_info(f"Wrote {len(self._records)} predictions to {path}")
        self._records = []


def coco_segments_info(ids: Tensor, category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """COCO panoptic ``segments_info`` of an (H, W) map of segment ids 1..M (0 void), segment id m having
    category ``category_ids[m - 1]``: ``id``, ``category_id``, ``area`` (pixels), ``bbox`` integer XYWH of
    the pixels (as panopticapi's converters compute it), ``iscrowd`` 0; segments without pixels are left
    out (the reference evaluator refuses a listed segment that its PNG lacks)."""
    flat = ids.detach().reshape(-1).cpu().long()
    count, (height, width) = len(category_ids), ids.shape
    low, high = (int(flat.min()), int(flat.max())) if len(flat) else (0, 0)
    if low < 0 or high > count:
        raise ValueError(f"segment ids must lie in 0..{count} (one class per segment), got {low}..{high}")
    area = torch.bincount(flat, minlength=count + 1)
    rows = torch.arange(height).repeat_interleave(width)
    columns = torch.arange(width).repeat(height)
    corners = []
    for coordinate, size in ((columns, width), (rows, height)):
        low = torch.full((count + 1,), size).scatter_reduce(0, flat, coordinate, "amin")
        high = torch.full((count + 1,), -1).scatter_reduce(0, flat, coordinate, "amax")
        corners.append((low, high))
    (x0, x1), (y0, y1) = corners
    return [
        {
            "id": segment,
            "category_id": int(category_ids[segment - 1]),
            "area": int(area[segment]),
            "bbox": [
                int(x0[segment]),
                int(y0[segment]),
                int(x1[segment] - x0[segment] + 1),
                int(y1[segment] - y0[segment] + 1),
            ],
            "iscrowd": 0,
        }
        for segment in range(1, count + 1)
        if area[segment] > 0
    ]


class CocoPanopticWriter(BasePredictionWriter):
    """COCO panoptic results as the reference evaluators (panopticapi ``pq_compute``, cityscapesscripts
    ``evaluatePanoptic``) read them: ``<run>/panoptic/<image_id:012d>.png`` (RGB-encoded segment ids) and
    ``<run>/panoptic.json`` (``annotations``: ``image_id``, ``file_name``, ``segments_info``; and
    ``categories``). A dataset with string image ids (Cityscapes panoptic, whose targets carry the item
    index instead) gets its own ids back in the JSON and ``<image_id>.png`` files, so the reference
    evaluator matches them to its ground truth.

    ``predict_step`` returns per image ``{"image_id", "panoptic": (H, W) segment ids 1..M, "category_ids":
    M category ids}``. Each rank writes its PNGs as its batches come and then drops the map from the
    prediction (so ``Trainer.predict``'s returned list, when kept, holds the annotations rather than a
    split's full-size maps); at the end rank 0 gathers every rank's annotations into the one JSON."""

    def __init__(self, run_dir: str | Path, categories: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(write_interval="batch")
        self.run_dir = Path(run_dir)
        self.categories = [dict(category) for category in categories]
        self._annotations: list[dict[str, Any]] = []

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: list[dict[str, Any]],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        folder = self.run_dir / "panoptic"
        folder.mkdir(parents=True, exist_ok=True)
        dataset_ids = getattr(_predict_dataset(trainer), "image_ids", None)
        for item in prediction:
            ids, category_ids = item.pop("panoptic"), item.pop("category_ids")
            if dataset_ids is not None and isinstance(dataset_ids[0], str):
                # string ids (Cityscapes): the batch carries the item index; write the dataset's own id
                item["image_id"] = dataset_ids[int(item["image_id"])]
                name = f"{item['image_id']}.png"
            else:
                name = f"{int(item['image_id']):012d}.png"
            write_coco_panoptic_png(ids, folder / name)
            item.update(file_name=name, segments_info=coco_segments_info(ids, category_ids))
            self._annotations.append(dict(item))

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        annotations = self._annotations
        self._annotations = []
        if torch.distributed.is_available() and torch.distributed.is_initialized() and trainer.world_size > 1:
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, annotations)
            annotations = [annotation for part in gathered for annotation in part]
        if not trainer.is_global_zero:
            return
        annotations = sorted({a["image_id"]: a for a in annotations}.values(), key=lambda a: a["image_id"])
        path = self.run_dir / "panoptic.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"annotations": annotations, "categories": self.categories}))
        rank_zero_info(
            f"Wrote {len(annotations)} panoptic predictions to {path} and {path.parent / 'panoptic'}"
        )


def _predict_dataset(trainer: Trainer) -> Any:
    """The dataset ``zoo predict`` reads (the first predict dataloader's), or None."""
    loaders = getattr(trainer, "predict_dataloaders", None)
    loader = loaders[0] if isinstance(loaders, Sequence) else loaders
    return getattr(loader, "dataset", None)


class FacePredictionWriter(JsonPredictionWriter):
    """Face detections with landmarks: ``<run>/predictions.json`` (per image its id, its file name when the
    predicted images are a folder, and its faces: XYXY box, score, 5 landmarks) and an overlay per image,
    ``<run>/overlays/<image_id:06d>.png``: the faces scoring at least ``overlay_score_threshold`` boxed in
    green with their landmarks as dots (eyes blue, nose yellow, mouth corners red)."""

    LANDMARK_COLOURS = ((0, 120, 255), (0, 120, 255), (255, 220, 0), (255, 40, 40), (255, 40, 40))

    def __init__(self, run_dir: str | Path, overlay_score_threshold: float = 0.5) -> None:
        super().__init__(run_dir)
        self.overlay_score_threshold = overlay_score_threshold

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        super().write_on_batch_end(
            trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
        )
        images, _ = batch
        folder = self.run_dir / "overlays"
        folder.mkdir(parents=True, exist_ok=True)
        for image, record in zip(images, prediction, strict=True):
            canvas = np.ascontiguousarray(
                (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
            )
            for face in record["faces"]:
                if face["score"] < self.overlay_score_threshold:
                    continue
                x0, y0, x1, y1 = (round(v) for v in face["bbox"])
                cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 220, 0), 1)
                for (x, y), colour in zip(face["landmarks"], self.LANDMARK_COLOURS, strict=True):
                    cv2.circle(canvas, (round(x), round(y)), 1, colour, -1)
            cv2.imwrite(
                str(folder / f"{record['image_id']:06d}.png"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
            )

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        names = getattr(_predict_dataset(trainer), "names", None)
        if names is not None:
            for record in self._records:
                record["file_name"] = names[record["image_id"] - 1]
        super().on_predict_end(trainer, pl_module)
