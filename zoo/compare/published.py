"""Published numbers that a paper-reproduction experiment declares next to its hyperparameters, in
the metric names runs log (``val/segm/AP``...) and on the same [0, 1] scale, so that ``zoo compare``
can put a run beside the paper."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PublishedResult:
    """One reference result: where it comes from and what it reports."""

    source: str
    metrics: dict[str, float] = field(default_factory=dict)
