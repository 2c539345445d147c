"""Optical flow for VPSNet's fuse module (Kim et al., "Video Panoptic Segmentation", CVPR 2020, Sec. 3.1):
the flow from the target frame to the reference frame that ``models.vps_fuse.FuseModule`` warps the
reference's features by. Two networks with one contract, ``forward(image, reference)``:

* ``image``, ``reference``: (B, 3, H, W) float RGB in [0, 1] (not ImageNet-normalised), any H, W;
* returns the flow (B, 2, ceil(H / 4), ceil(W / 4)) from ``image`` to ``reference`` on the 1/4 grid
  (cell i centred on input pixel 4 i + 1.5), in pixels of that grid: the content at target cell p is
  at p + flow in the reference -- what ``FuseModule`` takes (it resizes the flow to its level itself).

``CompactFlowNet`` is the compact flow network trained with the task; ``FlowNet2`` (with
``load_flownet2``) is the official frozen, pretrained FlowNet2 of mcahny/vps.
"""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.optical_flow import raft_small

from models.state_dict_fit import load_fitting_state_dict, state_dict_problems
from models.vps_fuse import warp_by_flow

FLOWNET2_SOURCE = (
    "the official FlowNet2_checkpoint.pth.tar (NVIDIA flownet2-pytorch; mcahny/vps download_weights.sh)"
)


def _check_pair(image: Tensor, reference: Tensor) -> None:
    if image.dim() != 4 or image.shape[1] != 3 or image.shape != reference.shape:
        raise ValueError(
            f"image {tuple(image.shape)} and reference {tuple(reference.shape)} must both be (B, 3, H, W)"
        )


def _pad_bottom_right(images: Tensor, height: int, width: int, mode: str) -> Tensor:
    return F.pad(images, (0, width - images.shape[-1], 0, height - images.shape[-2]), mode=mode)


def _quarter_grid(flow: Tensor, height: int, width: int) -> Tensor:
    """Full-resolution flow of a padded input (sides multiples of 4) -> the 1/4 grid of the unpadded
    (height, width) input: official ``compute_flow(scale_factor=0.25)`` (bilinear, ``align_corners=False``,
    times 0.25), which for sides that are multiples of 4 reads no padded pixel, then cropped."""
    quarter = F.interpolate(flow, scale_factor=0.25, mode="bilinear", align_corners=False) * 0.25
    return quarter[:, :, : math.ceil(height / 4), : math.ceil(width / 4)]


class CompactFlowNet(nn.Module):
    """The compact flow network trained with the task: torchvision's RAFT-small (Teed & Deng, "RAFT:
    Recurrent All-Pairs Field Transforms for Optical Flow", ECCV 2020, Sec. 3 and the small model of
    Sec. 4), randomly initialised, 990,162 parameters.

    Why a wrapped library model rather than a hand-written FlowNetS/FlowNetC-style net (Dosovitskiy et al.
    2015): the project prefers a well-kept library's model, and RAFT-small fits the brief when measured --
    about 1 M parameters, no BatchNorm (instance norm in its feature encoder, so batches of one train),
    and forward + backward of a 64x64 pair (padded to 128x128) takes about 0.2 s with 12 updates on two
    CPU cores (the limit was 3 s). Its cost: the all-pairs correlation at 1/8 is quadratic in the image
    area, (H W / 64)^2 floats, about 1.6 GB per 800x1600 training crop and 4.3 GB per 1024x2048 frame
    (plus a third for the pyramid). No pretrained weights are downloaded.

    Differences from plain ``raft_small``: inputs in [0, 1] are mapped to RAFT's [-1, 1]; the input is
    padded (replicate, bottom/right) to multiples of 8 and at least 128x128 (its 4-level correlation
    pyramid needs 1/8 maps of 16 or more) and the flow cropped back; the flow head's last conv
    (``update_block.flow_head.conv2``) starts at zero, so an untrained network predicts zero flow and the
    fuse starts as no motion; only the final update's flow is returned, brought from RAFT's full
    resolution to the 1/4 grid as the official ``compute_flow`` does (bilinear, times 0.25).
    ``num_flow_updates``: RAFT's recurrent iterations (12 as in RAFT; fewer are cheaper).
    """

    MIN_SIDE = 128

    def __init__(self, num_flow_updates: int = 12) -> None:
        super().__init__()
        if num_flow_updates < 1:
            raise ValueError(f"num_flow_updates must be >= 1, got {num_flow_updates}")
        self.num_flow_updates = num_flow_updates
        self.raft = raft_small(weights=None, progress=False)
        nn.init.zeros_(self.raft.update_block.flow_head.conv2.weight)
        nn.init.zeros_(self.raft.update_block.flow_head.conv2.bias)

    def forward(self, image: Tensor, reference: Tensor) -> Tensor:
        _check_pair(image, reference)
        height, width = image.shape[-2:]
        padded = [max(self.MIN_SIDE, math.ceil(side / 8) * 8) for side in (height, width)]
        pair = _pad_bottom_right(torch.cat([image, reference]) * 2 - 1, *padded, mode="replicate")
        first, second = pair.chunk(2)
        flow = self.raft(first, second, num_flow_updates=self.num_flow_updates)[-1]
        return _quarter_grid(flow, height, width)


