"""The penalty-reduced pixel-wise focal loss on Gaussian heatmaps (CornerNet, Law and Deng, ECCV 2018,
Sec. 3.3, Eq. 1; reused unchanged by CenterNet, Zhou et al. 2019, Eq. 1).

With p the predicted probability and y the target heatmap of one class at one location:

    L = -1/N * sum  { (1 - p)^alpha log(p)                   if y = 1
                    { (1 - y)^beta p^alpha log(1 - p)        otherwise

N is the number of locations with y = 1 (positives) over the whole batch and all classes; without any
positive, only the negative term is summed (not divided), as the official ``_neg_loss``. alpha = 2, beta =
4; the probability is the sigmoid of the logits clamped to [1e-4, 1 - 1e-4], as the official ``_sigmoid``
(so the log stays finite and saturated logits stop learning from this loss).
"""

from __future__ import annotations

import torch
from torch import Tensor

PROBABILITY_CLAMP = 1e-4


def clamped_sigmoid(logits: Tensor) -> Tensor:
    """sigmoid(logits) clamped to [1e-4, 1 - 1e-4] (the official ``_sigmoid``)."""
    return logits.sigmoid().clamp(PROBABILITY_CLAMP, 1 - PROBABILITY_CLAMP)


def heatmap_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """The loss (module docstring) of (B, C, H, W) ``logits`` against (B, C, H, W) ``targets`` in [0, 1]
    whose peaks are exactly 1; computed in float32 whatever the autocast dtype."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    probability = clamped_sigmoid(logits.float())
    targets = targets.float()
    positive = targets.eq(1)
    positive_loss = torch.where(positive, (1 - probability).pow(alpha) * probability.log(), 0.0).sum()
    negative_weight = (1 - targets).pow(beta)
    negative_loss = torch.where(
        positive, 0.0, negative_weight * probability.pow(alpha) * (1 - probability).log()
    ).sum()
    # without positives the positive term is 0 and the negative one is not divided: the official branch
    return -(positive_loss + negative_loss) / positive.sum().clamp_min(1)
