"""ResNet-FPN backbones (Lin et al. 2017, "Feature Pyramid Networks", Sec. 3; He et al. 2016 ResNets)
built from torchvision's ResNets and ``BackboneWithFPN``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

RESNETS = {18: resnet.resnet18, 34: resnet.resnet34, 50: resnet.resnet50, 101: resnet.resnet101}
# Trainable stages counted from the top, as in torchvision's ``_resnet_fpn_extractor`` (5 = everything).
_STAGES_TOP_DOWN = ("layer4", "layer3", "layer2", "layer1", "conv1")
# Output strides of the FPN levels "0".."3" (P2-P5) and of the max-pooled "pool" level (P6).
FPN_STRIDES = (4, 8, 16, 32)


def resnet_fpn_backbone(
    depth: int = 50,
    fpn_channels: int = 256,
    frozen_bn: bool = True,
    trainable_layers: int = 3,
    weights_path: str | None = None,
) -> BackboneWithFPN:
    """ResNet-``depth`` with an FPN on C2-C5 plus a max-pooled P6 (Mask R-CNN paper Sec. 3.
    "Network Architecture"); returns features ``{"0": P2, ..., "3": P5, "pool": P6}``.

    ``frozen_bn`` uses ``FrozenBatchNorm2d`` (fixed ImageNet statistics, the paper's fine-tuning setup);
    otherwise ordinary ``BatchNorm2d``, which from-scratch training needs. ``trainable_layers`` (0-5)
    freezes the stem and the lowest stages like torchvision does. ``weights_path`` is a local
    torchvision ResNet state dict (nothing is downloaded).
    """
    if depth not in RESNETS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNETS)}, got {depth}")
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in [0, 5], got {trainable_layers}")
    body = RESNETS[depth](weights=None, norm_layer=FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d)
    if weights_path is not None:
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
    stage2_channels = body.inplanes // 8  # 64 for BasicBlock ResNets, 256 for Bottleneck ones
    return BackboneWithFPN(
        body,
        return_layers={f"layer{k + 1}": str(k) for k in range(4)},
        in_channels_list=[stage2_channels * 2**k for k in range(4)],
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )
