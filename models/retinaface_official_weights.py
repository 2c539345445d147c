"""Load the released RetinaFace weights of github.com/biubug6/Pytorch_Retinaface (README "Training":
``mobilenet0.25_Final.pth``, ``Resnet50_Final.pth``) into ``models.retinaface_network.RetinaFaceNetwork``,
so the released detectors can be evaluated without training.

The files are ``torch.save(net.state_dict())`` of the implementation's ``RetinaFace`` (``train.py``), with
a ``module.`` prefix on every name when it was trained under ``DataParallel``; its ``detect.py``
``load_model`` takes ``checkpoint["state_dict"]`` when there is one and strips ``module.`` from the names
that start with it, and so does this. Our module names equal the implementation's, so no name is
converted: every name and shape is checked against the model (``models.state_dict_fit``), and a missing,
unexpected or mis-shaped one is an error naming it; then the state dict loads strictly (a missing BatchNorm
``num_batches_tracked`` is allowed, as everywhere in ``state_dict_fit``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from models.pretrained_weights import read_official_state_dict
from models.state_dict_fit import load_fitting_state_dict, state_dict_problems

SOURCE = (
    "the Pytorch_Retinaface release (github.com/biubug6/Pytorch_Retinaface, README 'Training': "
    "mobilenet0.25_Final.pth or Resnet50_Final.pth)"
)
DATA_PARALLEL_PREFIX = "module."
_BACKBONE_MARKERS = {"body.stage1.": "mobilenet0.25", "body.layer2.": "resnet50"}


def strip_module_prefix(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``detect.py``'s ``remove_prefix``: ``module.`` removed from every name that starts with it."""
    return {name.removeprefix(DATA_PARALLEL_PREFIX): value for name, value in official.items()}


def describe_checkpoint(state: Mapping[str, Tensor]) -> str:
    """The backbone and width a (prefix-free) state dict looks like, read off its names and shapes."""
    names = list(state)
    backbones = {
        kind for marker, kind in _BACKBONE_MARKERS.items() if any(n.startswith(marker) for n in names)
    }
    backbone = " + ".join(sorted(backbones)) or "neither a MobileNet-0.25 nor a ResNet-50 RetinaFace"
    head = state.get("ClassHead.0.conv1x1.weight")
    width = f", out_channel {head.shape[1]}" if isinstance(head, Tensor) and head.ndim == 4 else ""
    return backbone + width


def load_official_state_dict(
    model: nn.Module, official: Mapping[str, Tensor], source: str = "state dict"
) -> None:
    """Load a released state dict (with or without ``module.``) into ``model`` (a ``RetinaFaceNetwork`` of
    the same backbone), strictly; any missing, unexpected or mis-shaped name is a ValueError naming it."""
    state = strip_module_prefix(official)
    problems = state_dict_problems(model, state)
    if problems:
        config = getattr(model, "config", None)
        ours = (
            f"{config.backbone}, out_channel {config.out_channel}"
            if config is not None
            else type(model).__name__
        )
        raise ValueError(
            f"{source} does not fit the RetinaFace model ({ours}; the checkpoint looks like "
            f"{describe_checkpoint(state)}) -- " + "; ".join(problems)
        )
    load_fitting_state_dict(model, state, problems)


def load_official_weights(model: nn.Module, path: str | Path) -> None:
    """Load a released ``*_Final.pth`` file (a state dict, or ``{"state_dict": ...}``) into ``model``; read
    with ``torch.load(weights_only=True)`` (the files hold only tensors)."""
    state = read_official_state_dict(path, network="RetinaFace", source=SOURCE)
    load_official_state_dict(model, state, source=str(path))
