"""Instance pipelines keep image, masks, boxes and labels in sync."""

import albumentations as A
import numpy as np
import torch
from torchvision.ops import masks_to_boxes

from datamodules.instance_transforms import (
    InstanceSample,
    apply_instance_transforms,
    instance_bbox_params,
    train_transforms,
)

HEIGHT, WIDTH = 40, 64
# pixel-edge XYXY boxes of three rectangles, each its own label
RECTS = [(2, 3, 20, 15), (30, 10, 61, 38), (45, 0, 50, 9)]
LABELS = np.array([3, 1, 2], dtype=np.int64)


def rect_sample() -> InstanceSample:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    masks = []
    for x1, y1, x2, y2 in RECTS:
        mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        mask[y1:y2, x1:x2] = 1
        masks.append(mask)
    return InstanceSample(image, np.array(RECTS, dtype=np.float32), LABELS.copy(), masks)


def boxes_from_masks(masks: list[np.ndarray]) -> np.ndarray:
    """Pixel-edge XYXY boxes (masks_to_boxes gives the last pixel's index as x2/y2)."""
    boxes = masks_to_boxes(torch.from_numpy(np.stack(masks)))
    return (boxes + torch.tensor([0, 0, 1, 1])).numpy()


def test_flip_keeps_masks_boxes_and_labels_in_sync() -> None:
    sample = rect_sample()
    out, kept = apply_instance_transforms(train_transforms(flip_prob=1.0, color_jitter=0.0), sample)
    np.testing.assert_array_equal(kept, [0, 1, 2])
    np.testing.assert_array_equal(out.image, sample.image[:, ::-1])
    expected = np.array([(WIDTH - x2, y1, WIDTH - x1, y2) for x1, y1, x2, y2 in RECTS], dtype=np.float32)
    np.testing.assert_allclose(out.boxes, expected, atol=1e-3)
    np.testing.assert_allclose(boxes_from_masks(out.masks), out.boxes, atol=1e-3)
    np.testing.assert_array_equal(out.labels, LABELS)
    for mask, original in zip(out.masks, sample.masks, strict=True):
        np.testing.assert_array_equal(mask, original[:, ::-1])


def test_flip_prob_zero_and_no_jitter_is_identity() -> None:
    sample = rect_sample()
    out, kept = apply_instance_transforms(train_transforms(flip_prob=0.0, color_jitter=0.0), sample)
    np.testing.assert_array_equal(kept, [0, 1, 2])
    np.testing.assert_array_equal(out.image, sample.image)
    np.testing.assert_allclose(out.boxes, sample.boxes, atol=1e-3)
    for mask, original in zip(out.masks, sample.masks, strict=True):
        np.testing.assert_array_equal(mask, original)


def test_colour_jitter_changes_pixels_only() -> None:
    sample = rect_sample()
    jitter = A.Compose(
        [
            A.HorizontalFlip(p=0.0),
            A.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.0, p=1.0),
        ],
        bbox_params=instance_bbox_params(),
        seed=0,
    )
    out, _ = apply_instance_transforms(jitter, sample)
    assert not np.array_equal(out.image, sample.image)
    np.testing.assert_allclose(out.boxes, sample.boxes, atol=1e-3)
    for mask, original in zip(out.masks, sample.masks, strict=True):
        np.testing.assert_array_equal(mask, original)


def test_instances_that_leave_the_image_or_lose_their_mask_are_dropped_in_sync() -> None:
    sample = rect_sample()
    # instance 2's box reaches into the crop x >= 24, its mask (x 45..50) is moved left of it
    masks = list(sample.masks)
    masks[2] = np.roll(masks[2], -35, axis=1)  # now x 10..15
    boxes = sample.boxes.copy()
    boxes[2] = (10, 0, 50, 9)
    sample = sample._replace(boxes=boxes, masks=masks)
    crop = A.Compose(
        [A.Crop(x_min=24, y_min=0, x_max=WIDTH, y_max=HEIGHT)], bbox_params=instance_bbox_params()
    )
    out, kept = apply_instance_transforms(crop, sample)
    # instance 0 (x 2..20) leaves the image with its box, instance 2 keeps a box but loses its mask
    np.testing.assert_array_equal(kept, [1])
    np.testing.assert_array_equal(out.labels, LABELS[[1]])
    np.testing.assert_allclose(out.boxes, [[30 - 24, 10, 61 - 24, 38]], atol=1e-3)
    np.testing.assert_allclose(boxes_from_masks(out.masks), out.boxes, atol=1e-3)
    assert out.image.shape == (HEIGHT, WIDTH - 24, 3)


def test_no_instances() -> None:
    sample = InstanceSample(
        np.zeros((HEIGHT, WIDTH, 3), np.uint8), np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), []
    )
    out, kept = apply_instance_transforms(train_transforms(flip_prob=1.0), sample)
    assert kept.shape == (0,)
    assert out.boxes.shape == (0, 4)
    assert out.labels.shape == (0,)
    assert out.masks == []
