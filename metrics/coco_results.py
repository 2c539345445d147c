"""Detections in the COCO results format (https://cocodataset.org/#format-results): what
``COCO.loadRes`` and the COCO test-dev server take -- one dict per detection with ``image_id``,
``category_id``, ``score``, ``bbox`` (XYWH) and ``segmentation`` (compressed RLE), or for the keypoint
task ``keypoints`` (a flat list x1, y1, s1, ..., xK, yK, sK in source-image pixels)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor

DETECTION_KEYS = ("boxes", "labels", "scores", "masks", "keypoints")
# COCO keypoints are pixel indices (pixel i's centre at i); the batch convention's centre is at i + 0.5.
COCO_PIXEL_INDEX_OFFSET = 0.5


def encode_masks(masks: Tensor, threshold: float = 0.5) -> list[dict[str, Any]]:
    """(N, 1, H, W) or (N, H, W) probabilities -> compressed RLEs (``counts`` as bytes), thresholded at
    0.5 as torchvision's references/detection/coco_eval.py does."""
    binary = (masks.detach() > threshold).reshape(-1, *masks.shape[-2:]).to("cpu", torch.uint8).numpy()
    return mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))


def keep_mapped_labels(
    prediction: dict[str, Tensor], label_to_category_id: dict[int, int] | None
) -> tuple[dict[str, Tensor], list[int]]:
    """Drop detections whose label has no category id (e.g. the ids COCO leaves unused in torchvision's
    91-way head): they cannot be scored or submitted. Returns the rest and the dropped labels."""
    if label_to_category_id is None:
        return prediction, []
    labels = prediction["labels"].tolist()
    known = torch.tensor([label in label_to_category_id for label in labels], dtype=torch.bool)
    if bool(known.all()):
        return prediction, []
    dropped = [label for label, keep in zip(labels, known.tolist(), strict=True) if not keep]
    known = known.to(prediction["labels"].device)
    return {
        key: value[known] if key in DETECTION_KEYS else value for key, value in prediction.items()
    }, dropped


def coco_detections(
    prediction: dict[str, Tensor], image_id: int, label_to_category_id: dict[int, int] | None = None
) -> list[dict[str, Any]]:
    """One image's detections (the model's eval output, labels already mapped) as COCO results."""
    boxes = prediction["boxes"].detach().to("cpu", torch.float64).reshape(-1, 4)
    boxes[:, 2:] -= boxes[:, :2]
    labels = prediction["labels"].tolist()
    category_ids = (
        labels if label_to_category_id is None else [label_to_category_id[label] for label in labels]
    )
    results = [
        {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score}
        for category_id, box, score in zip(
            category_ids, boxes.tolist(), prediction["scores"].tolist(), strict=True
        )
    ]
    if "masks" in prediction:
        for result, rle in zip(results, encode_masks(prediction["masks"]), strict=True):
            result["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    return results


def keypoint_results(
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    keypoints: np.ndarray | Tensor,
    scores: Sequence[float],
) -> list[dict[str, Any]]:
    """COCO keypoint results: `keypoints` (N, K, 3) -- x, y, score per keypoint, in the batch convention's
    continuous source-image pixels -- as flat lists of 3K numbers, x and y as COCO's pixel indices
    (minus ``COCO_PIXEL_INDEX_OFFSET``, what ``datamodules.coco_keypoints`` added on reading). No "bbox"
    key: with one, ``loadRes`` would take the box area instead of
    the keypoints' extent for the area ranges (and the keypoint task's format has none)."""
    if isinstance(keypoints, Tensor):
        keypoints = keypoints.detach().to("cpu", torch.float64).numpy()
    keypoints = np.array(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[2] != 3:
        raise ValueError(f"keypoints must be (N, K, 3): x, y, score per keypoint, got {keypoints.shape}")
    keypoints[..., :2] -= COCO_PIXEL_INDEX_OFFSET
    flat = keypoints.reshape(len(keypoints), 3 * keypoints.shape[1]).tolist()
    return [
        {
            "image_id": int(image_id),
            "category_id": int(category_id),
            "keypoints": points,
            "score": float(score),
        }
        for image_id, category_id, points, score in zip(image_ids, category_ids, flat, scores, strict=True)
    ]


def coco_keypoint_detections(
    prediction: dict[str, Tensor], image_id: int, label_to_category_id: dict[int, int] | None = None
) -> list[dict[str, Any]]:
    """One image's keypoint detections (the model's eval output with ``keypoints`` (N, K, 3) in
    source-image pixels, ``scores``, ``labels`` already mapped) as COCO keypoint results."""
    labels = prediction["labels"].tolist()
    category_ids = (
        labels if label_to_category_id is None else [label_to_category_id[label] for label in labels]
    )
    return keypoint_results(
        [image_id] * len(labels), category_ids, prediction["keypoints"], prediction["scores"].tolist()
    )
