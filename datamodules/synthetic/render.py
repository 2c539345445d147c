"""Drawing primitives of the synthetic world: unit shape outlines, stuff textures, colours, polygon fill.

Coordinates follow the COCO polygon convention: pixel ``(x, y)`` covers ``[x, x+1) x [y, y+1)``, so its
centre is ``(x + 0.5, y + 0.5)``. Textures are float32 ``(S, S)`` arrays in ``[-1, 1]`` drawn from a
numpy ``Generator``; everything here is plain numpy/OpenCV/pycocotools arithmetic, so it is
deterministic per seed.
"""

import colorsys
import math

import cv2
import numpy as np
from pycocotools import mask as mask_utils

Outline = tuple[tuple[float, float], ...]


def regular_polygon(num_vertices: int) -> Outline:
    """Vertices of a regular polygon with circumradius 1 around the origin, first vertex pointing up."""
    angles = [-math.pi / 2 + 2 * math.pi * i / num_vertices for i in range(num_vertices)]
    return tuple((round(math.cos(a), 12), round(math.sin(a), 12)) for a in angles)


def star(num_points: int, inner_ratio: float) -> Outline:
    """Vertices of a star with outer radius 1 and inner radius ``inner_ratio``, alternating tip/notch."""
    tips = regular_polygon(2 * num_points)
    return tuple(
        (x * (1.0 if i % 2 == 0 else inner_ratio), y * (1.0 if i % 2 == 0 else inner_ratio))
        for i, (x, y) in enumerate(tips)
    )


def hsv_to_rgb255(hue_degrees: float, saturation: float, value: float) -> np.ndarray:
    """One colour as a float64 RGB triple in [0, 255]."""
    return np.array(colorsys.hsv_to_rgb((hue_degrees % 360.0) / 360.0, saturation, value)) * 255.0


def fill_polygon(points: np.ndarray, image_size: int) -> np.ndarray:
    """Boolean ``(S, S)`` mask of the polygon ``points`` ``(N >= 3, 2)`` rasterized as COCO does (pycocotools:
    the pixels whose centres lie inside, with vertices rounded to 1/5 px), clipped to the image."""
    rle = mask_utils.frPyObjects([np.asarray(points, np.float64).ravel().tolist()], image_size, image_size)
    return mask_utils.decode(rle)[..., 0].astype(bool)


def _normalise(texture: np.ndarray) -> np.ndarray:
    texture = texture - texture.mean()
    scale = np.abs(texture).max()
    return (texture / scale if scale > 0 else texture).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, image_size: int, sigma: float) -> np.ndarray:
    noise = rng.standard_normal((image_size, image_size)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


def _grid(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:image_size, 0:image_size].astype(np.float32) + 0.5
    return xs, ys


def gradient_texture(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Sky: a vertical brightness gradient with faint large-scale clouds."""
    _, ys = _grid(image_size)
    clouds = _normalise(_smooth_noise(rng, image_size, sigma=image_size / 10))
    return _normalise(ys / image_size + 0.3 * clouds)


def noise_texture(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Grass: fine blurred noise."""
    return _normalise(_smooth_noise(rng, image_size, sigma=float(rng.uniform(0.6, 1.2))))


def checker_texture(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Wall: a rotated checkerboard (tiles of 6-14 px)."""
    xs, ys = _grid(image_size)
    period, theta = rng.uniform(6.0, 14.0), rng.uniform(0.0, math.pi / 2)
    u = (xs * math.cos(theta) + ys * math.sin(theta)) / period
    v = (-xs * math.sin(theta) + ys * math.cos(theta)) / period
    checker = (np.floor(u) + np.floor(v)) % 2 * 2.0 - 1.0
    return _normalise(checker + 0.3 * _smooth_noise(rng, image_size, sigma=1.0))


def stripe_texture(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Water: wavy sinusoidal stripes (period 5-12 px) at a random angle."""
    xs, ys = _grid(image_size)
    period, theta, phase = rng.uniform(5.0, 12.0), rng.uniform(0.0, math.pi), rng.uniform(0.0, 2 * math.pi)
    wobble = 2.0 * np.sin(2 * math.pi * ys / rng.uniform(20.0, 40.0))
    return _normalise(
        np.sin(2 * math.pi * (xs * math.cos(theta) + ys * math.sin(theta) + wobble) / period + phase)
    )


def region_layout(rng: np.random.Generator, image_size: int, num_regions: int) -> np.ndarray:
    """Region index ``(S, S)`` int64 in ``[0, num_regions)``: a Voronoi partition with wavy borders."""
    xs, ys = _grid(image_size)
    warp = image_size / 12
    xs = xs + warp * np.sin(
        2 * math.pi * ys / (image_size * rng.uniform(0.4, 0.9)) + rng.uniform(0, 2 * math.pi)
    )
    ys = ys + warp * np.sin(
        2 * math.pi * xs / (image_size * rng.uniform(0.4, 0.9)) + rng.uniform(0, 2 * math.pi)
    )
    sites = rng.uniform(0.0, image_size, size=(num_regions, 2))
    distances = (xs[None] - sites[:, 0, None, None]) ** 2 + (ys[None] - sites[:, 1, None, None]) ** 2
    return distances.argmin(axis=0)
