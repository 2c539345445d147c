"""Corner pooling (CornerNet, Law and Deng, ECCV 2018, Sec. 3.4, Fig. 6) with ``torch.cummax`` on flipped
tensors -- the official code compiles a C++/CUDA extension (``_cpools``) for the four directional maxima;
a running maximum along an axis is exactly ``cummax``, so no extension is needed and it runs on any device.

A top-left corner at (i, j) looks right along its row and down along its column: the top-left pool is
max_{j' >= j} f_t(i, j') + max_{i' >= i} f_l(i', j) (the official ``TopPool`` scans bottom-to-top and
``LeftPool`` right-to-left). The bottom-right pool looks left and up: max_{j' <= j} + max_{i' <= i}.

``CornerPool`` is the official prediction module around it (``models/CornerNet.py``, class ``pool``):
two 3x3 conv-BN-ReLU branches of 128 channels, each pooled in its direction, summed, 3x3 conv + BN, plus
a 1x1 conv + BN shortcut of the input, ReLU, and a 3x3 conv-BN-ReLU; 1,542,144 parameters at 256
channels.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

Corner = Literal["top_left", "bottom_right"]


def max_towards_end(x: Tensor, dim: int) -> Tensor:
    """out[..., i, ...] = max over positions i' >= i along ``dim`` (a scan from the end, official
    ``TopPool`` for dim 2 and ``LeftPool`` for dim 3)."""
    return torch.flip(torch.cummax(torch.flip(x, [dim]), dim=dim).values, [dim])


def max_towards_start(x: Tensor, dim: int) -> Tensor:
    """out[..., i, ...] = max over positions i' <= i along ``dim`` (``BottomPool``, ``RightPool``)."""
    return torch.cummax(x, dim=dim).values


def corner_pool(vertical: Tensor, horizontal: Tensor, corner: Corner) -> Tensor:
    """(B, C, H, W) ``vertical`` pooled along the columns plus ``horizontal`` pooled along the rows, toward
    the object's interior from a ``corner`` (module docstring)."""
    if corner == "top_left":
        return max_towards_end(vertical, 2) + max_towards_end(horizontal, 3)
    if corner == "bottom_right":
        return max_towards_start(vertical, 2) + max_towards_start(horizontal, 3)
    raise ValueError(f"corner must be 'top_left' or 'bottom_right', got {corner!r}")


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """The official ``convolution``: conv (no bias) + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class CornerPool(nn.Module):
    """The corner prediction module of one corner type (module docstring)."""

    def __init__(self, channels: int, corner: Corner, pool_channels: int = 128) -> None:
        super().__init__()
        if corner not in ("top_left", "bottom_right"):
            raise ValueError(f"corner must be 'top_left' or 'bottom_right', got {corner!r}")
        self.corner = corner
        self.vertical = conv_bn_relu(channels, pool_channels)
        self.horizontal = conv_bn_relu(channels, pool_channels)
        self.pooled_conv = nn.Conv2d(pool_channels, channels, 3, padding=1, bias=False)
        self.pooled_bn = nn.BatchNorm2d(channels)
        self.shortcut_conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.out = conv_bn_relu(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        pooled = corner_pool(self.vertical(x), self.horizontal(x), self.corner)
        merged = self.pooled_bn(self.pooled_conv(pooled)) + self.shortcut_bn(self.shortcut_conv(x))
        return self.out(self.relu(merged))
