"""The small CPU presets, read from the synthetic experiments' YAML -- the one place they are written."""

from __future__ import annotations

from typing import Any

import yaml

from models.mask_rcnn import MaskRCNN
from tests.cli_runs import REPO_ROOT

MASK_RCNN_SYNTHETIC = REPO_ROOT / "experiments" / "mask_rcnn" / "synthetic.yaml"


def experiment_model_block(path=MASK_RCNN_SYNTHETIC) -> dict[str, Any]:
    """The ``model.init_args.model`` block (``class_path`` and ``init_args``) of an experiment."""
    return yaml.safe_load(path.read_text())["model"]["init_args"]["model"]


def small_mask_rcnn(**overrides: Any) -> MaskRCNN:
    """``experiments/mask_rcnn/synthetic.yaml``'s Mask R-CNN, with ``overrides`` of its settings."""
    block = experiment_model_block()
    assert block["class_path"] == "models.mask_rcnn.MaskRCNN"
    return MaskRCNN(**{**block["init_args"], **overrides})


YOLACT_SYNTHETIC = REPO_ROOT / "experiments" / "yolact" / "synthetic.yaml"


def small_yolact(**overrides: Any):
    """``experiments/yolact/synthetic.yaml``'s YOLACT, with ``overrides`` of its settings."""
    from models.yolact import Yolact

    block = experiment_model_block(YOLACT_SYNTHETIC)
    assert block["class_path"] == "models.yolact.Yolact"
    return Yolact(**{**block["init_args"], **overrides})


UPSNET_SYNTHETIC = REPO_ROOT / "experiments" / "upsnet" / "synthetic_model.yaml"


def small_upsnet(**overrides: Any):
    """``experiments/upsnet/synthetic_model.yaml``'s UPSNet (its detector built from its nested block), with
    ``overrides`` of its settings."""
    from models.upsnet import UPSNet

    block = yaml.safe_load(UPSNET_SYNTHETIC.read_text())
    assert block["class_path"] == "models.upsnet.UPSNet"
    settings = dict(block["init_args"])
    detector = settings.pop("detector")
    assert detector["class_path"] == "models.mask_rcnn.MaskRCNN"
    return UPSNet(MaskRCNN(**detector["init_args"]), **{**settings, **overrides})


VPSNET_SYNTHETIC = REPO_ROOT / "experiments" / "vpsnet" / "synthetic_model.yaml"


def small_vpsnet(**overrides: Any):
    """``experiments/vpsnet/synthetic_model.yaml``'s VPSNet (its UPSNet ``small_upsnet``'s),
    with ``overrides`` of VPSNet's own plain settings (``fusion``, ``tracking``)."""
    from zoo.model_config import build_model

    model = build_model(VPSNET_SYNTHETIC)
    for name, value in overrides.items():
        setattr(model, name, value)
    return model
