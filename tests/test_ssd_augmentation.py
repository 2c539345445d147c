"""SSD augmentation (YOLACT's training pipeline): output at the network size, masks and boxes in sync
through expand, crop, flip and resize, seeded draws reproducible, and the pieces' own rules."""

import albumentations as A
import numpy as np

from datamodules.instance_transforms import InstanceSample, apply_instance_transforms, instance_bbox_params
from datamodules.ssd_augmentation import Expand, PhotometricDistort, RandomSampleCrop, ssd_train_transforms


def _sample(seed=0, size=(120, 160), count=4):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    boxes, masks = [], []
    for _ in range(count):
        x1, y1 = rng.integers(0, size[1] - 40), rng.integers(0, size[0] - 40)
        w, h = rng.integers(10, 40, 2)
        mask = np.zeros(size, np.uint8)
        mask[y1 : y1 + h, x1 : x1 + w] = 1
        boxes.append([x1, y1, x1 + w, y1 + h])
        masks.append(mask)
    return InstanceSample(image, np.array(boxes, np.float32), np.arange(1, count + 1), masks)


def _tight_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_masks_and_boxes_stay_in_sync_at_the_network_size():
    transforms = ssd_train_transforms(size=200, min_box_size=1)
    for seed in range(30):
        transforms.set_random_seed(seed)
        out, kept = apply_instance_transforms(transforms, _sample(seed))
        assert out.image.shape == (200, 200, 3)
        assert len(out.masks) == len(out.boxes) == len(out.labels) == len(kept)
        for box, mask, label, index in zip(out.boxes, out.masks, out.labels, kept, strict=True):
            assert mask.shape == (200, 200)
            assert label == index + 1
            assert np.abs(_tight_box(mask) - box).max() <= 3  # nearest-neighbour mask vs exact box


def test_seeded_draws_repeat():
    transforms = ssd_train_transforms(size=128)
    results = []
    for _ in range(2):
        transforms.set_random_seed(7)
        results.append(apply_instance_transforms(transforms, _sample(3))[0])
    assert np.array_equal(results[0].image, results[1].image)
    assert np.array_equal(results[0].boxes, results[1].boxes)


def test_expand_fills_with_the_mean_and_keeps_the_image():
    sample = _sample()
    transform = A.Compose([Expand(max_ratio=3, fill=(1, 2, 3), p=1.0)], bbox_params=instance_bbox_params())
    transform.set_random_seed(0)
    out, kept = apply_instance_transforms(transform, sample)
    assert out.image.shape[0] >= 120 and out.image.shape[1] >= 160 and len(kept) == 4
    x1, y1 = int(out.boxes[0][0] - sample.boxes[0][0]), int(out.boxes[0][1] - sample.boxes[0][1])
    assert np.array_equal(out.image[y1 : y1 + 120, x1 : x1 + 160], sample.image)
    assert (out.image[0, 0] == (1, 2, 3)).all() or (x1 == 0 and y1 == 0)


def test_crop_keeps_only_boxes_whose_centre_is_inside():
    transform = A.Compose([RandomSampleCrop()], bbox_params=instance_bbox_params())
    for seed in range(20):
        sample = _sample(seed)
        transform.set_random_seed(seed)
        out, kept = apply_instance_transforms(transform, sample)
        assert len(kept) >= 1
        for box in out.boxes:
            assert box[2] <= out.image.shape[1] and box[3] <= out.image.shape[0]


def test_photometric_distortion_changes_pixels_only():
    image = _sample().image
    transform = PhotometricDistort(p=1.0)
    transform.set_random_seed(1)
    changed = [not np.array_equal(transform(image=image)["image"], image) for _ in range(10)]
    assert any(changed)
    assert transform(image=image)["image"].dtype == np.uint8
