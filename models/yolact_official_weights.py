"""Load checkpoints of the official YOLACT repository (dbolya/yolact: ``yolact_base_54_800000.pth``,
``yolact_resnet50_54_800000.pth``, ...) into ``models.yolact.Yolact``, so the released weights can be
evaluated with ``zoo validate`` and the paper's numbers reproduced without training.

The official file is a plain ``Yolact().state_dict()``. Its names map one to one onto ours
(``convert_official_state_dict``); the official ``load_weights`` drops two kinds of legacy keys
(``backbone.layer*`` outside ``backbone.layers``, and ``fpn.downsample_layers.N`` beyond the config's
two), and so does this. Shapes are checked against the model, and a missing or unexpected name is
an error naming it. The official preprocessing is reproduced by ``YolactTransform`` (see
``models.yolact``); ``tests/test_yolact_official_weights.py`` checks that a converted model computes
what the official network computes on the same input.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

_OFFICIAL_FPN_LEVELS = 3  # C3-C5; the official FPN stores its lateral/output convs top-down
_PROTONET = {"0": "0", "2": "2", "4": "4", "8": "7", "10": "9"}  # ours has no ReLU after the upsampling
_HEAD = {"upfeature.0": "features.0", "bbox_layer": "box", "conf_layer": "cls", "mask_layer": "coef"}


def official_name_to_ours(name: str, num_downsample: int = 2) -> str | None:
    """Our state-dict name for an official one; None for the legacy keys the official loader drops."""
    if name.startswith("backbone.layer") and not name.startswith("backbone.layers."):
        return None
    if match := re.fullmatch(r"backbone\.layers\.(\d+)\.(.+)", name):
        return f"backbone.layer{int(match[1]) + 1}.{match[2]}"
    if name.startswith(("backbone.conv1.", "backbone.bn1.")):
        return name
    if match := re.fullmatch(r"fpn\.(lat|pred)_layers\.(\d+)\.(.+)", name):
        kind = "lateral" if match[1] == "lat" else "output"
        return f"fpn.{kind}.{_OFFICIAL_FPN_LEVELS - 1 - int(match[2])}.{match[3]}"
    if match := re.fullmatch(r"fpn\.downsample_layers\.(\d+)\.(.+)", name):
        return None if int(match[1]) >= num_downsample else f"fpn.downsample.{match[1]}.{match[2]}"
    if (match := re.fullmatch(r"proto_net\.(\d+)\.(.+)", name)) and match[1] in _PROTONET:
        return f"protonet.{_PROTONET[match[1]]}.{match[2]}"
    if (match := re.fullmatch(r"prediction_layers\.0\.(.+)\.(weight|bias)", name)) and match[1] in _HEAD:
        return f"head.{_HEAD[match[1]]}.{match[2]}"
    if name.startswith("semantic_seg_conv."):
        return "semantic_head." + name.removeprefix("semantic_seg_conv.")
    raise KeyError(f"{name!r} is not a name of the official yolact_base/yolact_resnet50 layout")


def convert_official_state_dict(official: dict[str, Tensor], num_downsample: int = 2) -> dict[str, Tensor]:
    converted = {}
    for name, value in official.items():
        ours = official_name_to_ours(name, num_downsample)
        if ours is not None:
            converted[ours] = value
    return converted


def load_official_weights(model: nn.Module, path: str | Path) -> None:
    """Load an official checkpoint file into ``model`` (a ``Yolact`` of the same config), strictly."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official YOLACT weights {path} not found")
    official = torch.load(path, map_location="cpu", weights_only=True)
    load_official_state_dict(model, official, source=str(path))


def load_official_state_dict(
    model: nn.Module, official: dict[str, Tensor], source: str = "state dict"
) -> None:
    converted = convert_official_state_dict(official, len(model.fpn.downsample))
    expected = model.state_dict()
    wrong_shape = [
        f"{name} {tuple(value.shape)} (model {tuple(expected[name].shape)})"
        for name, value in converted.items()
        if name in expected and value.shape != expected[name].shape
    ]
    if wrong_shape:
        raise ValueError(
            f"{source}: shapes differ from the model's -- {', '.join(wrong_shape[:5])}; is it the same "
            "config (backbone depth, num_classes, anchors per location)?"
        )
    missing = sorted(
        set(expected) - set(converted) - {n for n in expected if n.endswith("num_batches_tracked")}
    )
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{source}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict(converted, strict=False)
