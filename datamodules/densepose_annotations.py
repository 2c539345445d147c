"""DensePose-COCO annotation fields of one annotation, validated and converted to the batch convention.

DensePose-COCO (Güler, Neverova and Kokkinos, "DensePose: Dense Human Pose Estimation In The Wild",
CVPR 2018) adds chart-based fields to COCO person annotations, in the format detectron2's
``projects/DensePose`` reads (``densepose/data/datasets/coco.py``, ``densepose/structures/data_relative.py``
``DensePoseDataRelative``, ``doc/DENSEPOSE_DATASETS.md``):

- ``dp_x``, ``dp_y``: point positions in the 256 x 256 frame of the annotation's ``bbox``
  (``x_img = x0 + dp_x * w / 256``, ``y_img = y0 + dp_y * h / 256``);
- ``dp_I``: the fine part (chart) index of each point, 1..24, stored as floats;
- ``dp_U``, ``dp_V``: each point's chart coordinates in [0, 1];
- ``dp_masks``: 14 COCO RLEs (or empty entries, ``[]``) of the coarse parts on a 256 x 256 grid of the box.

Conventions here: the box frame is continuous, as the batch convention's pixels are (grid cell (i, j)
covers box-frame [j, j + 1) x [i, i + 1)), so ``dp_x`` in [0, 256] spans the box's full width; points
are ``Target.dense_points`` rows (x, y, part, u, v), float32 ``(P, 5)``; the coarse segmentation is one
``(256, 256)`` uint8 label map, 0 background and k + 1 where ``dp_masks[k]`` is set, later parts painted
over earlier ones (detectron2's ``DensePoseDataRelative.extract_segmentation_mask``, the original
Detectron's ``GetDensePoseMask``).

An annotation with none of the fields has no dense annotation (``parse_densepose`` returns None): normal
in DensePose-COCO, where only some persons are annotated. Malformed fields raise ``DatasetFormatError``
naming the file and the annotation id.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from pycocotools import mask as mask_utils

from datamodules.errors import DatasetFormatError

POINT_KEYS: tuple[str, ...] = ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")
MASK_KEY = "dp_masks"
DENSEPOSE_KEYS: tuple[str, ...] = (*POINT_KEYS, MASK_KEY)
FRAME_SIZE = 256  # the box frame of the points and the grid of the masks
NUM_POINT_PARTS = 24  # fine parts (charts) of dp_I
NUM_MASK_PARTS = 14  # coarse parts of dp_masks

Points = TypeVar("Points", np.ndarray, torch.Tensor)


class DensePoseAnnotation(NamedTuple):
    """One annotation's DensePose fields: ``points`` float32 ``(P, 5)`` (x, y in the box frame, part
    1..24, u, v) and ``segmentation`` uint8 ``(256, 256)`` coarse part labels 0..14 on the box grid."""

    points: np.ndarray
    segmentation: np.ndarray


def has_densepose(annotation: dict[str, Any]) -> bool:
    """Does the annotation carry any DensePose field?"""
    return any(key in annotation for key in DENSEPOSE_KEYS)


def _error(annotation: dict[str, Any], annotation_file: str | Path, problem: str) -> DatasetFormatError:
    return DatasetFormatError(
        f"{annotation_file}: annotation id {annotation.get('id')} {problem}", kind="bad_densepose"
    )


def _number_list(values: Any) -> np.ndarray | None:
    """A list of finite real numbers as float64, else None."""
    if not isinstance(values, list | tuple) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        return None
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    return array if np.isfinite(array).all() else None


def dense_points(annotation: dict[str, Any], annotation_file: str | Path) -> np.ndarray:
    """The annotation's points as float32 ``(P, 5)`` rows (x, y, part, u, v), validated: five lists of
    finite numbers of one length, part indices integral in 1..24, u and v in [0, 1], x and y in the box
    frame [0, 256]."""
    missing = [key for key in POINT_KEYS if key not in annotation]
    if missing:
        raise _error(annotation, annotation_file, f"has DensePose fields but lacks {', '.join(missing)}")
    columns = []
    for key in POINT_KEYS:
        column = _number_list(annotation[key])
        if column is None:
            raise _error(
                annotation, annotation_file, f"has '{key}' {annotation[key]!r:.80}: need a list of numbers"
            )
        columns.append(column)
    lengths = {key: len(column) for key, column in zip(POINT_KEYS, columns, strict=True)}
    if len(set(lengths.values())) != 1:
        raise _error(annotation, annotation_file, f"has DensePose point lists of different lengths {lengths}")
    x, y, part, u, v = columns
    if (part != np.round(part)).any() or (part < 1).any() or (part > NUM_POINT_PARTS).any():
        bad = sorted(set(part[(part != np.round(part)) | (part < 1) | (part > NUM_POINT_PARTS)].tolist()))
        raise _error(annotation, annotation_file, f"has 'dp_I' {bad[:5]}: need integers 1..{NUM_POINT_PARTS}")
    for key, column in (("dp_U", u), ("dp_V", v)):
        if (column < 0).any() or (column > 1).any():
            raise _error(annotation, annotation_file, f"has '{key}' outside [0, 1]")
    for key, column in (("dp_x", x), ("dp_y", y)):
        if (column < 0).any() or (column > FRAME_SIZE).any():
            raise _error(
                annotation,
                annotation_file,
                f"has '{key}' {float(column.min()):g}..{float(column.max()):g} outside the box frame "
                f"[0, {FRAME_SIZE}]",
            )
    return np.stack(columns, axis=1).astype(np.float32)


def _decode_part(rle: Any, k: int, annotation: dict[str, Any], annotation_file: str | Path) -> np.ndarray:
    """Decode ``dp_masks[k]`` (compressed or uncompressed COCO RLE) to a boolean 256 x 256 mask."""
    what = f"has 'dp_masks'[{k}]"
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise _error(annotation, annotation_file, f"{what} {rle!r:.80}: need a COCO RLE (size, counts) or []")
    size = rle["size"]
    if not isinstance(size, list | tuple) or list(size) != [FRAME_SIZE, FRAME_SIZE]:
        raise _error(annotation, annotation_file, f"{what} of size {size!r:.40}, need [256, 256]")
    try:
        if isinstance(rle["counts"], list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(rle, FRAME_SIZE, FRAME_SIZE)
        elif isinstance(rle["counts"], str):
            rle = {"size": list(size), "counts": rle["counts"].encode("ascii")}
        mask = mask_utils.decode(rle)
    except (TypeError, ValueError, UnicodeEncodeError) as error:
        raise _error(annotation, annotation_file, f"{what} does not decode: {error}") from None
    if mask.shape != (FRAME_SIZE, FRAME_SIZE):
        raise _error(annotation, annotation_file, f"{what} decodes to shape {mask.shape}")
    return mask > 0


def segmentation_label_map(annotation: dict[str, Any], annotation_file: str | Path) -> np.ndarray:
    """``dp_masks`` as a uint8 ``(256, 256)`` label map: 0 background, k + 1 where ``dp_masks[k]`` is set,
    later parts over earlier (detectron2's ``extract_segmentation_mask``). Empty entries are skipped."""
    entries = annotation.get(MASK_KEY)
    if not isinstance(entries, list | tuple) or len(entries) != NUM_MASK_PARTS:
        length = len(entries) if isinstance(entries, list | tuple) else type(entries).__name__
        raise _error(
            annotation, annotation_file, f"has 'dp_masks' of length {length}, need {NUM_MASK_PARTS} RLEs"
        )
    labels = np.zeros((FRAME_SIZE, FRAME_SIZE), np.uint8)
    for k, rle in enumerate(entries):
        if rle:  # detectron2 and Detectron skip falsy entries ([], {}, None)
            labels[_decode_part(rle, k, annotation, annotation_file)] = k + 1
    return labels


def parse_densepose(annotation: dict[str, Any], annotation_file: str | Path) -> DensePoseAnnotation | None:
    """The validated DensePose fields of one annotation, or None when it has none. Points and
    ``dp_masks`` come together: an annotation with some fields but not all is an error."""
    if not has_densepose(annotation):
        return None
    if MASK_KEY not in annotation:
        raise _error(annotation, annotation_file, "has DensePose points but no 'dp_masks'")
    return DensePoseAnnotation(
        dense_points(annotation, annotation_file), segmentation_label_map(annotation, annotation_file)
    )


def _box_scale_offset(box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box {list(box)} (XYXY) has no area")
    return np.array([(x1 - x0) / FRAME_SIZE, (y1 - y0) / FRAME_SIZE]), np.array([x0, y0])


def _like(values: np.ndarray, points: Points) -> Points:
    if isinstance(points, torch.Tensor):
        return points.new_tensor(values)
    return values


def box_frame_to_image(points: Points, box: Sequence[float]) -> Points:
    """``(..., 2)`` box-frame positions (0..256) -> image pixels, given the box as XYXY pixels:
    ``x0 + x * (x1 - x0) / 256`` (detectron2's ``DensePoseDataRelative``). numpy or torch in, same out."""
    scale, offset = _box_scale_offset(box)
    return points * _like(scale, points) + _like(offset, points)


def image_to_box_frame(points: Points, box: Sequence[float]) -> Points:
    """Inverse of ``box_frame_to_image``: ``(..., 2)`` image pixels -> box-frame positions."""
    scale, offset = _box_scale_offset(box)
    return (points - _like(offset, points)) / _like(scale, points)
