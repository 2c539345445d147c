"""Learning-rate schedules stepped per optimizer step."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR


class WarmupMultiStepFactor:
    """Linear warm-up from ``warmup_factor`` to 1 over ``warmup_steps``, then multiply by ``gamma`` at
    each milestone: detectron2's ``WarmupMultiStepLR`` (Goyal et al. 2017, Sec. 2.2 gradual warm-up).

    A callable object rather than a closure so that ``LambdaLR.state_dict`` stores it and a resumed
    run continues the same schedule."""

    def __init__(
        self, warmup_steps: int, warmup_factor: float, milestones: Sequence[int], gamma: float
    ) -> None:
        if list(milestones) != sorted(milestones):
            raise ValueError(f"lr milestones must be increasing, got {list(milestones)}")
        self.warmup_steps = warmup_steps
        self.warmup_factor = warmup_factor
        self.milestones = list(milestones)
        self.gamma = gamma

    def __call__(self, step: int) -> float:
        decay = self.gamma ** bisect_right(self.milestones, step)
        if step >= self.warmup_steps:
            return decay
        alpha = step / self.warmup_steps
        return decay * (self.warmup_factor * (1 - alpha) + alpha)


def warmup_multistep(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    warmup_factor: float,
    milestones: Sequence[int],
    gamma: float,
) -> LambdaLR:
    return LambdaLR(optimizer, WarmupMultiStepFactor(warmup_steps, warmup_factor, milestones, gamma))
