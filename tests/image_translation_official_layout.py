"""The official state-dict layout of junyanz/pytorch-CycleGAN-and-pix2pix's generators, and their forward
pass written against that layout with torch.nn.functional, for the converter tests.

Derived by reading the official ``models/networks.py`` (``UnetGenerator`` / ``UnetSkipConnectionBlock``,
``ResnetGenerator`` / ``ResnetBlock``, ``get_norm_layer``); none of its code is here. The rules:

- U-Net: ``UnetGenerator.model`` is the outermost skip block; each block's Sequential ``model`` holds
  outermost ``[conv, sub, ReLU, convT(bias), Tanh]``, middle ``[LeakyReLU, conv, norm, sub, ReLU, convT,
  norm, (Dropout)]``, innermost ``[LeakyReLU, conv, ReLU, convT, norm]``; levels from the outside:
  (outer, inner) = (out_nc, ngf), (ngf, 2ngf), (2ngf, 4ngf), (4ngf, 8ngf), then (8ngf, 8ngf) for
  ``num_downs - 4`` more (the last innermost). Non-outermost blocks return ``cat(x, model(x))`` after the
  in-place LeakyReLU has changed ``x``.
- ResNet: one Sequential ``model``: ReflectionPad(3), conv7, norm, ReLU, 2 x (conv3 s2, norm, ReLU),
  ``n_blocks`` ResnetBlocks (``conv_block``: [pad], conv3, norm, ReLU, [Dropout], [pad], conv3, norm; no pad
  layers for ``padding_type="zero"``), 2 x (convT3 s2, norm, ReLU), ReflectionPad(3), conv7 (bias), Tanh.
- Convolutions before a norm have a bias only with InstanceNorm; BatchNorm (affine) holds weight, bias,
  running_mean, running_var, num_batches_tracked; today's InstanceNorm (affine=False,
  track_running_stats=False) holds nothing, but older files carry its running_mean / running_var /
  num_batches_tracked (``stale_instance_stats=True``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

Layout = list[tuple[str, tuple[int, ...]]]


def _conv(name: str, out_ch: int, in_ch: int, k: int, bias: bool, transposed: bool = False) -> Layout:
    weight = (in_ch, out_ch, k, k) if transposed else (out_ch, in_ch, k, k)
    return [(f"{name}.weight", weight)] + ([(f"{name}.bias", (out_ch,))] if bias else [])


def _norm(name: str, channels: int, norm: str, stale_instance_stats: bool) -> Layout:
    stats = [(f"{name}.running_mean", (channels,)), (f"{name}.running_var", (channels,))]
    if norm == "batch":
        return [(f"{name}.weight", (channels,)), (f"{name}.bias", (channels,)), *stats]
    return [*stats, (f"{name}.num_batches_tracked", ())] if stale_instance_stats else []


def _with_counters(layout: Layout, norm: str) -> Layout:
    """BatchNorm's num_batches_tracked after its running_var, as state_dict orders them."""
    out: Layout = []
    for name, shape in layout:
        out.append((name, shape))
        if norm == "batch" and name.endswith("running_var"):
            out.append((name.replace("running_var", "num_batches_tracked"), ()))
    return out


def unet_levels(in_nc: int, out_nc: int, num_downs: int, ngf: int) -> list[tuple[int, int, int]]:
    """(input, outer, inner) channels of every official U-Net level, outermost first."""
    pairs = [(out_nc, ngf), (ngf, 2 * ngf), (2 * ngf, 4 * ngf), (4 * ngf, 8 * ngf)]
    pairs += [(8 * ngf, 8 * ngf)] * (num_downs - 4)
    return [(in_nc if level == 0 else outer, outer, inner) for level, (outer, inner) in enumerate(pairs)]


def unet_prefix(level: int) -> str:
    """``model.model.`` for the outermost level; the sub-block sits at index 1 there, at 3 below."""
    return "model.model." + "".join("1.model." if k == 0 else "3.model." for k in range(level))


def official_unet_layout(
    in_nc: int = 3,
    out_nc: int = 3,
    num_downs: int = 8,
    ngf: int = 64,
    norm: str = "batch",
    stale_instance_stats: bool = False,
) -> Layout:
    bias = norm == "instance"
    levels = unet_levels(in_nc, out_nc, num_downs, ngf)

    def level_layout(level: int) -> Layout:
        input_nc, outer, inner = levels[level]
        p = unet_prefix(level)
        if level == 0:
            return [
                *_conv(p + "0", inner, input_nc, 4, bias),
                *level_layout(1),
                *_conv(p + "3", outer, 2 * inner, 4, True, transposed=True),
            ]
        if level == len(levels) - 1:
            return [
                *_conv(p + "1", inner, input_nc, 4, bias),
                *_conv(p + "3", outer, inner, 4, bias, transposed=True),
                *_norm(p + "4", outer, norm, stale_instance_stats),
            ]
        return [
            *_conv(p + "1", inner, input_nc, 4, bias),
            *_norm(p + "2", inner, norm, stale_instance_stats),
            *level_layout(level + 1),
            *_conv(p + "5", outer, 2 * inner, 4, bias, transposed=True),
            *_norm(p + "6", outer, norm, stale_instance_stats),
        ]

    return _with_counters(level_layout(0), norm)


