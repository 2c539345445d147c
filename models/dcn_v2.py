"""Building blocks of CenterNet's deformable networks (``resdcn``, DLA-34 with deformable IDA-up): DCNv2's
modulated deformable convolution on torchvision's ``deform_conv2d`` (no compiled extension), and the
bilinear initialisation of up-convolutions (the official ``fill_up_weights``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import DeformConv2d


class ModulatedDeformConv2d(DeformConv2d):
    """DCNv2's ``DCN`` module (Zhu et al. 2019, "Deformable ConvNets v2", Sec. 3.1) on torchvision's
    ``deform_conv2d``: ``conv_offset_mask`` (a conv of the same kernel, stride and padding, with bias)
    predicts 2 offsets and 1 modulation per kernel tap; channels [0, 2k^2) are the offsets, interleaved
    (dy, dx) per tap -- the layout of both DCNv2's ``dcn_v2_im2col_cuda.cu`` and torchvision -- and
    [2k^2, 3k^2) the mask logits (sigmoid). The official ``chunk(3)`` + ``cat`` of the first two thirds is
    that same split. Weights: PyTorch's uniform(+-1/sqrt(fan_in)) (DCNv2's ``reset_parameters``), zero
    bias, zero offset/mask conv."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=True)
        taps = kernel_size * kernel_size
        self.conv_offset_mask = nn.Conv2d(
            in_channels, 3 * taps, kernel_size, stride=stride, padding=padding, bias=True
        )
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        offset_mask = self.conv_offset_mask(x)
        taps = offset_mask.shape[1] // 3
        offset, mask = offset_mask[:, : 2 * taps], offset_mask[:, 2 * taps :].sigmoid()
        return super().forward(x, offset, mask)


@torch.no_grad()
def fill_bilinear_(up: nn.ConvTranspose2d) -> None:
    """The official ``fill_up_weights``: ``weight[c, 0]`` = the separable bilinear kernel for every c.

    On a depthwise (``groups`` = channels) transposed conv, as in DLA's IDAUp, this makes it exact
    bilinear upsampling; on an ungrouped one only ``weight[:, 0]`` is set (see the module docstring)."""
    size = up.weight.shape[-1]
    factor = math.ceil(size / 2)
    centre = (2 * factor - 1 - factor % 2) / (2.0 * factor)
    taps = 1 - (torch.arange(size, dtype=torch.float64) / factor - centre).abs()
    up.weight[:, 0] = (taps[:, None] * taps[None, :]).to(up.weight.dtype)
