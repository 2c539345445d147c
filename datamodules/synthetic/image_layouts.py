"""Writers of the synthetic world in the generative family's folder layouts (read by
``datamodules.paired_images``, ``unpaired_images``, ``super_resolution``, ``style_transfer`` and
``class_images``):

- pix2pix A|B pairs, label map -> photo: ``<root>/<split>/<id:06d>.png``, A (left) the scene's colour-coded
  semantic label map (``LABEL_COLOURS``: stuff categories under thing classes), B (right) its photo;
- CycleGAN domains: ``<root>/<split>A/`` photos and ``<root>/<split>B/`` photos of OTHER scenes in
  another colour style (``domain_b_colours``: hues rotated by 120 degrees, brightened), so the domains
  are unpaired and their colour statistics differ;
- super-resolution HR renders: ``<root>/<split>/<id:06d>.png`` (sharp edges and fine stuff textures, which
  bicubic upscaling blurs);
- style transfer: content renders ``<root>/<split>/<id:06d>.png`` and one painting-like texture image
  ``<root>/style.png`` (``style_image``);
- class-conditional images: one centred thing per image, ``<root>/<split>/<class_name>/<id:06d>.png``.

Each writer renders each scene once, from its own stream ``scene_rng(seed, "<layout>-<split>...", index)``
(``datamodules.synthetic.coco_writer``), so an image depends on neither the counts nor the other layouts,
and the same arguments give byte-identical files.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from datamodules.synthetic.coco_writer import check_arguments, scene_rng, write_png
from datamodules.synthetic.render import checker_texture, noise_texture, stripe_texture
from datamodules.synthetic.world import (
    STUFF_CLASSES,
    THING_CLASSES,
    Scene,
    ThingClass,
    random_shape,
    render_scene,
    render_stuff,
)

_COLOURS_BY_NAME = {
    "circle": (220, 20, 60),
    "square": (0, 0, 230),
    "triangle": (250, 170, 30),
    "star": (220, 220, 0),
    "sky": (70, 130, 180),
    "grass": (107, 142, 35),
    "wall": (102, 102, 156),
    "water": (0, 80, 100),
}
LABEL_COLOURS: dict[int, tuple[int, int, int]] = {
    c.category_id: _COLOURS_BY_NAME[c.name] for c in (*THING_CLASSES, *STUFF_CLASSES)
}
"""The label map colour of each category id (Cityscapes-like: one flat colour per class)."""

CLASS_IMAGE_SIZE = 32
"""Side of the class-conditional images."""


def label_map(scene: Scene) -> np.ndarray:
    """The scene's semantic label map as RGB ``(S, S, 3)`` uint8: each pixel the colour of its stuff
    category, or of the class of the thing visible there (crowd regions included)."""
    palette = np.zeros((256, 3), np.uint8)
    for category_id, colour in LABEL_COLOURS.items():
        palette[category_id] = colour
    image = palette[scene.stuff_map]
    for thing in scene.things:
        image[thing.mask] = LABEL_COLOURS[thing.category_id]
    return image


_BRIGHTEN = np.round(255.0 * (np.arange(256) / 255.0) ** 0.7).astype(np.uint8)


def domain_b_colours(image: np.ndarray) -> np.ndarray:
    """CycleGAN domain B's colour style: hues rotated by +120 degrees (red -> green -> blue -> red, i.e.
    the RGB channels permuted cyclically) and brightened by a gamma of 0.7; deterministic and invertible
    up to 8-bit rounding."""
    return _BRIGHTEN[image[..., [2, 0, 1]]]


def style_image(image_size: int, seed: int = 0) -> np.ndarray:
    """A painting-like RGB ``(S, S, 3)`` uint8 image from the world's textures: vivid hue bands along wavy
    stripes, a mosaic of lighter and darker tiles, and a fine grain, like brush strokes."""
    rng = np.random.default_rng([seed, zlib.crc32(b"style")])
    bands, tiles, grain = (
        texture(rng, image_size) for texture in (stripe_texture, checker_texture, noise_texture)
    )
    hue = (280.0 + 110.0 * bands + 20.0 * grain) % 360.0
    saturation = np.clip(0.85 + 0.1 * grain, 0.0, 1.0)
    value = np.clip(0.7 + 0.2 * tiles + 0.08 * grain, 0.0, 1.0)
    hsv = np.stack([hue, saturation, value], axis=-1).astype(np.float32)
    return np.round(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0).astype(np.uint8)


def class_image(
    rng: np.random.Generator, thing_class: ThingClass, image_size: int = CLASS_IMAGE_SIZE
) -> np.ndarray:
    """One thing of ``thing_class`` near the centre (circumradius 0.3-0.42 of the image) on a single
    textured stuff region."""
    background, _ = render_stuff(rng, image_size, num_regions=1)
    center = image_size / 2 + rng.uniform(-0.05, 0.05, size=2) * image_size
    shape = random_shape(rng, thing_class, center, rng.uniform(0.3, 0.42) * image_size)
    image = background.copy()
    image[shape.full_mask(image_size)] = shape.colour
    return image


Draw = Callable[[np.random.Generator], np.ndarray]
"""Makes one RGB image from its generator."""


def _rendered(image_size: int, picture: Callable[[Scene], np.ndarray] = lambda scene: scene.image) -> Draw:
    """Render a scene, then make the image of it (default: its photo)."""
    return lambda rng: picture(render_scene(rng, image_size))


def _write_images(folder: Path, stream: str, num_images: int, seed: int, progress: bool, draw: Draw) -> Path:
    """Images ``<id:06d>.png``, id 1..num_images, in ``folder``: image i is ``draw(scene_rng(seed,
    stream, i))``; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in tqdm(
        range(num_images), desc=f"synthetic {stream}", unit="img", disable=None if progress else True
    ):
        write_png(folder / f"{index + 1:06d}.png", draw(scene_rng(seed, stream, index)))
    return folder


def write_pix2pix_split(
    root: Path, split: str, num_images: int, image_size: int = 128, seed: int = 0, progress: bool = False
) -> Path:
    """``num_images`` A|B pairs (label map | photo, ``2S x S``) in ``root/split``; return the folder."""
    check_arguments(split, num_images, image_size, seed)
    pair = _rendered(image_size, lambda scene: np.concatenate([label_map(scene), scene.image], axis=1))
    return _write_images(Path(root) / split, f"pix2pix-{split}", num_images, seed, progress, pair)


def write_cyclegan_split(
    root: Path,
    split: str,
    num_a: int,
    num_b: int,
    image_size: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> tuple[Path, Path]:
    """``num_a`` photos in ``root/<split>A`` and ``num_b`` photos of other scenes in domain B's colours
    (``domain_b_colours``) in ``root/<split>B``; return the two folders."""
    for count in (num_a, num_b):
        check_arguments(split, count, image_size, seed)
    a, b = f"{split}A", f"{split}B"
    return (
        _write_images(Path(root) / a, f"cyclegan-{a}", num_a, seed, progress, _rendered(image_size)),
        _write_images(
            Path(root) / b,
            f"cyclegan-{b}",
            num_b,
            seed,
            progress,
            _rendered(image_size, lambda scene: domain_b_colours(scene.image)),
        ),
    )


def write_super_resolution_split(
    root: Path, split: str, num_images: int, image_size: int = 128, seed: int = 0, progress: bool = False
) -> Path:
    """``num_images`` HR renders of ``image_size`` in ``root/split``; return the folder."""
    check_arguments(split, num_images, image_size, seed)
    return _write_images(Path(root) / split, f"sr-{split}", num_images, seed, progress, _rendered(image_size))


def write_style_transfer(
    root: Path,
    num_train: int,
    num_val: int,
    image_size: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Content renders in ``root/train`` and ``root/val`` and the style image ``root/style.png``
    (``style_image``); return the style image's path."""
    for split, count in (("train", num_train), ("val", num_val)):
        check_arguments(split, count, image_size, seed)
        _write_images(Path(root) / split, f"style-{split}", count, seed, progress, _rendered(image_size))
    path = Path(root) / "style.png"
    write_png(path, style_image(image_size, seed))
    return path


def write_class_images_split(
    root: Path,
    split: str,
    images_per_class: int,
    image_size: int = CLASS_IMAGE_SIZE,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """``images_per_class`` centred things of each thing class in ``root/split/<class_name>``; return
    ``root/split``."""
    check_arguments(split, images_per_class, image_size, seed)
    folder = Path(root) / split
    for thing_class in THING_CLASSES:
        _write_images(
            folder / thing_class.name,
            f"classes-{split}-{thing_class.name}",
            images_per_class,
            seed,
            progress,
            partial(class_image, thing_class=thing_class, image_size=image_size),
        )
    return folder
