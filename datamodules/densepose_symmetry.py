"""Horizontal flips of DensePose annotations: a mirrored person's left arm becomes a right arm, so a flip
must swap the parts and move each point's (U, V) to the mirrored chart, as detectron2's
``projects/DensePose`` ``DensePoseDataRelative.apply_transform`` does with ``DensePoseTransformData``.

``ChartSymmetry`` holds what a flip needs: the part permutations of the points (``dp_I``, 0..24) and of
the coarse masks (``dp_masks`` labels, 0..14), and per point part a 256 x 256 lookup of the new U and of the
new V, indexed ``[part - 1, floor(v * 255), floor(u * 255)]``. For DensePose-COCO the lookups are the official
``UV_symmetry_transforms.mat`` (keys ``U_transforms``, ``V_transforms``: 1 x 24 cells of 256 x 256), which
users supply by local path (``densepose_coco_symmetry``), and the permutations are detectron2's
``POINT_LABEL_SYMMETRIES`` and ``MASK_LABEL_SYMMETRIES``; the synthetic world's charts mirror in closed form
(``synthetic_symmetry``, see ``datamodules.synthetic.densepose``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.densepose_annotations import FRAME_SIZE, NUM_MASK_PARTS, NUM_POINT_PARTS
from datamodules.errors import DatasetFormatError

# detectron2 DensePoseTransformData.POINT_LABEL_SYMMETRIES / MASK_LABEL_SYMMETRIES (index = old label)
DENSEPOSE_COCO_POINT_PARTS = (
    0,
    1,
    2,
    4,
    3,
    6,
    5,
    8,
    7,
    10,
    9,
    12,
    11,
    14,
    13,
    16,
    15,
    18,
    17,
    20,
    19,
    22,
    21,
    24,
    23,
)
DENSEPOSE_COCO_MASK_PARTS = (0, 1, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 14)
UV_GRID = 256  # the lookups' resolution (index floor(u * 255))


class ChartSymmetry:
    """Part permutations and per-part (U, V) lookups of a horizontal flip (module docstring)."""

    def __init__(
        self,
        point_parts: np.ndarray,
        mask_parts: np.ndarray,
        u_transforms: np.ndarray,
        v_transforms: np.ndarray,
    ) -> None:
        self.point_parts = np.asarray(point_parts, np.int64)
        self.mask_parts = np.asarray(mask_parts, np.uint8)
        self.u_transforms = np.asarray(u_transforms, np.float32)
        self.v_transforms = np.asarray(v_transforms, np.float32)
        expected = {
            "point_parts": (self.point_parts.shape, (NUM_POINT_PARTS + 1,)),
            "mask_parts": (self.mask_parts.shape, (NUM_MASK_PARTS + 1,)),
            "u_transforms": (self.u_transforms.shape, (NUM_POINT_PARTS, UV_GRID, UV_GRID)),
            "v_transforms": (self.v_transforms.shape, (NUM_POINT_PARTS, UV_GRID, UV_GRID)),
        }
        for name, (shape, want) in expected.items():
            if shape != want:
                raise ValueError(f"ChartSymmetry.{name} has shape {shape}, need {want}")
        for name, permutation in (("point_parts", self.point_parts), ("mask_parts", self.mask_parts)):
            if sorted(permutation.tolist()) != list(range(len(permutation))) or permutation[0] != 0:
                raise ValueError(f"ChartSymmetry.{name} {permutation.tolist()} is not a permutation fixing 0")

    def flip_points(self, points: np.ndarray) -> np.ndarray:
        """``(P, 5)`` rows (x, y in the box frame, part 1..24, u, v) of the mirrored annotation."""
        x, y, part, u, v = np.asarray(points, np.float32).T
        old = part.astype(np.int64)
        u_index = np.clip(np.floor(u * (UV_GRID - 1)).astype(np.int64), 0, UV_GRID - 1)
        v_index = np.clip(np.floor(v * (UV_GRID - 1)).astype(np.int64), 0, UV_GRID - 1)
        return np.stack(
            [
                FRAME_SIZE - x,
                y,
                self.point_parts[old].astype(np.float32),
                self.u_transforms[old - 1, v_index, u_index],
                self.v_transforms[old - 1, v_index, u_index],
            ],
            axis=1,
        ).astype(np.float32)

    def flip_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """A ``(256, 256)`` coarse part label map of the mirrored annotation."""
        return self.mask_parts[np.asarray(segmentation)[:, ::-1]]


def _identity_uv() -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(UV_GRID, dtype=np.float32) / (UV_GRID - 1)
    u = np.broadcast_to(grid[None, None, :], (NUM_POINT_PARTS, UV_GRID, UV_GRID)).copy()
    v = np.broadcast_to(grid[None, :, None], (NUM_POINT_PARTS, UV_GRID, UV_GRID)).copy()
    return u, v


def synthetic_symmetry() -> ChartSymmetry:
    """The synthetic world's mirror: parts 1 <-> 2 and 3 <-> 4 (points and masks), ``u -> 1 - u``."""
    point_parts = np.arange(NUM_POINT_PARTS + 1)
    mask_parts = np.arange(NUM_MASK_PARTS + 1)
    for permutation in (point_parts, mask_parts):
        permutation[[1, 2, 3, 4]] = [2, 1, 4, 3]
    u, v = _identity_uv()
    return ChartSymmetry(point_parts, mask_parts, 1.0 - u, v)


def densepose_coco_symmetry(uv_symmetry_file: str | Path) -> ChartSymmetry:
    """DensePose-COCO's mirror: detectron2's label permutations and the official
    ``UV_symmetry_transforms.mat`` read from ``uv_symmetry_file`` (nothing is downloaded)."""
    import scipy.io

    path = Path(uv_symmetry_file)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: DensePose UV symmetry file not found; horizontal flips of DensePose-COCO need the "
            "official UV_symmetry_transforms.mat (detectron2's DensePose data), or set flip_prob to 0"
        )
    try:
        data = scipy.io.loadmat(path)
    except (ValueError, OSError) as error:
        raise DatasetFormatError(f"{path}: not a readable .mat file ({error})", "bad_densepose") from None
    tables = []
    for key in ("U_transforms", "V_transforms"):
        cells = data.get(key)
        if cells is None or cells.shape != (1, NUM_POINT_PARTS):
            shape = None if cells is None else cells.shape
            raise DatasetFormatError(
                f"{path}: '{key}' has shape {shape}, need (1, {NUM_POINT_PARTS}) cells of "
                f"{UV_GRID} x {UV_GRID}",
                "bad_densepose",
            )
        tables.append(np.stack([np.asarray(cells[0, i], np.float32) for i in range(NUM_POINT_PARTS)]))
    return ChartSymmetry(DENSEPOSE_COCO_POINT_PARTS, DENSEPOSE_COCO_MASK_PARTS, *tables)
