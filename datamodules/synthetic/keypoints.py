"""Keypoints of the synthetic world's things: the centre, then points of the outline, in an order that is
canonical in image space.

Per thing class (K = 1 + outline points):

- circle (K = 5): ``centre, top, right, bottom, left`` -- every 12th vertex of its 48-gon;
- square (K = 5): ``centre, corner_1 .. corner_4``;
- triangle (K = 4): ``centre, corner_1 .. corner_3``;
- star (K = 11): ``centre, tip_1, inner_1, tip_2, inner_2, .., tip_5, inner_5`` (``inner_k`` is the inner
  corner between ``tip_k`` and ``tip_k+1``).

A shape looks the same after a turn by its symmetry angle, so the outline vertex that comes first in its
``unit_outline`` cannot be seen in the image. The first outline keypoint is therefore the *candidate*
vertex (every vertex of the polygons and of the circle's 48-gon, every tip of the star) whose direction
from the centre is closest to straight up on screen (y points down); the others follow clockwise on
screen. For the circle the candidates are all 48 vertices, not just the 4 keypoints: ``top`` is then
within 3.75 degrees of straight up (the 48-gon's facets are all the image shows of its angle).
A horizontal flip keeps the first outline point and reverses the order, so outline point k swaps with
``(n - k) mod n`` (keypoint ``1 + k`` with ``1 + (n - k) mod n``): the layout's ``flip_pairs``.

Visibility (COCO's v): 0 outside the image (unlabelled, written as x = y = 0), 1 inside the image but under
the full outline of a thing painted above (exact point-in-polygon, not the rasterized mask), else 2.
Crowd regions get no keypoints.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from datamodules.keypoint_layouts import KeypointLayout
from datamodules.synthetic.world import THING_CLASSES, Scene, Shape, ThingClass

# Rasterization (pixel-centre sampling, no antialiasing) places a corner's visible position uniformly
# within a pixel: 0.41 px rms radial error, over s = sqrt(area) ~ 20 px of a typical star sigma ~ 0.02;
# COCO's eye sigma 0.025 (its most precise points) rounds that up.
OKS_SIGMA = 0.025


@dataclass(frozen=True)
class OutlineKeypoints:
    """Which outline vertices of a class are keypoints: ``names`` of them, every ``stride``-th vertex
    clockwise from the canonical start, chosen among every ``period``-th vertex (the shape's symmetry)."""

    names: tuple[str, ...]
    stride: int = 1
    period: int = 1

    def is_corner(self, k: int) -> bool:
        """Is outline keypoint ``k`` a start candidate (a tip or corner: it gets a spoke from the centre)?"""
        return k * self.stride % self.period == 0


OUTLINE_KEYPOINTS: dict[str, OutlineKeypoints] = {
    "circle": OutlineKeypoints(("top", "right", "bottom", "left"), stride=12),
    "square": OutlineKeypoints(tuple(f"corner_{i}" for i in range(1, 5))),
    "triangle": OutlineKeypoints(tuple(f"corner_{i}" for i in range(1, 4))),
    "star": OutlineKeypoints(
        tuple(name for i in range(1, 6) for name in (f"tip_{i}", f"inner_{i}")), period=2
    ),
}


def _outline_keypoints(name: str) -> OutlineKeypoints:
    if name not in OUTLINE_KEYPOINTS:
        raise ValueError(f"no keypoints for thing class {name!r} (have {', '.join(OUTLINE_KEYPOINTS)})")
    return OUTLINE_KEYPOINTS[name]


def _is_clockwise(polygon: np.ndarray) -> bool:
    """Does ``polygon`` (N, 2) run clockwise on screen (y down), i.e. have a positive shoelace sum?"""
    x, y = polygon[:, 0], polygon[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) > 0


def shape_keypoints(shape: Shape) -> np.ndarray:
    """``(K, 2)`` float64 image coordinates (x, y) of ``shape``'s keypoints: its centre, then its outline
    keypoints from the one closest to straight up, clockwise on screen (module docstring)."""
    spec = _outline_keypoints(shape.thing_class.name)
    outline = shape.outline()
    center = np.asarray(shape.center, np.float64)
    candidates = np.arange(0, len(outline), spec.period)
    offsets = outline[candidates] - center
    angle_from_up = np.arctan2(offsets[:, 0], -offsets[:, 1])
    start = int(candidates[np.argmin(np.abs(angle_from_up))])
    step = spec.stride if _is_clockwise(outline) else -spec.stride
    indices = (start + step * np.arange(len(spec.names))) % len(outline)
    return np.vstack([center, outline[indices]])


def shape_keypoint_layout(name: str = "star") -> KeypointLayout:
    """The ``KeypointLayout`` of thing class ``name`` (circle, square, triangle or star): names as in the
    module docstring; flip pairs keypoint ``1 + k`` <-> ``1 + (n - k) mod n``; skeleton the outline edges
    and spokes from the centre to the tips and corners; uniform OKS sigmas ``OKS_SIGMA``; NME normalised by
    the box size. From YAML: ``layout: {class_path: datamodules.synthetic.keypoints.shape_keypoint_layout,
    init_args: {name: star}}``."""
    spec = _outline_keypoints(name)
    n = len(spec.names)
    flip_pairs = tuple((1 + k, 1 + (n - k) % n) for k in range(1, n) if k < (n - k) % n)
    edges = tuple((1 + k, 1 + (k + 1) % n) for k in range(n))
    spokes = tuple((0, 1 + k) for k in range(n) if spec.is_corner(k))
    return KeypointLayout(
        names=("centre", *spec.names),
        flip_pairs=flip_pairs,
        skeleton=edges + spokes,
        oks_sigmas=(OKS_SIGMA,) * (n + 1),
        normalizing_keypoints=None,
    )


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean ``(P,)``: which of ``points`` (P, 2) lie inside ``polygon`` (N, 2), by the even-odd rule
    (a horizontal ray to the right crosses the outline an odd number of times), in float64."""
    points, polygon = np.asarray(points, np.float64), np.asarray(polygon, np.float64)
    x, y = points[:, :1], points[:, 1:]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    straddles = (y0 > y) != (y1 > y)  # (P, N); such an edge has y1 != y0
    dy = np.where(y1 != y0, y1 - y0, 1.0)
    crossing_x = x0 + (y - y0) * (x1 - x0) / dy
    return (straddles & (x < crossing_x)).sum(axis=1) % 2 == 1


def keypoint_visibility(
    points: np.ndarray, occluders: Sequence[Shape], width: int, height: int
) -> np.ndarray:
    """COCO visibility ``(K,)`` int64 of ``points`` (K, 2): 0 outside the ``width`` x ``height`` image
    (which covers [0, width) x [0, height)), 1 inside a shape of ``occluders`` (the shapes painted above),
    else 2."""
    points = np.asarray(points, np.float64)
    x, y = points[:, 0], points[:, 1]
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    covered = np.zeros(len(points), bool)
    for shape in occluders:
        covered |= points_in_polygon(points, shape.outline())
    return np.where(inside, np.where(covered, 1, 2), 0).astype(np.int64)


def scene_keypoints(scene: Scene) -> list[np.ndarray]:
    """Per thing of ``scene`` (bottom to top), ``(K, 3)`` float64 x, y, v in the COCO convention: points
    with v = 0 get x = y = 0, and crowd regions are all zeros."""
    height, width = scene.image.shape[:2]
    result = []
    for position, thing in enumerate(scene.things):
        count = 1 + len(_outline_keypoints(thing.thing_class.name).names)
        keypoints = np.zeros((count, 3))
        if not thing.iscrowd:
            points = shape_keypoints(thing.shape)
            above = [shape for upper in scene.things[position + 1 :] for shape in upper.shapes]
            visibility = keypoint_visibility(points, above, width, height)
            keypoints[:, :2] = np.where(visibility[:, None] > 0, points, 0.0)
            keypoints[:, 2] = visibility
        result.append(keypoints)
    return result


def keypoint_category(thing_class: ThingClass) -> dict[str, Any]:
    """The COCO keypoint category of ``thing_class``: its keypoint names and its 1-based skeleton."""
    layout = shape_keypoint_layout(thing_class.name)
    return {
        "id": thing_class.category_id,
        "name": thing_class.name,
        "supercategory": thing_class.supercategory,
        "keypoints": list(layout.names),
        "skeleton": [[a + 1, b + 1] for a, b in layout.skeleton],
    }


def keypoint_categories() -> list[dict[str, Any]]:
    """The thing categories of the synthetic world in COCO keypoint form."""
    return [keypoint_category(c) for c in THING_CLASSES]
