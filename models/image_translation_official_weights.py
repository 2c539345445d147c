"""Load the generators junyanz/pytorch-CycleGAN-and-pix2pix released (``latest_net_G.pth``: pix2pix
``unet_256`` with BatchNorm, CycleGAN ``resnet_9blocks`` with InstanceNorm) into ``UNetGenerator`` /
``ResNetGenerator``.

Our modules keep the official nesting and Sequential indices, so the names are the official ones
(``model.model.1.model.3.model.2.weight``, ``model.10.conv_block.5.bias``); what differs between files is:

- a ``module.`` prefix, when a ``DataParallel`` state dict was saved as it was;
- ``running_mean`` / ``running_var`` / ``num_batches_tracked`` under InstanceNorm layers: checkpoints
  written with PyTorch < 0.4 or with the code's early ``track_running_stats=True`` InstanceNorm carry them,
  and the official ``__patch_instance_norm_state_dict`` drops them; we do the same, for the InstanceNorm
  layers of the target model only;
- no BatchNorm ``num_batches_tracked`` in files older than PyTorch 0.4: allowed missing (it is only read
  when BatchNorm's momentum is None).

Everything else must match: a missing, unexpected or mis-shaped name is a ValueError naming it, with the
generator the file looks like. The caller reads the file (``torch.load(path, weights_only=True)``: the
released files hold only tensors).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from models.pretrained_weights import read_state_dict
from models.state_dict_fit import load_fitting_state_dict, state_dict_problems

OFFICIAL_SOURCE = (
    "junyanz/pytorch-CycleGAN-and-pix2pix's released latest_net_G.pth (scripts/download_*_model.sh)"
)

DATA_PARALLEL_PREFIX = "module."
_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _strip_data_parallel(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    prefixed = [name.startswith(DATA_PARALLEL_PREFIX) for name in official]
    if official and all(prefixed):
        return {name.removeprefix(DATA_PARALLEL_PREFIX): value for name, value in official.items()}
    if any(prefixed):
        example = next(name for name in official if name.startswith(DATA_PARALLEL_PREFIX))
        raise ValueError(
            f"official state dict mixes {DATA_PARALLEL_PREFIX!r} names ({example!r}) with others"
        )
    return dict(official)


def describe_official_generator(official: Mapping[str, Tensor]) -> str:
    """What the official generator behind a state dict looks like, read off its names and first shape
    (e.g. ``"unet with num_downs=8, base_channels=64"``, ``"resnet with num_blocks=9, base_channels=64"``)."""
    state = _strip_data_parallel(official)
    blocks = {int(m[1]) for name in state if (m := re.match(r"model\.(\d+)\.conv_block\.", name))}
    if blocks:
        first = state.get("model.1.weight")
        base = "" if first is None else f", base_channels={first.shape[0]}"
        return f"resnet with num_blocks={len(blocks)}{base}"
    if any(name.startswith("model.model.") for name in state):
        depth = max(name.split(".").count("model") for name in state) - 1
        first = state.get("model.model.0.weight")
        base = "" if first is None else f", base_channels={first.shape[0]}"
        return f"unet with num_downs={depth}{base}"
    return "neither an official unet nor resnet generator"


def convert_official_generator_state_dict(
    official: Mapping[str, Tensor], model: nn.Module
) -> dict[str, Tensor]:
    """The official state dict ready for ``model.load_state_dict``: ``module.`` stripped, and the running
    statistics of the layers that are InstanceNorm without running statistics in ``model`` dropped."""
    state = _strip_data_parallel(official)
    modules = dict(model.named_modules())
    converted = {}
    for name, value in state.items():
        owner, _, leaf = name.rpartition(".")
        layer = modules.get(owner)
        if leaf in _RUNNING_STATS and isinstance(layer, nn.InstanceNorm2d) and not layer.track_running_stats:
            continue
        converted[name] = value
    return converted


def load_official_generator(model: nn.Module, official: Mapping[str, Tensor]) -> None:
    """Load an official generator state dict (``latest_net_G.pth``'s content) into ``model`` strictly:
    a ``UNetGenerator`` / ``ResNetGenerator`` built with the checkpoint's settings."""
    converted = convert_official_generator_state_dict(official, model)
    problems = state_dict_problems(model, converted, shown=8)
    if problems:
        raise ValueError(
            f"official generator state dict ({describe_official_generator(official)}) does not fit "
            f"{type(model).__name__} -- " + "; ".join(problems)
        )
    load_fitting_state_dict(model, converted, problems)


def load_official_generator_file(model: nn.Module, path: str | Path) -> None:
    """``load_official_generator`` from a released ``latest_net_G.pth`` on disk (a missing file is named
    with where to get it): the generators' ``official_weights`` argument."""
    load_official_generator(
        model, read_state_dict(path, network=type(model).__name__, source=OFFICIAL_SOURCE)
    )
