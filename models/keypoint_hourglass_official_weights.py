"""Load the released Hourglass-104 checkpoints of CenterNet and CornerNet into ``CenterNetHourglass``
(``models.keypoint_hourglass``) and ``CornerNetHourglass`` (``models.cornernet_hourglass``).

The files, read off the official code:

- CenterNet ``ctdet_coco_hg.pth`` (xingyizhou/CenterNet): ``save_model`` (``src/lib/models/model.py``)
  writes ``{"epoch": ..., "state_dict": ..., ["optimizer": ...]}``; the state dict is that of
  ``HourglassNet`` (``networks/large_hourglass.py``), its keys possibly prefixed ``module.`` (a
  ``DataParallel``, which the official ``load_model`` strips).
- CornerNet ``CornerNet_500000.pkl`` (princeton-vl/CornerNet): ``NetworkFactory.save_params``
  (``nnet/py_factory.py``) saves ``self.model.state_dict()``, where ``self.model`` is
  ``DummyModule(model)``: a bare state dict whose every key is ``module.`` + a name of ``kp``
  (``models/py_utils/kp.py`` with ``models/CornerNet.py``'s pool layers). Written by PyTorch 0.4.0, it
  has no BatchNorm ``num_batches_tracked``, which loading allows.

Names map one to one, both ways (``centernet_name_to_ours``/``our_name_to_centernet``,
``cornernet_name_to_ours``/``our_name_to_cornernet``). The shared trunk: ``pre.0.conv``/``pre.0.bn``/
``pre.1`` -> ``trunk.stem.conv``/``bn``/``residual``; ``kps.{i}`` -> ``trunk.hourglasses.{i}`` with
``up1``/``low1``/``low2``/``low3`` -> ``upper``/``lower_in``/``inner``/``lower_out``; ``cnvs.{i}.conv``/
``.bn`` -> ``trunk.features.{i}.0``/``.1``; ``inters_``/``cnvs_``/``inters`` -> ``trunk.merge_inputs``/
``merge_features``/``merge_residuals``; inside a residual module the names are the official ones. Heads
(the official ``make_kp_layer``'s ``0.conv``/``1`` -> ``0``/``2``): CenterNet ``{hm,wh,reg}.{i}`` ->
``heads.{i}.{hm,wh,reg}``; CornerNet ``tl_heats.{i}`` -> ``top_left.{i}.heads.tl_heat`` (likewise tags,
regrs, ``br_*`` -> ``bottom_right``) and the corner pools ``tl_cnvs.{i}`` -> ``top_left.{i}.pool`` with
``p1_conv1``/``p2_conv1``/``p_conv1``/``p_bn1``/``conv1``/``bn1``/``conv2`` -> ``vertical``/``horizontal``/
``pooled_conv``/``pooled_bn``/``shortcut_conv``/``shortcut_bn``/``out``. Loading checks every name and
shape against the model and names what is missing, unexpected or mis-shaped, in both naming schemes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from torch import Tensor, nn

from models.pretrained_weights import read_state_dict
from models.state_dict_fit import load_fitting_state_dict, state_dict_problems

CENTERNET_SOURCE = "ctdet_coco_hg.pth of the CenterNet model zoo (xingyizhou/CenterNet, readme/MODEL_ZOO.md)"
CORNERNET_SOURCE = "CornerNet_500000.pkl (princeton-vl/CornerNet README, the trained model for CornerNet)"
MODULE_PREFIX = "module."  # DataParallel (CenterNet) / DummyModule (CornerNet)

_LEAF = r"(?:weight|bias|running_mean|running_var|num_batches_tracked)"
_RESIDUAL = rf"(?:conv1|bn1|conv2|bn2|skip\.0|skip\.1)\.{_LEAF}"  # its names are the official ones
_HOURGLASS_TOKENS = {"up1": "upper", "low1": "lower_in", "low2": "inner", "low3": "lower_out"}
_POOL_MODULES = {
    "p1_conv1.conv": "vertical.0",
    "p1_conv1.bn": "vertical.1",
    "p2_conv1.conv": "horizontal.0",
    "p2_conv1.bn": "horizontal.1",
    "p_conv1": "pooled_conv",
    "p_bn1": "pooled_bn",
    "conv1": "shortcut_conv",
    "bn1": "shortcut_bn",
    "conv2.conv": "out.0",
    "conv2.bn": "out.1",
}


@dataclass(frozen=True)
class _Field:
    """A placeholder of a name template: its pattern in each naming scheme and the translation."""

    official: str
    ours: str
    to_ours: Callable[[str], str] = lambda value: value
    to_official: Callable[[str], str] = lambda value: value


def _tokens(mapping: Mapping[str, str]) -> Callable[[str], str]:
    return lambda value: ".".join(mapping.get(token, token) for token in value.split("."))


def _alternatives(names: Iterable[str]) -> str:
    return "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))


_FIELDS = {
    "i": _Field(r"\d+", r"\d+"),
    "j": _Field(r"\d+", r"\d+"),
    "leaf": _Field(_LEAF, _LEAF),
    "res": _Field(_RESIDUAL, _RESIDUAL),
    # the path of a residual inside an hourglass: (low2.)* then the level's branch and the index in it
    "hg": _Field(
        r"(?:low2\.)*(?:up1|low1|low2|low3)\.\d+",
        r"(?:inner\.)*(?:upper|lower_in|inner|lower_out)\.\d+",
        _tokens(_HOURGLASS_TOKENS),
        _tokens({ours: official for official, ours in _HOURGLASS_TOKENS.items()}),
    ),
    "pool": _Field(
        _alternatives(_POOL_MODULES),
        _alternatives(_POOL_MODULES.values()),
        _POOL_MODULES.__getitem__,
        {ours: official for official, ours in _POOL_MODULES.items()}.__getitem__,
    ),
}

# (official template, our template) of the Hourglass trunk
_TRUNK_RULES = (
    ("pre.0.conv.{leaf}", "trunk.stem.conv.{leaf}"),
    ("pre.0.bn.{leaf}", "trunk.stem.bn.{leaf}"),
    ("pre.1.{res}", "trunk.stem.residual.{res}"),
    ("kps.{i}.{hg}.{res}", "trunk.hourglasses.{i}.{hg}.{res}"),
    ("cnvs.{i}.conv.{leaf}", "trunk.features.{i}.0.{leaf}"),
    ("cnvs.{i}.bn.{leaf}", "trunk.features.{i}.1.{leaf}"),
    ("inters_.{i}.{j}.{leaf}", "trunk.merge_inputs.{i}.{j}.{leaf}"),
    ("cnvs_.{i}.{j}.{leaf}", "trunk.merge_features.{i}.{j}.{leaf}"),
    ("inters.{i}.{res}", "trunk.merge_residuals.{i}.{res}"),
)


def _head_rules(official: str, ours: str) -> tuple[tuple[str, str], ...]:
    """The official ``make_kp_layer`` (``0.conv``: 3x3 conv, ``1``: 1x1 conv) vs a ``KeypointHeads``
    branch (``0``, ``2``)."""
    return (
        (f"{official}.0.conv.{{leaf}}", f"{ours}.0.{{leaf}}"),
        (f"{official}.1.{{leaf}}", f"{ours}.2.{{leaf}}"),
    )


_CENTERNET_RULES = _TRUNK_RULES + tuple(
    rule for head in ("hm", "wh", "reg") for rule in _head_rules(f"{head}.{{i}}", f"heads.{{i}}.{head}")
)
_CORNERNET_RULES = _TRUNK_RULES + tuple(
    rule
    for short, corner in (("tl", "top_left"), ("br", "bottom_right"))
    for rule in (
        (f"{short}_cnvs.{{i}}.{{pool}}.{{leaf}}", f"{corner}.{{i}}.pool.{{pool}}.{{leaf}}"),
        *(
            rule
            for kind in ("heat", "tag", "regr")
            for rule in _head_rules(f"{short}_{kind}s.{{i}}", f"{corner}.{{i}}.heads.{short}_{kind}")
        ),
    )
)


@cache
def _compile(template: str, side: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for key, field in _FIELDS.items():
        pattern = pattern.replace(re.escape(f"{{{key}}}"), f"(?P<{key}>{getattr(field, side)})")
    return re.compile(pattern)


@dataclass(frozen=True)
class _Layout:
    """One official network's names: translation both ways by the rules' templates."""

    network: str
    rules: tuple[tuple[str, str], ...]

    def translate(self, name: str, to_ours: bool) -> str | None:
        source, target = ("official", "ours") if to_ours else ("ours", "official")
        for official, ours in self.rules:
            templates = {"official": official, "ours": ours}
            match = _compile(templates[source], source).fullmatch(name)
            if match is None:
                continue
            convert = {key: getattr(_FIELDS[key], f"to_{target}") for key in match.groupdict()}
            return templates[target].format(
                **{key: convert[key](value) for key, value in match.groupdict().items()}
            )
        return None

    def to_ours(self, name: str) -> str:
        ours = self.translate(name, to_ours=True)
        if ours is None:
            raise ValueError(f"{name!r} is not a name of the official {self.network} layout")
        return ours

    def to_official(self, name: str) -> str:
        official = self.translate(name, to_ours=False)
        if official is None:
            raise ValueError(f"{name!r} is not a state-dict name of our {self.network}")
        return official

    def convert(self, official: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``official`` (``module.`` prefixed or not) in our names; a ValueError names every official name
        without a counterpart (up to 10)."""
        bare = strip_module_prefix(official)
        unknown = [name for name in bare if self.translate(name, to_ours=True) is None]
        if unknown:
            raise ValueError(
                f"{len(unknown)} names are not in the official {self.network} layout: {unknown[:10]}"
            )
        return {self.to_ours(name): value for name, value in bare.items()}

    def load(self, model: nn.Module, official: Mapping[str, Tensor], source: str) -> None:
        converted = self.convert(official)
        problems = state_dict_problems(model, converted, lambda name: self.translate(name, False) or name)
        if problems:
            raise ValueError(
                f"{source} does not fit the model ({_describe(model)}; is it a {self.network} checkpoint of "
                "the same number of classes and layout?) -- " + "; ".join(problems)
            )
        load_fitting_state_dict(model, converted, problems)


