"""How far generated images' colours are from a real domain's: a cheap, weights-free check that an
unpaired translator (CycleGAN) moves images toward the other domain, for the synthetic world and as a
sanity figure beside FID (which needs pretrained Inception weights). Written by hand: no library has it."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ColourStatisticsDistance(Metric):
    """``|mean_gen - mean_real|_2 + |std_gen - std_real|_2`` over the RGB channels of all pixels of all
    images seen (per-channel mean and standard deviation, images in [0, 1]). Sums are DDP-synced."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for which in ("generated", "real"):
            self.add_state(f"{which}_sum", torch.zeros(3, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{which}_squares", torch.zeros(3, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{which}_pixels", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, generated: Tensor, real: Tensor) -> None:
        """``generated``, ``real``: (B, 3, H, W) in [0, 1] (the real images need not pair with the inputs)."""
        for which, images in (("generated", generated), ("real", real)):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"{which} images must be (B, 3, H, W), got {tuple(images.shape)}")
            pixels = images.detach().double().permute(1, 0, 2, 3).reshape(3, -1)
            setattr(self, f"{which}_sum", getattr(self, f"{which}_sum") + pixels.sum(1))
            setattr(self, f"{which}_squares", getattr(self, f"{which}_squares") + (pixels**2).sum(1))
            setattr(self, f"{which}_pixels", getattr(self, f"{which}_pixels") + pixels.shape[1])

    def _moments(self, which: str) -> tuple[Tensor, Tensor]:
        count = getattr(self, f"{which}_pixels").clamp_min(1)
        mean = getattr(self, f"{which}_sum") / count
        variance = (getattr(self, f"{which}_squares") / count - mean**2).clamp_min(0)
        return mean, variance.sqrt()

    def compute(self) -> Tensor:
        generated_mean, generated_std = self._moments("generated")
        real_mean, real_std = self._moments("real")
        distance = (generated_mean - real_mean).norm() + (generated_std - real_std).norm()
        return distance.float()
