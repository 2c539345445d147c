"""The synthetic world in motion (``datamodules.synthetic.video``) in the YouTube-VIS format.

The layout of YouTube-VIS 2019 (Yang et al., "Video Instance Segmentation", ICCV 2019;
https://youtube-vos.org/dataset/vis/), under ``out_dir``:

- ``<split>/JPEGImages/<video_id:06d>/<t:05d>.jpg``: the frames (JPEG, so pixels are lossy; masks are not);
- ``annotations/instances_<split>.json``: ``info``, ``licenses``, ``videos`` (``id``, ``width``, ``height``,
  ``length``, ``file_names`` relative to ``JPEGImages``), ``categories`` (the world's thing classes) and
  ``annotations``: one per thing shown in at least one frame -- ``id``, ``video_id``, ``category_id``,
  ``iscrowd`` 0, ``width``, ``height``, ``length`` and per frame ``segmentations`` (an RLE, uncompressed as in
  the official train JSON unless ``compressed_rle``, or null where the thing is not shown), ``bboxes``
  ([x, y, w, h] of the mask, or null) and ``areas`` (pixel count, or null);
- with ``flow`` (``"flo"`` or ``"npy"``, ``datamodules.optical_flow_files``): ``<split>/Flow/<video_id:06d>/
  <t:05d>.<flow>``, the ground-truth flow of frame t -> t + 1 (``video.frame_flow``), for t = 0..T-2.

Video ``i`` of a split is rendered from ``scene_rng(seed, "video-<split>", i)``: it depends on neither the
number of videos nor the other split, and the same arguments give byte-identical files. Video ids are
``1..num_videos``; annotation ids count 1, 2, ... over the split, by video and then by instance id
(bottom to top).
"""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from datamodules.optical_flow_files import write_flow
from datamodules.synthetic.coco_writer import check_arguments, coco_categories, scene_rng
from datamodules.synthetic.video import Video, VideoConfig, frame_flow, render_video

FLOW_FORMATS = ("flo", "npy")
JPEG_QUALITY = 95


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE of a boolean (H, W) mask: run lengths over the column-major pixels,
    starting with a (possibly empty) run of zeros."""
    flat = mask.ravel(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(bounds).tolist()
    return {"size": list(mask.shape), "counts": [0, *runs] if flat[0] else runs}


def video_folder(video_id: int) -> str:
    return f"{video_id:06d}"


def video_annotations(
    video: Video, video_id: int, first_annotation_id: int, compressed_rle: bool = False
) -> list[dict[str, Any]]:
    """The YouTube-VIS annotations of ``video``: one per track shown in at least one frame, ids from
    ``first_annotation_id`` by instance id."""
    length, size = video.num_frames, video.image_size
    shown = [{thing.instance_id: thing for thing in frame.things} for frame in video.frames]
    annotations = []
    for track in video.tracks:
        segmentations: list[Any] = [None] * length
        bboxes: list[Any] = [None] * length
        areas: list[Any] = [None] * length
        for t, things in enumerate(shown):
            thing = things.get(track.instance_id)
            if thing is None:
                continue
            rle = mask_utils.encode(np.asfortranarray(thing.mask.astype(np.uint8)))
            if compressed_rle:
                segmentations[t] = {"size": [size, size], "counts": rle["counts"].decode("ascii")}
            else:
                segmentations[t] = uncompressed_rle(thing.mask)
            bboxes[t] = [float(v) for v in mask_utils.toBbox(rle)]
            areas[t] = int(thing.mask.sum())
        if any(area is not None for area in areas):
            annotations.append(
                {
                    "id": first_annotation_id + len(annotations),
                    "video_id": video_id,
                    "category_id": track.start.thing_class.category_id,
                    "iscrowd": 0,
                    "width": size,
                    "height": size,
                    "length": length,
                    "segmentations": segmentations,
                    "bboxes": bboxes,
                    "areas": areas,
                }
            )
    return annotations


def write_video_frames(
    video: Video, folder: Path, flow: str | None = None, flow_folder: Path | None = None
) -> list[str]:
    """Write the JPEG frames of ``video`` into ``folder`` (and, with ``flow``, its flows into
    ``flow_folder``); return the frame file names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for t, frame in enumerate(video.frames):
        path = folder / f"{t:05d}.jpg"
        bgr = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"could not write {path}")
        names.append(path.name)
    if flow is not None and flow_folder is not None:
        flow_folder.mkdir(parents=True, exist_ok=True)
        for t in range(video.num_frames - 1):
            write_flow(flow_folder / f"{t:05d}.{flow}", frame_flow(video, t))
    return names


def write_youtube_vis_split(
    out_dir: Path,
    split: str,
    num_videos: int,
    num_frames: int = 8,
    image_size: int = 128,
    seed: int = 0,
    config: VideoConfig | None = None,
    flow: str | None = None,
    compressed_rle: bool = False,
    progress: bool = False,
) -> Path:
    """Render ``num_videos`` videos of ``num_frames`` frames and write them as a YouTube-VIS split (the
    layout of the module docstring); return the JSON path. ``config.num_frames`` is replaced by
    ``num_frames``; ``progress`` shows a progress bar on a terminal."""
    check_arguments(split, num_videos, image_size, seed)
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if flow is not None and flow not in FLOW_FORMATS:
        raise ValueError(f"flow must be one of {FLOW_FORMATS} or None, got {flow!r}")
    config = replace(config or VideoConfig(), num_frames=num_frames)
    out_dir = Path(out_dir)
    videos: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in tqdm(
        range(num_videos), desc=f"ytvis {split}", unit="video", disable=None if progress else True
    ):
        video_id = index + 1
        video = render_video(scene_rng(seed, f"video-{split}", index), image_size, config)
        folder = video_folder(video_id)
        names = write_video_frames(
            video, out_dir / split / "JPEGImages" / folder, flow, out_dir / split / "Flow" / folder
        )
        videos.append(
            {
                "id": video_id,
                "width": image_size,
                "height": image_size,
                "length": num_frames,
                "file_names": [f"{folder}/{name}" for name in names],
            }
        )
        annotations += video_annotations(video, video_id, len(annotations) + 1, compressed_rle)
    path = out_dir / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset = {
        "info": {"description": f"vision-zoo synthetic world in motion v1, split {split}, seed {seed}"},
        "licenses": [],
        "videos": videos,
        "categories": coco_categories(),
        "annotations": annotations,
    }
    path.write_text(json.dumps(dataset, separators=(",", ":")) + "\n")
    return path
