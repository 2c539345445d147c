"""Cityscapes-VPS video panoptic segmentation: videos of panoptic frames whose segment ids persist.

The layout is the official Cityscapes-VPS release's (Kim et al., "Video Panoptic Segmentation", CVPR 2020;
https://github.com/mcahny/vps: ``docs/DATASET.md``, ``prepare_data/create_panoptic_video_labels.py``, which
writes the ground truth, ``tools/eval_vpq.py``, which reads it, and ``mmdet/datasets/cityscapes_vps.py``,
which samples training pairs). Under the dataset root (``data/cityscapes_vps``):

- ``panoptic_gt_<split>_city_vps.json``: COCO panoptic (``images`` with string ``id``, ``file_name``,
  ``width``, ``height``; ``annotations`` with ``image_id``, ``file_name`` of the PNG and ``segments_info``
  [{``id``, ``category_id``, ``iscrowd``, ``area``, ``bbox``}]; ``categories`` with ``isthing``), no
  ``videos`` key;
- ``<split>/img/<image_id>_leftImg8bit.png`` (or ``_newImg8bit.png``): the annotated frames (the JSON's
  ``file_name``); ``<split>/img_all/`` holds every frame of the sequences, for inference only;
- ``<split>/panoptic_video/<image_id>_gtFine_color.png`` (or ``_final_mask.png``): the RGB-encoded segment
  ids, ``id = R + 256 G + 256^2 B``, 0 = void (``datamodules.coco_panoptic_png``).

Image ids are ``<video:04d>_<frame:04d>_<city>_<sequence:06d>_<frame:06d>`` (the official ``README.md``:
``0005_0025_frankfurt_000000_001736``, ``0005_0026_frankfurt_000000_001741``, ...,
``0500_3000_munster_000173_000029``; the second field counts the annotated frames over the split, so it
is consecutive within a video). The official code takes the video as ``image_id[:4]`` and orders frames
by file name; here the first two ``_``-separated numeric fields are the video and the frame number, and
the frames of a video are ordered by frame number. A segment id names one object (or stuff class) in
every frame of its video, so the thing segments' ids are the targets' persistent ``instance_ids``.
Category ids may start at 0 (the official ``road`` is 0).

Items (``datamodules.video_clips``: a list of frames and one ``datamodules.batch.Target`` per frame) are
built from ``coco_panoptic.CocoPanopticDataset`` frames -- ``panoptic``, ``semantic``, ``segments`` and the
non-crowd things' ``boxes``, ``labels``, ``masks`` and ``annotation_ids`` (their segment ids) -- with
``instance_ids`` (the segment ids again) and ``image_id`` = ``video_clips.frame_image_id(video, position)``
(the frame's position in its video). ``CityscapesVPSPairs``: one item per annotated frame, its reference
frame(s) first and the target frame last, the reference drawn from the frames ``reference_offsets`` away
that exist (the official training draws one from offsets -1 and +1); ``CityscapesVPSClips``: whole videos
or clips of them, in order (validation, test). Augmentation is the same on every frame of an item.

Bad input: the per-frame checks are the COCO panoptic reader's (``coco_panoptic``: JSON problems at
construction; a missing or wrongly sized image or PNG, a PNG id not in ``segments_info``, a listed segment
without pixels when a frame is read, then prefixed with the video and the frame). Found at construction
(``DatasetFormatError`` naming the file, the video, the frame and the segment id): an image id without
the numeric video and frame fields, two frames of a video with one frame number, a frame missing from a
video's sequence (the frame numbers of a video must run at one step, the smallest common one, from the
first to the last), and a segment id whose ``category_id`` changes between the frames of a video.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.batch import Target
from datamodules.coco_panoptic import CocoPanopticDataset
from datamodules.errors import DatasetFormatError
from datamodules.video_clips import FRAMES_PER_VIDEO_ID, clip_frame_indices, clip_seed, frame_image_id

IMAGE_ID = re.compile(r"(\d+)_(\d+)(?:_|$)")
DEFAULT_REFERENCE_OFFSETS = (-1, 1)


class VPSVideo(NamedTuple):
    """One video: its number (the image ids' first field), its name (that field as written) and its image
    ids ordered by frame number."""

    video_id: int
    name: str
    image_ids: tuple[str, ...]


def default_panoptic_dir(image_dir: str | Path) -> Path:
    """The PNG folder next to a split's image folder: ``<split>/panoptic_video``."""
    return Path(image_dir).parent / "panoptic_video"


def group_videos(image_ids: Sequence[Any], annotation_file: Path) -> list[VPSVideo]:
    """The videos of a split, by video number, each with its frames ordered; raises on a malformed image
    id, a repeated frame number or a gap in a video's frame numbers (module docstring)."""
    frames: dict[str, list[tuple[int, str]]] = {}
    for image_id in image_ids:
        match = IMAGE_ID.match(image_id) if isinstance(image_id, str) else None
        if match is None:
            raise DatasetFormatError(
                f"{annotation_file}: image id {image_id!r} is not '<video>_<frame>_...' with numeric video "
                "and frame fields (Cityscapes-VPS: '0005_0025_frankfurt_000000_001736')",
                "bad_image_id",
            )
        frames.setdefault(match.group(1), []).append((int(match.group(2)), image_id))
    videos = []
    for name, numbered in sorted(frames.items(), key=lambda item: int(item[0])):
        numbered.sort()
        numbers = [number for number, _ in numbered]
        for (a, first), (b, second) in itertools.pairwise(numbered):
            if a == b:
                raise DatasetFormatError(
                    f"{annotation_file}: video {name!r}: image ids {first!r} and {second!r} are both "
                    f"frame {a}",
                    "duplicate_frame",
                )
        step = math.gcd(*(b - a for a, b in itertools.pairwise(numbers))) or 1
        for (a, before), (b, after) in itertools.pairwise(numbered):
            if b - a != step:
                raise DatasetFormatError(
                    f"{annotation_file}: video {name!r}: frame {a + step} is missing from the sequence "
                    f"(between image ids {before!r} and {after!r}; the video's frames are {step} apart)",
                    "missing_frame",
                )
        if len(numbered) > FRAMES_PER_VIDEO_ID:
            raise DatasetFormatError(
                f"{annotation_file}: video {name!r} has more than {FRAMES_PER_VIDEO_ID} frames"
            )
        videos.append(VPSVideo(int(name), name, tuple(image_id for _, image_id in numbered)))
    return videos


def check_segment_categories(
    videos: Sequence[VPSVideo], frames: CocoPanopticDataset, annotation_file: Path
) -> None:
    """Raise when a segment id has different category ids in two frames of one video."""
    for video in videos:
        first: dict[int, tuple[int, str]] = {}
        for image_id in video.image_ids:
            for segment in frames.listed_segments(image_id):
                seen = first.setdefault(segment.id, (segment.category_id, image_id))
                if segment.category_id != seen[0]:
                    raise DatasetFormatError(
                        f"{annotation_file}: video {video.name!r}, frame {image_id!r}: segment id "
                        f"{segment.id} has category id {segment.category_id}, but category id {seen[0]} in "
                        f"frame {seen[1]!r}: a segment id must keep its category over the video",
                        "segment_category_changed",
                    )


class CityscapesVPSVideos(Dataset):
    """A Cityscapes-VPS split as videos of panoptic frames (module docstring); the item datasets below
    define the items. ``panoptic_dir`` defaults to ``image_dir``'s sibling ``panoptic_video``;
    ``transforms``: an albumentations pipeline (as ``coco_panoptic``'s), the same on every frame of an
    item."""

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        panoptic_dir: str | Path | None = None,
        transforms: A.Compose | None = None,
        require_annotations: bool = True,
    ) -> None:
        self.annotation_file = Path(annotation_file)
        self.transforms = transforms
        panoptic_dir = Path(panoptic_dir) if panoptic_dir is not None else default_panoptic_dir(image_dir)
        self.frames = CocoPanopticDataset(
            image_dir, annotation_file, panoptic_dir, transforms, require_annotations
        )
        self.videos = group_videos(self.frames.image_ids, self.annotation_file)
        check_segment_categories(self.videos, self.frames, self.annotation_file)
        self._item = {image_id: item for item, image_id in enumerate(self.frames.image_ids)}

    class_names = property(lambda self: self.frames.class_names)
    label_to_category_id = property(lambda self: self.frames.label_to_category_id)
    stuff_names = property(lambda self: self.frames.stuff_names)
    stuff_category_ids = property(lambda self: self.frames.stuff_category_ids)
    skipped = property(lambda self: self.frames.skipped)
    num_targets = property(lambda self: self.frames.num_targets)

    @property
    def num_classes(self) -> int:
        """Number of thing classes C (labels 1..C)."""
        return len(self.class_names)

    def read_frames(
        self, video_index: int, positions: Sequence[int], seed: int
    ) -> tuple[list[torch.Tensor], list[Target]]:
        """Frames ``positions`` of video ``self.videos[video_index]`` with their targets (module docstring),
        every frame augmented with the same draw from ``seed``."""
        video = self.videos[video_index]
        images, targets = [], []
        for position in positions:
            image_id = video.image_ids[position]
            try:
                image, target = self.frames.seeded_item(self._item[image_id], seed)
            except DatasetFormatError as e:
                raise DatasetFormatError(f"video {video.name!r}, frame {image_id!r}: {e}", e.kind) from e
            target["image_id"] = torch.tensor(frame_image_id(video.video_id, position), dtype=torch.int64)
            if "annotation_ids" in target:
                target["instance_ids"] = target["annotation_ids"].clone()
            images.append(image)
            targets.append(target)
        return images, targets


