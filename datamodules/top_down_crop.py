"""The top-down affine crop: one instance's box, padded to the network input's aspect ratio, warped to
the input size, with the same matrix moving its keypoints.

Coordinates are the batch convention's (``datamodules.batch``): continuous pixel coordinates, pixel i
covering [i, i + 1). ``top_down_affine`` returns the (2, 3) float64 matrix M of that frame: a source
point p goes to the crop point ``M @ (x, y, 1)`` (``transform_points``), and ``invert_affine(M)`` is the
batch's ``crop_to_image``. OpenCV addresses pixels by index, its pixel i sitting at our x = i + 0.5;
``warp_image`` converts M to that convention, so image and keypoints stay aligned to a small fraction of
a pixel (``tests/test_top_down_crop.py`` measures it).

The crop follows SimpleBaseline (Xiao et al., ECCV 2018, Sec. 4: the box extended to the input's
aspect ratio, then by a padding factor of 1.25; mmpose's ``bbox_xyxy2cs`` + ``TopdownAffine``), with
random scale and rotation about the box centre and a horizontal flip of the crop on top.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

PADDING = 1.25
"""The box is enlarged by this factor around its centre (SimpleBaseline / mmpose)."""


def box_center_size(
    box: Sequence[float], aspect_ratio: float, padding: float = PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """Centre (2,) and size (2,) (width, height) of the source region for an XYXY box: the box grown
    along its shorter side to ``aspect_ratio`` (input width / height), then by ``padding`` on both sides.

    Raises ``ValueError`` for a box without area (or with non-finite corners): it has no scale to crop at.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = x2 - x1, y2 - y1
    if not (np.isfinite([x1, y1, x2, y2]).all() and width > 0 and height > 0):
        raise ValueError(f"box {[x1, y1, x2, y2]} has no area: cannot crop it")
    if aspect_ratio <= 0:
        raise ValueError(f"aspect_ratio must be positive, got {aspect_ratio}")
    if width > aspect_ratio * height:
        height = width / aspect_ratio
    else:
        width = height * aspect_ratio
    center = np.array([(x1 + x2) / 2, (y1 + y2) / 2], dtype=np.float64)
    return center, np.array([width, height], dtype=np.float64) * padding


def top_down_affine(
    center: Sequence[float],
    size: Sequence[float],
    output_size: tuple[int, int],
    rotation_degrees: float = 0.0,
    flip: bool = False,
) -> np.ndarray:
    """The (2, 3) float64 matrix taking source pixel coordinates to crop coordinates.

    The source rectangle of ``size`` (width, height) centred at ``center`` fills the crop of
    ``output_size`` (width, height); ``rotation_degrees`` > 0 turns the crop's content counter-clockwise
    as seen on screen (``cv2.getRotationMatrix2D``'s sense); ``flip`` mirrors the crop last (x -> W - x),
    so keypoints then need the layout's flip permutation.
    """
    out_w, out_h = output_size
    angle = np.deg2rad(rotation_degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.array([[cos, sin], [-sin, cos]])  # y points down: this turns content counter-clockwise
    scale = np.diag([out_w / size[0] * (-1.0 if flip else 1.0), out_h / size[1]])
    linear = scale @ rotation
    translation = np.array([out_w / 2, out_h / 2]) - linear @ np.asarray(center, dtype=np.float64)
    return np.concatenate([linear, translation[:, None]], axis=1)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(..., 2) x, y moved by the (2, 3) affine ``matrix`` (array or CPU tensor), as float64."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 4) XYXY boxes -> the XYXY bounds of their four moved corners (exact without rotation)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corners = boxes[:, [[0, 1], [2, 1], [2, 3], [0, 3]]]  # (N, 4 corners, 2)
    moved = transform_points(corners, matrix)
    return np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse (2, 3) affine (``cv2.invertAffineTransform``), e.g. crop -> image for ``crop_to_image``."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def to_pixel_index_matrix(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` in OpenCV's convention, where pixel i's centre is at i (ours is at i + 0.5):
    q + 1/2 = A (p + 1/2) + t, so q = A p + (t + A 1/2 - 1/2)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    linear, translation = matrix[:, :2], matrix[:, 2]
    half = np.array([0.5, 0.5])
    return np.concatenate([linear, (translation + linear @ half - half)[:, None]], axis=1)


def warp_image(
    image: np.ndarray,
    matrix: np.ndarray,
    output_size: tuple[int, int],
    interpolation: int = cv2.INTER_LINEAR,
    border_value: float = 0.0,
) -> np.ndarray:
    """The (h, w[, C]) crop of ``image`` under ``matrix`` (source -> crop, our pixel frame), with
    ``cv2.warpAffine``; outside the source reads ``border_value``."""
    return cv2.warpAffine(
        image,
        to_pixel_index_matrix(matrix),
        (int(output_size[0]), int(output_size[1])),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )
