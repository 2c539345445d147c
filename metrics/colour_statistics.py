"""How far generated images' colours are from a real domain's: a cheap, weights-free check that an
unpaired translator (CycleGAN) moves images toward the other domain, for the synthetic world and as a
sanity figure beside FID (which needs pretrained Inception weights). Written by hand: no library has it."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ColourStatisticsDistance(Metric):
    """``|mean_gen - mean_real|_2 + |std_gen - std_real|_2`` over the RGB channels of all pixels of all
    images seen (per-channel mean and standard deviation, images in [0, 1]). Sums are DDP-synced.

    With ``num_classes``, the distance is measured per class (generated images of class c against real
    images of class c: does a class-conditional generator give each class its colours?) and averaged over
    the classes that have both."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, num_classes: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        for which in ("generated", "real"):
            zeros = torch.zeros(num_classes, 3, dtype=torch.float64)
            self.add_state(f"{which}_sum", zeros.clone(), dist_reduce_fx="sum")
            self.add_state(f"{which}_squares", zeros.clone(), dist_reduce_fx="sum")
            self.add_state(
                f"{which}_pixels", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum"
            )

    def update(
        self,
        generated: Tensor,
        real: Tensor,
        generated_labels: Tensor | None = None,
        real_labels: Tensor | None = None,
    ) -> None:
        """``generated``, ``real``: (B, 3, H, W) in [0, 1] (the real images need not pair with the inputs);
        with classes, their labels 1..C (``datamodules.batch``)."""
        for which, images, labels in (
            ("generated", generated, generated_labels),
            ("real", real, real_labels),
        ):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"{which} images must be (B, 3, H, W), got {tuple(images.shape)}")
            if labels is None:
                if self.num_classes != 1:
                    raise ValueError(f"{which} images need labels: the metric has {self.num_classes} classes")
                labels = torch.ones(len(images), dtype=torch.long, device=images.device)
            pixels = images.detach().double().flatten(2)  # (B, 3, H*W)
            index = labels.long() - 1
            getattr(self, f"{which}_sum").index_add_(0, index, pixels.sum(2))
            getattr(self, f"{which}_squares").index_add_(0, index, (pixels**2).sum(2))
            getattr(self, f"{which}_pixels").index_add_(
                0,
                index,
                torch.full((len(images),), pixels.shape[2], dtype=torch.float64, device=images.device),
            )

    def _moments(self, which: str) -> tuple[Tensor, Tensor]:
        count = getattr(self, f"{which}_pixels").clamp_min(1)[:, None]
        mean = getattr(self, f"{which}_sum") / count
        variance = (getattr(self, f"{which}_squares") / count - mean**2).clamp_min(0)
        return mean, variance.sqrt()

    def compute(self) -> Tensor:
        generated_mean, generated_std = self._moments("generated")
        real_mean, real_std = self._moments("real")
        distance = (generated_mean - real_mean).norm(dim=1) + (generated_std - real_std).norm(dim=1)
        seen = (self.generated_pixels > 0) & (self.real_pixels > 0)
        return distance[seen].mean().float()
