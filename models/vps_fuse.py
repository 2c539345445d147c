"""VPSNet's fuse module (Kim et al., "Video Panoptic Segmentation", CVPR 2020, Sec. 3.1 "fuse"): the
reference frame's FPN features are aligned to the target frame by optical flow, refined by a small
correlation-based flow network, and fused with the target's by spatial-temporal attention.

Written by hand following the official mcahny/vps ``mmdet/models/extra_necks/bfp_tcea.py`` ``BFPTcea``
(``gather``, ``forward``), ``mmdet/models/utils/tcea_modules.py`` ``TCEA_Fusion``,
``mmdet/models/flow_modules/flow_modules.py`` ``LiteFlowNetCorr`` / ``OpticalFlowEstimatorCorr`` /
``WarpingLayer``, the flownet2 ``correlation_package`` (kernel 1, max displacement 4, stride 1, channel
mean) and ``panoptic_fusetrack.py`` ``compute_flow`` (flow resized bilinearly and multiplied by the
scale), under ``configs/cityscapes/fusetrack.py`` ``extra_neck``: ``in_channels=256``, ``num_levels=5``,
``refine_level=0``, ``refine_type='conv'``, ``nframes=2``, ``center=0``, ``search_range=4``.

As the official module does, the levels are first gathered into one balanced map at ``refine_level``
(stride 4), the reference map is warped there (not per level) by the external flow, warped again by the
refined residual flow, fused with the target's map, refined by a 3x3 conv + ReLU and scattered back to
every level as a residual. Parameters (256 channels): flow refinement 251,298, spatial-temporal attention
2,885,888, refine conv 590,080 -- 3,727,266 in all. The external flow network (a frozen FlowNet2 there)
is not part of this module: the flow is an input.

One deliberate difference: the spatial attention is upsampled to the feature size instead of by a fixed
factor 2 (identical for even sizes, which the official code requires; odd sizes work here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def warp_by_flow(features: Tensor, flow: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Backward warp (official ``WarpingLayer``): ``out[:, :, y, x] = features[:, :, y + v, x + u]``
    with ``(u, v) = flow[:, :, y, x]`` in pixels of the features' grid, bilinear, zeros outside
    (``grid_sample`` with ``align_corners=True``; ``padding_mode="border"`` repeats the border, as
    FlowNet2's ``Resample2d`` does). Zero flow is the identity."""
    if features.shape[0] != flow.shape[0] or features.shape[-2:] != flow.shape[-2:] or flow.shape[1] != 2:
        raise ValueError(f"flow {tuple(flow.shape)} must be (B, 2, H, W) of features {tuple(features.shape)}")
    _, _, height, width = flow.shape
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype)
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype)
    grid_x = (xs[None, None, :] + flow[:, 0]) * (2.0 / max(width - 1, 1)) - 1.0
    grid_y = (ys[None, :, None] + flow[:, 1]) * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack([grid_x, grid_y], dim=-1)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def resize_flow(flow: Tensor, size: Sequence[int]) -> Tensor:
    """Flow in pixels (B, 2, H, W) to another grid ``size``: bilinear resize (``align_corners=False``)
    with each component multiplied by that axis' scale (official ``compute_flow``)."""
    height, width = int(size[0]), int(size[1])
    if tuple(flow.shape[-2:]) == (height, width):
        return flow
    resized = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    scale = flow.new_tensor([width / flow.shape[-1], height / flow.shape[-2]])
    return resized * scale[None, :, None, None]


def correlation(x1: Tensor, x2: Tensor, max_displacement: int = 4) -> Tensor:
    """FlowNet correlation (kernel 1, strides 1): channel ``(dy + d) * (2d + 1) + (dx + d)`` holds the
    channel mean of ``x1[:, :, y, x] * x2[:, :, y + dy, x + dx]`` (zero outside)."""
    d = max_displacement
    height, width = x1.shape[-2:]
    padded = F.pad(x2, (d, d, d, d))
    maps = [
        (x1 * padded[:, :, dy : dy + height, dx : dx + width]).mean(dim=1)
        for dy in range(2 * d + 1)
        for dx in range(2 * d + 1)
    ]
    return torch.stack(maps, dim=1)


def _conv_lrelu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.LeakyReLU(0.1))


class FlowRefinement(nn.Module):
    """Official ``LiteFlowNetCorr``: correlation of target and warped reference maps, then convs on
    ``[target, correlation, flow]`` (256 + 81 + 2 channels) -> 64 -> 64 -> 32 -> a residual flow."""

    def __init__(self, channels: int = 256, search_range: int = 4) -> None:
        super().__init__()
        self.search_range = search_range
        in_channels = channels + (2 * search_range + 1) ** 2 + 2
        self.estimator = nn.Sequential(
            _conv_lrelu(in_channels, 64),
            _conv_lrelu(64, 64),
            _conv_lrelu(64, 32),
            nn.Conv2d(32, 2, 3, padding=1),
        )

    def forward(self, target: Tensor, warped: Tensor, flow: Tensor) -> Tensor:
        corr = correlation(target, warped, self.search_range)
        return self.estimator(torch.cat([target, corr, flow], dim=1))