# --- FlowNet2 -------------------------------------------------------------------------------------------


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2),
        nn.LeakyReLU(0.1, inplace=True),
    )


def _deconv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1), nn.LeakyReLU(0.1, inplace=True)
    )


def _strided_correlation(x1: Tensor, x2: Tensor, max_displacement: int = 20, stride: int = 2) -> Tensor:
    """FlowNetC's correlation (kernel 1, pad = max displacement 20, stride1 1, stride2 2: 21 x 21 channel
    means, displacement y outer). Written here because ``models.vps_fuse.correlation`` has no
    displacement stride and computing its 41 x 41 maps to keep a quarter would be four times the work."""
    d, (height, width) = max_displacement, x1.shape[-2:]
    padded = F.pad(x2, (d, d, d, d))
    offsets = range(0, 2 * d + 1, stride)
    maps = [
        (x1 * padded[:, :, dy : dy + height, dx : dx + width]).mean(dim=1) for dy in offsets for dx in offsets
    ]
    return torch.stack(maps, dim=1)


def _resample2d(images: Tensor, flow: Tensor) -> Tensor:
    """Official ``Resample2d`` (kernel 1, bilinear): ``images`` read at p + flow(p), border pixels repeated
    outside (its clamped indices)."""
    return warp_by_flow(images, flow, padding_mode="border")


def _bilinear4(flow: Tensor) -> Tensor:
    return F.interpolate(flow, scale_factor=4, mode="bilinear", align_corners=False)


def _nearest4(flow: Tensor) -> Tensor:
    return F.interpolate(flow, scale_factor=4, mode="nearest")


def _channel_norm(x: Tensor) -> Tensor:
    """Official ``ChannelNorm`` (degree 2): the L2 norm over channels, (B, 1, H, W)."""
    return x.pow(2).sum(dim=1, keepdim=True).sqrt()


