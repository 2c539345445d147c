"""UPSNet's semantic head (Xiong et al., "UPSNet: A Unified Panoptic Segmentation Network", CVPR 2019,
Sec. 3.1 and Fig. 3): one stack of deformable convolutions shared by the FPN levels P2-P5, each level's
output upsampled to 1/4 of the input, the four concatenated and scored by a 1x1 convolution into the
semantic classes (stuff first, then things: ``datamodules.batch``). Its losses (Sec. 3.2): per-pixel
cross-entropy of the logits upsampled to the input size, and the RoI loss -- the same 1x1 scoring on the
concatenated features RoIAligned at the ground-truth boxes (28 x 28), cross-entropy against the semantic
ground truth cropped at the boxes and resized to 28 x 28 -- which weighs the pixels of things more.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import DeformConv2d, roi_align

from datamodules.batch import IGNORE_INDEX

ROI_SIZE = 28


class DeformableConvBlock(nn.Module):
    """A 3x3 convolution predicting the 18 sampling offsets (zero-initialised: it starts as a plain 3x3
    convolution), torchvision's ``DeformConv2d`` with bias (He-normal weights), ReLU -- the official
    ``DeformConvWithOffset`` + ReLU of uber-research/UPSNet.

    ``group_norm=True`` is VPSNet's variant (mcahny/vps ``mmdet/models/panoptic/upsnetFPN.py``
    ``UPSNetFPN``): the deformable convolution without bias, then ``GroupNorm(32)``, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, group_norm: bool = False) -> None:
        super().__init__()
        self.offset = nn.Conv2d(in_channels, 2 * 3 * 3, 3, padding=1)
        self.conv = DeformConv2d(in_channels, out_channels, 3, padding=1, bias=not group_norm)
        self.norm = nn.GroupNorm(32, out_channels) if group_norm else nn.Identity()
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        nn.init.kaiming_normal_(self.conv.weight)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(x, self.offset(x))))


def subnet_channels(in_channels: int, out_channels: int, num_layers: int) -> list[tuple[int, int]]:
    """(in, out) of each deformable layer as the official ``FCNSubNet`` builds them: the input width is
    kept up to the next-to-last layer, which narrows to ``out_channels`` (3 layers: 256 -> 256 -> 128 ->
    128, the COCO head; 2 layers: 256 -> 128 -> 128, the Cityscapes one)."""
    if num_layers < 2:
        raise ValueError(f"the semantic head needs at least 2 deformable layers, got {num_layers}")
    widths = [in_channels] * (num_layers - 1) + [out_channels, out_channels]
    return list(itertools.pairwise(widths))


class DeformableSemanticHead(nn.Module):
    """P2-P5 (``fpn_channels`` each) -> semantic logits at 1/4 of the input.

    ``group_norm``: VPSNet's blocks (``DeformableConvBlock``) -- its 3-layer Cityscapes head has 1,146,697
    parameters with 19 classes. ``forward(levels)`` takes the four maps finest first and returns
    ``(logits, features)``: (B, K, H/4, W/4) logits and the (B, 4 * ``channels``, H/4, W/4) concatenated
    features the RoI loss pools."""

    def __init__(
        self,
        num_semantic_classes: int,
        fpn_channels: int = 256,
        channels: int = 128,
        num_layers: int = 3,
        group_norm: bool = False,
    ) -> None:
        super().__init__()
        self.num_semantic_classes = num_semantic_classes
        self.subnet = nn.Sequential(
            *(
                DeformableConvBlock(i, o, group_norm)
                for i, o in subnet_channels(fpn_channels, channels, num_layers)
            )
        )
        self.score = nn.Conv2d(4 * channels, num_semantic_classes, 1)
        nn.init.normal_(self.score.weight, std=0.01)
        nn.init.zeros_(self.score.bias)

    def forward(self, levels: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        if len(levels) != 4:
            raise ValueError(f"the semantic head takes the 4 levels P2-P5, got {len(levels)}")
        size = levels[0].shape[-2:]
        outputs = [self.subnet(level) for level in levels]
        features = torch.cat(
            [outputs[0]]
            + [F.interpolate(out, size=size, mode="bilinear", align_corners=False) for out in outputs[1:]],
            dim=1,
        )
        return self.score(features), features


def semantic_loss(logits: Tensor, semantic: Tensor) -> Tensor:
    """Per-pixel cross-entropy of the 1/4-resolution ``logits`` upsampled 4x (bilinear) against the
    (B, H, W) ``semantic`` ground truth of the padded input, void ignored."""
    upsampled = F.interpolate(logits, size=semantic.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(upsampled.float(), semantic, ignore_index=IGNORE_INDEX)


def semantic_roi_targets(semantic: Tensor, boxes: Tensor, size: int = ROI_SIZE) -> Tensor:
    """The (N, size, size) semantic ground truth inside each box (XYXY, rounded to pixels, at least one
    pixel wide and high), resized by nearest neighbour: the official ``seg_roi_gt``."""
    height, width = semantic.shape
    targets = semantic.new_full((len(boxes), size, size), IGNORE_INDEX)
    for target, (x0, y0, x1, y1) in zip(targets, boxes.round().long().tolist(), strict=True):
        x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
        x1, y1 = min(max(x1, x0 + 1), width), min(max(y1, y0 + 1), height)
        crop = semantic[y0:y1, x0:x1][None, None].float()
        target.copy_(F.interpolate(crop, size=(size, size), mode="nearest")[0, 0].long())
    return targets


def semantic_roi_loss(
    score: nn.Conv2d, features: Tensor, boxes: list[Tensor], semantic: Tensor, stride: int = 4
) -> Tensor:
    """The RoI loss (Sec. 3.2): ``features`` (B, C, H/stride, W/stride) RoIAligned at each image's
    ground-truth ``boxes`` (input pixels) to 28 x 28, scored by the head's ``score`` convolution, and
    cross-entropy against ``semantic_roi_targets`` of the (B, H, W) ground truth; zero (with a gradient
    path) without boxes."""
    if sum(len(b) for b in boxes) == 0:
        return score.weight.sum() * 0
    rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])
    pooled = roi_align(features, rois.to(features.dtype), (ROI_SIZE, ROI_SIZE), 1.0 / stride, 2)
    targets = torch.cat([semantic_roi_targets(s, b) for s, b in zip(semantic, boxes, strict=True)])
    return F.cross_entropy(score(pooled).float(), targets, ignore_index=IGNORE_INDEX)