class SpatialTemporalAttention(nn.Module):
    """Official ``TCEA_Fusion``: temporal attention (sigmoid of the embedded correlation of each frame
    with the ``center`` frame weighs each frame), 1x1 fusion, and a pooled spatial attention
    ``fused * 2 sigmoid(att) + att_add`` (LeakyReLU 0.1 throughout)."""

    def __init__(self, channels: int = 256, num_frames: int = 2, center: int = 0) -> None:
        super().__init__()
        if not 0 <= center < num_frames:
            raise ValueError(f"center {center} must index one of the {num_frames} frames")
        self.num_frames = num_frames
        self.center = center
        c, stacked = channels, num_frames * channels
        self.t_att_1 = nn.Conv2d(c, c, 3, padding=1)
        self.t_att_2 = nn.Conv2d(c, c, 3, padding=1)
        self.fusion = nn.Conv2d(stacked, c, 1)
        self.s_att_1 = nn.Conv2d(stacked, c, 1)
        self.s_att_2 = nn.Conv2d(2 * c, c, 1)
        self.s_att_3 = nn.Conv2d(c, c, 3, padding=1)
        self.s_att_4 = nn.Conv2d(c, c, 3, padding=1)
        self.s_att_add_1 = nn.Conv2d(c, c, 1)
        self.s_att_add_2 = nn.Conv2d(c, c, 1)

    def forward(self, frames: Tensor) -> Tensor:
        """(B, N, C, H, W) aligned frames -> (B, C, H, W)."""
        batch, num, channels, height, width = frames.shape
        if num != self.num_frames:
            raise ValueError(f"{num} frames given, the module fuses {self.num_frames}")
        emb_center = self.t_att_2(frames[:, self.center])
        emb = self.t_att_1(frames.flatten(0, 1)).view(batch, num, channels, height, width)
        weights = torch.sigmoid((emb * emb_center[:, None]).sum(dim=2))  # B, N, H, W
        weighted = (frames * weights[:, :, None]).flatten(1, 2)
        fused = F.leaky_relu(self.fusion(weighted), 0.1)

        att = F.leaky_relu(self.s_att_1(weighted), 0.1)
        pooled = [F.max_pool2d(att, 3, 2, 1), F.avg_pool2d(att, 3, 2, 1)]
        att = F.leaky_relu(self.s_att_2(torch.cat(pooled, dim=1)), 0.1)
        att = F.leaky_relu(self.s_att_3(att), 0.1)
        att = F.interpolate(att, size=(height, width), mode="bilinear", align_corners=False)
        att = self.s_att_4(att)
        att_add = self.s_att_add_2(F.leaky_relu(self.s_att_add_1(att), 0.1))
        return fused * torch.sigmoid(att) * 2 + att_add


class FuseModule(nn.Module):
    """The official ``BFPTcea`` extra neck.

    ``forward(features, reference_features, flow, next_features=None, next_flow=None)``: FPN levels of
    the target and the reference frame (same shapes, level 0 the finest), ``flow`` (B, 2, H, W) from the
    target to the reference frame in pixels of the input image (``flow`` at target pixel p points to
    p + flow in the reference frame), resized to the gathered level. With ``num_frames=3`` (official
    ``center=1``) a second reference ``next_features`` / ``next_flow`` is fused too, stacked
    ``[reference, target, next]``; with 2 the stack is ``[target, reference]``. Returns the fused levels.
    """

    def __init__(
        self,
        channels: int = 256,
        num_levels: int = 5,
        refine_level: int = 0,
        num_frames: int = 2,
        center: int = 0,
        search_range: int = 4,
    ) -> None:
        super().__init__()
        if not 0 <= refine_level < num_levels:
            raise ValueError(f"refine_level {refine_level} must be in [0, {num_levels})")
        if num_frames not in (2, 3):
            raise ValueError(f"num_frames must be 2 or 3 (the official stacks), got {num_frames}")
        self.num_levels = num_levels
        self.refine_level = refine_level
        self.num_frames = num_frames
        self.flow_refinement = FlowRefinement(channels, search_range)
        self.attention = SpatialTemporalAttention(channels, num_frames, center)
        self.refine = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        for module in self.modules():  # official BFPTcea.init_weights: xavier uniform, zero bias
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def gather(self, levels: Sequence[Tensor]) -> Tensor:
        """Mean of the levels resized to ``refine_level`` (max-pool finer, nearest coarser)."""
        if len(levels) != self.num_levels:
            raise ValueError(f"{len(levels)} levels given, expected {self.num_levels}")
        size = levels[self.refine_level].shape[-2:]
        maps = [
            F.adaptive_max_pool2d(x, size) if i < self.refine_level else F.interpolate(x, size=size)
            for i, x in enumerate(levels)
        ]
        return sum(maps) / len(maps)

    def align(self, target: Tensor, reference: Tensor, flow: Tensor) -> Tensor:
        """Warp the gathered reference map by the resized flow, then by the refined residual flow."""
        flow = resize_flow(flow, target.shape[-2:])
        warped = warp_by_flow(reference, flow)
        return warp_by_flow(warped, self.flow_refinement(target, warped, flow))

    def forward(
        self,
        features: Sequence[Tensor],
        reference_features: Sequence[Tensor],
        flow: Tensor,
        next_features: Sequence[Tensor] | None = None,
        next_flow: Tensor | None = None,
    ) -> list[Tensor]:
        target = self.gather(features)
        warped = self.align(target, self.gather(reference_features), flow)
        if self.num_frames == 3:
            if next_features is None or next_flow is None:
                raise ValueError("num_frames=3 fuses a second reference: give next_features and next_flow")
            stack = [warped, target, self.align(target, self.gather(next_features), next_flow)]
        else:
            if next_features is not None:
                raise ValueError("num_frames=2 fuses one reference; next_features needs num_frames=3")
            stack = [target, warped]
        fused = self.refine(self.attention(torch.stack(stack, dim=1)))
        return [
            x
            + (
                F.interpolate(fused, size=x.shape[-2:])
                if i < self.refine_level
                else F.adaptive_max_pool2d(fused, x.shape[-2:])
            )
            for i, x in enumerate(features)
        ]