class CityscapesVPSClips(CityscapesVPSVideos):
    """Whole videos (``clip_length`` None) or clips of ``clip_length`` consecutive frames every
    ``clip_step`` frames (default: ``clip_length``, no overlap; ``video_clips.clip_frame_indices``), in
    video order: validation, test and prediction items."""

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        panoptic_dir: str | Path | None = None,
        transforms: A.Compose | None = None,
        clip_length: int | None = None,
        clip_step: int | None = None,
        require_annotations: bool = True,
    ) -> None:
        super().__init__(image_dir, annotation_file, panoptic_dir, transforms, require_annotations)
        self.clips: list[tuple[int, tuple[int, ...]]] = []
        for index, video in enumerate(self.videos):
            length = len(video.image_ids)
            if clip_length is None:
                self.clips.append((index, tuple(range(length))))
            else:
                step = clip_step or clip_length
                self.clips += [(index, c) for c in clip_frame_indices(length, clip_length, 1, step)]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor], list[Target]]:
        return self.seeded_item(index, clip_seed() if self.transforms is not None else 0)

    def seeded_item(self, index: int, seed: int) -> tuple[list[torch.Tensor], list[Target]]:
        """Clip ``index``, its augmentation drawn from ``seed``."""
        video_index, positions = self.clips[index]
        return self.read_frames(video_index, positions, seed)


