"""YOLACT's heads (Bolya et al. 2019, Sec. 3.1-3.2, Fig. 2-4) and its anchors, laid out as the
official ``yolact.py`` and ``data/config.py`` (``yolact_base``) build them.

- ``ProtoNet`` (Sec. 3.1, Fig. 3): on P3, three 3x3 convs, 2x bilinear upsampling, a 3x3 conv and a
  1x1 conv to ``k`` prototypes, ReLU on the output (138x138 for a 550x550 input).
- ``PredictionHead`` (Sec. 3.2, Fig. 4): one head shared by all levels: a 3x3 conv + ReLU, then 3x3
  convs to class scores (C + 1, background first), SSD box deltas and ``k`` tanh mask coefficients
  per anchor.
- ``yolact_priors``: per level one scale (24, 48, 96, 192, 384 px of the 550 input) and aspect
  ratios (1, 1/2, 2), centres at cell centres, as relative (cx, cy, w, h). The official configs set
  ``use_square_anchors`` (kept for "backward compatibility with a bug"): every anchor has height =
  width, so the three ratios give three square sizes scale * sqrt(ratio). The released weights
  were trained so, hence ``square=True`` by default; ``square=False`` gives the paper's ratios.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ProtoNet(nn.Sequential):
    """(B, C, H, W) P3 -> (B, 2H, 2W, k) non-negative prototypes (channels last, ready for ``@``)."""

    def __init__(self, in_channels: int = 256, channels: int = 256, num_prototypes: int = 32) -> None:
        layers: list[nn.Module] = []
        for index in range(3):
            layers += [nn.Conv2d(in_channels if index == 0 else channels, channels, 3, padding=1), nn.ReLU()]
        layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)]
        layers += [
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, num_prototypes, 1),
        ]
        super().__init__(*layers)
        self.num_prototypes = num_prototypes

    def forward(self, p3: Tensor) -> Tensor:
        return F.relu(super().forward(p3)).permute(0, 2, 3, 1).contiguous()


class PredictionHead(nn.Module):
    """Shared across levels: features (B, C, H, W) -> per anchor (B, H*W*A, ...) box deltas (4),
    class logits (C + 1) and tanh mask coefficients (k), anchors ordered (row, column, anchor)."""

    def __init__(
        self, channels: int, num_classes_with_background: int, num_anchors: int, num_prototypes: int
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.box = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        self.cls = nn.Conv2d(channels, num_anchors * num_classes_with_background, 3, padding=1)
        self.coef = nn.Conv2d(channels, num_anchors * num_prototypes, 3, padding=1)
        self.num_classes_with_background = num_classes_with_background
        self.num_prototypes = num_prototypes

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.features(x)
        batch = x.shape[0]

        def per_anchor(conv: nn.Conv2d, width: int) -> Tensor:
            return conv(x).permute(0, 2, 3, 1).reshape(batch, -1, width)

        return (
            per_anchor(self.box, 4),
            per_anchor(self.cls, self.num_classes_with_background),
            torch.tanh(per_anchor(self.coef, self.num_prototypes)),
        )


def yolact_priors(
    feature_sizes: Sequence[tuple[int, int]],
    scales: Sequence[float],
    aspect_ratios: Sequence[float],
    image_size: int,
    square: bool = True,
    device: torch.device | None = None,
) -> Tensor:
    """(sum_l H_l * W_l * A, 4) anchors as relative (cx, cy, w, h), in the head's output order."""
    priors = []
    for (height, width), scale in zip(feature_sizes, scales, strict=True):
        rows, cols = torch.meshgrid(
            torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
        )
        centres = torch.stack([(cols + 0.5) / width, (rows + 0.5) / height], dim=-1).reshape(-1, 1, 2)
        sizes = []
        for ratio in aspect_ratios:
            w = scale * math.sqrt(ratio) / image_size
            h = w if square else scale / math.sqrt(ratio) / image_size
            sizes.append((w, h))
        sizes_t = torch.tensor(sizes, device=device, dtype=centres.dtype).expand(centres.shape[0], -1, -1)
        priors.append(torch.cat([centres.expand(-1, len(sizes), -1), sizes_t], dim=-1).reshape(-1, 4))
    return torch.cat(priors).float()
