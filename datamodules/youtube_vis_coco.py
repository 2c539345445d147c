"""A YouTube-VIS split's frames as a COCO instances dataset, for per-frame COCO evaluation.

YolactEdge (Liu et al. 2021, Sec. IV, Table I) scores video instance segmentation per frame with COCO
mask AP, as its official ``eval.py`` does on YouTube-VIS: every annotated frame is an image, every
annotation's mask in that frame an instance. ``youtube_vis_frames_as_coco(data)`` builds that view from the
YouTube-VIS JSON (``datamodules.youtube_vis``), to feed ``metrics.coco_evaluation.COCOEvaluation``:

- ``images``: one per frame of each video: ``id`` = ``video_clips.frame_image_id(video_id, frame index)``
  (the ``image_id`` of the clip reader's targets), ``file_name``, ``width``, ``height``, ``video_id`` and
  ``frame_index``;
- ``annotations``: one per (annotation, frame) whose ``segmentations`` entry is not null: the compressed
  RLE, ``area`` (the JSON's ``areas`` entry, or the RLE's pixel count where it is null), ``bbox``
  (``bboxes``, or the RLE's box), the annotation's ``iscrowd``, ``category_id``, and ``instance_id``
  (the YouTube-VIS annotation id); ids count 1, 2, ... in JSON order, frame by frame;
- ``categories`` as in the JSON.

Every listed frame is an image, so a frame without any annotation scores detections on it as false
positives (the 2019 release's ``JPEGImages`` lists the annotated frames only).
"""

from __future__ import annotations

from typing import Any

from pycocotools import mask as mask_utils

from datamodules.video_clips import frame_image_id
from datamodules.youtube_vis import _to_rle


def youtube_vis_frames_as_coco(data: dict[str, Any]) -> dict[str, Any]:
    """The COCO instances dict of a YouTube-VIS dict's frames (module docstring)."""
    images = [
        {
            "id": frame_image_id(video["id"], index),
            "file_name": name,
            "width": video["width"],
            "height": video["height"],
            "video_id": video["id"],
            "frame_index": index,
        }
        for video in data["videos"]
        for index, name in enumerate(video["file_names"])
    ]
    annotations = []
    for ann in data.get("annotations", []):
        areas = ann.get("areas") or [None] * len(ann["segmentations"])
        bboxes = ann.get("bboxes") or [None] * len(ann["segmentations"])
        for index, (segmentation, area, bbox) in enumerate(
            zip(ann["segmentations"], areas, bboxes, strict=True)
        ):
            if segmentation is None:
                continue
            rle = _to_rle(segmentation)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": frame_image_id(ann["video_id"], index),
                    "category_id": ann["category_id"],
                    "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
                    "area": float(mask_utils.area(rle)) if area is None else float(area),
                    "bbox": [float(v) for v in (mask_utils.toBbox(rle) if bbox is None else bbox)],
                    "iscrowd": int(ann.get("iscrowd", 0)),
                    "instance_id": ann["id"],
                }
            )
    return {
        "info": {"description": "frames of a YouTube-VIS split (datamodules.youtube_vis_coco)"},
        "images": images,
        "annotations": annotations,
        "categories": [dict(category) for category in data["categories"]],
    }