class CityscapesVPSPairs(CityscapesVPSVideos):
    """Training items: one per annotated frame (video by video, in frame order), ``(frames, targets)`` with
    ``num_references`` reference frames first and the target frame last. The references are drawn from the
    frames ``reference_offsets`` away from the target that exist in its video (without repeats while there
    are enough; the official Cityscapes-VPS training: one of -1, +1); a video of one frame is its own
    reference. ``seeded_item(index, seed)`` draws the references and the augmentation from ``seed``."""

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        panoptic_dir: str | Path | None = None,
        transforms: A.Compose | None = None,
        reference_offsets: Sequence[int] = DEFAULT_REFERENCE_OFFSETS,
        num_references: int = 1,
    ) -> None:
        offsets = tuple(int(m) for m in reference_offsets)
        if not offsets or 0 in offsets or num_references < 1:
            raise ValueError(
                "reference_offsets must be non-zero frame offsets and num_references >= 1, got "
                f"{offsets} and {num_references}"
            )
        super().__init__(image_dir, annotation_file, panoptic_dir, transforms)
        self.reference_offsets, self.num_references = offsets, num_references
        self.targets = [(v, t) for v, video in enumerate(self.videos) for t in range(len(video.image_ids))]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor], list[Target]]:
        return self.seeded_item(index, clip_seed())

    def reference_positions(self, index: int, rng: np.random.Generator) -> list[int]:
        """The reference frames' positions of item ``index`` (class docstring)."""
        video_index, t = self.targets[index]
        length = len(self.videos[video_index].image_ids)
        valid = [t + m for m in self.reference_offsets if 0 <= t + m < length]
        if not valid:
            return [t] * self.num_references
        drawn = rng.choice(valid, size=self.num_references, replace=len(valid) < self.num_references)
        return [int(p) for p in drawn]

    def seeded_item(self, index: int, seed: int) -> tuple[list[torch.Tensor], list[Target]]:
        """Item ``index``: references, then the target; references and augmentation drawn from ``seed``."""
        rng = np.random.default_rng(seed)
        references = self.reference_positions(index, rng)
        video_index, t = self.targets[index]
        return self.read_frames(video_index, [*references, t], int(rng.integers(2**62)))
