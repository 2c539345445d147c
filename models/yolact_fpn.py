"""YOLACT's FPN (Bolya et al. 2019, "YOLACT", Sec. 6 "Backbone Detector"): P3-P5 from C3-C5 plus P6,
P7 by stride-2 3x3 convs on P5 and P6, as the official ``yolact.py`` computes it -- bilinear
top-down upsampling, a ReLU after each 3x3 output conv of P3-P5, none on P6/P7. Written here because
torchvision's ``FeaturePyramidNetwork`` upsamples by nearest neighbour, has no output ReLU and puts
a ReLU between P6 and P7 (``LastLevelP6P7``): the released weights would compute something else."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class YolactFPN(nn.Module):
    """``forward([C3, C4, C5])`` returns ``[P3, P4, P5, P6, P7]`` with ``out_channels`` each."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, num_downsample: int = 2) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, kernel_size=1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1) for _ in in_channels
        )
        self.downsample = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, stride=2)
            for _ in range(num_downsample)
        )

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        return self.outputs(self.top_down(features)[0])

    def top_down(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """[C3, C4, C5] -> the merged maps before the output convs (the official YolactEdge's
        ``FPN_phase_1``) and the laterals, both finest first."""
        merged: list[Tensor] = [None] * len(features)  # type: ignore[list-item]
        laterals: list[Tensor] = [None] * len(features)  # type: ignore[list-item]
        top = None
        for level in reversed(range(len(features))):
            laterals[level] = self.lateral[level](features[level])
            merged[level] = top = laterals[level] if top is None else add_upsampled(laterals[level], top)
        return merged, laterals

    def outputs(self, merged: Sequence[Tensor]) -> list[Tensor]:
        """Merged maps -> [P3, ..., P7]: ReLU(3x3 conv) per level, then the stride-2 convs
        (the official YolactEdge's ``FPN_phase_2``)."""
        outputs = [F.relu(conv(x)) for conv, x in zip(self.output, merged, strict=True)]
        for conv in self.downsample:
            outputs.append(conv(outputs[-1]))
        return outputs


def add_upsampled(lateral: Tensor, top: Tensor) -> Tensor:
    """The top-down step: ``lateral`` + ``top`` bilinearly resized to the lateral's size."""
    return lateral + F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
