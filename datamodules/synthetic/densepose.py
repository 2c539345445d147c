"""DensePose-COCO fields of the synthetic world's things (``datamodules.densepose_annotations`` reads them).

The DensePose-COCO format (Güler et al., CVPR 2018; as detectron2's ``projects/DensePose`` reads it):
``dp_x``, ``dp_y`` in the 256 x 256 frame of the annotation's ``bbox``, ``dp_I`` the part of each point,
``dp_U``, ``dp_V`` its chart coordinates, ``dp_masks`` 14 RLEs of coarse parts on the 256 x 256 box grid.

The synthetic surface: each shape has 4 parts, the quadrants of its *screen-aligned* frame (origin at the
shape's centre, axes along the image's x and y, unit = the circumradius: ``chart_frame``), part
``1 + floor(angle / 90 degrees)`` with ``angle = atan2(y, x)`` in [0, 360) degrees (y points down, so
part 1 is the lower right quadrant, 2 lower left, 3 upper left, 4 upper right). The frame does not turn
with the shape on purpose: a circle's or a square's rotation cannot be seen, so a rotating chart could
not be learnt from the image, whereas the screen-aligned one can (as a person's left and right can).
Chart coordinates are ``u = (x + 1) / 2``, ``v = (y + 1) / 2``, clipped to [0, 1]. A horizontal flip
mirrors the chart as DensePose's left/right symmetry does: parts 1 <-> 2 and 3 <-> 4, ``u -> 1 - u``
(``SYNTHETIC_POINT_PART_SYMMETRY``, ``datamodules.densepose_symmetry``). The same parts 1..4 serve as the
fine point parts (``dp_I``, of DensePose's 1..24) and the coarse mask parts (``dp_masks[0..3]``, of its
1..14; ``dp_masks[4..13]`` are empty, ``[]`` as in DensePose-COCO).

Points are up to ``max_points`` distinct visible pixels of the thing (``Thing.mask``, occlusion already
taken off), each at a random position inside its pixel (kept ``JITTER_MARGIN`` off the pixel's edges, so
the point's pixel survives the round trip through the box frame). The masks resample the visible mask to
the box grid by nearest neighbour: grid cell (i, j) takes the image pixel under its centre and the part of
the centre's own local angle. Crowd regions get no DensePose fields (an empty dict).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from datamodules.densepose_annotations import (
    FRAME_SIZE,
    NUM_MASK_PARTS,
    box_frame_to_image,
    image_to_box_frame,
)
from datamodules.synthetic.world import Shape, Thing

NUM_PARTS = 4  # quadrants of the shape-local frame
MAX_POINTS = 100  # DensePose-COCO: ~5M points on ~50K people, about 100 per person
JITTER_MARGIN = 0.05  # pixels: sampled points stay this far inside their pixel


def chart_frame(shape: Shape, points: np.ndarray) -> np.ndarray:
    """``(N, 2)`` image points in the shape's screen-aligned chart frame: centred, in circumradii."""
    return (np.asarray(points, np.float64) - np.asarray(shape.center)) / shape.size


def local_parts(shape: Shape, points: np.ndarray) -> np.ndarray:
    """Part 1..4 (int64) of ``(N, 2)`` image points: the quadrant of their angle in ``chart_frame``."""
    local = chart_frame(shape, points)
    angle = np.mod(np.arctan2(local[:, 1], local[:, 0]), 2 * np.pi)
    return np.minimum((angle // (np.pi / 2)).astype(np.int64), NUM_PARTS - 1) + 1


def local_uv(shape: Shape, points: np.ndarray) -> np.ndarray:
    """``(N, 2)`` chart coordinates (u, v) in [0, 1] of ``(N, 2)`` image points."""
    return np.clip((chart_frame(shape, points) + 1.0) / 2.0, 0.0, 1.0)


def _xyxy(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in bbox)
    return x, y, x + w, y + h


def part_masks(thing: Thing, bbox: Sequence[float]) -> list[np.ndarray]:
    """The visible region of each part 1..4, boolean ``(256, 256)`` on the grid of the COCO ``bbox``."""
    centres = (np.arange(FRAME_SIZE, dtype=np.float64) + 0.5)[None, :].repeat(FRAME_SIZE, 0)
    frame = np.stack([centres, centres.T], axis=-1).reshape(-1, 2)  # (x, y) of cell (i, j) at row i*256+j
    image_points = box_frame_to_image(frame, _xyxy(bbox))
    height, width = thing.mask.shape
    cols = np.clip(np.floor(image_points[:, 0]).astype(np.int64), 0, width - 1)
    rows = np.clip(np.floor(image_points[:, 1]).astype(np.int64), 0, height - 1)
    visible = thing.mask[rows, cols]
    parts = local_parts(thing.shape, image_points)
    return [(visible & (parts == k)).reshape(FRAME_SIZE, FRAME_SIZE) for k in range(1, NUM_PARTS + 1)]


def _rle(mask: np.ndarray) -> dict[str, Any] | list[Any]:
    if not mask.any():
        return []
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [FRAME_SIZE, FRAME_SIZE], "counts": rle["counts"].decode("ascii")}


def densepose_fields(
    thing: Thing, bbox: Sequence[float], rng: np.random.Generator, max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """DensePose-COCO fields (``dp_x``, ``dp_y``, ``dp_I``, ``dp_U``, ``dp_V``, ``dp_masks``) of ``thing``
    whose COCO ``bbox`` is [x, y, w, h] (the box of its visible mask), as JSON-ready lists; ``{}`` for a
    crowd region."""
    if thing.iscrowd:
        return {}
    shape = thing.shape
    rows, cols = np.nonzero(thing.mask)
    chosen = rng.choice(len(rows), size=min(max_points, len(rows)), replace=False)
    jitter = rng.uniform(JITTER_MARGIN, 1.0 - JITTER_MARGIN, size=(len(chosen), 2))
    points = np.stack([cols[chosen], rows[chosen]], axis=1) + jitter
    frame = np.clip(image_to_box_frame(points, _xyxy(bbox)), 0.0, FRAME_SIZE)
    uv = local_uv(shape, points)
    masks = part_masks(thing, bbox) + [np.zeros((FRAME_SIZE, FRAME_SIZE), bool)] * (
        NUM_MASK_PARTS - NUM_PARTS
    )
    return {
        "dp_x": frame[:, 0].tolist(),
        "dp_y": frame[:, 1].tolist(),
        "dp_I": local_parts(shape, points).astype(np.float64).tolist(),
        "dp_U": uv[:, 0].tolist(),
        "dp_V": uv[:, 1].tolist(),
        "dp_masks": [_rle(mask) for mask in masks],
    }