def official_resnet_layout(
    in_nc: int = 3,
    out_nc: int = 3,
    ngf: int = 64,
    n_blocks: int = 9,
    norm: str = "instance",
    padding_type: str = "reflect",
    use_dropout: bool = False,
    stale_instance_stats: bool = False,
) -> Layout:
    bias = norm == "instance"
    layout: Layout = []
    layer_kinds: list[tuple] = [("pad",), ("conv", ngf, in_nc, 7, bias), ("norm", ngf), ("relu",)]
    for mult in (1, 2):
        layer_kinds += [("conv", ngf * mult * 2, ngf * mult, 3, bias), ("norm", ngf * mult * 2), ("relu",)]
    layer_kinds += [("block",)] * n_blocks
    for mult in (4, 2):
        layer_kinds += [("convT", ngf * mult // 2, ngf * mult, 3, bias), ("norm", ngf * mult // 2), ("relu",)]
    layer_kinds += [("pad",), ("conv", out_nc, ngf, 7, True), ("tanh",)]
    pad = [] if padding_type == "zero" else [("pad",)]
    block_kinds = [*pad, ("conv", 4 * ngf, 4 * ngf, 3, bias), ("norm", 4 * ngf), ("relu",)]
    block_kinds += [("dropout",)] if use_dropout else []
    block_kinds += [*pad, ("conv", 4 * ngf, 4 * ngf, 3, bias), ("norm", 4 * ngf)]

    def add(prefix: str, kinds: list[tuple]) -> None:
        for index, kind in enumerate(kinds):
            name = f"{prefix}{index}"
            if kind[0] in ("conv", "convT"):
                layout.extend(_conv(name, *kind[1:], transposed=kind[0] == "convT"))
            elif kind[0] == "norm":
                layout.extend(_norm(name, kind[1], norm, stale_instance_stats))
            elif kind[0] == "block":
                add(f"{name}.conv_block.", block_kinds)

    add("model.", layer_kinds)
    return _with_counters(layout, norm)


def random_state(layout: Layout, seed: int = 0) -> dict[str, Tensor]:
    """Random tensors under every name: weights N(0, 0.05^2) (so activations stay moderate), BatchNorm
    weights U(0.5, 1.5), running variances U(0.5, 2), counters random integers."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in layout:
        if name.endswith("num_batches_tracked"):
            state[name] = torch.randint(0, 1000, shape, generator=generator)
        elif name.endswith("running_var"):
            state[name] = 0.5 + 1.5 * torch.rand(shape, generator=generator)
        elif len(shape) == 1 and name.endswith("weight"):
            state[name] = 0.5 + torch.rand(shape, generator=generator)
        else:
            state[name] = 0.05 * torch.randn(shape, generator=generator)
    return state


def _norm_forward(state: dict[str, Tensor], name: str, x: Tensor, norm: str) -> Tensor:
    if norm == "batch":  # eval mode: the running statistics
        return F.batch_norm(
            x,
            state[f"{name}.running_mean"],
            state[f"{name}.running_var"],
            state[f"{name}.weight"],
            state[f"{name}.bias"],
            training=False,
        )
    return F.instance_norm(x)


def official_unet_forward(
    state: dict[str, Tensor], x: Tensor, num_downs: int, ngf: int = 64, norm: str = "batch"
) -> Tensor:
    """The official U-Net's eval-mode forward (dropout off), computed from official names."""
    levels = unet_levels(x.shape[1], 0, num_downs, ngf)

    def conv(name: str, h: Tensor, transposed: bool = False) -> Tensor:
        op = F.conv_transpose2d if transposed else F.conv2d
        return op(h, state[f"{name}.weight"], state.get(f"{name}.bias"), stride=2, padding=1)

    def level_forward(level: int, h: Tensor) -> Tensor:
        p = unet_prefix(level)
        if level == 0:
            inner = level_forward(1, conv(p + "0", h))
            return torch.tanh(conv(p + "3", F.relu(inner), transposed=True))
        h = F.leaky_relu(h, 0.2)  # in place in the official code: the skip below carries it too
        if level == len(levels) - 1:
            up = _norm_forward(state, p + "4", conv(p + "3", F.relu(conv(p + "1", h)), transposed=True), norm)
        else:
            down = _norm_forward(state, p + "2", conv(p + "1", h), norm)
            up = _norm_forward(
                state, p + "6", conv(p + "5", F.relu(level_forward(level + 1, down)), transposed=True), norm
            )
        return torch.cat([h, up], dim=1)

    return level_forward(0, x)


def official_resnet_forward(
    state: dict[str, Tensor], x: Tensor, n_blocks: int, norm: str = "instance"
) -> Tensor:
    """The official ResNet generator's forward (reflect padding, no dropout), from official names."""

    def conv(name: str, h: Tensor, stride: int = 1, padding: int = 0) -> Tensor:
        return F.conv2d(h, state[f"{name}.weight"], state.get(f"{name}.bias"), stride=stride, padding=padding)

    def norm_relu(name: str, h: Tensor, relu: bool = True) -> Tensor:
        h = _norm_forward(state, name, h, norm)
        return F.relu(h) if relu else h

    h = norm_relu("model.2", conv("model.1", F.pad(x, (3,) * 4, mode="reflect")))
    h = norm_relu("model.5", conv("model.4", h, stride=2, padding=1))
    h = norm_relu("model.8", conv("model.7", h, stride=2, padding=1))
    for block in range(10, 10 + n_blocks):
        p = f"model.{block}.conv_block."
        r = norm_relu(p + "2", conv(p + "1", F.pad(h, (1,) * 4, mode="reflect")))
        h = h + norm_relu(p + "6", conv(p + "5", F.pad(r, (1,) * 4, mode="reflect")), relu=False)
    first_up = 10 + n_blocks
    for index in (first_up, first_up + 3):
        h = F.conv_transpose2d(
            h,
            state[f"model.{index}.weight"],
            state.get(f"model.{index}.bias"),
            stride=2,
            padding=1,
            output_padding=1,
        )
        h = norm_relu(f"model.{index + 1}", h)
    return torch.tanh(conv(f"model.{first_up + 7}", F.pad(h, (3,) * 4, mode="reflect")))
