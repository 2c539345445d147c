"""The input transform of the keypoint detectors (CenterNet, CornerNet): every image letterboxed into one
square network input -- the longest side scaled to ``input_size``, padded at the bottom and right -- and
normalised with the official COCO statistics. (The official test warps the image to the centre of the
square; only where the padding goes differs.) ``scales`` gives each image's factor, by which boxes go into
the input frame and, divided, back.

``test_padding=(divisor, minus)`` is the official test mode instead (CenterNet ``--keep_res``, CornerNet's
test): in eval mode every image keeps its resolution and is padded to ``(side // divisor + 1) * divisor -
minus`` -- CenterNet's ``(side | 31) + 1`` is (32, 0), CornerNet's ``side | 127`` is (128, 1) -- the batch
to its largest padded size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# the official COCO statistics (CenterNet ``datasets/dataset/coco.py``, CornerNet ``db/coco.py``), given
# there in BGR order; here in RGB
COCO_MEAN_RGB = (0.47026115, 0.44719302, 0.40789654)
COCO_STD_RGB = (0.27809835, 0.27408164, 0.28863828)


class LetterboxTransform(nn.Module):
    """Letterboxes images (B lists of (3, H, W) in [0, 1]) into a normalised (B, 3, S, S) tensor: the
    longest side scaled to ``input_size``, padding at the bottom and right. ``bgr`` reverses the channels
    for networks trained on BGR input (the official released weights: the official code reads images with
    OpenCV)."""

    def __init__(
        self,
        input_size: int = 512,
        mean: Sequence[float] = COCO_MEAN_RGB,
        std: Sequence[float] = COCO_STD_RGB,
        bgr: bool = False,
        test_padding: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.bgr = bgr
        self.test_padding = tuple(test_padding) if test_padding is not None else None
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)

    @property
    def keeps_resolution(self) -> bool:
        return self.test_padding is not None and not self.training

    def scales(self, images: Sequence[Tensor]) -> list[float]:
        if self.keeps_resolution:
            return [1.0] * len(images)
        return [self.input_size / max(image.shape[-2:]) for image in images]

    def padded_side(self, side: int) -> int:
        divisor, minus = self.test_padding or (1, 0)
        return (side // divisor + 1) * divisor - minus

    def forward(self, images: Sequence[Tensor]) -> Tensor:
        if self.keeps_resolution:
            height = max(self.padded_side(image.shape[-2]) for image in images)
            width = max(self.padded_side(image.shape[-1]) for image in images)
        else:
            height = width = self.input_size
        batch = images[0].new_zeros(len(images), 3, height, width)
        for i, (image, scale) in enumerate(zip(images, self.scales(images), strict=True)):
            size = tuple(
                min(round(s * scale), limit)
                for s, limit in zip(image.shape[-2:], (height, width), strict=True)
            )
            if size != tuple(image.shape[-2:]):
                image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
            batch[i, :, : size[0], : size[1]] = (image - self.mean) / self.std
        return batch.flip(1) if self.bgr else batch


def image_region(maps: Tensor, image_hw: Sequence[int], scale: float, stride: float) -> Tensor:
    """The part of (..., h, w) output maps of stride ``stride`` that covers an image of ``image_hw``
    letterboxed by ``scale`` (the padding cut off), e.g. for drawing a heatmap over the image."""
    height, width = (max(1, math.ceil(side * scale / stride)) for side in image_hw)
    return maps[..., :height, :width]
