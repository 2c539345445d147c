"""``zoo predict``'s writers of what a model's ``predict_step`` returns: a list of JSON-ready records
per batch (COCO results for detection methods) to ``<run>/predictions.json``, one file per rank under
DDP (``predictions-rank<k>.json``), ready for ``COCO.loadRes`` or a benchmark server; panoptic
segmentations as COCO panoptic PNGs + JSON (``CocoPanopticWriter``); video panoptic segmentations as the
official Cityscapes-VPS evaluator reads them (``CityscapesVPSWriter``)."""

from __future__ import annotations

import json
import os
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
from datamodules.video_clips import split_frame_image_id


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
            _write_png_atomically(ids, folder / name)
            item.update(file_name=name, segments_info=coco_segments_info(ids, category_ids))
            self._annotations.append(dict(item))

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        path = self.run_dir / "panoptic.json"
        count = _write_annotations_json(trainer, self._annotations, path, {"categories": self.categories})
        self._annotations = []
        if count is not None:
            rank_zero_info(f"Wrote {count} panoptic predictions to {path} and {path.parent / 'panoptic'}")


def video_segments_info(
    ids: Tensor, segment_ids: Sequence[int] | Tensor, category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """``coco_segments_info`` of an (H, W) map of arbitrary segment ids (0 void; a video model's persistent
    ids), segment ``segment_ids[k]`` having category ``category_ids[k]``: in the order listed, segments
    without pixels left out; a pixel id that is not listed, a repeated or non-positive listed id raises
    ``ValueError``."""
    listed = torch.as_tensor(segment_ids, dtype=torch.int64).detach().cpu().reshape(-1)
    if len(listed) != len(category_ids):
        raise ValueError(f"{len(listed)} segment ids for {len(category_ids)} category ids")
    if len(listed) and (int(listed.min()) <= 0 or len(torch.unique(listed)) != len(listed)):
        raise ValueError(f"segment ids must be distinct and > 0 (0 is void), got {listed.tolist()}")
    flat = ids.detach().cpu().long()
    order = torch.argsort(listed)
    position = torch.searchsorted(listed[order], flat).clamp_max(max(len(listed) - 1, 0))
    found = listed[order][position] == flat if len(listed) else torch.zeros_like(flat, dtype=torch.bool)
    unlisted = (flat != 0) & ~found
    if unlisted.any():
        raise ValueError(f"pixel ids {torch.unique(flat[unlisted])[:5].tolist()} are not in segment_ids")
    compact = torch.where(found, order[position] + 1, 0) if len(listed) else flat
    segments = coco_segments_info(compact, category_ids)
    for segment in segments:
        segment["id"] = int(listed[segment["id"] - 1])
    return segments


class CityscapesVPSWriter(BasePredictionWriter):
    """Video panoptic results as the official Cityscapes-VPS evaluator reads them (mcahny/vps at 138503e):
    ``<run>/pan_pred/<image_id>.png`` (RGB-encoded segment ids, ``datamodules.coco_panoptic_png``) and
    ``<run>/pred.json`` (``{"annotations": [{"image_id", "file_name", "segments_info": [{"id",
    "category_id", "iscrowd", "area", "bbox"}]}]}``), so ``tools/eval_vpq.py --submit_dir <run>`` scores
    them. Followed there:

    - ``tools/test_vpq.py`` l. 163 (the folder ``*_pans_unified/``, here the run folder) and
      ``tools/dataset/cityscapes_vps.py`` l. 72 and 89 -- ``pan_pred/`` PNGs named after the image
      file with ``_leftImg8bit`` / ``_newImg8bit`` removed, that is ``<image_id>.png`` -- and l. 91, 66,
      157, 137: ``pred.json`` is ``{"annotations": [{"segments_info": [{"category_id", "iscrowd": 0,
      "id", "bbox", "area"}]}]}``, one entry per frame in image-name order;
    - ``tools/eval_vpq.py`` l. 274 and 296-298 read ``<submit_dir>/pred.json`` and
      ``<submit_dir>/pan_pred/<gt image id>.png``; l. 304-309 pair the JSON's annotations with the ground
      truth's by position (the ``image_id`` and ``file_name`` written here, which the official JSON lacks
      and the evaluator ignores, are for people and other readers); l. 97-116: every PNG id must be
      listed and every listed segment must have pixels (areas come from the PNG; the ``bbox`` here is
      COCO's, width = x1 - x0 + 1, where the official writer's is one smaller -- the evaluator reads neither).

    So the annotations are written sorted by image id, and the frames predicted must be exactly the
    split's annotated frames (``datamodules.cityscapes_vps.CityscapesVPSClips`` reads those), every one of
    them: the evaluator pairs by position and splits them into videos of 6 (l. 305-309).

    ``predict_step`` returns per batch a list of frames (or a list of clips, each a list of frames), each
    ``{"image_id", "panoptic": (H, W) int64 segment ids persistent over its video (0 void), "segment_ids":
    (K,), "category_ids": K category ids}``. ``image_id`` is the Cityscapes-VPS string id
    (``0005_0025_frankfurt_000000_001736``) or a ``video_clips.frame_image_id`` integer, which the predict
    dataset's ``videos`` turn into its string id. ``categories`` (COCO's ``id``, ``name``, ``isthing``),
    if given, are written to the JSON as ``CocoPanopticWriter`` writes them (the evaluator reads the ground
    truth's). As ``CocoPanopticWriter``: each rank writes its PNGs as its batches come and drops the maps
    from the predictions; at the end rank 0 gathers every rank's annotations into the one JSON (a frame
    written twice -- a clip padded with its video's last frame -- is listed once)."""

    PNG_FOLDER = "pan_pred"
    JSON_FILE = "pred.json"

    def __init__(self, run_dir: str | Path, categories: Sequence[Mapping[str, Any]] | None = None) -> None:
        super().__init__(write_interval="batch")
        self.run_dir = Path(run_dir)
        self.categories = None if categories is None else [dict(category) for category in categories]
        self._annotations: list[dict[str, Any]] = []

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Sequence[Any],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        folder = self.run_dir / self.PNG_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        frames = [f for item in prediction for f in ([item] if isinstance(item, Mapping) else item)]
        for frame in frames:
            ids = frame.pop("panoptic")
            segment_ids, category_ids = frame.pop("segment_ids"), frame.pop("category_ids")
            image_id = _vps_image_id(trainer, frame["image_id"])
            name = f"{image_id}.png"
            segments_info = video_segments_info(ids, segment_ids, category_ids)
            _write_png_atomically(ids, folder / name)
            frame.update(image_id=image_id, file_name=name, segments_info=segments_info)
            self._annotations.append(dict(frame))

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        path = self.run_dir / self.JSON_FILE
        extra = {} if self.categories is None else {"categories": self.categories}
        count = _write_annotations_json(trainer, self._annotations, path, extra)
        self._annotations = []
        if count is None:
            return
        rank_zero_info(f"Wrote {count} video panoptic frames to {path} and {path.parent / self.PNG_FOLDER}")


def _write_png_atomically(ids: Tensor, path: Path) -> None:
    """Writes the PNG under a process-private name, then renames it into place: a padded item predicted on
    two DDP ranks writes one file twice, and a rename never leaves a half-written file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    write_coco_panoptic_png(ids, partial)
    partial.replace(path)


def _write_annotations_json(
    trainer: Trainer, annotations: list[dict[str, Any]], path: Path, extra: Mapping[str, Any]
) -> int | None:
    """Rank 0 writes every rank's ``annotations`` -- each image once, sorted by ``image_id`` -- with
    ``extra`` keys into the JSON at ``path``; returns how many (None on the other ranks)."""
    gathered = _gather_on_global_zero(trainer, annotations)
    if gathered is None:
        return None
    unique = sorted({a["image_id"]: a for a in gathered}.values(), key=lambda a: a["image_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"annotations": unique, **extra}))
    return len(unique)


def _vps_image_id(trainer: Trainer, image_id: Any) -> str:
    """A frame's Cityscapes-VPS string image id: given, or looked up from a ``frame_image_id`` integer in
    the predict dataset's ``videos`` (``datamodules.cityscapes_vps.VPSVideo``)."""
    if isinstance(image_id, str):
        return image_id
    number = int(image_id.item() if isinstance(image_id, Tensor) else image_id)
    videos = getattr(_predict_dataset(trainer), "videos", None)
    if videos is None:
        raise ValueError(
            f"integer image id {number}: the predict dataset has no Cityscapes-VPS videos to name it by"
        )
    video_id, position = split_frame_image_id(number)
    by_number = {video.video_id: video for video in videos}
    if video_id not in by_number or position >= len(by_number[video_id].image_ids):
        raise ValueError(
            f"image id {number} is frame {position} of video {video_id}, which the dataset lacks"
        )
    return by_number[video_id].image_ids[position]


def _gather_on_global_zero(trainer: Trainer, items: list[Any]) -> list[Any] | None:
    """Every rank's ``items`` (in rank order) on the global-zero rank, None on the others; a collective
    call under DDP, so every rank makes it."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() and trainer.world_size > 1:
        gathered: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(gathered, items)
        items = [item for part in gathered for item in part]
    return items if trainer.is_global_zero else None


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
