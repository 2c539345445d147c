"""W&B overlays of DensePose predictions: the detections' part (I) map and the iso-lines of their U and V
coordinates as toggleable mask layers on the image, with the predicted and ground-truth boxes and the
ground-truth points painted by part -- the pictures of the DensePose paper's Fig. 1 and 7."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import wandb
from torch import Tensor

from lightning_modules.wandb_overlays import _box_data

UV_LEVELS = 8  # iso-lines at U, V = 1/8, 2/8, ..., 7/8
U_LINE, V_LINE = 1, 2


def paste_box_maps(
    box_results: list[tuple[Tensor, Tensor]], boxes: Tensor, scores: Tensor, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Image-size part labels (H, W) uint8 and (U, V) (2, H, W) float32 of per-box results (``labels``
    (h, w), ``uv`` (2, h, w) from ``models.densepose_results``), the most confident detection on top."""
    height, width = size
    parts = np.zeros((height, width), np.uint8)
    uv = np.zeros((2, height, width), np.float32)
    for index in torch.argsort(scores).tolist():
        labels, box_uv = (t.cpu().numpy() for t in box_results[index])
        x0, y0 = (int(v) for v in boxes[index, :2].floor().tolist())
        h, w = labels.shape
        rows = slice(max(y0, 0), min(y0 + h, height))
        cols = slice(max(x0, 0), min(x0 + w, width))
        inner = (slice(rows.start - y0, rows.stop - y0), slice(cols.start - x0, cols.stop - x0))
        foreground = labels[inner] > 0
        parts[rows, cols][foreground] = labels[inner][foreground]
        uv[:, rows, cols][:, foreground] = box_uv[(slice(None), *inner)][:, foreground]
    return parts, uv


def uv_contours(parts: np.ndarray, uv: np.ndarray, levels: int = UV_LEVELS) -> np.ndarray:
    """(H, W) uint8: ``U_LINE`` where U crosses a multiple of 1 / ``levels`` between a foreground pixel and
    its right or lower neighbour (or the part changes), ``V_LINE`` where V does; 0 elsewhere."""
    lines = np.zeros(parts.shape, np.uint8)
    for value, code in ((uv[0], U_LINE), (uv[1], V_LINE)):
        level = np.where(parts > 0, np.floor(value * levels).astype(np.int64) * 32 + parts, -1)
        edge = np.zeros(parts.shape, bool)
        edge[:, :-1] |= level[:, :-1] != level[:, 1:]
        edge[:-1, :] |= level[:-1, :] != level[1:, :]
        lines[edge & (parts > 0)] = code
    return lines


def ground_truth_points(target: dict[str, Tensor], size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 with each ground-truth DensePose point painted as a 3 x 3 dot of its part."""
    canvas = np.zeros(size, np.uint8)
    if "dense_points" not in target:
        return canvas
    for box, points in zip(target["boxes"].tolist(), target["dense_points"].cpu().numpy(), strict=True):
        points = points[~np.isnan(points[:, 0])]
        x = box[0] + points[:, 0] * (box[2] - box[0]) / 256
        y = box[1] + points[:, 1] * (box[3] - box[1]) / 256
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                cols = np.clip(np.floor(x).astype(int) + dx, 0, size[1] - 1)
                rows = np.clip(np.floor(y).astype(int) + dy, 0, size[0] - 1)
                canvas[rows, cols] = points[:, 2].astype(np.uint8)
    return canvas


def densepose_overlay(
    image: Tensor,
    prediction: dict[str, Any],
    target: dict[str, Tensor],
    label_names: dict[int, str],
    score_threshold: float,
    part_names: dict[int, str],
) -> wandb.Image:
    """``image`` (3, H, W) in [0, 1]; ``prediction`` the detector's eval output with ``densepose`` its
    detections' box-frame chart results (``models.densepose_results``); mask layers of the predicted parts,
    the U/V iso-lines and the ground-truth points."""
    box_results = prediction["densepose"]
    keep = (prediction["scores"] >= score_threshold).nonzero().flatten().tolist()
    boxes, scores = prediction["boxes"][keep], prediction["scores"][keep]
    size = (int(image.shape[-2]), int(image.shape[-1]))
    parts, uv = paste_box_maps([box_results[k] for k in keep], boxes, scores, size)
    pixels = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    class_labels = dict(label_names)
    part_labels = {0: "background", **part_names}
    return wandb.Image(
        pixels,
        masks={
            "predicted_parts": {"mask_data": parts, "class_labels": part_labels},
            "uv_isolines": {
                "mask_data": uv_contours(parts, uv),
                "class_labels": {0: "none", U_LINE: "U iso-line", V_LINE: "V iso-line"},
            },
            "ground_truth_points": {
                "mask_data": ground_truth_points(target, size),
                "class_labels": part_labels,
            },
        },
        boxes={
            "predictions": {
                "box_data": _box_data(boxes, prediction["labels"][keep], scores, class_labels),
                "class_labels": class_labels,
            },
            "ground_truth": {
                "box_data": _box_data(target["boxes"], target["labels"], None, class_labels),
                "class_labels": class_labels,
            },
        },
    )
