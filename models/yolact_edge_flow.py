"""YolactEdge's feature transform (Liu et al. 2021, "YolactEdge: Real-time Instance Segmentation on the
Edge", ICRA, Sec. 3 "exploiting temporal redundancy in video"): FeatFlowNet, a FlowNetS-style network
that estimates the motion between two frames from their C3 laterals (not from pixels) and predicts,
per FPN level, a flow field and a per-pixel per-channel scale and bias; the warp of a keyframe's
features along that flow (``warp``); and the official code's ``SPA`` refinement of the warped maps.

Written by hand (no library has them) following the official ``yolact_edge/yolact.py`` modules
``FlowNetMiniPreConvs``, ``FlowNetMini``, ``FlowNetMiniPredLayer``, ``SPA`` and ``layers/warp_utils.py``
``deform_op`` under the official ``yolact_edge_vid_config`` flow settings: ``model='mini'``,
``reduce_channels=[64]``, ``encode_channels=64``, ``encode_layers=[[1], [2], [4]]`` (two 3x3 convs per
encoder stage), ``num_groups=1``, ``use_shuffle_cat=False`` (plain concatenation, current frame
first), ``use_scale_factor`` and ``use_scale_bias``, ``flow_layer='each'`` (one flow per level),
``warp_layers='P4P5'``, ``use_spa=True``, ``use_normalized_spa=False``, bilinear interpolation.

Parameters (256 FPN channels): ``FeatFlowNet`` 2,151,376 (official ``flow_net_pre_convs`` 147,520 +
``flow_net`` 2,003,856) and ``SPA`` 2,359,808, as the official modules instantiate. The finest
prediction (``predict1``, ``upfeat2``, ``upflow2``: 218,056 of them) serves a warped P3 only
(``warp_layers='P3P4P5'``); the official network builds it under 'P4P5' too, so it is kept for
checkpoint parity and run only when ``forward(..., finest=True)`` asks for it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FLOW_SCALE = 8.0
"""The official ``deform_op`` adds ``flow / 8`` to the sampling grid in [-1, 1] coordinates."""


class FlowField(NamedTuple):
    """One level's prediction: ``flow`` (B, 2, H, W) in the warp's units, ``scale`` and ``bias``
    (B, C, H, W) applied to the warped features."""

    flow: Tensor
    scale: Tensor
    bias: Tensor


def conv_lrelu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (with bias) + LeakyReLU(0.1), FlowNetS's unit."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.LeakyReLU(0.1, inplace=True)
    )


class FlowPrediction(nn.Module):
    """The official ``FlowNetMiniPredLayer``: flow by a bias-free 3x3 conv, scale and bias by 1x1 convs
    (Kaiming fan-in init, the scale's bias 1 so that the transform starts near the identity)."""

    def __init__(self, in_channels: int, feature_channels: int) -> None:
        super().__init__()
        self.flow = nn.Conv2d(in_channels, 2, 3, padding=1, bias=False)
        self.scale = nn.Conv2d(in_channels, feature_channels, 1)
        self.bias = nn.Conv2d(in_channels, feature_channels, 1)
        for conv in (self.flow, self.scale, self.bias):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in")
        nn.init.ones_(self.scale.bias)
        nn.init.zeros_(self.bias.bias)

    def forward(self, x: Tensor) -> FlowField:
        return FlowField(self.flow(x), self.scale(x), self.bias(x))


def _resize(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class FeatFlowNet(nn.Module):
    """FeatFlowNet: both frames' C3 laterals reduced to ``reduce_channels`` (shared 3x3 conv), concatenated
    (current frame first), encoded at strides 1, 2, 4 of C3 (= the resolutions of P3, P4, P5) and decoded
    coarse to fine FlowNetS-style: each finer prediction sees the encoder's features, the upsampled
    coarser features and the upsampled coarser flow.

    ``forward(current, keyframe)`` -> ``[FlowField at P4, FlowField at P5]`` (with ``finest=True``, the
    one at P3 first); a flow maps each current-frame position to where it samples the keyframe.
    """

    def __init__(self, feature_channels: int = 256, reduce_channels: int = 64, encode_channels: int = 64):
        super().__init__()
        e = encode_channels
        self.reduce = conv_lrelu(feature_channels, reduce_channels)
        self.encode1 = nn.Sequential(conv_lrelu(2 * reduce_channels, e), conv_lrelu(e, e))
        self.encode2 = nn.Sequential(conv_lrelu(e, 2 * e, stride=2), conv_lrelu(2 * e, 2 * e))
        self.encode3 = nn.Sequential(conv_lrelu(2 * e, 4 * e, stride=2), conv_lrelu(4 * e, 4 * e))
        self.predict3 = FlowPrediction(4 * e, feature_channels)  # registered in the official order
        self.predict2 = FlowPrediction(4 * e + 2, feature_channels)
        self.predict1 = FlowPrediction(2 * e + 2, feature_channels)
        self.upfeat3 = nn.Conv2d(4 * e, 2 * e, 3, padding=1, bias=False)
        self.upflow3 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.upfeat2 = nn.Conv2d(4 * e + 2, e, 3, padding=1, bias=False)
        self.upflow2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        for stage in (self.encode1, self.encode2, self.encode3):  # the official init of the encoder
            for module in stage.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, a=0.1, mode="fan_in")
                    nn.init.zeros_(module.bias)

    def forward(self, current: Tensor, keyframe: Tensor, finest: bool = False) -> list[FlowField]:
        out1 = self.encode1(torch.cat([self.reduce(current), self.reduce(keyframe)], dim=1))
        out2 = self.encode2(out1)
        out3 = self.encode3(out2)
        level3 = self.predict3(out3)
        up3 = [self.upfeat3(_resize(out3, out2)), self.upflow3(_resize(level3.flow, out2))]
        concat2 = torch.cat([out2, *up3], dim=1)
        fields = [self.predict2(concat2), level3]
        if finest:
            up2 = [self.upfeat2(_resize(concat2, out1)), self.upflow2(_resize(fields[0].flow, out1))]
            fields.insert(0, self.predict1(torch.cat([out1, *up2], dim=1)))
        return fields


def warp(features: Tensor, flow: Tensor) -> Tensor:
    """Backward warp (the official ``deform_op``): output[y, x] = bilinear sample of ``features`` at the
    pixel centre (x, y) displaced by ``flow / 8`` in [-1, 1] coordinates (``align_corners=True``), zeros
    outside. ``features`` and ``flow`` have the same H, W; zero flow is the identity."""
    if features.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"flow {tuple(flow.shape)} must match the features' size {tuple(features.shape)}")
    batch, _, height, width = flow.shape
    ys = torch.linspace(-1.0, 1.0, height, device=flow.device, dtype=flow.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=flow.device, dtype=flow.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).expand(batch, -1, -1, -1)
    grid = grid + flow.permute(0, 2, 3, 1) / FLOW_SCALE
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def transform_features(features: Tensor, field: FlowField) -> Tensor:
    """The partial feature transform of one level: warp, then the per-pixel scale and bias."""
    return warp(features, field.flow) * field.scale + field.bias


class SPA(nn.Module):
    """The official code's ``SPA`` (``use_spa``): each warped level above P3 gets a residual
    3x3 conv + LeakyReLU(0.1) of [the level, the current frame's C3 lateral resized to it], the lateral
    resized level by level (P4's size, then P5's) as the official loop does."""

    def __init__(self, channels: int = 256, levels: int = 2) -> None:
        super().__init__()
        self.refine = nn.ModuleList(conv_lrelu(2 * channels, channels) for _ in range(levels))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.1, mode="fan_in")
                nn.init.zeros_(module.bias)

    def forward(self, lateral: Tensor, levels: list[Tensor]) -> list[Tensor]:
        refined = []
        for refine, level in zip(self.refine, levels, strict=True):
            lateral = _resize(lateral, level)
            refined.append(level + refine(torch.cat([level, lateral], dim=1)))
        return refined