class _FlowNetBlock(nn.Module):
    """A FlowNet sub-network under the official module names: an encoder of conv + LeakyReLU(0.1) layers
    (``chain``: name, in, out, kernel, stride) and the refinement decoder of Dosovitskiy et al. 2015 Sec. 3
    ("Refinement"; Ilg et al. 2017 Sec. 5 and Fig. 2 for the SD and fusion variants): from the coarsest
    ``levels[0]`` on, ``concat_l = [skip_l, deconv_l(previous), upsampled_flow_{l+1}_to_l(flow_{l+1})]``
    and ``flow_l = predict_flow_l(concat_l)``, or of ``inter_conv_l(concat_l)`` when ``inter_channels``
    are given. Returns the finest flow (official eval mode)."""

    def __init__(
        self,
        chain: list[tuple[str, int, int, int, int]],
        levels: tuple[int, ...],
        skips: tuple[str, ...],
        deconv_channels: tuple[int, ...],
        inter_channels: tuple[int, ...] | None = None,
        upsample_bias: bool = True,
    ) -> None:
        super().__init__()
        self.levels, self.skips, self.has_inter = levels, skips, inter_channels is not None
        self.chain = [name for name, *_ in chain]
        channels = {name: out for name, _, out, _, _ in chain}
        for name, in_channels, out_channels, kernel_size, stride in chain:
            self.add_module(name, _conv(in_channels, out_channels, kernel_size, stride))
        previous = channels[self.chain[-1]]
        self.add_module(f"predict_flow{levels[0]}", nn.Conv2d(previous, 2, 3, padding=1))
        for i, (coarse, level) in enumerate(pairwise(levels)):
            self.add_module(f"deconv{level}", _deconv(previous, deconv_channels[i]))
            concat = channels[skips[i]] + deconv_channels[i] + 2
            predicted = concat
            if inter_channels is not None:
                self.add_module(
                    f"inter_conv{level}", nn.Sequential(nn.Conv2d(concat, inter_channels[i], 3, 1, 1))
                )
                predicted = inter_channels[i]
            self.add_module(f"predict_flow{level}", nn.Conv2d(predicted, 2, 3, padding=1))
            up = nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=upsample_bias)
            self.add_module(f"upsampled_flow{coarse}_to_{level}", up)
            previous = concat
        for module in self.modules():  # official init: xavier uniform weights, uniform [0, 1) biases
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.uniform_(module.bias)

    def encode(self, x: Tensor, names: list[str], outputs: dict[str, Tensor]) -> Tensor:
        for name in names:
            x = outputs[name] = getattr(self, name)(x)
        return x

    def decode(self, top: Tensor, outputs: dict[str, Tensor]) -> Tensor:
        flow, x = getattr(self, f"predict_flow{self.levels[0]}")(top), top
        for (coarse, level), skip in zip(pairwise(self.levels), self.skips, strict=True):
            up = getattr(self, f"upsampled_flow{coarse}_to_{level}")(flow)
            x = torch.cat([outputs[skip], getattr(self, f"deconv{level}")(x), up], dim=1)
            flow = getattr(self, f"predict_flow{level}")(
                getattr(self, f"inter_conv{level}")(x) if self.has_inter else x
            )
        return flow

    def forward(self, x: Tensor) -> Tensor:
        outputs: dict[str, Tensor] = {}
        return self.decode(self.encode(x, self.chain, outputs), outputs)


_DEEP = [("conv4", 256, 512, 3, 2), ("conv4_1", 512, 512, 3, 1), ("conv5", 512, 512, 3, 2)]
_DEEP += [("conv5_1", 512, 512, 3, 1), ("conv6", 512, 1024, 3, 2), ("conv6_1", 1024, 1024, 3, 1)]
_LEVELS, _DECONVS = (6, 5, 4, 3, 2), (512, 256, 128, 64)


def _flownet_s(in_channels: int = 12) -> _FlowNetBlock:
    """FlowNetSimple (Dosovitskiy et al. 2015 Sec. 3, Fig. 2 top), bias-free flow upsampling."""
    head = [("conv1", in_channels, 64, 7, 2), ("conv2", 64, 128, 5, 2), ("conv3", 128, 256, 5, 2)]
    chain = [*head, ("conv3_1", 256, 256, 3, 1), *_DEEP]
    return _FlowNetBlock(chain, _LEVELS, ("conv5_1", "conv4_1", "conv3_1", "conv2"), _DECONVS, None, False)


