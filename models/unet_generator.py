"""The U-Net generator of pix2pix (Isola et al., "Image-to-Image Translation with Conditional Adversarial
Networks", CVPR 2017).

Sec. 3.2.1: an encoder-decoder "with skip connections between each layer i and layer n - i, where n is
the total number of layers. Each skip connection simply concatenates all channels at layer i with those
at layer n - i". Sec. 6.1.1: encoder C64-C128-C256-C512-C512-C512-C512-C512 (4x4 convolutions, stride 2,
leaky ReLU 0.2, no BatchNorm on the first), decoder CD512-CD512-CD512-C512-C256-C128-C64 (ReLU, 50%
dropout in the first three), then a convolution to the output channels and tanh. Layout as the official
``UnetGenerator`` (junyanz/pytorch-CycleGAN-and-pix2pix ``unet_256``): nested skip blocks, outermost
first; the innermost block has no norm after its down convolution; the outermost up convolution keeps its
bias; dropout follows the up path of the ``num_downs - 5`` blocks just outside the innermost one.

The nesting is kept so that the state-dict names are the official ones (``model.model.1.model.3...``):
the released ``latest_net_G.pth`` loads without renaming (``models.image_translation_official_weights``).
Note that pix2pix runs the generator at test time "in exactly the same manner as during the training
phase" (Sec. 3.3: dropout on, batch statistics) -- the caller chooses train or eval mode.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from models.gan_init import init_gan_weights
from models.gan_norm import conv_bias, norm_layer
from models.image_translation_official_weights import load_official_generator_file


class UNetSkipBlock(nn.Module):
    """One level of the U-Net: down convolution, the ``inner`` levels, up convolution; all but the
    outermost level return ``cat(input, up path)`` (the skip connection, pix2pix Sec. 3.2.1).

    ``outer_channels``: this level's output channels (before the concatenation); ``inner_channels``: the
    down convolution's; ``in_channels``: its input's (``outer_channels`` except at the outermost level).
    The Sequential ``model`` holds, with the official indices:
    outermost ``[down conv, inner, ReLU, up conv (bias), tanh]``; innermost ``[leaky ReLU, down conv,
    ReLU, up conv, norm]``; others ``[leaky ReLU, down conv, norm, inner, ReLU, up conv, norm, (dropout)]``.
    """

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        in_channels: int | None = None,
        inner: nn.Module | None = None,
        outermost: bool = False,
        norm: str = "batch",
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        bias = conv_bias(norm)
        down_conv = nn.Conv2d(in_channels or outer_channels, inner_channels, 4, 2, 1, bias=bias)
        up_in = inner_channels if inner is None else 2 * inner_channels  # the inner level's skip doubles it
        if outermost:
            if inner is None:
                raise ValueError("the outermost U-Net level needs inner levels")
            up_conv = nn.ConvTranspose2d(up_in, outer_channels, 4, 2, 1)
            layers = [down_conv, inner, nn.ReLU(inplace=True), up_conv, nn.Tanh()]
        else:
            up_conv = nn.ConvTranspose2d(up_in, outer_channels, 4, 2, 1, bias=bias)
            down = [nn.LeakyReLU(0.2), down_conv]
            up = [nn.ReLU(inplace=True), up_conv, norm_layer(norm, outer_channels)]
            if inner is None:
                layers = down + up
            else:
                layers = [*down, norm_layer(norm, inner_channels), inner, *up]
                if dropout:
                    layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        # The official LeakyReLU is in place, so its skip carries LeakyReLU(x); the parent's ReLU, the next
        # layer either way, maps that and x to the same values and gradients, so ours leaves x untouched.
        return torch.cat([x, self.model(x)], dim=1)


class UNetGenerator(nn.Module):
    """pix2pix's U-Net generator (Sec. 3.2.1, 6.1.1): (B, in, H, W) in [-1, 1] -> (B, out, H, W) in
    [-1, 1] (tanh); H and W multiples of ``2**num_downs`` (the innermost level is 1 x 1 at 256 x 256).

    ``num_downs`` down-samplings: the first four go to ``base * (1, 2, 4, 8)`` channels, the rest stay at
    ``base * 8``. Defaults = the official ``unet_256``: 54,413,955 parameters. Weights N(0, 0.02), or
    ``official_weights``: a released ``latest_net_G.pth`` (local file)."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        base_channels: int = 64,
        norm: str = "batch",
        dropout: bool = True,
        official_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(
                f"num_downs must be at least 5 (the official U-Net's fixed levels), got {num_downs}"
            )
        self.num_downs = num_downs
        widest = base_channels * 8
        block = UNetSkipBlock(widest, widest, norm=norm)
        for _ in range(num_downs - 5):
            block = UNetSkipBlock(widest, widest, inner=block, norm=norm, dropout=dropout)
        for multiple in (4, 2, 1):
            block = UNetSkipBlock(
                base_channels * multiple, base_channels * multiple * 2, inner=block, norm=norm
            )
        self.model = UNetSkipBlock(
            out_channels, base_channels, in_channels=in_channels, inner=block, outermost=True, norm=norm
        )
        init_gan_weights(self)
        if official_weights is not None:  # the released generator, by its official names
            load_official_generator_file(self, official_weights)

    def forward(self, images: Tensor) -> Tensor:
        multiple = 2**self.num_downs
        if images.shape[-2] % multiple or images.shape[-1] % multiple:
            raise ValueError(
                f"UNetGenerator(num_downs={self.num_downs}) needs height and width that are multiples of "
                f"{multiple}, got {tuple(images.shape[-2:])}"
            )
        return self.model(images)
