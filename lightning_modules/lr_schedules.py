"""Learning-rate schedules stepped once per optimizer step, picked in the experiment YAML
(``model.init_args.lr_scheduler``) like any ``torch.optim.lr_scheduler`` class."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler


class WarmupMultiStepLR(LRScheduler):
    """Linear warm-up from ``warmup_factor`` to 1 over ``warmup_steps``, then multiply by ``gamma`` at
    each milestone: detectron2's ``WarmupMultiStepLR`` (Goyal et al. 2017, Sec. 2.2 gradual warm-up).

    Its whole state (milestones included) is in ``state_dict``, so a resumed run continues the same
    schedule."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: Sequence[int],
        gamma: float = 0.1,
        warmup_steps: int = 1000,
        warmup_factor: float = 0.001,
        last_epoch: int = -1,
    ) -> None:
        if list(milestones) != sorted(milestones):
            raise ValueError(f"lr milestones must be increasing, got {list(milestones)}")
        self.milestones = list(milestones)
        self.gamma = gamma
        self.warmup_steps = warmup_steps
        self.warmup_factor = warmup_factor
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        decay = self.gamma ** bisect_right(self.milestones, step)
        if step >= self.warmup_steps:
            return decay
        alpha = step / self.warmup_steps
        return decay * (self.warmup_factor * (1 - alpha) + alpha)

    def get_lr(self) -> list[float]:
        return [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]
