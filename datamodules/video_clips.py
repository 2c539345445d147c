"""Clips of videos in the project's batch convention, shared by the video readers.

A clip is a keyframe and the frames after it: ``clip_length`` frames, ``frame_stride`` frames apart. An item
is ``(frames, targets)``: T float32 (3, H, W) frames in [0, 1] and one ``datamodules.batch.Target`` per frame,
whose ``instance_ids`` persist across the frames of a video and whose ``image_id`` names the frame
(``frame_image_id``). ``collate_clips`` batches clips as ``ClipBatch``: a list of B clips' frame lists and a
list of their target lists (frames keep their own sizes, as in ``collate_detection``).

Augmentation is the same on every frame of a clip (``transform_clip``): the albumentations pipeline is
re-seeded with the clip's seed before each frame, so each frame draws the same flip, crop and colour
jitter. A transform whose parameters depend on the targets (e.g. ``BBoxSafeRandomCrop``) can still differ
between frames with different instances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import albumentations as A
import numpy as np
import torch
from torch import Tensor

from datamodules.batch import Target
from datamodules.instance_transforms import InstanceSample, apply_instance_transforms

ClipBatch = tuple[list[list[Tensor]], list[list[Target]]]
"""B clips: ``frames[b][t]`` float32 (3, H, W) and ``targets[b][t]``."""

FRAMES_PER_VIDEO_ID = 100_000
"""``image_id`` of frame f of video v: ``v * FRAMES_PER_VIDEO_ID + f`` (``frame_image_id``)."""


class Clip(NamedTuple):
    """One item: a video id and the indices (into its ``file_names``) of the clip's frames."""

    video_id: int
    frame_indices: tuple[int, ...]


def frame_image_id(video_id: int, frame_index: int) -> int:
    """The ``image_id`` of a frame: ``video_id * FRAMES_PER_VIDEO_ID + frame_index`` (0-based index)."""
    if not 0 <= frame_index < FRAMES_PER_VIDEO_ID:
        raise ValueError(
            f"frame index {frame_index} of video id {video_id} is not in [0, {FRAMES_PER_VIDEO_ID})"
        )
    return video_id * FRAMES_PER_VIDEO_ID + frame_index


def split_frame_image_id(image_id: int) -> tuple[int, int]:
    """``(video_id, frame_index)`` of a frame's ``image_id`` (inverse of ``frame_image_id``)."""
    return divmod(int(image_id), FRAMES_PER_VIDEO_ID)


def clip_frame_indices(
    length: int, clip_length: int, frame_stride: int, clip_step: int
) -> list[tuple[int, ...]]:
    """The frames of every clip of a video of ``length`` frames: keyframes 0, ``clip_step``, ... as long as
    the clip fits (at least keyframe 0); in a video shorter than one clip's span, ``(clip_length - 1) *
    frame_stride + 1`` frames, the indices past its end repeat its last frame."""
    if min(clip_length, frame_stride, clip_step) < 1:
        raise ValueError(
            f"clip_length, frame_stride and clip_step must be >= 1, got {clip_length}, {frame_stride}, "
            f"{clip_step}"
        )
    span = (clip_length - 1) * frame_stride + 1
    return [
        tuple(min(start + k * frame_stride, length - 1) for k in range(clip_length))
        for start in range(0, max(length - span, 0) + 1, clip_step)
    ]


def transform_clip(
    transforms: A.Compose, samples: Sequence[InstanceSample], seed: int
) -> list[tuple[InstanceSample, np.ndarray]]:
    """``apply_instance_transforms`` on every frame with the pipeline re-seeded from ``seed`` each time, so
    every frame gets the same random parameters; returns each frame's sample and kept instance indices."""
    out = []
    for sample in samples:
        transforms.set_random_seed(seed)
        out.append(apply_instance_transforms(transforms, sample))
    return out


def clip_seed() -> int:
    """A clip seed for an unseeded read (``dataset[index]``), from torch's generator (seeded per DataLoader
    worker and by ``seed_everything``)."""
    return int(torch.randint(0, 2**62, ()).item())


def collate_clips(batch: Sequence[tuple[list[Tensor], list[Target]]]) -> ClipBatch:
    """``[(frames, targets), ...]`` -> ``([frames, ...], [targets, ...])``, one entry per clip."""
    return [frames for frames, _ in batch], [targets for _, targets in batch]
