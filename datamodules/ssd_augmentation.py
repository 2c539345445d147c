"""SSD's training augmentation as YOLACT trains with it (official ``utils/augmentations.py``,
``SSDAugmentation``; Liu et al. 2016, "SSD", Sec. 2.2 "Data augmentation"), as albumentations
transforms so masks, boxes and labels stay in sync (``instance_transforms``):

photometric distortion -> expand (p 0.5, zoom-out onto a mean-filled canvas up to 4x) -> random sample
crop (SSD's IoU-constrained crop) -> horizontal flip (p 0.5) -> resize to ``size`` x ``size``, boxes
narrower or lower than 4 px at that size dropped (the official ``discard_box_width/height``).

Albumentations has the flip and the resize; the other three are written here because no
albumentations transform draws SSD's parameters: additive brightness, contrast before or after the
HSV saturation/hue changes in random order, a canvas ratio shared by both sides, the crop's minimum-
IoU modes and its keep-a-box-if-its-centre-is-inside rule. The official code distorts a float image
without clipping; here the result is clipped to uint8, which changes only pixels pushed beyond 0-255.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.crops.transforms import BaseCrop

from datamodules.instance_transforms import instance_bbox_params

YOLACT_MEAN_RGB = (123.68, 116.78, 103.94)
SAMPLE_MODES = (None, (0.1, None), (0.3, None), (0.7, None), (0.9, None), (None, None))
"""The official crop modes: keep the image, a minimum IoU with some box, or any crop."""


class PhotometricDistort(A.ImageOnlyTransform):
    """Brightness +-32 (p 0.5), then either contrast x[0.5, 1.5] before or after saturation
    x[0.5, 1.5] and hue +-18 degrees in HSV (each p 0.5), as the official ``PhotometricDistort``."""

    def __init__(
        self, brightness: float = 32, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue: float = 18, p=1.0
    ):
        super().__init__(p=p)
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def get_params(self) -> dict[str, Any]:
        rand = self.py_random
        return {
            "brightness": rand.uniform(-self.brightness, self.brightness) if rand.random() < 0.5 else 0.0,
            "contrast_first": rand.random() < 0.5,
            "contrast": rand.uniform(*self.contrast) if rand.random() < 0.5 else 1.0,
            "saturation": rand.uniform(*self.saturation) if rand.random() < 0.5 else 1.0,
            "hue": rand.uniform(-self.hue, self.hue) if rand.random() < 0.5 else 0.0,
        }

    def apply(self, img, brightness, contrast_first, contrast, saturation, hue, **params):
        image = img.astype(np.float32) + brightness
        if contrast_first:
            image = image * contrast
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # float32: H in [0, 360)
        hsv[..., 1] *= saturation
        hsv[..., 0] = (hsv[..., 0] + hue) % 360.0
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if not contrast_first:
            image = image * contrast
        return np.clip(image, 0, 255).astype(np.uint8)


class Expand(A.Pad):
    """With probability ``p``, place the image at a random position on a canvas ``ratio`` times its
    size (ratio uniform in [1, ``max_ratio``]) filled with ``fill`` (the dataset mean)."""

    def __init__(self, max_ratio: float = 4.0, fill=YOLACT_MEAN_RGB, p: float = 0.5):
        super().__init__(padding=0, fill=tuple(fill), fill_mask=0, p=p)
        self.max_ratio = max_ratio

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        ratio = self.py_random.uniform(1, self.max_ratio)
        left = int(self.py_random.uniform(0, width * ratio - width))
        top = int(self.py_random.uniform(0, height * ratio - height))
        return {
            "pad_top": top,
            "pad_left": left,
            "pad_bottom": int(height * ratio) - height - top,
            "pad_right": int(width * ratio) - width - left,
        }


class RandomSampleCrop(BaseCrop):
    """SSD's crop: a random mode among ``SAMPLE_MODES``; up to 50 tries of a crop of 0.3-1x each side
    with aspect ratio in [0.5, 2] whose IoU with the boxes meets the mode's minimum and that keeps at
    least one box centre; boxes whose centre falls outside are dropped (with their masks)."""

    def __init__(self, p: float = 1.0, max_tries: int = 50):
        super().__init__(p=p)
        self.max_tries = max_tries

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        whole = (0, 0, width, height)
        boxes = np.asarray(data.get("bboxes", np.zeros((0, 4))))[:, :4] * [width, height, width, height]
        if len(boxes) == 0:
            return {"crop_coords": whole}
        for _ in range(1000):  # the official loop repeats until a mode succeeds
            mode = self.py_random.choice(SAMPLE_MODES)
            if mode is None:
                return {"crop_coords": whole}
            min_iou = -np.inf if mode[0] is None else mode[0]
            for _ in range(self.max_tries):
                w = self.py_random.uniform(0.3 * width, width)
                h = self.py_random.uniform(0.3 * height, height)
                if not 0.5 <= h / w <= 2:
                    continue
                left = self.py_random.uniform(0, width - w)
                top = self.py_random.uniform(0, height - h)
                rect = np.array([int(left), int(top), int(left + w), int(top + h)])
                if _iou(boxes, rect).min() < min_iou:
                    continue
                if _centres_inside(boxes, rect).any():
                    return {"crop_coords": tuple(int(v) for v in rect)}
        return {"crop_coords": whole}

    def apply_to_bboxes(self, bboxes: np.ndarray, crop_coords, **params) -> np.ndarray:
        height, width = params["shape"][:2]
        absolute = bboxes[:, :4] * [width, height, width, height]
        return super().apply_to_bboxes(
            bboxes[_centres_inside(absolute, np.array(crop_coords))], crop_coords, **params
        )


def _iou(boxes: np.ndarray, rect: np.ndarray) -> np.ndarray:
    inter = (np.minimum(boxes[:, 2:], rect[2:]) - np.maximum(boxes[:, :2], rect[:2])).clip(min=0).prod(1)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (areas + (rect[2] - rect[0]) * (rect[3] - rect[1]) - inter)


def _centres_inside(boxes: np.ndarray, rect: np.ndarray) -> np.ndarray:
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return (
        (rect[0] < centres[:, 0])
        & (rect[1] < centres[:, 1])
        & (rect[2] > centres[:, 0])
        & (rect[3] > centres[:, 1])
    )


def ssd_train_transforms(
    size: int = 550, min_box_size: float = 4.0, mean=YOLACT_MEAN_RGB, expand: bool = True
) -> A.Compose:
    """The official ``SSDAugmentation`` for a ``size`` x ``size`` network input; ``expand=False`` leaves out
    the zoom-out (the official ``augment_expand``, off in YolactEdge's ``yolact_edge_vid_config``)."""
    return A.Compose(
        [
            PhotometricDistort(),
            *([Expand(fill=mean)] if expand else []),
            RandomSampleCrop(),
            A.HorizontalFlip(p=0.5),
            A.Resize(size, size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST),
        ],
        bbox_params=instance_bbox_params(min_box_size),
    )
