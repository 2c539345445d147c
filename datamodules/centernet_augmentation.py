"""CenterNet's (and CornerNet's) training augmentation, as the official ``datasets/sample/ctdet.py`` draws
it, as albumentations transforms so boxes, masks and labels stay in sync (``instance_transforms``):

random scale and crop -> horizontal flip (p 0.5) -> colour: brightness, contrast and saturation
(each x [0.6, 1.4], in random order, against the grey image of the input) and PCA lighting noise (std 0.1
along the ImageNet RGB eigenvectors).

The crop: a square window of side s = (longest image side) x one of 0.6, 0.7, ..., 1.3, centred at a
random point at least ``border`` pixels (128, halved until it fits) from the image edges, warped to the
``size`` x ``size`` network input (outside the image: black). Boxes are mapped by the same affine map and
clipped; boxes left without area are dropped by the pipeline. Written here because no albumentations
transform draws the official window (size relative to the longest side, centre constrained by the border);
the colour step because the official contrast and saturation blend with the grey image of the input, not
of the current step (torchvision's and albumentations' ``ColorJitter``), and its lighting uses fixed
ImageNet eigenvectors (``A.FancyPCA`` takes each image's own). The official code flips before the warp;
flipping after it draws the same distribution. Images stay uint8 here (clipped to 0-255), where the
official code works on unclipped floats.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

from datamodules.instance_transforms import instance_bbox_params

SCALES = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)  # the official np.arange(0.6, 1.4, 0.1)
# the official ImageNet PCA (``datasets/dataset/coco.py``), rows for B, G, R: reversed here for RGB
EIGENVALUES = np.array([0.2141788, 0.01817699, 0.00341571])
EIGENVECTORS_BGR = np.array(
    [
        [-0.58752847, -0.69563484, 0.41340352],
        [-0.5832747, 0.00994535, -0.81221408],
        [-0.56089297, 0.71832671, 0.41158938],
    ]
)


def official_border(border: int, size: int) -> int:
    """The official ``_get_border``: ``border`` halved until the image has room for it on both sides."""
    divisor = 1
    while size - border // divisor <= border // divisor:
        divisor *= 2
    return border // divisor


def crop_matrix(centre: tuple[float, float], side: float, size: int) -> np.ndarray:
    """The 2 x 3 affine map of the square window of ``side`` around ``centre`` onto a ``size`` square."""
    scale = size / side
    return np.array(
        [[scale, 0.0, size / 2 - centre[0] * scale], [0.0, scale, size / 2 - centre[1] * scale]],
        dtype=np.float64,
    )


class RandomScaleCrop(A.DualTransform):
    """The official random scale and crop to a ``size`` square (module docstring)."""

    def __init__(
        self, size: int = 512, scales: tuple[float, ...] = SCALES, border: int = 128, p: float = 1.0
    ):
        super().__init__(p=p)
        self.size, self.scales, self.border = size, tuple(scales), border

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        side = max(height, width) * self.py_random.choice(self.scales)
        border_x, border_y = official_border(self.border, width), official_border(self.border, height)
        centre = (
            self.py_random.randrange(border_x, width - border_x),
            self.py_random.randrange(border_y, height - border_y),
        )
        return {"matrix": crop_matrix(centre, side, self.size)}

    def apply(self, img: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        return cv2.warpAffine(img, matrix, (self.size, self.size), flags=cv2.INTER_LINEAR, borderValue=0)

    def apply_to_mask(self, mask: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        return cv2.warpAffine(mask, matrix, (self.size, self.size), flags=cv2.INTER_NEAREST, borderValue=0)

    def apply_to_bboxes(self, bboxes: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        """Albumentations' normalised boxes of the input -> normalised boxes of the ``size`` output."""
        height, width = params["shape"][:2]
        out = bboxes.copy()
        scale, tx, ty = matrix[0, 0], matrix[0, 2], matrix[1, 2]
        out[:, [0, 2]] = (bboxes[:, [0, 2]] * width * scale + tx) / self.size
        out[:, [1, 3]] = (bboxes[:, [1, 3]] * height * scale + ty) / self.size
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "scales", "border")


class OfficialColourAugmentation(A.ImageOnlyTransform):
    """The official ``color_aug`` (module docstring) on an RGB uint8 image."""

    def __init__(self, strength: float = 0.4, lighting_std: float = 0.1, p: float = 1.0):
        super().__init__(p=p)
        self.strength, self.lighting_std = strength, lighting_std

    def get_params(self) -> dict[str, Any]:
        order = ["brightness", "contrast", "saturation"]
        self.py_random.shuffle(order)
        return {
            "order": order,
            "alphas": {name: 1 + self.py_random.uniform(-self.strength, self.strength) for name in order},
            "lighting": np.array([self.py_random.gauss(0, self.lighting_std) for _ in range(3)]),
        }

    def apply(
        self, img: np.ndarray, order: list[str], alphas: dict[str, float], lighting, **params
    ) -> np.ndarray:
        image = img.astype(np.float32) / 255
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
        grey_mean = float(grey.mean())
        for name in order:
            alpha = alphas[name]
            if name == "brightness":
                image = image * alpha
            elif name == "contrast":
                image = image * alpha + grey_mean * (1 - alpha)
            else:
                image = image * alpha + grey[:, :, None] * (1 - alpha)
        shift_bgr = EIGENVECTORS_BGR @ (EIGENVALUES * lighting)
        image = image + shift_bgr[::-1].astype(np.float32)
        return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("strength", "lighting_std")


def centernet_train_transforms(
    size: int = 512,
    scales: tuple[float, ...] = SCALES,
    border: int = 128,
    flip_prob: float = 0.5,
    colour: bool = True,
) -> A.Compose:
    """The official training augmentation for a ``size`` x ``size`` input (module docstring)."""
    steps: list[A.BasicTransform] = [RandomScaleCrop(size, scales, border), A.HorizontalFlip(p=flip_prob)]
    if colour:
        steps.append(OfficialColourAugmentation())
    return A.Compose(steps, bbox_params=instance_bbox_params())
