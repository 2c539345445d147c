"""Peaks of class heatmaps, as CornerNet and CenterNet decode them: a 3x3 max-pool "NMS" keeps the
locations that are the maximum of their neighbourhood, then the top K over all classes and locations.
Vectorised over the batch; no IoU-based NMS (CenterNet Sec. 4: the peak extraction replaces it)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


def heatmap_nms(heatmaps: Tensor, kernel: int = 3) -> Tensor:
    """``heatmaps`` (B, C, H, W) with every value that is not the maximum of its ``kernel`` x ``kernel``
    neighbourhood set to 0 (the official ``_nms``; equal neighbours both stay)."""
    if kernel % 2 != 1:
        raise ValueError(f"the NMS kernel must be odd, got {kernel}")
    pooled = F.max_pool2d(heatmaps, kernel, stride=1, padding=(kernel - 1) // 2)
    return heatmaps * (pooled == heatmaps)


@dataclass(frozen=True)
class Peaks:
    """The top K peaks of each image, by decreasing score: all (B, K)."""

    scores: Tensor
    classes: Tensor  # int64 channel
    indices: Tensor  # int64 y * W + x, for ``gather_at``
    xs: Tensor  # float cell column
    ys: Tensor  # float cell row


def top_peaks(heatmaps: Tensor, k: int = 100) -> Peaks:
    """The ``k`` highest values of (B, C, H, W) ``heatmaps`` over classes and locations (fewer cells than
    ``k``: all of them). Apply ``heatmap_nms`` first to keep only local maxima."""
    batch, _, height, width = heatmaps.shape
    flat = heatmaps.reshape(batch, -1)
    scores, flat_indices = flat.topk(min(k, flat.shape[1]), dim=1)
    classes = flat_indices // (height * width)
    indices = flat_indices % (height * width)
    return Peaks(
        scores=scores,
        classes=classes,
        indices=indices,
        xs=(indices % width).to(heatmaps.dtype),
        ys=(indices // width).to(heatmaps.dtype),
    )


def gather_at(feature_maps: Tensor, indices: Tensor) -> Tensor:
    """(B, D, H, W) maps read at (B, K) flat locations y * W + x -> (B, K, D) (the official
    ``_transpose_and_gather_feat``)."""
    batch, channels = feature_maps.shape[:2]
    flat = feature_maps.reshape(batch, channels, -1)
    return flat.gather(2, indices[:, None, :].expand(batch, channels, indices.shape[1])).transpose(1, 2)
