"""RetinaFace's network (Deng et al. 2020, "RetinaFace: Single-shot Multi-level Face Localisation in the
Wild", CVPR), as the widely used PyTorch implementation builds it (github.com/biubug6/Pytorch_Retinaface,
``models/retinaface.py``, ``models/net.py``, ``data/config.py``), so that its released weights
(``mobilenet0.25_Final.pth``, ``Resnet50_Final.pth``) load strictly by name (``official_weights``, see
``models.retinaface_official_weights``).

- ``body``: the backbone's children up to the last returned stage (the implementation wraps its backbone in
  torchvision's ``IntermediateLayerGetter``, which keeps the names and drops later children), returning
  strides 8, 16 and 32: MobileNet-0.25 (``MobileNetV1`` below: ``stage1``-``stage3``, 64/128/256 channels)
  or torchvision's ResNet-50 (``layer2``-``layer4``, 512/1024/2048 channels).
- ``fpn``: 1x1 conv-BN-LeakyReLU laterals (``output1``-``output3``), top-down nearest upsampling to the
  finer level's size, sum, then a 3x3 conv-BN-LeakyReLU (``merge2``, then ``merge1``); the coarsest level
  gets no merge conv. LeakyReLU slope 0.1 when ``out_channel <= 64`` (MobileNet), else 0 (a ReLU).
- ``ssh1``-``ssh3``: SSH context modules (Najibi et al. 2017): a 3x3 branch of ``out/2`` channels and
  5x5 / 7x7 branches of ``out/4`` channels made of two / three stacked 3x3 convs (the 7x7 branch shares the
  5x5 branch's first conv), concatenated, then ReLU. The branch ends carry BN without activation.
- ``ClassHead`` / ``BboxHead`` / ``LandmarkHead``: one 1x1 conv (``conv1x1``) per level with 2 anchors x
  (2 logits / 4 box deltas / 10 landmark deltas).
- ``DenseHead`` (only with ``dense_regression=True``; the implementation has none): the paper's dense
  regression branch (Sec. 3.2), the same 1x1 conv per level with 2 anchors x 144 numbers (P_ST, P_cam,
  P_ill; ``models.face_dense_regression``), returned as a fourth output (B, A, 144).

``forward(images)`` returns ``(box deltas (B, A, 4), class logits (B, A, 2), landmark deltas (B, A, 10))``
in the implementation's anchor order: level by level (stride 8, 16, 32), cells row-major, 2 anchors per
cell (min sizes ``(16, 32)``, ``(64, 128)``, ``(256, 512)`` in ``data/config.py``, its ``PriorBox``). The
class output is always raw logits: the implementation returns ``softmax(logits)`` when built with
``phase='test'``; here the decoder applies the softmax (face score = ``logits.softmax(-1)[..., 1]``).
Level ``k`` has ``ceil(H / stride_k) x ceil(W / stride_k)`` cells (``anchor_count``).

Its ``detect.py`` feeds BGR images (``cv2.imread``) as float 0..255 minus the mean ``(104, 117, 123)``,
with no scaling, at the original size.

Parameter counts (equal to the implementation's networks, checked in ``tests/test_retinaface_network.py``):
MobileNet-0.25 426,608; ResNet-50 27,293,600 (the dense head adds 3 x (64 + 1) x 288 = 56,160 /
3 x (256 + 1) x 288 = 222,048). Initialisation is PyTorch's / torchvision's default (the
implementation loads ImageNet backbone weights before training; nothing is downloaded here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet50

from models.face_dense_regression import DENSE_VALUES
from models.retinaface_official_weights import load_official_weights


@dataclass(frozen=True)
class RetinaFaceConfig:
    """The network settings of one of the implementation's ``data/config.py`` configs."""

    official_name: str  # cfg['name']
    backbone: str  # "mobilenet0.25" or "resnet50"
    return_layers: tuple[str, ...]  # cfg['return_layers'], in order (strides 8, 16, 32)
    in_channel: int  # cfg['in_channel']: the returned stages have 2x, 4x, 8x this many channels
    out_channel: int  # cfg['out_channel']: FPN, SSH and head width

    @property
    def in_channels_list(self) -> tuple[int, int, int]:
        return (self.in_channel * 2, self.in_channel * 4, self.in_channel * 8)


RETINAFACE_PRESETS: dict[str, RetinaFaceConfig] = {
    "mobilenet0.25": RetinaFaceConfig(
        "mobilenet0.25", "mobilenet0.25", ("stage1", "stage2", "stage3"), 32, 64
    ),
    "resnet50": RetinaFaceConfig("Resnet50", "resnet50", ("layer2", "layer3", "layer4"), 256, 256),
}  # cfg_mnet, cfg_re50

