"""Load checkpoints of the official PyTorch Stacked Hourglass port (princeton-vl/pytorch_stacked_hourglass:
the released ``original_8hg/checkpoint.pt`` and ``original_2hg/checkpoint.pt``, or any ``exp/<name>/
checkpoint.pt`` its ``train.py`` writes) into ``models.hourglass.StackedHourglass``.

The file layout, read off the official code: ``train.py`` ``save()`` writes ``{"state_dict": ...,
"optimizer": ..., "epoch": ...}``, where the state dict is that of ``task/pose.py``'s ``Trainer``, whose
``model`` is a ``DataParallel(PoseNet)``: every key is ``"model.module." + <PoseNet name>`` (e.g.
``model.module.hgs.0.0.up1.bn1.weight``). ``convert_official_state_dict`` also takes a bare PoseNet or
DataParallel state dict (no prefix or ``module.``).

Names map one to one (``official_name_to_ours``; e.g. ``pre.*`` -> ``stem.*``, ``hgs.{i}.0.up1`` ->
``stacks.{i}.hourglass.upper``, ``low1/low2/low3`` -> ``lower_in/inner/lower_out``, ``outs.{i}`` ->
``stacks.{i}.predict``, ``merge_preds.{i}`` / ``merge_features.{i}`` -> ``stacks.{i}.remap_predictions`` /
``remap_features``; the official ``Conv`` wrapper's ``.conv`` level disappears). Loading checks every
name and shape against the model and names what is missing, unexpected or mis-shaped, in both naming
schemes. ``tests/test_hourglass_official_weights.py`` checks that a converted model computes what the
official network computed on the same input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from models.pretrained_weights import read_official_state_dict
from models.state_dict_fit import load_fitting_state_dict, state_dict_problems

SOURCE = "princeton-vl/pytorch_stacked_hourglass (original_8hg / original_2hg checkpoint.pt)"
CHECKPOINT_PREFIXES = ("model.module.", "module.")  # train.py's Trainer(DataParallel(PoseNet)), DataParallel

# (official, ours) name prefixes; ``{i}`` is a stack index. The kind says what follows the prefix.
_PREFIX_RULES = (
    ("pre.0.conv.", "stem.conv.", "conv"),
    ("pre.0.bn.", "stem.bn.", "bn"),
    ("pre.1.", "stem.residual1.", "residual"),
    ("pre.3.", "stem.residual2.", "residual"),
    ("pre.4.", "stem.residual3.", "residual"),
    ("hgs.{i}.0.", "stacks.{i}.hourglass.", "hourglass"),
    ("features.{i}.0.", "stacks.{i}.features.residual.", "residual"),
    ("features.{i}.1.conv.", "stacks.{i}.features.conv.", "conv"),
    ("features.{i}.1.bn.", "stacks.{i}.features.bn.", "bn"),
    ("outs.{i}.conv.", "stacks.{i}.predict.", "conv"),
    ("merge_preds.{i}.conv.conv.", "stacks.{i}.remap_predictions.", "conv"),
    ("merge_features.{i}.conv.conv.", "stacks.{i}.remap_features.", "conv"),
)
_HOURGLASS_TOKENS = (("up1.", "upper."), ("low1.", "lower_in."), ("low3.", "lower_out."))
_INNER_TOKEN = ("low2.", "inner.")
_RESIDUAL_RULES = (
    ("bn1.", "bn1.", "bn"),
    ("bn2.", "bn2.", "bn"),
    ("bn3.", "bn3.", "bn"),
    ("conv1.conv.", "conv1.", "conv"),
    ("conv2.conv.", "conv2.", "conv"),
    ("conv3.conv.", "conv3.", "conv"),
    ("skip_layer.conv.", "skip.", "conv"),
)
_LEAVES = {
    "conv": ("weight", "bias"),
    "bn": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
}


def _prefix_pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)"))


def _translate(name: str, to_ours: bool) -> str | None:
    """``name`` in the other naming scheme, or None if it is not a name of the layout."""
    side = 0 if to_ours else 1
    for rule in _PREFIX_RULES:
        match = _prefix_pattern(rule[side]).match(name)
        if match is None:
            continue
        translated = rule[1 - side].format(**match.groupdict())
        rest, kind = name[match.end() :], rule[2]
        if kind == "hourglass":
            while rest.startswith(_INNER_TOKEN[side]):
                translated, rest = translated + _INNER_TOKEN[1 - side], rest[len(_INNER_TOKEN[side]) :]
            token = next((t for t in _HOURGLASS_TOKENS if rest.startswith(t[side])), None)
            if token is not None:
                translated, rest = translated + token[1 - side], rest[len(token[side]) :]
            kind = "residual"
        if kind == "residual":
            leaf_rule = next((r for r in _RESIDUAL_RULES if rest.startswith(r[side])), None)
            if leaf_rule is None:
                return None
            translated, rest, kind = (
                translated + leaf_rule[1 - side],
                rest[len(leaf_rule[side]) :],
                leaf_rule[2],
            )
        return translated + rest if rest in _LEAVES[kind] else None
    return None


def official_name_to_ours(name: str) -> str:
    """Our state-dict name for an official ``PoseNet`` one (without checkpoint prefix)."""
    ours = _translate(name, to_ours=True)
    if ours is None:
        raise ValueError(f"{name!r} is not a name of the official PoseNet layout (models/posenet.py)")
    return ours


def our_name_to_official(name: str) -> str:
    """The official ``PoseNet`` name for one of ``StackedHourglass``'s state-dict names."""
    official = _translate(name, to_ours=False)
    if official is None:
        raise ValueError(f"{name!r} is not a StackedHourglass state-dict name")
    return official


