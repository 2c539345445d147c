"""Validation overlays for W&B: predicted and ground-truth boxes (and instance masks, when there are
any) on the image, with class names and scores (``wandb.Image`` box and mask layers, toggled in the
W&B UI). Labels are named through the dataset's ``label_names``; in the painted mask layers 0 means
"no object", which no label is (``datamodules.batch``)."""

from __future__ import annotations

import numpy as np
import torch
import wandb
from torch import Tensor

NO_OBJECT = 0  # the painted mask layers' value where no instance is


def _label_map(masks: Tensor, labels: Tensor, scores: Tensor | None) -> np.ndarray:
    """Paint instance masks into one class-label map, the most confident instance on top."""
    height, width = masks.shape[-2:]
    label_map = np.full((height, width), NO_OBJECT, dtype=np.uint8)
    order = torch.argsort(scores) if scores is not None else torch.arange(len(labels))
    for index in order.tolist():
        label_map[masks[index].reshape(height, width).cpu().numpy() > 0.5] = int(labels[index])
    return label_map


def _box_data(
    boxes: Tensor, labels: Tensor, scores: Tensor | None, class_labels: dict[int, str]
) -> list[dict]:
    rows = []
    for index, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist(), strict=True)):
        row = {
            "position": {"minX": box[0], "minY": box[1], "maxX": box[2], "maxY": box[3]},
            "domain": "pixel",
            "class_id": int(label),
            "box_caption": class_labels.get(int(label), str(label)),
        }
        if scores is not None:
            score = float(scores[index])
            row["scores"] = {"score": score}
            row["box_caption"] += f" {score:.2f}"
        rows.append(row)
    return rows


def detection_overlay(
    image: Tensor,
    prediction: dict[str, Tensor],
    target: dict[str, Tensor],
    label_names: dict[int, str],
    score_threshold: float,
) -> wandb.Image:
    """``image`` (3,H,W) in [0,1]; ``prediction`` as the model's eval output; ``target`` the batch's."""
    class_labels = dict(label_names)
    keep = prediction["scores"] >= score_threshold
    boxes, labels, scores = prediction["boxes"][keep], prediction["labels"][keep], prediction["scores"][keep]
    pixels = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    layers_masks, layers_boxes = {}, {}
    layers_boxes["predictions"] = {
        "box_data": _box_data(boxes, labels, scores, class_labels),
        "class_labels": class_labels,
    }
    layers_boxes["ground_truth"] = {
        "box_data": _box_data(target["boxes"], target["labels"], None, class_labels),
        "class_labels": class_labels,
    }
    mask_labels = {NO_OBJECT: "no object", **class_labels}
    if "masks" in prediction:
        masks = prediction["masks"][keep]
        layers_masks["predictions"] = {
            "mask_data": _label_map(masks, labels, scores),
            "class_labels": mask_labels,
        }
    if "masks" in prediction and "masks" in target:  # a box-only detector gets box layers only
        layers_masks["ground_truth"] = {
            "mask_data": _label_map(target["masks"], target["labels"], None),
            "class_labels": mask_labels,
        }
    return wandb.Image(pixels, masks=layers_masks or None, boxes=layers_boxes)