def _flownet_sd() -> _FlowNetBlock:
    """FlowNet-SD for small displacements (Ilg et al. 2017 Sec. 5): stride-1 first conv, 3x3 kernels,
    an extra conv between the decoder's upsampling and prediction."""
    head = [("conv0", 6, 64, 3, 1), ("conv1", 64, 64, 3, 2), ("conv1_1", 64, 128, 3, 1)]
    head += [("conv2", 128, 128, 3, 2), ("conv2_1", 128, 128, 3, 1), ("conv3", 128, 256, 3, 2)]
    chain = [*head, ("conv3_1", 256, 256, 3, 1), *_DEEP]
    skips = ("conv5_1", "conv4_1", "conv3_1", "conv2_1")
    return _FlowNetBlock(chain, _LEVELS, skips, _DECONVS, (512, 256, 128, 64))


def _flownet_fusion() -> _FlowNetBlock:
    """The fusion network (Ilg et al. 2017 Sec. 5): three resolutions, flow at full resolution."""
    chain = [("conv0", 11, 64, 3, 1), ("conv1", 64, 64, 3, 2), ("conv1_1", 64, 128, 3, 1)]
    chain += [("conv2", 128, 128, 3, 2), ("conv2_1", 128, 128, 3, 1)]
    return _FlowNetBlock(chain, (2, 1, 0), ("conv1_1", "conv0"), (32, 16), (32, 16))


class _FlowNetC(_FlowNetBlock):
    """FlowNetCorr (Dosovitskiy et al. 2015 Sec. 3, Fig. 2 bottom): a siamese conv1-conv3 on each image,
    their correlation (LeakyReLU 0.1) concatenated with ``conv_redir`` of the first image's conv3."""

    def __init__(self) -> None:
        head = [("conv1", 3, 64, 7, 2), ("conv2", 64, 128, 5, 2), ("conv3", 128, 256, 5, 2)]
        merged = [("conv_redir", 256, 32, 1, 1), ("conv3_1", 473, 256, 3, 1), *_DEEP]
        super().__init__([*head, *merged], _LEVELS, ("conv5_1", "conv4_1", "conv3_1", "conv2"), _DECONVS)

    def forward(self, x: Tensor) -> Tensor:
        outputs: dict[str, Tensor] = {}
        first = self.encode(x[:, :3], ["conv1", "conv2", "conv3"], outputs)
        second = self.encode(x[:, 3:], ["conv1", "conv2", "conv3"], {})
        corr = F.leaky_relu(_strided_correlation(first, second), 0.1)
        merged = torch.cat([self.conv_redir(first), corr], dim=1)
        return self.decode(self.encode(merged, self.chain[4:], outputs), outputs)


