"""The synthetic world: shapes ("things") of a few classes on textured "stuff" regions, as ``Scene`` objects.

A scene is rendered once from a numpy ``Generator`` and then written by format-specific writers
(``datamodules.synthetic.coco_writer``), so every format sees the same world. Things keep their full shape
parameters (class, centre, size, angle, colour), from which keypoints and a (u, v) surface
parameterisation can be derived (``Shape.to_image`` / ``Shape.to_local``), and their *visible* mask:
later things paint over earlier ones, and a thing whose visible part falls below
``SceneConfig.min_visible_fraction`` of its full area is left out (not painted, not annotated).
Coordinates follow the COCO convention of ``datamodules.synthetic.render``.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from datamodules.synthetic.render import (
    Outline,
    checker_texture,
    fill_polygon,
    gradient_texture,
    hsv_to_rgb255,
    noise_texture,
    region_layout,
    regular_polygon,
    star,
    stripe_texture,
)


@dataclass(frozen=True)
class ThingClass:
    """A class of shapes: COCO category id (from 1), name, outline with circumradius 1, hue range
    (degrees)."""

    category_id: int
    name: str
    unit_outline: Outline
    hue_range: tuple[float, float]
    supercategory: str = "shape"


@dataclass(frozen=True)
class StuffClass:
    """A background region class: category id (after the thing ids), colour ranges, texture and its
    contrast."""

    category_id: int
    name: str
    hue: float
    saturation_range: tuple[float, float]
    value_range: tuple[float, float]
    texture: Callable[[np.random.Generator, int], np.ndarray]
    contrast: float
    supercategory: str = "background"


# Hue ranges overlap a little, so colour alone does not always give the class away.
THING_CLASSES: tuple[ThingClass, ...] = (
    ThingClass(1, "circle", regular_polygon(48), (-30.0, 70.0)),
    ThingClass(2, "square", regular_polygon(4), (60.0, 160.0)),
    ThingClass(3, "triangle", regular_polygon(3), (150.0, 250.0)),
    ThingClass(4, "star", star(5, 0.5), (240.0, 340.0)),
)

# Low saturation and value, mild texture: backgrounds stay lower-contrast than the saturated, bright things.
STUFF_CLASSES: tuple[StuffClass, ...] = (
    StuffClass(5, "sky", 210.0, (0.15, 0.35), (0.45, 0.65), gradient_texture, 0.15),
    StuffClass(6, "grass", 100.0, (0.2, 0.4), (0.3, 0.5), noise_texture, 0.2),
    StuffClass(7, "wall", 30.0, (0.05, 0.25), (0.35, 0.6), checker_texture, 0.12),
    StuffClass(8, "water", 195.0, (0.25, 0.45), (0.3, 0.5), stripe_texture, 0.15),
)


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are sampled. Sizes are circumradii as fractions of the image size."""

    min_things: int = 1
    max_things: int = 5
    size_range: tuple[float, float] = (0.07, 0.2)
    max_occlusion: float = 0.4  # a new thing may cover at most this fraction of each earlier thing
    placement_tries: int = 20
    min_visible_fraction: float = 0.25
    min_visible_pixels: int = 16
    crowd_prob: float = 0.1  # probability of one iscrowd region (a cluster of small shapes of one class)
    crowd_members: tuple[int, int] = (6, 12)
    crowd_size_range: tuple[float, float] = (0.02, 0.035)
    crowd_spread: float = 0.06  # standard deviation of member centres, as a fraction of the image size


