"""Stacked Hourglass network (Newell, Yang, Deng, "Stacked Hourglass Networks for Human Pose Estimation",
ECCV 2016), layer for layer as the official PyTorch port builds it (princeton-vl/pytorch_stacked_hourglass,
``models/posenet.py`` ``PoseNet`` and ``models/layers.py``), so its released checkpoints load
(``models.hourglass_official_weights``) and compute the same heatmaps.

Input: ``(B, 3, H, W)`` float RGB images scaled to [0, 1] -- what the official data pipeline feeds
(``data/MPII/dp.py``: an RGB crop ``/ 255``, no mean/std normalisation). The official ``PoseNet.forward``
takes channels-last ``(B, H, W, 3)`` and permutes it; this model takes channels-first directly. H and W
must be multiples of ``4 * 2**depth`` (64 for the paper's depth 4; the paper and official code use 256).

Output: ``(B, num_stacks, num_keypoints, H / 4, W / 4)`` -- the heatmaps of every stack, since the loss
supervises each one (Sec. 3.3, intermediate supervision); ``output[:, -1]`` is the network's prediction.
The official code differs from the paper's text in a few places, and this module follows the code:
every convolution has a bias (also those followed by BatchNorm), and the features after each hourglass
are one residual module and one 1x1 convolution + BatchNorm + ReLU.

Written by hand because neither torchvision nor timm has an hourglass network.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn


class Residual(nn.Module):
    """The residual module of Sec. 3.2 (Fig. 4 left): a pre-activation bottleneck, BN-ReLU-1x1 conv to
    ``out_channels / 2``, BN-ReLU-3x3 conv, BN-ReLU-1x1 conv to ``out_channels``, plus the skip branch.

    The skip branch is the identity when the channel counts agree and a 1x1 convolution otherwise. As in
    the official ``Residual``, that 1x1 convolution is built either way (it is part of every official
    checkpoint and of the official parameter count); when the identity is used it never enters the
    forward pass, so its parameters are frozen (``requires_grad=False``): the official optimiser never
    changes them either (their gradient stays None), and DistributedDataParallel needs no
    ``find_unused_parameters``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        middle = out_channels // 2
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, middle, 1)
        self.bn2 = nn.BatchNorm2d(middle)
        self.conv2 = nn.Conv2d(middle, middle, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(middle)
        self.conv3 = nn.Conv2d(middle, out_channels, 1)
        self.relu = nn.ReLU()
        self.skip = nn.Conv2d(in_channels, out_channels, 1)
        self.projects_skip = in_channels != out_channels
        if not self.projects_skip:
            self.skip.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.skip(x) if self.projects_skip else x
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + skip


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels (Sec. 3.1, Fig. 3), defined recursively.

    At each level the upper branch keeps the resolution through a residual module; the lower branch
    max-pools by 2, applies a residual module, the hourglass of ``depth - 1`` levels (a single residual
    module at the bottom), another residual module, and upsamples by 2 (nearest neighbour). The two
    branches are added element-wise. Depth 4 takes a 64 x 64 map down to 4 x 4 and back.
    """

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"an hourglass needs depth >= 1, got {depth}")
        self.upper = Residual(channels, channels)
        self.pool = nn.MaxPool2d(2, 2)
        self.lower_in = Residual(channels, channels)
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.lower_out = Residual(channels, channels)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        upper = self.upper(x)
        lower = self.lower_out(self.inner(self.lower_in(self.pool(x))))
        return upper + self.upsample(lower)


def stem(features: int) -> nn.Sequential:
    """The stem of Sec. 3.2: 7x7 stride-2 convolution (64 channels) + BN + ReLU, a residual module to 128
    channels, 2x2 max pooling, and two residual modules to ``features`` channels: 1/4 of the input size."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 64, 7, stride=2, padding=3),
            bn=nn.BatchNorm2d(64),
            relu=nn.ReLU(),
            residual1=Residual(64, 128),
            pool=nn.MaxPool2d(2, 2),
            residual2=Residual(128, 128),
            residual3=Residual(128, features),
        )
    )


class HourglassStack(nn.Module):
    """One stack of Sec. 3.3 (Fig. 4 right): hourglass, features (a residual module and a 1x1 convolution
    + BN + ReLU), and a 1x1 convolution predicting the heatmaps. Unless it is the last stack, the
    predictions and the features are remapped by 1x1 convolutions and added to the stack's input, which
    becomes the next stack's input."""

    def __init__(self, features: int, num_keypoints: int, depth: int, feeds_next: bool) -> None:
        super().__init__()
        self.hourglass = Hourglass(depth, features)
        self.features = nn.Sequential(
            OrderedDict(
                residual=Residual(features, features),
                conv=nn.Conv2d(features, features, 1),
                bn=nn.BatchNorm2d(features),
                relu=nn.ReLU(),
            )
        )
        self.predict = nn.Conv2d(features, num_keypoints, 1)
        self.feeds_next = feeds_next
        if feeds_next:
            self.remap_predictions = nn.Conv2d(num_keypoints, features, 1)
            self.remap_features = nn.Conv2d(features, features, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(heatmaps, next stack's input)``; the second is None for the last stack."""
        features = self.features(self.hourglass(x))
        heatmaps = self.predict(features)
        if not self.feeds_next:
            return heatmaps, None
        return heatmaps, x + self.remap_predictions(heatmaps) + self.remap_features(features)


class StackedHourglass(nn.Module):
    """The stacked hourglass network (Sec. 3, Fig. 1); defaults = the official ``PoseNet(nstack=8,
    inp_dim=256, oup_dim=16)`` of the paper's MPII model (32,819,328 parameters; 2 stacks: 8,429,088).

    ``forward`` takes ``(B, 3, H, W)`` RGB images in [0, 1] (see the module docstring) and returns every
    stack's heatmaps, ``(B, num_stacks, num_keypoints, H / 4, W / 4)``; the last stack is the prediction.
    ``official_weights`` is a checkpoint of the official repository (its ``checkpoint.pt``), loaded after
    construction by ``models.hourglass_official_weights.load_official_weights``.
    """

    output_stride = 4

    def __init__(
        self,
        num_stacks: int = 8,
        features: int = 256,
        num_keypoints: int = 16,
        *,
        depth: int = 4,
        official_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if num_stacks < 1 or features < 2 or num_keypoints < 1:
            raise ValueError(
                f"need num_stacks >= 1, features >= 2, num_keypoints >= 1; got {num_stacks}, {features}, "
                f"{num_keypoints}"
            )
        self.num_stacks = num_stacks
        self.features = features
        self.num_keypoints = num_keypoints
        self.depth = depth
        self.stem = stem(features)
        self.stacks = nn.ModuleList(
            HourglassStack(features, num_keypoints, depth, feeds_next=index < num_stacks - 1)
            for index in range(num_stacks)
        )
        if official_weights is not None:
            from models.hourglass_official_weights import load_official_weights

            load_official_weights(self, official_weights)

    @property
    def input_multiple(self) -> int:
        """H and W must be multiples of this: the stem's stride 4 times the hourglass's ``depth`` poolings."""
        return self.output_stride * 2**self.depth

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"StackedHourglass takes (B, 3, H, W) RGB images, got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if height % self.input_multiple or width % self.input_multiple:
            raise ValueError(
                f"StackedHourglass (depth {self.depth}) needs H and W divisible by {self.input_multiple}, "
                f"got {height} x {width}"
            )
        x = self.stem(images)
        heatmaps = []
        for stack in self.stacks:
            stack_heatmaps, x = stack(x)
            heatmaps.append(stack_heatmaps)
        return torch.stack(heatmaps, dim=1)
