"""DensePose R-CNN dense branch (Güler, Neverova & Kokkinos, "DensePose: Dense Human Pose Estimation In
The Wild", CVPR 2018), built as detectron2's ``projects/DensePose`` builds it for
``densepose_rcnn_R_50_FPN_s1x``:

* ``DensePoseDecoder``: the optional Panoptic-FPN-style semantic decoder (``Decoder`` in
  ``modeling/roi_heads/roi_head.py``; ``DECODER_ON`` is True in detectron2's default config) merging
  p2..p5 into one stride-4 map that the DensePose RoIAlign then pools at scale 1/4;
* ``DensePoseHead``: ``DensePoseV1ConvXHead`` (``roi_heads/v1convx.py``), 8 x (3x3 conv 512 + ReLU) on the
  (R, 256, 28, 28) RoIAlign features;
* ``DensePosePredictor``: ``DensePoseChartPredictor`` (``predictors/chart.py``), four 4x4 stride-2
  transposed convs (coarse segmentation S, part logits I, U, V) at 56x56, each bilinearly upsampled by
  ``UP_SCALE`` 2 (``align_corners=False``) to 112x112.

``official_name_to_ours`` maps detectron2 checkpoint names (``roi_heads.densepose_head.*``,
``roi_heads.densepose_predictor.*``, ``roi_heads.decoder.*``) onto ``DensePoseBranch``'s names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn


def _kaiming_fan_out(module: nn.Module) -> None:
    """detectron2's ``initialize_module_params`` / ``c2_msra_fill``: He normal (fan-out, ReLU) weights, zero
    biases."""
    for name, param in module.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(param)
        elif name.endswith("weight") and param.dim() > 1:
            nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


class DensePoseOutputs(NamedTuple):
    """Predictor outputs, all (R, *, 112, 112) raw scores / coordinates for the default config:
    ``coarse_segm`` (R, 2 or 15, ...), ``fine_segm`` (R, 25, ...), ``u`` and ``v`` (R, 25, ...)."""

    coarse_segm: Tensor
    fine_segm: Tensor
    u: Tensor
    v: Tensor


class DensePoseHead(nn.Module):
    """``DensePoseV1ConvXHead``: ``num_convs`` stacked ``kernel_size`` convs of ``channels`` channels, each
    followed by ReLU, resolution-preserving (padding ``kernel_size // 2``)."""

    def __init__(
        self, in_channels: int = 256, channels: int = 512, num_convs: int = 8, kernel_size: int = 3
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else channels, channels, kernel_size, padding=kernel_size // 2)
            for i in range(num_convs)
        )
        self.out_channels = channels if num_convs else in_channels
        _kaiming_fan_out(self)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        return x


class DensePosePredictor(nn.Module):
    """``DensePoseChartPredictor``: per output a ``ConvTranspose2d(k, stride 2, padding k/2 - 1)`` (doubling
    the resolution) followed by bilinear upsampling by ``up_scale`` (``align_corners=False``).

    ``num_coarse_segm_channels`` is 2 (foreground / background, the default) or 15 (14 parts + background);
    ``num_patches`` 24 gives 25 part channels (background + 24 charts) for I, U and V.
    """

    def __init__(
        self,
        in_channels: int = 512,
        num_coarse_segm_channels: int = 2,
        num_patches: int = 24,
        kernel_size: int = 4,
        up_scale: float = 2,
    ) -> None:
        super().__init__()
        pad = int(kernel_size / 2 - 1)

        def deconv(out_channels: int) -> nn.ConvTranspose2d:
            return nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=2, padding=pad)

        self.coarse_segm = deconv(num_coarse_segm_channels)
        self.fine_segm = deconv(num_patches + 1)
        self.u = deconv(num_patches + 1)
        self.v = deconv(num_patches + 1)
        self.up_scale = up_scale
        _kaiming_fan_out(self)

    def _upsample(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=self.up_scale, mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> DensePoseOutputs:
        return DensePoseOutputs(
            coarse_segm=self._upsample(self.coarse_segm(x)),
            fine_segm=self._upsample(self.fine_segm(x)),
            u=self._upsample(self.u(x)),
            v=self._upsample(self.v(x)),
        )


class _DecoderConv(nn.Module):
    """3x3 conv (+ GroupNorm(32) when ``norm == "GN"``) + ReLU, then optionally 2x bilinear upsampling."""

    def __init__(self, in_channels: int, channels: int, norm: str, upsample: bool) -> None:
        super().__init__()
        if norm not in ("", "GN"):
            raise ValueError(f"unsupported decoder norm {norm!r}; expected '' or 'GN'")
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1, bias=not norm)
        self.norm = nn.GroupNorm(32, channels) if norm else nn.Identity()
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.norm(self.conv(x)))
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return x


