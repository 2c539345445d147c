"""An evaluation that one process runs for all (COCOeval, the DensePose evaluator): once torchmetrics has
gathered every rank's states, rank 0 evaluates and broadcasts its float64 stats, so the other ranks do not
repeat it. A failure on rank 0 is broadcast too (the last element of the buffer), so that the other ranks
raise instead of waiting in the broadcast forever."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric

_EVALUATED, _FAILED = 1.0, 0.0


def synced_across_ranks(metric: Metric) -> bool:
    """Whether torchmetrics gathered every rank's states into this process (the states then are the same
    on all ranks of the metric's process group)."""
    return (
        metric._is_synced
        and dist.is_available()
        and dist.is_initialized()
        and dist.get_world_size(metric.process_group) > 1
    )


def evaluate_once(metric: Metric, evaluate: Callable[[], Tensor], size: int, what: str) -> Tensor:
    """``evaluate()`` (``size`` float64 stats) by rank 0 of ``metric``'s process group, broadcast to every
    rank, when the states were gathered across ranks; else by this process. ``what`` names the evaluation
    in the error the other ranks raise when rank 0's fails."""
    if not synced_across_ranks(metric):
        return evaluate()
    group = metric.process_group
    source = 0 if group is None else dist.get_global_rank(group, 0)
    buffer = torch.full((size + 1,), _FAILED, dtype=torch.float64, device=metric.device)
    if dist.get_rank() == source:
        try:
            buffer[:-1] = evaluate().flatten()
        except Exception:
            dist.broadcast(buffer, source, group=group)
            raise
        buffer[-1] = _EVALUATED
    dist.broadcast(buffer, source, group=group)
    if buffer[-1].item() != _EVALUATED:
        raise RuntimeError(f"{what} failed on rank {source}: see its error")
    return buffer[:-1]
