"""The synthetic world in motion (``datamodules.synthetic.video``) as video panoptic segmentation in the
Cityscapes-VPS layout.

The layout follows the official Cityscapes-VPS release (Kim et al., "Video Panoptic Segmentation", CVPR
2020; https://github.com/mcahny/vps: ``docs/DATASET.md``, ``prepare_data/create_panoptic_video_labels.py``,
``tools/eval_vpq.py``, ``mmdet/datasets/cityscapes_vps.py``). Under ``out_dir``:

- ``<split>/img/<image_id>_leftImg8bit.png``: the annotated frames (PNG, lossless). The official release
  also has ``<split>/img_all/`` with every (mostly unannotated) frame of the sequences for inference; every
  synthetic frame is annotated, so ``img`` is all of them and ``img_all`` is not written;
- ``<split>/panoptic_video/<image_id>_gtFine_color.png``: per frame the RGB-encoded segment ids
  (``id = R + 256 G + 256^2 B``, 0 = void; ``datamodules.coco_panoptic_png``), the official file name;
- ``panoptic_gt_<split>_city_vps.json``: COCO panoptic without a ``videos`` key, as the official converter
  writes it -- ``images`` [{``id``, ``width``, ``height``, ``file_name``}], ``annotations``
  [{``image_id``, ``file_name`` (the PNG), ``segments_info`` [{``id``, ``category_id``, ``iscrowd``, ``area``,
  ``bbox``}]}] and ``categories`` [{``id``, ``name``, ``supercategory``, ``isthing``, ``color``}] (the
  synthetic world's, from ``datamodules.synthetic.panoptic.panoptic_categories``).

Image ids are strings ``<video:04d>_<frame:04d>_<city>_<sequence:06d>_<frame:06d>`` as in the official
files (``0005_0025_frankfurt_000000_001736``, ``0005_0026_frankfurt_000000_001741``, ...,
``0500_3000_munster_000173_000029`` in the official ``README.md``): the video is ``image_id[:4]`` and the
second field counts the annotated frames over the split from 1, so it is consecutive within a video and
frames sort by file name. Here videos count 1..num_videos, the second field is ``(video - 1) * T + t + 1``
for frame t = 0..T-1 (at most 9999, its 4 digits), the city is ``synthetic``, the sequence the video
number and the last field t. The official files the synthetic world does not need are not written (the
image-info ``panoptic_im_<split>_city_vps.json``, ``im_all_info_<split>_city_vps.json`` and the instance
``instances_<split>_city_vps_rle.json``).

Segment ids persist across the frames of a video, as the official converter keeps one id per Cityscapes
instance within a video (``instid2color``): a thing track is ``category_id * 1000 + instance_id`` (the
Cityscapes instance-id rule), a stuff class is its category id, in every frame it appears. The segments of
a frame are those of the still-image writer (``panoptic.scene_panoptic``: things, a void band of
``VOID_BAND`` pixels around them, stuff), with those ids. In every ``crowd_every``-th video (index 0,
``crowd_every``, ...) with at least two tracks, the bottom track is written as a crowd segment
(``iscrowd`` 1) in all its frames, so the crowd paths run; the video world has no crowd of its own.

Video ``i`` of a split is rendered from ``scene_rng(seed, "cityscapes-vps-<split>", i)``: it depends on
neither the number of videos nor the other split, and the same arguments give byte-identical files.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from datamodules.coco_panoptic_png import write_coco_panoptic_png
from datamodules.synthetic.coco_writer import check_arguments, scene_rng, write_png
from datamodules.synthetic.panoptic import PanopticAnnotation, panoptic_categories, scene_panoptic
from datamodules.synthetic.video import Video, VideoConfig, render_video
from datamodules.synthetic.world import THING_CLASSES, Scene, Thing

CITY = "synthetic"
IMAGE_SUFFIX = "_leftImg8bit.png"
PANOPTIC_SUFFIX = "_gtFine_color.png"
MAX_FRAMES = 9999  # the 4-digit video and frame-counter fields of the image ids
THING_CATEGORY_IDS = frozenset(c.category_id for c in THING_CLASSES)
THING_ID_FACTOR = 1000  # Cityscapes: instance id = category id * 1000 + instance number


def annotation_file(out_dir: str | Path, split: str) -> Path:
    """The panoptic JSON of ``split``: ``out_dir/panoptic_gt_<split>_city_vps.json``."""
    return Path(out_dir) / f"panoptic_gt_{split}_city_vps.json"


def frame_name(video_id: int, frame: int, num_frames: int) -> str:
    """The image id of frame ``frame`` (0-based) of video ``video_id`` (from 1) of a split of videos of
    ``num_frames`` frames (module docstring)."""
    counter = (video_id - 1) * num_frames + frame + 1
    return f"{video_id:04d}_{counter:04d}_{CITY}_{video_id:06d}_{frame:06d}"


def thing_segment_id(category_id: int, instance_id: int) -> int:
    """The persistent segment id of a thing track."""
    if not 0 < instance_id < THING_ID_FACTOR:
        raise ValueError(f"instance id must be in 1..{THING_ID_FACTOR - 1}, got {instance_id}")
    return category_id * THING_ID_FACTOR + instance_id


def crowd_instance(video: Video, video_index: int, crowd_every: int) -> int | None:
    """The instance id written as a crowd segment in video ``video_index`` (module docstring), or None."""
    if crowd_every <= 0 or video_index % crowd_every or len(video.tracks) < 2:
        return None
    return video.tracks[0].instance_id


def frame_panoptic(frame: Scene, crowd: int | None = None) -> PanopticAnnotation:
    """One frame's panoptic annotation with the persistent segment ids (module docstring): ``ids`` (H, W)
    int64 and ``segments_info``; the thing of instance id ``crowd`` becomes a crowd segment."""
    things = [
        Thing(t.instance_id, t.shapes, t.mask, True) if t.instance_id == crowd else t for t in frame.things
    ]
    local = scene_panoptic(Scene(frame.image, frame.stuff_map, things))
    persistent = np.zeros(len(local.segments_info) + 1, np.int64)
    segments = []
    for segment in local.segments_info:
        mask = local.ids == segment["id"]
        if segment["category_id"] in THING_CATEGORY_IDS:
            # a thing segment is its thing's visible mask: find the thing by one of its pixels
            y, x = np.argwhere(mask)[0]
            thing = next(t for t in things if t.mask[y, x])
            segment_id = thing_segment_id(thing.category_id, thing.instance_id)
        else:
            segment_id = segment["category_id"]
        persistent[segment["id"]] = segment_id
        segments.append({**segment, "id": segment_id})
    return PanopticAnnotation(persistent[local.ids], segments)


def video_panoptic(video: Video, crowd: int | None = None) -> list[PanopticAnnotation]:
    """The panoptic annotations of every frame of ``video`` (ids persist across frames)."""
    return [frame_panoptic(frame, crowd) for frame in video.frames]


def write_cityscapes_vps_split(
    out_dir: str | Path,
    split: str,
    num_videos: int,
    num_frames: int = 6,
    image_size: int = 128,
    seed: int = 0,
    config: VideoConfig | None = None,
    crowd_every: int = 3,
    progress: bool = False,
) -> Path:
    """Render ``num_videos`` videos of ``num_frames`` frames and write them as a Cityscapes-VPS split (the
    layout of the module docstring); return the JSON path. ``config.num_frames`` is replaced by
    ``num_frames``; ``crowd_every`` 0 writes no crowd segment; ``progress`` shows a progress bar."""
    check_arguments(split, num_videos, image_size, seed)
    if num_frames < 1 or num_videos * num_frames > MAX_FRAMES:
        raise ValueError(
            f"num_frames must be >= 1 and num_videos * num_frames at most {MAX_FRAMES} (the image ids' "
            f"4-digit frame counter), got {num_videos} videos of {num_frames} frames"
        )
    config = replace(config or VideoConfig(), num_frames=num_frames)
    out_dir = Path(out_dir)
    image_dir, panoptic_dir = out_dir / split / "img", out_dir / split / "panoptic_video"
    image_dir.mkdir(parents=True, exist_ok=True)
    panoptic_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in tqdm(
        range(num_videos), desc=f"cityscapes_vps {split}", unit="video", disable=None if progress else True
    ):
        video_id = index + 1
        video = render_video(scene_rng(seed, f"cityscapes-vps-{split}", index), image_size, config)
        crowd = crowd_instance(video, index, crowd_every)
        for t, (frame, panoptic) in enumerate(zip(video.frames, video_panoptic(video, crowd), strict=True)):
            image_id = frame_name(video_id, t, num_frames)
            write_png(image_dir / f"{image_id}{IMAGE_SUFFIX}", frame.image)
            write_coco_panoptic_png(
                torch.from_numpy(panoptic.ids), panoptic_dir / f"{image_id}{PANOPTIC_SUFFIX}"
            )
            images.append(
                {
                    "id": image_id,
                    "width": image_size,
                    "height": image_size,
                    "file_name": image_id + IMAGE_SUFFIX,
                }
            )
            annotations.append(
                {
                    "image_id": image_id,
                    "file_name": image_id + PANOPTIC_SUFFIX,
                    "segments_info": panoptic.segments_info,
                }
            )
    path = annotation_file(out_dir, split)
    dataset = {"images": images, "annotations": annotations, "categories": panoptic_categories()}
    path.write_text(json.dumps(dataset, separators=(",", ":")) + "\n")
    return path
