"""CenterNet's training augmentation: the crop window as the official code draws it, boxes and masks moved
with the image, and the colour step against a transcription of the official ``color_aug``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from datamodules.centernet_augmentation import (
    EIGENVALUES,
    EIGENVECTORS_BGR,
    OfficialColourAugmentation,
    RandomScaleCrop,
    centernet_train_transforms,
    crop_matrix,
    official_border,
)
from datamodules.instance_transforms import InstanceSample, apply_instance_transforms


def test_border_halves_until_it_fits() -> None:
    assert official_border(128, 640) == 128
    assert official_border(128, 256) == 64
    assert official_border(128, 128) == 32
    assert official_border(128, 40) == 16


def test_crop_matrix_maps_the_window_onto_the_square() -> None:
    matrix = crop_matrix((100.0, 60.0), 80.0, 512)
    corners = np.array([[60.0, 20.0, 1.0], [140.0, 100.0, 1.0]])
    assert (corners @ matrix.T).tolist() == [[0.0, 0.0], [512.0, 512.0]]


def test_boxes_and_masks_move_with_the_image() -> None:
    """A rectangle drawn into image and mask lands where the transformed box says, within a pixel; the
    outputs are ``size`` squares; a box cropped away is dropped with its mask."""
    image = np.zeros((96, 160, 3), dtype=np.uint8)
    mask = np.zeros((96, 160), dtype=np.uint8)
    image[30:60, 50:90] = 255
    mask[30:60, 50:90] = 1
    far = np.zeros((96, 160), dtype=np.uint8)
    far[0:4, 0:4] = 1
    sample = InstanceSample(
        image=image,
        boxes=np.array([[50, 30, 90, 60], [0, 0, 4, 4]], dtype=np.float32),
        labels=np.array([1, 2]),
        masks=[mask, far],
    )
    transforms = centernet_train_transforms(size=64, border=32, colour=False, flip_prob=0.0)
    seen_drop = False
    for seed in range(12):
        transforms.set_random_seed(seed)
        out, kept = apply_instance_transforms(transforms, sample)
        assert out.image.shape == (64, 64, 3)
        assert 0 in kept.tolist() or not out.masks
        seen_drop |= 1 not in kept.tolist()
        for box, kept_mask, index in zip(out.boxes, out.masks, kept, strict=True):
            if index != 0:
                continue
            rows, cols = np.nonzero(kept_mask)
            drawn = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            assert np.allclose(box, drawn, atol=1.5)
            lit = np.nonzero(out.image[..., 0] > 127)
            assert abs(lit[1].min() - box[0]) <= 1.5 and abs(lit[0].max() + 1 - box[3]) <= 1.5
    assert seen_drop


def test_crop_centre_respects_the_border() -> None:
    crop = RandomScaleCrop(size=32, border=128)
    centres = []
    for seed in range(200):
        crop.set_random_seed(seed)
        matrix = crop.get_params_dependent_on_data({"shape": (128, 300)}, {})["matrix"]
        scale = matrix[0, 0]
        centres.append(((16 - matrix[0, 2]) / scale, (16 - matrix[1, 2]) / scale))
    xs, ys = np.array(centres).T
    assert xs.min() >= 128 and xs.max() < 300 - 128
    assert ys.min() >= 32 and ys.max() < 96


def official_color_aug(
    image_bgr: np.ndarray, order: list[str], alphas: dict[str, float], lighting: np.ndarray
):
    """The official ``color_aug`` on a float BGR image with the given draws, transcribed."""
    image = image_bgr.copy()
    gs = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    gs_mean = gs.mean()
    for name in order:
        alpha = alphas[name]
        if name == "brightness":
            image *= alpha
        elif name == "contrast":
            image = image * alpha + gs_mean * (1 - alpha)
        else:
            image = image * alpha + gs[:, :, None] * (1 - alpha)
    return image + np.dot(EIGENVECTORS_BGR, EIGENVALUES * lighting)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_colour_step_equals_the_official_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(60, 190, size=(16, 20, 3), dtype=np.uint8)
    transform = OfficialColourAugmentation(strength=0.2)
    transform.set_random_seed(seed)
    params = transform.get_params()
    ours = transform.apply(rgb, **params).astype(np.float64) / 255
    bgr = rgb[..., ::-1].astype(np.float32) / 255
    theirs = official_color_aug(bgr, params["order"], params["alphas"], params["lighting"])[..., ::-1]
    assert np.abs(ours - np.clip(theirs, 0, 1)).max() <= 1 / 255 + 1e-6
