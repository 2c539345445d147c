"""ResNet-FPN backbones (Lin et al. 2017, "Feature Pyramid Networks", Sec. 3; He et al. 2016 ResNets)
built from torchvision's ResNets and ``BackboneWithFPN``, with the pyramid's levels and extra blocks
as parameters: C2-C5 -> P2-P5 plus a max-pooled P6 for Mask R-CNN (``LastLevelMaxPool``), C3-C5 ->
P3-P5 plus P6, P7 by stride-2 convs for YOLACT and RetinaFace (``LastLevelP6P7``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool

RESNETS = {18: resnet.resnet18, 34: resnet.resnet34, 50: resnet.resnet50, 101: resnet.resnet101}
# Trainable stages counted from the top, as in torchvision's ``_resnet_fpn_extractor`` (5 = everything).
_STAGES_TOP_DOWN = ("layer4", "layer3", "layer2", "layer1", "conv1")
MASK_RCNN_LEVELS = (2, 3, 4, 5)  # C2-C5


def level_strides(levels: Sequence[int]) -> tuple[int, ...]:
    """Output strides of the pyramid levels P<level> built from C<level> (stride 2**level)."""
    return tuple(2**level for level in levels)


def resnet_fpn_backbone(
    depth: int = 50,
    fpn_channels: int = 256,
    frozen_bn: bool = True,
    trainable_layers: int = 3,
    weights_path: str | Path | None = None,
    levels: Sequence[int] = MASK_RCNN_LEVELS,
    extra_blocks: ExtraFPNBlock | None = None,
    global_context: bool = False,
) -> BackboneWithFPN:
    """ResNet-``depth`` with an FPN on the stages C<level> for ``levels`` (2..5, increasing) and
    ``extra_blocks`` on top (default ``LastLevelMaxPool``: P6 by max-pooling P5, Mask R-CNN paper Sec. 3
    "Network Architecture"); features are ``{"0": P<levels[0]>, "1": ..., <extra names>}`` -- with
    the defaults ``{"0": P2, ..., "3": P5, "pool": P6}``, torchvision's layout.

    ``frozen_bn`` uses ``FrozenBatchNorm2d`` (fixed ImageNet statistics, the paper's fine-tuning setup);
    otherwise ordinary ``BatchNorm2d``, which from-scratch training needs. ``trainable_layers`` (0-5)
    freezes the stem and the lowest stages like torchvision does. ``weights_path`` is a local
    torchvision ResNet state dict (nothing is downloaded). ``global_context`` adds the top stage's global
    average, through a linear layer, to the top lateral (``GlobalContextFPN``: UPSNet's COCO FPN).
    """
    if not levels or list(levels) != sorted(set(levels)) or not set(levels) <= {2, 3, 4, 5}:
        raise ValueError(f"levels must be increasing ResNet stages among 2..5, got {list(levels)}")
    body = resnet_body(depth, frozen_bn, trainable_layers, weights_path)
    stage2_channels = body.inplanes // 8  # 64 for BasicBlock ResNets, 256 for Bottleneck ones
    in_channels = [stage2_channels * 2 ** (level - 2) for level in levels]
    extra_blocks = LastLevelMaxPool() if extra_blocks is None else extra_blocks
    backbone = BackboneWithFPN(
        body,
        return_layers={f"layer{level - 1}": str(index) for index, level in enumerate(levels)},
        in_channels_list=in_channels,
        out_channels=fpn_channels,
        extra_blocks=extra_blocks,
    )
    if global_context:
        backbone.fpn = GlobalContextFPN(in_channels, fpn_channels, extra_blocks)
    return backbone


class GlobalContextFPN(FeaturePyramidNetwork):
    """torchvision's FPN (same keys, plus ``global_context``) whose top lateral also receives the top
    input stage's global average pooled through a linear layer and broadcast over the map: the
    ``fpn_with_gap`` FPN of UPSNet's official COCO configuration (its code, not its paper, has it)."""

    def __init__(self, in_channels_list: list[int], out_channels: int, extra_blocks: ExtraFPNBlock) -> None:
        super().__init__(in_channels_list, out_channels, extra_blocks)
        self.global_context = nn.Linear(in_channels_list[-1], out_channels)

    def get_result_from_inner_blocks(self, x: torch.Tensor, idx: int) -> torch.Tensor:
        lateral = super().get_result_from_inner_blocks(x, idx)
        if idx % len(self.inner_blocks) != len(self.inner_blocks) - 1:
            return lateral
        return lateral + self.global_context(x.mean(dim=(2, 3)))[:, :, None, None]


def resnet_body(
    depth: int = 50,
    frozen_bn: bool = True,
    trainable_layers: int = 3,
    weights_path: str | Path | None = None,
) -> resnet.ResNet:
    """torchvision's ResNet-``depth`` (the FPN's body; YOLACT's backbone) with ``FrozenBatchNorm2d`` or
    ``BatchNorm2d``, the stem and lowest stages frozen below ``trainable_layers`` (0-5, torchvision's
    rule) and a local ImageNet state dict loaded from ``weights_path`` (nothing is downloaded)."""
    if depth not in RESNETS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNETS)}, got {depth}")
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in [0, 5], got {trainable_layers}")
    body = RESNETS[depth](weights=None, norm_layer=FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d)
    if weights_path is not None:
        if str(weights_path) == "None":  # jsonargparse 4.53 turns a nested dotted `... null` into "None"
            raise ValueError(
                "backbone_weights is the string 'None': to train from scratch write the override as JSON, "
                """--model.init_args.model '{"init_args": {"backbone_weights": null}}'"""
            )
        if not Path(weights_path).is_file():
            raise FileNotFoundError(
                f"backbone weights {weights_path} not found: put torchvision's ImageNet ResNet-{depth} "
                "state dict "
                f"there (e.g. resnet50-0676ba61.pth), or set backbone_weights to null to train from scratch"
            )
        body.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    trainable = _STAGES_TOP_DOWN[:trainable_layers] + (("bn1",) if trainable_layers == 5 else ())
    for name, parameter in body.named_parameters():
        if not name.startswith(trainable):
            parameter.requires_grad_(False)
    return body


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNetTrunk(nn.Module):
    """torchvision's ResNet-``depth`` up to C5 (no pooling, no classifier), taking RGB images in [0, 1]
    and normalising them with ImageNet's mean and std: the backbone of the top-down keypoint baselines
    (SimpleBaseline's and DeepPose's ResNets), which train it whole with ordinary BatchNorm.

    ``forward``: (B, 3, H, W) -> (B, ``out_channels``, H / 32, W / 32). ``weights_path``: a local
    torchvision ImageNet state dict (its ``fc`` is dropped)."""

    def __init__(self, depth: int = 50, weights_path: str | Path | None = None) -> None:
        super().__init__()
        body = resnet_body(depth, frozen_bn=False, trainable_layers=5, weights_path=weights_path)
        self.body = nn.Sequential(
            body.conv1, body.bn1, body.relu, body.maxpool, body.layer1, body.layer2, body.layer3, body.layer4
        )
        self.out_channels = body.inplanes
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"ResNetTrunk takes (B, 3, H, W) RGB images, got {tuple(images.shape)}")
        return self.body((images - self.mean) / self.std)
