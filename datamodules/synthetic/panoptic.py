"""The synthetic world (``datamodules.synthetic.world``) in the COCO panoptic format
(https://cocodataset.org/#format-data, "Panoptic Segmentation"): per image a PNG of segment ids
(``datamodules.coco_panoptic_png``) and a ``segments_info`` list in the JSON.

The segments of a scene (``scene_panoptic``), which cover every pixel at most once:

- things: one segment per ``Thing`` (its visible mask; a crowd cluster is one segment with ``iscrowd`` 1),
  bottom to top -- the order of the image's annotations in the instances JSON;
- void (id 0): the stuff pixels within ``VOID_BAND`` pixels of a thing (Chebyshev distance, i.e. a
  dilation of the things' union by a (2 band + 1)-square), left unlabelled as COCO annotators leave object
  boundaries; a boundary between two touching things stays labelled;
- stuff: one segment per stuff category with pixels left after things and void, by category id (a
  category whose pixels are all covered or void gets none).

Every segment has pixels (a thing with an empty visible mask, possible only with
``SceneConfig.min_visible_pixels`` 0, gets none). Segment ids count 1, 2, ... in that order (things,
then stuff): unique per image, non-zero, equal to 1 + the segment's position in ``segments_info``.
``area`` is the pixel count and ``bbox`` the integer [x, y, width, height] of the segment's pixels, as
panopticapi's converters compute them.
"""

from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch

from datamodules.coco_panoptic_png import write_coco_panoptic_png
from datamodules.synthetic.render import hsv_to_rgb255
from datamodules.synthetic.world import STUFF_CLASSES, THING_CLASSES, Scene

VOID_BAND = 1  # pixels of stuff around each thing left void


class PanopticAnnotation(NamedTuple):
    """A scene's panoptic ground truth: ``ids`` (H, W) int64 segment ids (0 = void) and ``segments_info``."""

    ids: np.ndarray
    segments_info: list[dict[str, Any]]


def _colour(hue: float, saturation: float, value: float) -> list[int]:
    return [int(v) for v in np.round(hsv_to_rgb255(hue, saturation, value))]


def panoptic_categories() -> list[dict[str, Any]]:
    """The thing (``isthing`` 1) and stuff (``isthing`` 0) categories in COCO panoptic form; ``color`` is
    the class's middle hue (things saturated and bright, stuff at its middle saturation and value)."""
    things = [
        {
            "id": c.category_id,
            "name": c.name,
            "supercategory": c.supercategory,
            "isthing": 1,
            "color": _colour(sum(c.hue_range) / 2, 0.8, 0.9),
        }
        for c in THING_CLASSES
    ]
    stuff = [
        {
            "id": c.category_id,
            "name": c.name,
            "supercategory": c.supercategory,
            "isthing": 0,
            "color": _colour(c.hue, sum(c.saturation_range) / 2, sum(c.value_range) / 2),
        }
        for c in STUFF_CLASSES
    ]
    return things + stuff


def segment_info(
    mask: np.ndarray, segment_id: int, category_id: int, iscrowd: bool = False
) -> dict[str, Any]:
    """The ``segments_info`` entry of a non-empty boolean ``mask``."""
    columns, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if not len(columns):
        raise ValueError(f"segment {segment_id} has no pixels")
    x, y = int(columns[0]), int(rows[0])
    return {
        "id": segment_id,
        "category_id": category_id,
        "area": int(mask.sum()),
        "bbox": [x, y, int(columns[-1]) - x + 1, int(rows[-1]) - y + 1],
        "iscrowd": int(iscrowd),
    }


def void_band(on_things: np.ndarray, band: int = VOID_BAND) -> np.ndarray:
    """The pixels off ``on_things`` within ``band`` pixels (Chebyshev distance) of it."""
    if band < 0:
        raise ValueError(f"band must be >= 0, got {band}")
    kernel = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    return cv2.dilate(on_things.astype(np.uint8), kernel).astype(bool) & ~on_things


def scene_panoptic(scene: Scene, band: int = VOID_BAND) -> PanopticAnnotation:
    """The COCO panoptic annotation of ``scene`` (the rules are in the module docstring)."""
    on_things = np.zeros(scene.stuff_map.shape, bool)
    for thing in scene.things:
        on_things |= thing.mask
    stuff = ~(on_things | void_band(on_things, band))
    regions = [(thing.mask, thing.category_id, thing.iscrowd) for thing in scene.things]
    regions += [(stuff & (scene.stuff_map == c.category_id), c.category_id, False) for c in STUFF_CLASSES]
    ids = np.zeros(scene.stuff_map.shape, np.int64)
    segments: list[dict[str, Any]] = []
    for mask, category_id, iscrowd in regions:
        if mask.any():
            ids[mask] = len(segments) + 1
            segments.append(segment_info(mask, len(segments) + 1, category_id, iscrowd))
    return PanopticAnnotation(ids, segments)


def write_panoptic_image(scene: Scene, image_id: int, png_path: Path) -> dict[str, Any]:
    """Write the segment-id PNG of ``scene`` to ``png_path``; return the image's entry of the panoptic
    JSON's ``annotations``."""
    annotation = scene_panoptic(scene)
    write_coco_panoptic_png(torch.from_numpy(annotation.ids), png_path)
    return {"image_id": image_id, "file_name": png_path.name, "segments_info": annotation.segments_info}