class DensePoseDecoder(nn.Module):
    """detectron2 DensePose ``Decoder`` (the semantic head of Panoptic FPN, Kirillov et al. 2019): for each
    input level of stride ``s``, ``max(1, log2(s) - log2(common_stride))`` blocks of 3x3 conv + ReLU, each
    followed by a 2x upsample unless ``s == common_stride``; the per-level maps are summed and a 1x1 conv
    gives ``num_classes`` channels at stride ``common_stride``.
    """

    def __init__(
        self,
        in_channels: int = 256,
        in_strides: Sequence[int] = (4, 8, 16, 32),
        conv_dims: int = 256,
        num_classes: int = 256,
        common_stride: int = 4,
        norm: str = "",
    ) -> None:
        super().__init__()
        self.in_strides = tuple(in_strides)
        self.common_stride = common_stride
        self.scale_heads = nn.ModuleList()
        for stride in self.in_strides:
            n = max(1, int(math.log2(stride) - math.log2(common_stride)))
            self.scale_heads.append(
                nn.Sequential(
                    *(
                        _DecoderConv(
                            in_channels if k == 0 else conv_dims, conv_dims, norm, stride != common_stride
                        )
                        for k in range(n)
                    )
                )
            )
        self.predictor = nn.Conv2d(conv_dims, num_classes, 1)
        _kaiming_fan_out(self)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """``features``: one (N, C, H_l, W_l) map per ``in_strides`` entry, finest first."""
        if len(features) != len(self.scale_heads):
            raise ValueError(f"expected {len(self.scale_heads)} feature maps, got {len(features)}")
        x = sum(head(f) for head, f in zip(self.scale_heads, features, strict=True))
        return self.predictor(x)


class DensePoseBranch(nn.Module):
    """Container of the learnable DensePose parts: ``decoder`` (or None), ``head`` and ``predictor``.

    Usage: ``maps = [branch.decoder(fpn_levels)]`` when the decoder is on (pool at scale 1/common_stride),
    else the FPN levels; RoIAlign the boxes to (R, 256, 28, 28); ``branch(roi_features)`` -> outputs.
    """

    def __init__(
        self,
        in_channels: int = 256,
        decoder_on: bool = True,
        num_coarse_segm_channels: int = 2,
        num_patches: int = 24,
        in_strides: Sequence[int] = (4, 8, 16, 32),
        decoder_num_classes: int = 256,
        decoder_conv_dims: int = 256,
        decoder_common_stride: int = 4,
        decoder_norm: str = "",
        head_channels: int = 512,
        head_num_convs: int = 8,
    ) -> None:
        super().__init__()
        self.decoder = (
            DensePoseDecoder(
                in_channels,
                in_strides,
                decoder_conv_dims,
                decoder_num_classes,
                decoder_common_stride,
                decoder_norm,
            )
            if decoder_on
            else None
        )
        head_in = decoder_num_classes if decoder_on else in_channels
        self.head = DensePoseHead(head_in, head_channels, head_num_convs)
        self.predictor = DensePosePredictor(self.head.out_channels, num_coarse_segm_channels, num_patches)

    def forward(self, roi_features: Tensor) -> DensePoseOutputs:
        return self.predictor(self.head(roi_features))


_PREDICTOR_NAMES = {
    "ann_index_lowres": "coarse_segm",
    "index_uv_lowres": "fine_segm",
    "u_lowres": "u",
    "v_lowres": "v",
}


def official_name_to_ours(
    name: str,
    in_features: Sequence[str] = ("p2", "p3", "p4", "p5"),
    in_strides: Sequence[int] = (4, 8, 16, 32),
    common_stride: int = 4,
) -> str | None:
    """detectron2 parameter name -> ``DensePoseBranch`` name, or None for names outside the DensePose
    decoder / head / predictor (backbone, RPN, box head, ...).

    ``roi_heads.densepose_head.body_conv_fcn{n}.*`` -> ``head.convs.{n-1}.*``;
    ``roi_heads.densepose_predictor.{ann_index,index_uv,u,v}_lowres.*`` ->
    ``predictor.{coarse_segm,fine_segm,u,v}.*``; ``roi_heads.decoder.{feature}.{j}[.norm].*`` (the
    ``nn.Sequential`` index ``j`` counts the parameter-free ``nn.Upsample`` entries too) ->
    ``decoder.scale_heads.{level}.{block}.{conv|norm}.*``; ``roi_heads.decoder.predictor.*`` ->
    ``decoder.predictor.*``.
    """
    head_prefix = "roi_heads.densepose_head.body_conv_fcn"
    if name.startswith(head_prefix):
        index, _, leaf = name[len(head_prefix) :].partition(".")
        return f"head.convs.{int(index) - 1}.{leaf}"
    pred_prefix = "roi_heads.densepose_predictor."
    if name.startswith(pred_prefix):
        module, _, leaf = name[len(pred_prefix) :].partition(".")
        return f"predictor.{_PREDICTOR_NAMES[module]}.{leaf}" if module in _PREDICTOR_NAMES else None
    dec_prefix = "roi_heads.decoder."
    if not name.startswith(dec_prefix):
        return None
    rest = name[len(dec_prefix) :]
    if rest.startswith("predictor."):
        return f"decoder.{rest}"
    feature, index, *leaf = rest.split(".")
    if feature not in in_features:
        return None
    level = list(in_features).index(feature)
    # detectron2 interleaves an nn.Upsample after every conv of a level whose stride differs.
    step = 1 if in_strides[level] == common_stride else 2
    block = int(index) // step
    part = "norm" if leaf[0] == "norm" else "conv"
    return f"decoder.scale_heads.{level}.{block}.{part}.{leaf[-1]}"


def convert_official_state_dict(
    state_dict: dict[str, Tensor], **name_map_kwargs: object
) -> dict[str, Tensor]:
    """Renames a detectron2 state dict's DensePose entries to ``DensePoseBranch`` names (others dropped)."""
    out: dict[str, Tensor] = {}
    for name, value in state_dict.items():
        ours = official_name_to_ours(name, **name_map_kwargs)  # type: ignore[arg-type]
        if ours is not None:
            out[ours] = value
    return out
