"""Load the official CenterNet checkpoints (github.com/xingyizhou/CenterNet, ``readme/MODEL_ZOO.md``:
``ctdet_coco_resdcn18.pth``, ``ctdet_coco_resdcn101.pth``, ``ctdet_coco_dla_1x.pth``,
``ctdet_coco_dla_2x.pth``, ...) into ``models.centernet_resnet.CenterNetResNet`` and
``models.dla.CenterNetDLA``, so the released weights can be evaluated without training.

The file layout, read off the official code: ``src/lib/models/model.py`` ``save_model`` writes
``{"epoch": ..., "state_dict": ..., ["optimizer": ...]}``, and ``load_model`` strips a ``module.`` prefix
(a ``DataParallel`` state dict) from the names that have it; so does ``strip_module_prefix``. The state
dict is that of the official network (``msra_resnet.py`` / ``resnet_dcn.py`` ``PoseResNet``,
``pose_dla_dcn.py`` ``DLASeg``). Its names map one to one onto ours (``official_name_to_ours``):

- ResNets: ``conv1`` / ``bn1`` / ``layer1-4.*`` -> ``body.*``; ``deconv_layers.{n}`` (a flat Sequential,
  6 entries per stage for ``resdcn``: DCN, BN, ReLU, ConvTranspose2d, BN, ReLU; 3 for ``res``:
  ConvTranspose2d, BN, ReLU) -> ``upsample.{stage}.conv`` / ``conv_bn`` / ``deconv`` / ``deconv_bn``.
- DLA: ``base.*`` unchanged; ``dla_up.ida_{i}.{proj,up,node}_{j}`` -> ``dla_up.stages.{i}.{project,
  upsample,node}.{j-1}``; ``ida_up.{proj,up,node}_{j}`` -> ``ida_up.{project,upsample,node}.{j-1}``;
  inside a deformable block ``actf.0`` (its BN) -> ``bn``; the DCN's ``weight``, ``bias`` and
  ``conv_offset_mask`` keep their names. The checkpoints' ``base.fc.*`` (the unused ImageNet
  classifier, 513,000 parameters) are dropped unless the model was built with ``classifier=True``.
- Heads: ``{hm,wh,reg}.{0,2}.*`` -> ``heads.{name}.{0,2}.*``.

Loading checks every name and shape against the model and names what is missing, unexpected or
mis-shaped, in both naming schemes (``models.state_dict_fit``). The official code feeds the network
normalised BGR images (``cv2.imread``, COCO mean/std in BGR order): see ``models.centernet``'s ``bgr``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from models.centernet_resnet import CenterNetResNet
from models.dla import CenterNetDLA
from models.pretrained_weights import read_official_state_dict
from models.state_dict_fit import load_fitting_state_dict, state_dict_problems

SOURCE = "the CenterNet model zoo (github.com/xingyizhou/CenterNet/blob/master/readme/MODEL_ZOO.md)"
ARCHS = ("res", "resdcn", "dla")  # the official --arch families (src/lib/models/model.py _model_factory)
CHECKPOINT_PREFIX = "module."  # DataParallel; load_model strips it (but not from 'module_list' names)
CLASSIFIER_PREFIX = "base.fc."

# Official deconv_layers entries per stage -> our stage's part (the ReLUs hold no parameters).
_STAGE_PARTS: dict[str, tuple[str | None, ...]] = {
    "res": ("deconv", "deconv_bn", None),
    "resdcn": ("conv", "conv_bn", None, "deconv", "deconv_bn", None),
}
_IDA_KINDS = {"proj": "project", "up": "upsample", "node": "node"}
_BODY = re.compile(r"(?:conv1|bn1|layer\d+)\.")
_HEAD = re.compile(r"(?P<head>[A-Za-z_]+)\.(?P<index>[02])\.(?P<leaf>weight|bias)")


def model_arch(model: nn.Module) -> str:
    """The official ``--arch`` family of one of our networks: ``res``, ``resdcn`` or ``dla``."""
    if isinstance(model, CenterNetDLA):
        return "dla"
    if isinstance(model, CenterNetResNet):
        return "resdcn" if model.deformable else "res"
    raise TypeError(f"not a CenterNet ResNet or DLA network: {type(model).__name__}")


def _ida_leaf(kind: str, leaf: str, to_ours: bool) -> str | None:
    """A leaf name inside an IDA ``proj``/``node`` (deformable block) or ``up`` (transposed conv)."""
    if kind in ("up", "upsample"):
        return leaf if leaf == "weight" else None
    official, ours = ("actf.0.", "bn.") if to_ours else ("bn.", "actf.0.")
    if leaf.startswith(official):
        return ours + leaf.removeprefix(official)
    return leaf if re.fullmatch(r"conv\.(?:weight|bias|conv_offset_mask\.(?:weight|bias))", leaf) else None


def _resnet_to_ours(name: str, arch: str) -> str | None:
    if _BODY.match(name):
        return "body." + name
    if match := re.fullmatch(r"deconv_layers\.(\d+)\.(.+)", name):
        parts = _STAGE_PARTS[arch]
        stage, entry = divmod(int(match[1]), len(parts))
        return None if parts[entry] is None else f"upsample.{stage}.{parts[entry]}.{match[2]}"
    if match := _HEAD.fullmatch(name):
        return f"heads.{match['head']}.{match['index']}.{match['leaf']}"
    return None


def _resnet_to_official(name: str, arch: str) -> str | None:
    if name.startswith("body."):
        return name.removeprefix("body.")
    if match := re.fullmatch(r"upsample\.(\d+)\.(\w+)\.(.+)", name):
        parts = _STAGE_PARTS[arch]
        if match[2] not in parts:
            return None
        return f"deconv_layers.{int(match[1]) * len(parts) + parts.index(match[2])}.{match[3]}"
    if match := re.fullmatch(r"heads\.(.+)", name):
        return match[1] if _HEAD.fullmatch(match[1]) else None
    return None


def _dla_to_ours(name: str) -> str | None:
    if name.startswith("base."):
        return name
    if match := re.fullmatch(r"(dla_up\.ida_(\d+)|ida_up)\.(proj|up|node)_(\d+)\.(.+)", name):
        module = "ida_up" if match[2] is None else f"dla_up.stages.{match[2]}"
        leaf = _ida_leaf(match[3], match[5], to_ours=True)
        if leaf is None or int(match[4]) < 1:
            return None
        return f"{module}.{_IDA_KINDS[match[3]]}.{int(match[4]) - 1}.{leaf}"
    if match := _HEAD.fullmatch(name):
        return f"heads.{match['head']}.{match['index']}.{match['leaf']}"
    return None


def _dla_to_official(name: str) -> str | None:
    if name.startswith("base."):
        return name
    kinds = {ours: official for official, ours in _IDA_KINDS.items()}
    if match := re.fullmatch(r"(dla_up\.stages\.(\d+)|ida_up)\.(project|upsample|node)\.(\d+)\.(.+)", name):
        module = "ida_up" if match[2] is None else f"dla_up.ida_{match[2]}"
        leaf = _ida_leaf(match[3], match[5], to_ours=False)
        return None if leaf is None else f"{module}.{kinds[match[3]]}_{int(match[4]) + 1}.{leaf}"
    if match := re.fullmatch(r"heads\.(.+)", name):
        return match[1] if _HEAD.fullmatch(match[1]) else None
    return None


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")


def official_name_to_ours(name: str, arch: str) -> str:
    """Our state-dict name for an official one (no ``module.`` prefix) of the ``arch`` family."""
    _check_arch(arch)
    ours = _dla_to_ours(name) if arch == "dla" else _resnet_to_ours(name, arch)
    if ours is None:
        raise ValueError(f"{name!r} is not a name of the official CenterNet {arch} layout")
    return ours


def our_name_to_official(name: str, arch: str) -> str:
    """The official name for one of our ``arch`` network's state-dict names."""
    _check_arch(arch)
    official = _dla_to_official(name) if arch == "dla" else _resnet_to_official(name, arch)
    if official is None:
        raise ValueError(f"{name!r} is not a state-dict name of our CenterNet {arch} network")
    return official