CENTERNET = _Layout("CenterNet ctdet Hourglass-104 (large_hourglass.py HourglassNet)", _CENTERNET_RULES)
CORNERNET = _Layout("CornerNet (models/py_utils/kp.py kp, models/CornerNet.py)", _CORNERNET_RULES)


def _describe(model: nn.Module) -> str:
    trunk = getattr(model, "trunk", None)
    settings = {
        "num_classes": getattr(model, "num_classes", "?"),
        "num_stacks": getattr(trunk, "num_stacks", "?"),
        "dims": getattr(trunk, "dims", "?"),
    }
    return f"{type(model).__name__} " + ", ".join(f"{key}={value}" for key, value in settings.items())


def strip_module_prefix(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The network's state dict inside a ``DataParallel``/``DummyModule`` one (all keys ``module.``, or
    none; a mix is a ValueError naming one of each)."""
    prefixed = [name for name in official if name.startswith(MODULE_PREFIX)]
    if not prefixed:
        return dict(official)
    if len(prefixed) == len(official):
        return {name.removeprefix(MODULE_PREFIX): value for name, value in official.items()}
    other = next(name for name in official if not name.startswith(MODULE_PREFIX))
    raise ValueError(
        f"official state dict mixes {MODULE_PREFIX!r} names ({prefixed[0]!r}) with others ({other!r})"
    )


def centernet_name_to_ours(name: str) -> str:
    """Our ``CenterNetHourglass`` name of an official ``HourglassNet`` one (without ``module.``)."""
    return CENTERNET.to_ours(name)


def our_name_to_centernet(name: str) -> str:
    return CENTERNET.to_official(name)


def cornernet_name_to_ours(name: str) -> str:
    """Our ``CornerNet`` name of an official ``kp`` one (without ``module.``)."""
    return CORNERNET.to_ours(name)


def our_name_to_cornernet(name: str) -> str:
    return CORNERNET.to_official(name)


def convert_centernet_state_dict(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return CENTERNET.convert(official)


def convert_cornernet_state_dict(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return CORNERNET.convert(official)


def load_centernet_state_dict(
    model: nn.Module, official: Mapping[str, Tensor], source: str = "state dict"
) -> None:
    """Load an official CenterNet state dict (or checkpoint dict with ``state_dict``) into a
    ``CenterNetHourglass`` strictly (only ``num_batches_tracked`` may be missing); every other missing,
    unexpected or mis-shaped name is a ValueError naming it."""
    state = official["state_dict"] if isinstance(official.get("state_dict"), Mapping) else official
    CENTERNET.load(model, state, source)


def load_cornernet_state_dict(
    model: nn.Module, official: Mapping[str, Tensor], source: str = "state dict"
) -> None:
    """Load an official CornerNet state dict into a ``CornerNet`` strictly (as
    ``load_centernet_state_dict``)."""
    CORNERNET.load(model, official, source)


def load_centernet_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local ``ctdet_coco_hg.pth`` (tensors only: ``weights_only`` reading)."""
    checkpoint = read_state_dict(path, network="CenterNet Hourglass-104", source=CENTERNET_SOURCE)
    load_centernet_state_dict(model, checkpoint, source=str(path))


def load_cornernet_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local ``CornerNet_500000.pkl`` (tensors only: ``weights_only`` reading)."""
    state = read_state_dict(path, network="CornerNet", source=CORNERNET_SOURCE)
    load_cornernet_state_dict(model, state, source=str(path))