@dataclass(frozen=True)
class Shape:
    """One shape: ``to_image`` maps unit-outline coordinates to pixels (scale by ``size``, rotate by ``angle``
    radians -- clockwise on screen, since y points down -- then translate to ``center`` (x, y))."""

    thing_class: ThingClass
    center: tuple[float, float]
    size: float
    angle: float
    colour: tuple[int, int, int]

    def _rotation(self) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.array([[c, -s], [s, c]])

    def to_image(self, local: np.ndarray) -> np.ndarray:
        """``(N, 2)`` shape-local points (circumradius 1) -> ``(N, 2)`` image points (x, y)."""
        return np.asarray(local, np.float64) @ self._rotation().T * self.size + np.asarray(self.center)

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """Inverse of ``to_image``."""
        return (np.asarray(points, np.float64) - np.asarray(self.center)) @ self._rotation() / self.size

    def outline(self) -> np.ndarray:
        """The polygon ``(N, 2)`` in image coordinates."""
        return self.to_image(np.array(self.thing_class.unit_outline))

    def full_mask(self, image_size: int) -> np.ndarray:
        """Boolean ``(S, S)`` mask of the whole (unoccluded) shape, clipped to the image."""
        return fill_polygon(self.outline(), image_size)


@dataclass(eq=False)  # holds arrays: compare by identity
class Thing:
    """A thing instance: one shape, or several small ones for a crowd region (``iscrowd``).

    ``mask`` is the visible part, boolean ``(H, W)``; ``instance_id`` is unique within its scene."""

    instance_id: int
    shapes: tuple[Shape, ...]
    mask: np.ndarray
    iscrowd: bool = False

    @property
    def thing_class(self) -> ThingClass:
        return self.shapes[0].thing_class

    @property
    def category_id(self) -> int:
        return self.thing_class.category_id

    @property
    def shape(self) -> Shape:
        """The shape of a single (non-crowd) thing."""
        if len(self.shapes) != 1:
            raise ValueError(f"thing {self.instance_id} is a crowd of {len(self.shapes)} shapes")
        return self.shapes[0]


@dataclass(eq=False)
class Scene:
    """A rendered scene: RGB uint8 ``image`` (H, W, 3), ``stuff_map`` (H, W) uint8 of stuff category ids
    under everything (things paint over it), and ``things`` from bottom to top."""

    image: np.ndarray
    stuff_map: np.ndarray
    things: list[Thing]


Layer = tuple[int, tuple[Shape, ...], bool]  # (instance id, shapes, iscrowd), bottom to top