class FlowNet2(nn.Module):
    """FlowNet 2.0 (Ilg et al., "FlowNet 2.0: Evolution of Optical Flow Estimation with Deep Networks",
    CVPR 2017, Sec. 4 "Stacking Networks" and Sec. 5 "Small Displacements", Fig. 2): FlowNetC, two
    FlowNetS stacked on the warped second image, FlowNet-SD, and the fusion network -- the official
    frozen flow network of VPSNet, written by hand (no library ships it) following mcahny/vps
    ``mmdet/models/flow_modules`` (``flownet2.py`` ``FlowNet2``, ``FlowNetC/S/SD/Fusion.py``,
    ``submodules.py``, and the correlation / channelnorm / resample2d CUDA packages, done in PyTorch here)
    under its module names, so the official ``FlowNet2_checkpoint.pth.tar`` loads key for key
    (``load_flownet2``). 162,518,834 parameters, as the official instantiation; ``rgb_max=255``,
    ``div_flow=20``, batch norm off.

    Frozen: parameters do not require grad, the module stays in eval mode and runs without autograd.
    ``forward(image, reference)`` follows the official ``compute_flow(img, ref_img, scale_factor=0.25)``:
    images scaled to 255 and stacked [target, reference], zero-padded bottom/right to multiples of 64,
    normalised by the per-channel mean of both (padded) frames, the full-resolution flow cropped and
    brought to the 1/4 grid (bilinear, times 0.25). The official bilinear ``nn.Upsample`` has
    ``align_corners=False`` (PyTorch >= 0.4); its division of FlowNet-SD's flow by ``div_flow`` (where
    the others multiply) is kept: the released weights are used with it.
    """

    def __init__(
        self, div_flow: float = 20.0, rgb_max: float = 255.0, weights: str | Path | None = None
    ) -> None:
        super().__init__()
        self.div_flow, self.rgb_max = div_flow, rgb_max
        self.flownetc = _FlowNetC()
        self.flownets_1 = _flownet_s()
        self.flownets_2 = _flownet_s()
        self.flownets_d = _flownet_sd()
        self.flownetfusion = _flownet_fusion()
        if weights is not None:
            self.load_official(weights)
        self.requires_grad_(False)
        self.eval()

    def load_official(self, path: str | Path) -> None:
        """The weights of a local official ``FlowNet2_checkpoint.pth.tar`` (a dict with ``state_dict``, or
        a bare state dict), read with ``weights_only=True``. A file that is not a FlowNet2 checkpoint is a
        ValueError naming it and listing its missing, unexpected and mis-shaped keys; a missing file a
        FileNotFoundError."""
        from models.pretrained_weights import read_official_state_dict

        state = read_official_state_dict(path, network="FlowNet2", source=FLOWNET2_SOURCE)
        problems = state_dict_problems(self, state)
        if problems:
            raise ValueError(
                f"{path} is not a FlowNet2 checkpoint ({FLOWNET2_SOURCE}): " + "; ".join(problems)
            )
        load_fitting_state_dict(self, state, problems)

    def train(self, mode: bool = True) -> FlowNet2:
        return super().train(False)

    def _stacked_input(self, x: Tensor, flow: Tensor) -> Tensor:
        """``[x, warped second image, flow / div_flow, |first - warped|]`` for the next FlowNetS."""
        warped = _resample2d(x[:, 3:], flow)
        return torch.cat([x, warped, flow / self.div_flow, _channel_norm(x[:, :3] - warped)], dim=1)

    @torch.no_grad()
    def forward(self, image: Tensor, reference: Tensor) -> Tensor:
        _check_pair(image, reference)
        height, width = image.shape[-2:]
        padded = [math.ceil(side / 64) * 64 for side in (height, width)]
        pair = _pad_bottom_right(torch.stack([image, reference], dim=2) * 255.0, *padded, mode="constant")
        pair = (pair - pair.mean(dim=(2, 3, 4), keepdim=True)) / self.rgb_max
        x = torch.cat([pair[:, :, 0], pair[:, :, 1]], dim=1)

        flow_c = _bilinear4(self.flownetc(x) * self.div_flow)
        flow_s1 = _bilinear4(self.flownets_1(self._stacked_input(x, flow_c)) * self.div_flow)
        flow_s2 = _nearest4(self.flownets_2(self._stacked_input(x, flow_s1)) * self.div_flow)
        flow_sd = _nearest4(self.flownets_d(x) / self.div_flow)
        first = x[:, :3]
        fusion_input = [first, flow_sd, flow_s2, _channel_norm(flow_sd), _channel_norm(flow_s2)]
        fusion_input += [_channel_norm(first - _resample2d(x[:, 3:], flow)) for flow in (flow_sd, flow_s2)]
        flow = self.flownetfusion(torch.cat(fusion_input, dim=1))
        return _quarter_grid(flow, height, width)


def load_flownet2(path: str | Path) -> FlowNet2:
    """A frozen ``FlowNet2`` with the official weights at ``path`` (``FlowNet2.load_official``); in a YAML:
    ``flow_net: {class_path: models.vps_flow.FlowNet2, init_args: {weights: <path>}}``."""
    return FlowNet2(weights=path)