def strip_checkpoint_prefix(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The PoseNet state dict inside a ``Trainer``/``DataParallel`` one (keys share one prefix, or none)."""
    for prefix in CHECKPOINT_PREFIXES:
        if all(name.startswith(prefix) for name in official):
            return {name.removeprefix(prefix): value for name, value in official.items()}
    prefix = next((p for p in CHECKPOINT_PREFIXES if any(name.startswith(p) for name in official)), None)
    if prefix is not None:
        with_prefix = next(name for name in official if name.startswith(prefix))
        without = next(name for name in official if not name.startswith(prefix))
        raise ValueError(
            f"official state dict mixes {prefix!r} names ({with_prefix!r}) with others ({without!r})"
        )
    return dict(official)


def convert_official_state_dict(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The official (``PoseNet``, ``DataParallel`` or ``train.py`` ``Trainer``) state dict in our names.

    Raises ValueError naming every official name that has no counterpart (up to 10 of them).
    """
    bare = strip_checkpoint_prefix(official)
    unknown = sorted(name for name in bare if _translate(name, to_ours=True) is None)
    if unknown:
        raise ValueError(
            f"{len(unknown)} names are not in the official PoseNet layout (models/posenet.py): {unknown[:10]}"
        )
    return {official_name_to_ours(name): value for name, value in bare.items()}


def official_config(official: Mapping[str, Tensor]) -> dict[str, int]:
    """``StackedHourglass`` settings of an official state dict: ``num_stacks``, ``features``,
    ``num_keypoints``, ``depth`` (read off its names and the prediction convolution's shape)."""
    ours = convert_official_state_dict(official)
    if "stacks.0.predict.weight" not in ours:
        raise ValueError("official state dict has no outs.0.conv.weight (the first stack's prediction)")
    num_keypoints, features = ours["stacks.0.predict.weight"].shape[:2]
    stacks = {int(match[1]) for name in ours if (match := re.match(r"stacks\.(\d+)\.", name))}
    depth = max(name.count(_INNER_TOKEN[1]) for name in ours if ".hourglass." in name)
    return {"num_stacks": len(stacks), "features": features, "num_keypoints": num_keypoints, "depth": depth}


def _describe(model: nn.Module) -> str:
    settings = ("num_stacks", "features", "num_keypoints", "depth")
    return ", ".join(f"{key}={getattr(model, key)}" for key in settings if hasattr(model, key))


def load_official_state_dict(
    model: nn.Module, official: Mapping[str, Tensor], source: str = "state dict"
) -> None:
    """Load an official state dict into ``model`` (a ``StackedHourglass`` of the same settings), strictly.

    A missing BatchNorm ``num_batches_tracked`` is allowed (it is not used in eval mode or with the
    default momentum); any other missing, unexpected or mis-shaped name is a ValueError naming it.
    """
    converted = convert_official_state_dict(official)
    problems = state_dict_problems(model, converted, our_name_to_official)
    if problems:
        try:
            found = ", ".join(f"{key}={value}" for key, value in official_config(official).items())
        except ValueError:
            found = "unreadable"
        raise ValueError(
            f"{source} does not fit the model ({_describe(model)}; the checkpoint looks like {found}) -- "
            + "; ".join(problems)
        )
    load_fitting_state_dict(model, converted, problems)


def load_official_weights(model: nn.Module, path: str | Path) -> None:
    """Load an official ``checkpoint.pt`` (or a bare official state dict file) into ``model``.

    Read with ``torch.load(weights_only=True)``: the official file holds only tensors, numbers and the
    Adam state besides the weights, so no arbitrary pickled object is ever unpickled.
    """
    state = read_official_state_dict(path, network="Stacked Hourglass", source=SOURCE)
    load_official_state_dict(model, state, source=str(path))