def strip_module_prefix(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``load_model``'s DataParallel handling: ``module.`` removed from every name that starts with it."""
    return {
        name.removeprefix(CHECKPOINT_PREFIX) if name.startswith(CHECKPOINT_PREFIX) else name: value
        for name, value in official.items()
    }


def convert_official_state_dict(
    official: Mapping[str, Tensor], arch: str, keep_classifier: bool = False
) -> dict[str, Tensor]:
    """An official state dict (plain or DataParallel) in our names; ``base.fc.*`` dropped unless
    ``keep_classifier``. Raises ValueError naming the official names that have no counterpart."""
    _check_arch(arch)
    bare = strip_module_prefix(official)
    if not keep_classifier:
        bare = {name: value for name, value in bare.items() if not name.startswith(CLASSIFIER_PREFIX)}
    to_ours = _dla_to_ours if arch == "dla" else lambda name: _resnet_to_ours(name, arch)
    unknown = sorted(name for name in bare if to_ours(name) is None)
    if unknown:
        raise ValueError(
            f"{len(unknown)} names are not in the official CenterNet {arch} layout (the checkpoint looks "
            f"like {describe_checkpoint(bare)}): {unknown[:10]}"
        )
    return {to_ours(name): value for name, value in bare.items()}


def describe_checkpoint(official: Mapping[str, Tensor]) -> str:
    """The official arch and heads an official state dict looks like, read off its names and shapes."""
    names = set(strip_module_prefix(official))
    if any(name.startswith("dla_up.") for name in names):
        arch = "dla_34" if "base.level5.tree1.conv1.weight" in names else "dla"
    elif any(name.startswith("deconv_layers.") for name in names):
        family = "resdcn" if any("conv_offset_mask" in name for name in names) else "res"
        blocks = len({name.split(".")[1] for name in names if name.startswith("layer3.")})
        bottleneck = any(name.startswith("layer1.0.conv3.") for name in names)
        depth = {(2, False): 18, (6, False): 34, (6, True): 50, (23, True): 101, (36, True): 152}
        arch = f"{family}_{depth.get((blocks, bottleneck), '?')}"
    else:
        arch = "neither a CenterNet ResNet nor DLA"
    heads = [
        f"{match['head']} {value.shape[0]}"
        for name, value in strip_module_prefix(official).items()
        if (match := _HEAD.fullmatch(name)) and match["index"] == "2" and match["leaf"] == "weight"
    ]
    return f"{arch} with heads {', '.join(heads) or 'none'}"


def _describe_model(model: nn.Module, arch: str) -> str:
    depth = "34" if arch == "dla" else str(getattr(model, "depth", "?"))
    heads = ", ".join(f"{name} {branch[2].out_channels}" for name, branch in model.heads.items())
    return f"{arch}_{depth} with heads {heads}"


def load_official_state_dict(
    model: nn.Module, official: Mapping[str, Tensor], source: str = "state dict"
) -> None:
    """Load an official state dict into ``model`` (a ``CenterNetResNet`` / ``CenterNetDLA`` of the same
    arch and heads), strictly: any missing, unexpected or mis-shaped name is a ValueError naming it (a
    missing BatchNorm ``num_batches_tracked`` is allowed; the PyTorch 0.4.1 checkpoints have it)."""
    arch = model_arch(model)
    keep_classifier = any(name.startswith(CLASSIFIER_PREFIX) for name in model.state_dict())
    converted = convert_official_state_dict(official, arch, keep_classifier=keep_classifier)
    problems = state_dict_problems(model, converted, lambda name: our_name_to_official(name, arch))
    if problems:
        raise ValueError(
            f"{source} does not fit the model ({_describe_model(model, arch)}; the checkpoint looks like "
            f"{describe_checkpoint(official)}) -- " + "; ".join(problems)
        )
    load_fitting_state_dict(model, converted, problems)


def load_official_weights(model: nn.Module, path: str | Path) -> None:
    """Load an official ``.pth`` file (``{"epoch", "state_dict", ...}`` or a bare state dict) into
    ``model``; read with ``torch.load(weights_only=True)`` (the files hold only tensors and numbers)."""
    state = read_official_state_dict(path, network="CenterNet", source=SOURCE)
    load_official_state_dict(model, state, source=str(path))