ANCHORS_PER_LOCATION = 2
STRIDES = (8, 16, 32)  # cfg['steps']: the returned stages' strides


def leaky_slope(out_channels: int) -> float:
    """The implementation's FPN / SSH activation slope: 0.1 for narrow (<= 64 channel) networks, else 0."""
    return 0.1 if out_channels <= 64 else 0.0


def conv_bn_act(in_channels: int, out_channels: int, kernel: int, stride: int, slope: float) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BN -> LeakyReLU(slope): state-dict entries ``0.*`` and ``1.*``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(slope, inplace=True),
    )


def conv3x3_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (no bias) -> BN, no activation (an SSH branch end)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels)
    )


def depthwise_separable(
    in_channels: int, out_channels: int, stride: int, slope: float = 0.1
) -> nn.Sequential:
    """MobileNet block: depthwise 3x3 (stride) -> BN -> LeakyReLU -> pointwise 1x1 -> BN -> LeakyReLU,
    one flat Sequential of six entries as in the implementation."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.LeakyReLU(slope, inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(slope, inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNet-0.25 (Howard et al. 2017 at width 0.25) with LeakyReLU(0.1), as the implementation's
    ``models/net.py`` ``MobileNetV1``: three stages ending at strides 8 (64 channels), 16 (128), 32 (256).
    Its ImageNet classifier (average pool + Linear 256 -> 1000) is left out: ``IntermediateLayerGetter``
    drops it, so neither the detector nor the released files have it."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn_act(3, 8, 3, 2, 0.1),
            depthwise_separable(8, 16, 1),
            depthwise_separable(16, 32, 2),
            depthwise_separable(32, 32, 1),
            depthwise_separable(32, 64, 2),
            depthwise_separable(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            depthwise_separable(64, 128, 2), *(depthwise_separable(128, 128, 1) for _ in range(5))
        )
        self.stage3 = nn.Sequential(depthwise_separable(128, 256, 2), depthwise_separable(256, 256, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.stage3(self.stage2(self.stage1(images)))


class StageFeatures(nn.ModuleDict):
    """A backbone's children, by their names, up to the last of ``returned``; ``forward`` runs them in
    order and returns the outputs of ``returned`` (the layout of torchvision's ``IntermediateLayerGetter``,
    which the implementation uses)."""

    def __init__(self, backbone: nn.Module, returned: Sequence[str]) -> None:
        names = [name for name, _ in backbone.named_children()]
        if [name for name in names if name in returned] != list(returned):
            raise ValueError(
                f"return layers {list(returned)} are not children of the backbone in order: {names}"
            )
        kept = names[: names.index(returned[-1]) + 1]
        super().__init__({name: getattr(backbone, name) for name in kept})
        self.returned = tuple(returned)

    def forward(self, images: Tensor) -> list[Tensor]:
        features, x = [], images
        for name, module in self.items():
            x = module(x)
            if name in self.returned:
                features.append(x)
        return features


def backbone_body(config: RetinaFaceConfig) -> StageFeatures:
    if config.backbone == "mobilenet0.25":
        return StageFeatures(MobileNetV1(), config.return_layers)
    if config.backbone == "resnet50":
        return StageFeatures(resnet50(weights=None), config.return_layers)
    raise ValueError(f"RetinaFace backbone must be 'mobilenet0.25' or 'resnet50', got {config.backbone!r}")


class FPN(nn.Module):
    """The implementation's 3-level FPN (``models/net.py`` ``FPN``); levels finest first."""

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        slope = leaky_slope(out_channels)
        self.output1 = conv_bn_act(in_channels[0], out_channels, 1, 1, slope)
        self.output2 = conv_bn_act(in_channels[1], out_channels, 1, 1, slope)
        self.output3 = conv_bn_act(in_channels[2], out_channels, 1, 1, slope)
        self.merge1 = conv_bn_act(out_channels, out_channels, 3, 1, slope)
        self.merge2 = conv_bn_act(out_channels, out_channels, 3, 1, slope)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        level1, level2, level3 = (
            self.output1(features[0]),
            self.output2(features[1]),
            self.output3(features[2]),
        )
        level2 = self.merge2(
            level2 + torch.nn.functional.interpolate(level3, size=level2.shape[-2:], mode="nearest")
        )
        level1 = self.merge1(
            level1 + torch.nn.functional.interpolate(level2, size=level1.shape[-2:], mode="nearest")
        )
        return [level1, level2, level3]


