"""YouTube-VIS video instance segmentation: clips of videos with per-frame targets and persistent ids.

Reads a YouTube-VIS JSON (2019/2021 layout, ``datamodules.youtube_vis_checks``) and the frames its
``file_names`` name, relative to ``image_dir`` (the split's ``JPEGImages``). Items are clips
(``datamodules.video_clips``): a keyframe and the following frames. Each frame's target follows
``datamodules.batch``: ``boxes`` (the JSON's ``bboxes`` clipped to the image, or the mask's box where the
``bboxes`` entry is null), ``labels`` 1..C in category-id order, ``masks``, ``annotation_ids`` and
``instance_ids`` -- both the annotation id, since a YouTube-VIS annotation is one instance over the whole
video -- and ``image_id`` the frame (``video_clips.frame_image_id``). An annotation is in a frame's target
where its ``segmentations`` entry is not null. The DataModule is
``datamodules.youtube_vis_datamodule.YouTubeVISDataModule``.

Bad input: hard errors (``DatasetFormatError`` naming the file, the video id, the annotation id and, per
frame, the frame index) for malformed JSON (``youtube_vis_checks``) and, when a clip is read, a missing or
unreadable frame file or one whose size differs from the video's. Counted skips, logged in one WARNING line
(``skipped``: annotated frames left out of the targets, annotation ids listed once): ``crowd`` (every frame
of an ``iscrowd`` 1 annotation), ``degenerate_box`` (a box of at most ``MIN_BOX_SIZE`` pixels after
clipping), ``empty_mask`` (an RLE without foreground), ``empty_after_transform`` (augmentation emptied it).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import albumentations as A
import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset
from torchvision.transforms.functional import to_tensor

from datamodules.batch import Target
from datamodules.coco_instances import clipped_box, read_image
from datamodules.coco_json_checks import AnnotationTally, compressed_rle_counts, raise_first
from datamodules.errors import DatasetFormatError
from datamodules.instance_transforms import InstanceSample
from datamodules.video_clips import (
    FRAMES_PER_VIDEO_ID,
    Clip,
    clip_frame_indices,
    clip_seed,
    frame_image_id,
    transform_clip,
)
from datamodules.youtube_vis_checks import read_youtube_vis_json, youtube_vis_problems

logger = logging.getLogger(__name__)


class FrameInstance(NamedTuple):
    """One annotation in one frame that becomes a target instance."""

    annotation_id: int
    label: int
    box: tuple[float, float, float, float]  # XYXY pixels, clipped to the frame
    rle: dict[str, Any]  # compressed RLE (pycocotools)


def _to_rle(segmentation: dict[str, Any]) -> dict[str, Any]:
    if isinstance(segmentation["counts"], list):
        height, width = segmentation["size"]
        return mask_utils.frPyObjects(segmentation, height, width)
    return {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}


def _rle_is_empty(segmentation: dict[str, Any]) -> bool:
    counts = segmentation["counts"]
    runs = compressed_rle_counts(counts) if isinstance(counts, str) else counts
    return sum(runs[1::2]) == 0


def _skip(tally: AnnotationTally, reason: str, annotation_id: int) -> None:
    """Count a left-out annotated frame; list its annotation id once per reason."""
    tally.skipped[reason] += 1
    if annotation_id not in tally.skipped_ids[reason]:
        tally.skipped_ids[reason].append(annotation_id)


def index_frames(
    data: dict[str, Any], label_of_category: dict[int, int]
) -> tuple[dict[tuple[int, int], list[FrameInstance]], AnnotationTally]:
    """The target instances of every annotated (video id, frame index), bottom to top in JSON order, and
    what was skipped (module docstring)."""
    videos = {video["id"]: video for video in data["videos"]}
    frames: dict[tuple[int, int], list[FrameInstance]] = defaultdict(list)
    tally = AnnotationTally()
    for ann in data["annotations"]:
        video = videos[ann["video_id"]]
        for frame, (segmentation, bbox) in enumerate(zip(ann["segmentations"], ann["bboxes"], strict=True)):
            if segmentation is None:
                continue
            if ann.get("iscrowd", 0):
                _skip(tally, "crowd", ann["id"])
                continue
            if _rle_is_empty(segmentation):
                _skip(tally, "empty_mask", ann["id"])
                continue
            rle = _to_rle(segmentation)
            bbox = [float(v) for v in mask_utils.toBbox(rle)] if bbox is None else bbox
            box = clipped_box(bbox, video["width"], video["height"])
            if box is None:
                _skip(tally, "degenerate_box", ann["id"])
                continue
            label = label_of_category[ann["category_id"]]
            frames[(video["id"], frame)].append(FrameInstance(ann["id"], label, box, rle))
    return frames, tally


class YouTubeVISDataset(Dataset):
    """Clips of a YouTube-VIS split: items ``(frames, targets)`` (``datamodules.video_clips``), one per
    keyframe ``0, clip_step, ...`` of each video (in video-id order), each ``clip_length`` frames
    ``frame_stride`` apart. ``transforms``: an albumentations pipeline built with
    ``instance_transforms.instance_bbox_params()``, applied identically to every frame of a clip
    (``seeded_item(index, seed)`` draws it from ``seed``), or None."""

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        clip_length: int = 2,
        frame_stride: int = 1,
        clip_step: int = 1,
        transforms: A.Compose | None = None,
        require_annotations: bool = True,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        self.transforms = transforms
        data = read_youtube_vis_json(self.annotation_file, require_annotations)
        raise_first(youtube_vis_problems(data, self.annotation_file))
        self.videos = {video["id"]: video for video in data["videos"]}
        long = [v for v in self.videos.values() if v["length"] > FRAMES_PER_VIDEO_ID]
        if long:
            raise DatasetFormatError(
                f"{self.annotation_file}: video id {long[0]['id']} has {long[0]['length']} frames, more than "
                f"the {FRAMES_PER_VIDEO_ID} frame image ids allow"
            )
        category_ids = sorted(category["id"] for category in data["categories"])
        self.category_id_to_label = {c: label for label, c in enumerate(category_ids, start=1)}
        self.label_to_category_id = {label: c for c, label in self.category_id_to_label.items()}
        names = {category["id"]: category["name"] for category in data["categories"]}
        self.class_names = [names[c] for c in category_ids]
        self._frames, tally = index_frames(data, self.category_id_to_label)
        self.skipped = tally.skipped
        tally.log(logger, self.annotation_file, "annotated frames left out of the targets")
        self.clips = [
            Clip(video_id, indices)
            for video_id in sorted(self.videos)
            for indices in clip_frame_indices(
                self.videos[video_id]["length"], clip_length, frame_stride, clip_step
            )
        ]

    @property
    def num_classes(self) -> int:
        """Number of object classes C, without background (labels run 1..C)."""
        return len(self.class_names)

    @property
    def num_targets(self) -> int:
        """Annotated frames that became target instances (over all frames, not clips)."""
        return sum(len(instances) for instances in self._frames.values())

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor], list[Target]]:
        return self.seeded_item(index, clip_seed() if self.transforms is not None else 0)

    def seeded_item(self, index: int, seed: int) -> tuple[list[torch.Tensor], list[Target]]:
        """Clip ``index`` with its augmentation (the same on every frame) drawn from ``seed`` (the resumable
        loader's contract)."""
        clip = self.clips[index]
        samples, instances = [], []
        for frame in clip.frame_indices:
            sample, frame_instances = self._read_frame(clip.video_id, frame)
            samples.append(sample)
            instances.append(frame_instances)
        if self.transforms is None:
            results = [(sample, np.arange(len(sample.labels))) for sample in samples]
        else:
            results = transform_clip(self.transforms, samples, seed)
        frames, targets = [], []
        for frame, frame_instances, (sample, kept) in zip(
            clip.frame_indices, instances, results, strict=True
        ):
            dropped = len(frame_instances) - len(kept)
            if dropped:
                self.skipped["empty_after_transform"] += dropped
                logger.debug(
                    "%s: video id %d, frame index %d: augmentation emptied %d instance(s)",
                    self.annotation_file,
                    clip.video_id,
                    frame,
                    dropped,
                )
            ids = torch.tensor([frame_instances[i].annotation_id for i in kept.tolist()], dtype=torch.int64)
            height, width = sample.image.shape[:2]
            frames.append(to_tensor(sample.image))
            targets.append(
                Target(
                    boxes=torch.from_numpy(sample.boxes),
                    labels=torch.from_numpy(sample.labels),
                    masks=torch.from_numpy(np.stack(sample.masks))
                    if sample.masks
                    else torch.zeros((0, height, width), dtype=torch.uint8),
                    instance_ids=ids,
                    annotation_ids=ids.clone(),
                    image_id=torch.tensor(frame_image_id(clip.video_id, frame), dtype=torch.int64),
                )
            )
        return frames, targets

    def _read_frame(self, video_id: int, frame: int) -> tuple[InstanceSample, list[FrameInstance]]:
        video = self.videos[video_id]
        path = self.image_dir / video["file_names"][frame]
        try:
            image = read_image(path, frame_image_id(video_id, frame), video["height"], video["width"])
        except DatasetFormatError as e:
            raise DatasetFormatError(f"video id {video_id}, frame index {frame}: {e}", e.kind) from e
        assert image is not None
        instances = self._frames.get((video_id, frame), [])
        sample = InstanceSample(
            image=image,
            boxes=np.array([i.box for i in instances], dtype=np.float32).reshape(-1, 4),
            labels=np.array([i.label for i in instances], dtype=np.int64),
            masks=[mask_utils.decode(i.rle) for i in instances],
        )
        return sample, instances
