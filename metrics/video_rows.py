"""Per-video sums that count each video once across DDP ranks: a ``DistributedSampler`` pads the last
batch by repeating items, so under DDP a video can be evaluated on two ranks. A video metric's ``update``
given a ``video_id`` stores its sums as one row under that id ("cat" states); ``first_rows_sum`` adds up the
first row of every id after the ranks' rows are gathered -- what ``PanopticQuality`` does for images with its
``image_ids``."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def add_video_row_states(metric: Metric) -> None:
    """The ``video_ids`` and ``video_rows`` states (call in the metric's ``__init__``)."""
    metric.add_state("video_ids", default=[], dist_reduce_fx="cat")
    metric.add_state("video_rows", default=[], dist_reduce_fx="cat")


def add_video_row(metric: Metric, video_id: int, row: Tensor) -> None:
    """One video's sums (a float64 vector) under its id."""
    metric.video_ids.append(torch.tensor([int(video_id)], dtype=torch.int64, device=row.device))
    metric.video_rows.append(row.to(torch.float64)[None])


def first_rows_sum(metric: Metric, size: int) -> Tensor:
    """The sum of the first row of every video id (zeros of ``size`` without any)."""
    if isinstance(metric.video_ids, list) and not metric.video_ids:
        return torch.zeros(size, dtype=torch.float64, device=metric.device)
    ids, rows = dim_zero_cat(metric.video_ids), dim_zero_cat(metric.video_rows)
    first: dict[int, int] = {}
    for index, video_id in enumerate(ids.tolist()):
        first.setdefault(video_id, index)
    return rows[sorted(first.values())].reshape(-1, size).sum(0)
