"""Detections in the COCO results format (https://cocodataset.org/#format-results): what
``COCO.loadRes`` and the COCO test-dev server take -- one dict per detection with ``image_id``,
``category_id``, ``score``, ``bbox`` (XYWH) and ``segmentation`` (compressed RLE)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor

DETECTION_KEYS = ("boxes", "labels", "scores", "masks")


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