def render_stuff(
    rng: np.random.Generator, image_size: int, num_regions: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Textured background ``(S, S, 3)`` uint8 and its stuff label map ``(S, S)`` uint8 (category ids), of
    ``num_regions`` regions (default: 2-4, drawn from ``rng``)."""
    num_regions = int(rng.integers(2, 5)) if num_regions is None else num_regions
    regions = region_layout(rng, image_size, num_regions)
    class_of_region = rng.integers(len(STUFF_CLASSES), size=num_regions)
    stuff_map = np.array([STUFF_CLASSES[c].category_id for c in class_of_region], np.uint8)[regions]
    image = np.zeros((image_size, image_size, 3), np.float64)
    for stuff in (STUFF_CLASSES[c] for c in sorted(set(class_of_region.tolist()))):
        colour = hsv_to_rgb255(
            stuff.hue + rng.uniform(-10.0, 10.0),
            rng.uniform(*stuff.saturation_range),
            rng.uniform(*stuff.value_range),
        )
        texture = stuff.texture(rng, image_size)
        region = stuff_map == stuff.category_id
        image[region] = colour * (1.0 + stuff.contrast * texture[region, None])
    return np.clip(np.round(image), 0, 255).astype(np.uint8), stuff_map


def random_shape(rng: np.random.Generator, thing_class: ThingClass, center: np.ndarray, size: float) -> Shape:
    """A shape of ``thing_class`` with a random angle and a saturated, bright colour from the class hue
    range."""
    angle = float(rng.uniform(0.0, 2 * np.pi))
    rgb = hsv_to_rgb255(rng.uniform(*thing_class.hue_range), rng.uniform(0.6, 1.0), rng.uniform(0.75, 1.0))
    colour = tuple(int(v) for v in np.round(rgb))
    return Shape(thing_class, (float(center[0]), float(center[1])), float(size), angle, colour)


def sample_crowd(rng: np.random.Generator, image_size: int, config: SceneConfig) -> tuple[Shape, ...]:
    """A cluster of small shapes of one class (written as one iscrowd region)."""
    thing_class = THING_CLASSES[int(rng.integers(len(THING_CLASSES)))]
    middle = rng.uniform(0.15 * image_size, 0.85 * image_size, size=2)
    count = int(rng.integers(config.crowd_members[0], config.crowd_members[1] + 1))
    centers = np.clip(
        middle + rng.normal(0.0, config.crowd_spread * image_size, size=(count, 2)), 0, image_size
    )
    sizes = rng.uniform(*config.crowd_size_range, size=count) * image_size
    return tuple(random_shape(rng, thing_class, c, s) for c, s in zip(centers, sizes, strict=True))


def sample_things(rng: np.random.Generator, image_size: int, config: SceneConfig) -> list[Shape]:
    """1 shape per thing, bottom to top; each new one covers at most ``max_occlusion`` of each earlier one."""
    shapes: list[Shape] = []
    masks: list[np.ndarray] = []
    for _ in range(int(rng.integers(config.min_things, config.max_things + 1))):
        thing_class = THING_CLASSES[int(rng.integers(len(THING_CLASSES)))]
        for _ in range(config.placement_tries):
            size = rng.uniform(*config.size_range) * image_size
            center = rng.uniform(0.7 * size, image_size - 0.7 * size, size=2)
            shape = random_shape(rng, thing_class, center, size)
            mask = shape.full_mask(image_size)
            if all((mask & m).sum() <= config.max_occlusion * m.sum() for m in masks):
                shapes.append(shape)
                masks.append(mask)
                break
    return shapes


def paint_things(
    background: np.ndarray, layers: Sequence[Layer], config: SceneConfig
) -> tuple[np.ndarray, list[Thing]]:
    """Paint ``layers`` bottom to top over ``background``; return the image and the kept things.

    Visible masks are computed top-down, so a dropped thing (visible area below
    ``max(min_visible_pixels, min_visible_fraction * full area)``) neither occludes nor gets painted."""
    image_size = background.shape[0]
    shape_masks = [[shape.full_mask(image_size) for shape in shapes] for _, shapes, _ in layers]
    covered = np.zeros(background.shape[:2], bool)
    kept: list[tuple[Thing, list[np.ndarray]]] = []
    for (instance_id, shapes, iscrowd), masks in reversed(list(zip(layers, shape_masks, strict=True))):
        full = np.logical_or.reduce(masks)
        visible = full & ~covered
        if visible.sum() < max(config.min_visible_pixels, config.min_visible_fraction * full.sum()):
            continue
        covered |= full
        kept.append((Thing(instance_id, shapes, visible, iscrowd), masks))
    kept.reverse()
    image = background.copy()
    for thing, masks in kept:
        for shape, mask in zip(thing.shapes, masks, strict=True):
            image[mask & thing.mask] = shape.colour
    return image, [thing for thing, _ in kept]


def render_scene(rng: np.random.Generator, image_size: int, config: SceneConfig | None = None) -> Scene:
    """Sample and render one scene: stuff background, an optional crowd region at the bottom, then things.

    Instance ids count 1, 2, ... in sampling order (bottom to top); dropped things leave gaps."""
    config = config or SceneConfig()
    background, stuff_map = render_stuff(rng, image_size)
    crowd = sample_crowd(rng, image_size, config) if rng.random() < config.crowd_prob else ()
    layers: list[Layer] = [(1, crowd, True)] if crowd else []
    layers += [
        (len(layers) + 1 + i, (shape,), False)
        for i, shape in enumerate(sample_things(rng, image_size, config))
    ]
    image, things = paint_things(background, layers, config)
    return Scene(image, stuff_map, things)
