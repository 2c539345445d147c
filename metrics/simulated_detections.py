"""Imperfect detections made from ground truth, to check and time COCO evaluation without a model.

Each ground-truth object is missed with some probability or found with a jittered box and a shifted,
eroded or dilated mask; each image also gets a few random false positives. The scores are random, so
the ranking (what AP measures) is neither perfect nor degenerate. One seed gives the same detections.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor

# False positives are boxes with sides up to this many pixels (and at most half the image).
MAX_FALSE_POSITIVE_SIDE = 80


@dataclass(frozen=True)
class ImageDetections:
    """One image's detections as plain arrays, before they become a model's eval output."""

    image_id: int
    boxes: np.ndarray  # (N, 4) float64, XYXY
    category_ids: np.ndarray  # (N,) int64
    scores: np.ndarray  # (N,) float64
    masks: np.ndarray  # (N, H, W) uint8, 0 or 1


def perturbed_ground_truth(
    coco: COCO, seed: int = 0, miss_rate: float = 0.2, false_positives: int = 2
) -> Iterator[ImageDetections]:
    """Detections for every image of `coco` in image id order, from one generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    category_ids = sorted(coco.getCatIds())
    for image_id in sorted(coco.imgs):
        yield _perturb_image(coco, image_id, rng, category_ids, miss_rate, false_positives)


def _perturb_image(
    coco: COCO,
    image_id: int,
    rng: np.random.Generator,
    category_ids: list[int],
    miss_rate: float,
    false_positives: int,
) -> ImageDetections:
    height, width = coco.imgs[image_id]["height"], coco.imgs[image_id]["width"]
    boxes, categories, scores, masks = [], [], [], []
    for ann in coco.imgToAnns[image_id]:
        if rng.random() < miss_rate:
            continue
        x, y, w, h = ann["bbox"]
        boxes.append(np.array([x, y, x + w, y + h]) + rng.normal(0.0, 3.0, 4))
        masks.append(_perturb_mask(coco.annToMask(ann), rng))
        categories.append(ann["category_id"])
        scores.append(rng.uniform(0.3, 1.0))
    side = min(MAX_FALSE_POSITIVE_SIDE, width // 2, height // 2)
    for _ in range(false_positives):
        x1, y1 = rng.uniform(0, width - side), rng.uniform(0, height - side)
        x2, y2 = x1 + rng.uniform(side / 10, side), y1 + rng.uniform(side / 10, side)
        mask = np.zeros((height, width), np.uint8)
        mask[int(y1) : int(y2), int(x1) : int(x2)] = 1
        boxes.append(np.array([x1, y1, x2, y2]))
        masks.append(mask)
        scores.append(rng.uniform(0.0, 0.8))
        categories.append(category_ids[rng.integers(len(category_ids))])
    return ImageDetections(
        image_id=image_id,
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        category_ids=np.array(categories, dtype=np.int64),
        scores=np.array(scores, dtype=np.float64),
        masks=np.array(masks, dtype=np.uint8).reshape(-1, height, width),
    )


def _perturb_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shifted by up to 4 pixels, or eroded, or dilated by 2 pixels: IoUs spread over the thresholds."""
    kind = rng.integers(3)
    if kind == 0:
        return np.roll(mask, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
    kernel = np.ones((3, 3), np.uint8)
    if kind == 1:
        return cv2.erode(mask, kernel, iterations=2)
    return cv2.dilate(mask, kernel, iterations=2)


def as_prediction(detections: ImageDetections) -> dict[str, Tensor]:
    """The detector's eval output for these detections (labels are the category ids).

    Masks become (N, 1, H, W) float32 probabilities, random but strictly above 0.5 inside the mask and
    below it outside, so that the evaluator's 0.5 threshold gets back exactly `detections.masks`; the
    noise is seeded by the image id, so a prediction depends only on its detections."""
    rng = np.random.default_rng(detections.image_id)
    inside = detections.masks == 1
    probabilities = np.where(
        inside, rng.uniform(0.51, 1.0, inside.shape), rng.uniform(0.0, 0.49, inside.shape)
    ).astype(np.float32)
    return {
        "boxes": torch.from_numpy(detections.boxes.astype(np.float32)),
        "labels": torch.from_numpy(detections.category_ids),
        "scores": torch.from_numpy(detections.scores.astype(np.float32)),
        "masks": torch.from_numpy(probabilities)[:, None],
    }
