"""Learning-rate schedules stepped once per optimizer step, picked in the experiment YAML
(``model.init_args.lr_scheduler``) like any ``torch.optim.lr_scheduler`` class."""

from __future__ import annotations

import math
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


class LinearDecayLR(LRScheduler):
    """Constant for ``constant_steps`` steps, then linearly towards 0 over ``decay_steps``: the official
    pix2pix/CycleGAN ``linear`` policy (junyanz/pytorch-CycleGAN-and-pix2pix ``get_scheduler``: factor
    ``1 - max(0, t + 1 - n_epochs) / (n_epochs_decay + 1)`` at epoch t; CycleGAN Sec. 4: "keep the same
    learning rate for the first 100 epochs and linearly decay the rate to zero over the next 100").
    A step is an epoch or a generator step, as the module's ``lr_schedule_interval`` says."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, constant_steps: int, decay_steps: int, last_epoch: int = -1
    ) -> None:
        if constant_steps < 0 or decay_steps < 0:
            raise ValueError(f"steps must be >= 0, got {constant_steps} and {decay_steps}")
        self.constant_steps = constant_steps
        self.decay_steps = decay_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        return 1.0 - max(0, step + 1 - self.constant_steps) / (self.decay_steps + 1)

    def get_lr(self) -> list[float]:
        return [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]


class WarmupCosineLR(LRScheduler):
    """Linear warm-up from ``warmup_factor`` to 1 over ``warmup_steps`` (inclusive), then the cosine
    factor ``(1 + cos(pi * step / max_steps)) / 2`` of the step counted from 0: the official YolactEdge
    ``train.py`` schedule (``lr_schedule='cosine'``, ``lr_warmup_init`` = ``warmup_factor`` x lr,
    ``lr_warmup_until``; the cosine is not shifted by the warm-up)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_steps: int,
        warmup_steps: int = 0,
        warmup_factor: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if max_steps < 1 or warmup_steps < 0:
            raise ValueError(f"need max_steps >= 1 and warmup_steps >= 0, got {max_steps}, {warmup_steps}")
        self.max_steps, self.warmup_steps, self.warmup_factor = max_steps, warmup_steps, warmup_factor
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step <= self.warmup_steps and self.warmup_steps > 0 and self.warmup_factor < 1:
            return self.warmup_factor + (1 - self.warmup_factor) * step / self.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(step, self.max_steps) / self.max_steps))

    def get_lr(self) -> list[float]:
        return [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]
