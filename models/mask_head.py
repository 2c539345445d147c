"""Mask R-CNN mask branch (He et al. 2017, Sec. 3 and Fig. 4 right): four 3x3 convs on 14x14 RoI
features, a 2x2 stride-2 deconv to 28x28, and a 1x1 conv giving one mask per class; trained with
the average binary cross-entropy of the ground-truth class's mask only (Sec. 3 "L_mask")."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align


def _msra_fill(module: nn.Module) -> None:
    """He (fan-out) init with zero bias, detectron2's ``c2_msra_fill``."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(module.bias)


class MaskHead(nn.Sequential):
    """``num_convs`` x (3x3 conv + ReLU) keeping the RoI resolution; module names match torchvision's
    ``MaskRCNNHeads`` (``0.0.weight`` ...)."""

    def __init__(self, in_channels: int, channels: int = 256, num_convs: int = 4) -> None:
        layers = []
        for i in range(num_convs):
            conv = nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1)
            _msra_fill(conv)
            layers.append(nn.Sequential(conv, nn.ReLU(inplace=True)))
        super().__init__(*layers)


class MaskPredictor(nn.Sequential):
    """2x deconv + ReLU + 1x1 conv to ``num_classes`` mask logits (class-specific masks, Sec. 3)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256) -> None:
        super().__init__(
            OrderedDict(
                conv5_mask=nn.ConvTranspose2d(in_channels, channels, 2, stride=2),
                relu=nn.ReLU(inplace=True),
                mask_fcn_logits=nn.Conv2d(channels, num_classes, 1),
            )
        )
        _msra_fill(self.conv5_mask)
        nn.init.normal_(self.mask_fcn_logits.weight, std=0.001)
        nn.init.zeros_(self.mask_fcn_logits.bias)


def project_masks_on_boxes(
    gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, size: int, aligned: bool = False
) -> Tensor:
    """Mask targets (Sec. 3 "Mask Representation"): each box's matched GT mask (N_gt, H, W),
    RoIAligned to ``size`` x ``size`` -> (N, size, size) soft targets in [0, 1]."""
    rois = torch.cat([matched_idxs[:, None].to(boxes), boxes], dim=1)
    return roi_align(gt_masks[:, None].to(rois), rois, (size, size), 1.0, aligned=aligned)[:, 0]


def mask_rcnn_loss(mask_logits: Tensor, labels: Tensor, mask_targets: Tensor) -> Tensor:
    """Average per-pixel binary cross-entropy of the ground-truth class's mask (L_mask, Sec. 3);
    zero (with a gradient path) when there are no foreground RoIs."""
    if mask_targets.numel() == 0:
        return mask_logits.sum() * 0
    selected = mask_logits[torch.arange(len(labels), device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(selected, mask_targets)


def mask_probabilities(mask_logits: Tensor, labels: Tensor) -> Tensor:
    """Inference (Sec. 3 "Inference"): the predicted class's mask, sigmoid -> (N, 1, 28, 28)."""
    selected = mask_logits[torch.arange(len(labels), device=labels.device), labels]
    return selected[:, None].sigmoid()
