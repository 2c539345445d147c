"""pix2pix/CycleGAN's "random jitter": resize to ``load_size``, crop ``crop_size`` at a random position,
flip horizontally with probability 0.5 (pix2pix, Isola et al. 2017, appendix "Training details": 256 ->
286 -> random 256 crop, and mirroring; the official code's ``get_params`` + ``get_transform`` with
``--preprocess resize_and_crop``). A draw is separate from its application, so pix2pix applies one draw
to A and B (the same crop and flip) and CycleGAN one draw per domain.

Evaluation (the official ``test.py``: ``load_size = crop_size``, ``no_flip``) resizes to ``crop_size``
and draws nothing. Resizing is PIL's bicubic (antialiased when shrinking), which torchvision's
``Resize(..., BICUBIC)`` calls on PIL images in the official code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image


class JitterDraw(NamedTuple):
    """One draw: the crop's top-left corner in the resized image and whether to flip."""

    left: int
    top: int
    flip: bool


@dataclass(frozen=True)
class RandomJitter:
    """Resize to ``load_size`` x ``load_size``, random ``crop_size`` crop, horizontal flip with
    probability 0.5 when ``flip`` (the official ``--no_flip`` turns it off)."""

    load_size: int = 286
    crop_size: int = 256
    flip: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.crop_size <= self.load_size:
            raise ValueError(
                f"need 0 < crop_size <= load_size, got crop_size {self.crop_size}, load_size {self.load_size}"
            )

    def draw(self, rng: np.random.Generator) -> JitterDraw:
        """The crop corner (uniform over every position, as ``random.randint(0, load - crop)``) and the
        flip, in that order from ``rng``."""
        span = self.load_size - self.crop_size + 1
        left, top = int(rng.integers(span)), int(rng.integers(span))
        return JitterDraw(left, top, bool(rng.random() < 0.5) and self.flip)

    def apply(self, image: Image.Image, draw: JitterDraw) -> Image.Image:
        size = self.load_size
        image = image.resize((size, size), Image.Resampling.BICUBIC)
        image = image.crop((draw.left, draw.top, draw.left + self.crop_size, draw.top + self.crop_size))
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if draw.flip else image

    def evaluate(self, image: Image.Image) -> Image.Image:
        """The evaluation transform: resize to ``crop_size`` x ``crop_size``, nothing random."""
        return image.resize((self.crop_size, self.crop_size), Image.Resampling.BICUBIC)