class SSH(nn.Module):
    """SSH context module (Najibi et al. 2017, "SSH: Single Stage Headless Face Detector") as the
    implementation's ``models/net.py`` ``SSH``: 3x3 / 5x5 / 7x7 receptive-field branches of out/2, out/4,
    out/4 channels from one, two and three stacked 3x3 convs, concatenated, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"SSH out_channels must be a multiple of 4, got {out_channels}")
        slope, quarter = leaky_slope(out_channels), out_channels // 4
        self.conv3X3 = conv3x3_bn(in_channels, out_channels // 2)
        self.conv5X5_1 = conv_bn_act(in_channels, quarter, 3, 1, slope)
        self.conv5X5_2 = conv3x3_bn(quarter, quarter)
        self.conv7X7_2 = conv_bn_act(quarter, quarter, 3, 1, slope)
        self.conv7x7_3 = conv3x3_bn(quarter, quarter)  # lower-case x: the implementation's name

    def forward(self, x: Tensor) -> Tensor:
        shared = self.conv5X5_1(x)
        branches = (self.conv3X3(x), self.conv5X5_2(shared), self.conv7x7_3(self.conv7X7_2(shared)))
        return torch.relu(torch.cat(branches, dim=1))


class AnchorHead(nn.Module):
    """A 1x1 conv with ``anchors x values`` outputs, flattened to (B, H*W*anchors, values) in row-major
    cell order, anchors fastest (the implementation's ``ClassHead`` / ``BboxHead`` / ``LandmarkHead``)."""

    def __init__(self, in_channels: int, values: int, anchors: int = ANCHORS_PER_LOCATION) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(in_channels, anchors * values, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.values)


def anchor_heads(in_channels: int, values: int, levels: int = 3) -> nn.ModuleList:
    return nn.ModuleList(AnchorHead(in_channels, values) for _ in range(levels))


def anchor_count(height: int, width: int, strides: Sequence[int] = STRIDES) -> int:
    """Anchors the network predicts for an (height, width) input (the implementation's ``PriorBox``)."""
    return ANCHORS_PER_LOCATION * sum(math.ceil(height / s) * math.ceil(width / s) for s in strides)


class RetinaFaceNetwork(nn.Module):
    """RetinaFace with a MobileNet-0.25 or ResNet-50 backbone, in the implementation's module names.

    ``backbone``: a ``RETINAFACE_PRESETS`` key; ``official_weights``: a released ``*_Final.pth`` file of
    the same backbone (local), loaded strictly. ``forward(images (B, 3, H, W))`` ->
    ``(box deltas (B, A, 4), class logits (B, A, 2), landmark deltas (B, A, 10))``, raw in train and eval,
    and the dense regression parameters (B, A, 144) fourth with ``dense_regression`` (off by default).
    """

    strides = STRIDES
    anchors_per_location = ANCHORS_PER_LOCATION

    def __init__(
        self,
        backbone: str = "mobilenet0.25",
        official_weights: str | Path | None = None,
        dense_regression: bool = False,
    ) -> None:
        super().__init__()
        if backbone not in RETINAFACE_PRESETS:
            raise ValueError(
                f"RetinaFace backbone must be one of {sorted(RETINAFACE_PRESETS)}, got {backbone!r}"
            )
        self.config = config = RETINAFACE_PRESETS[backbone]
        width = config.out_channel
        self.body = backbone_body(config)
        self.fpn = FPN(config.in_channels_list, width)
        self.ssh1 = SSH(width, width)
        self.ssh2 = SSH(width, width)
        self.ssh3 = SSH(width, width)
        self.ClassHead = anchor_heads(width, 2)
        self.BboxHead = anchor_heads(width, 4)
        self.LandmarkHead = anchor_heads(width, 10)
        if official_weights not in (None, "", "None"):  # jsonargparse may pass a nested null as "None"
            load_official_weights(self, official_weights)
        # after the released weights (which have no dense head), so they still load strictly; small
        # initial outputs start every face at the template seen by the default camera
        self.DenseHead = anchor_heads(width, DENSE_VALUES) if dense_regression else None
        for head in self.DenseHead or ():
            nn.init.normal_(head.conv1x1.weight, std=0.01)
            nn.init.zeros_(head.conv1x1.bias)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"RetinaFace takes (B, 3, H, W) images, got {tuple(images.shape)}")
        levels = self.fpn(self.body(images))
        features = [ssh(level) for ssh, level in zip((self.ssh1, self.ssh2, self.ssh3), levels, strict=True)]

        def predict(heads: nn.ModuleList) -> Tensor:
            return torch.cat([head(f) for head, f in zip(heads, features, strict=True)], dim=1)

        outputs = predict(self.BboxHead), predict(self.ClassHead), predict(self.LandmarkHead)
        return outputs if self.DenseHead is None else (*outputs, predict(self.DenseHead))
