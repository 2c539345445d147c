"""The landmark paper-reproduction experiments parse as ``zoo fit --print_config`` resolves them and state
their recipes: the 8-stack Stacked Hourglass on MPII (Newell et al. 2016, RMSprop 2.5e-4, batch 8, the
official 64x64 target, one lr drop on plateau) and SimpleBaseline ResNet-50 on WFLW (mmpose's heatmap
recipe), with the published numbers ``zoo compare`` reads. Full-size models are built on the meta device
only (shapes, no memory)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from jsonargparse import ArgumentParser

from lightning_modules.keypoints import HeatmapKeypointModule
from models.heatmaps import GaussianHeatmapCodec
from models.hourglass import StackedHourglass
from models.simple_baseline import SimpleBaseline
from tests.cli_runs import REPO_ROOT
from tests.test_heatmaps import official_hourglass_target
from zoo.cli import run_cli

HOURGLASS = REPO_ROOT / "experiments" / "hourglass" / "mpii_8stack.yaml"
WFLW = REPO_ROOT / "experiments" / "landmarks" / "wflw_simplebaseline_r50.yaml"
OFFICIAL_HOURGLASS_CODEC = GaussianHeatmapCodec(
    input_size=(256, 256),
    heatmap_size=(64, 64),
    sigma=1.0,
    convention="centres",
    placement="truncated",
    window_radius=4,
    decoder="argmax",
)


def resolved(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The config ``zoo fit --config <config> --print_config`` prints (it exits with status 0)."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def codec_of(settings: dict[str, Any]) -> GaussianHeatmapCodec:
    """The codec the CLI builds from a printed ``codec`` block (jsonargparse, as ``zoo fit`` does)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--codec", type=GaussianHeatmapCodec)
    return parser.instantiate(parser.parse_object({"codec": settings})).codec


def parameters_on_meta(model_class: type[torch.nn.Module], settings: dict[str, Any]) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in model_class(**settings).parameters())


def test_hourglass_mpii_experiment_is_the_paper_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    config = resolved(HOURGLASS, capsys)
    module = config["model"]["init_args"]
    assert config["model"]["class_path"] == "lightning_modules.keypoints.HeatmapKeypointModule"
    network = module["model"]
    assert network["class_path"] == "models.hourglass.StackedHourglass"
    assert {k: network["init_args"][k] for k in ("num_stacks", "features", "num_keypoints", "depth")} == {
        "num_stacks": 8,
        "features": 256,
        "num_keypoints": 16,
        "depth": 4,
    }
    assert network["init_args"]["official_weights"] is None
    assert parameters_on_meta(StackedHourglass, network["init_args"]) == 32_819_328  # the official 8-stack
    optimizer = module["optimizer"]
    assert optimizer["class_path"] == "torch.optim.RMSprop"
    assert optimizer["init_args"]["lr"] == 2.5e-4
    assert optimizer["init_args"]["momentum"] == 0 and optimizer["init_args"]["weight_decay"] == 0
    schedule = module["lr_scheduler"]
    assert schedule["class_path"] == "torch.optim.lr_scheduler.ReduceLROnPlateau"
    assert schedule["init_args"]["mode"] == HeatmapKeypointModule.main_metric_mode == "min"
    assert schedule["init_args"]["factor"] == 0.2
    assert schedule["init_args"]["min_lr"] == pytest.approx(2.5e-4 * 0.2)  # so the lr drops once only
    assert module["flip_test"] is True
    data = config["data"]["init_args"]
    assert config["data"]["class_path"] == "datamodules.coco_keypoints_datamodule.CocoKeypointsDataModule"
    assert data["layout"]["class_path"] == "datamodules.keypoint_layouts.mpii"
    assert data["batch_size"] == 8 and list(data["input_size"]) == [256, 256]
    assert data["clip_boxes"] is False  # MPII boxes come from centre and scale
    assert data["train_annotations"] == "data/mpii/annotations/mpii_train.json"
    assert data["val_annotations"] == "data/mpii/annotations/mpii_val.json"
    assert data["augmentation"] == {
        "scale_range": [0.75, 1.25],
        "rotation_degrees": 30.0,
        "rotation_prob": 1.0,  # the official port rotates every crop (data/MPII/dp.py)
        "flip_prob": 0.5,
    }
    trainer = config["trainer"]
    assert trainer["accelerator"] == "gpu" and trainer["devices"] == 1
    assert trainer["check_val_every_n_epoch"] == 1 and trainer["max_epochs"] == 144
    assert config["published"] == [
        {"source": config["published"][0]["source"], "metrics": {"test/keypoints/PCKh@0.5": 0.909}},
        {"source": config["published"][1]["source"], "metrics": {"val/keypoints/PCKh@0.5": 0.881}},
        {"source": config["published"][2]["source"], "metrics": {"val/keypoints/PCKh@0.5": 0.902}},
    ]
    assert "test server" in config["published"][0]["source"]
    assert "pytorch_stacked_hourglass" in config["published"][2]["source"]


def test_hourglass_codec_is_the_official_target(capsys: pytest.CaptureFixture[str]) -> None:
    """The YAML's codec is the official target's parameters, and encodes exactly the official
    ``GenerateHeatmap`` of keypoints mapped to the 64x64 output (x / 4, as ``kpt_affine`` does)."""
    codec = codec_of(resolved(HOURGLASS, capsys)["model"]["init_args"]["codec"])
    assert codec == OFFICIAL_HOURGLASS_CODEC
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(1, 16, 2, generator=generator) * 240 + 8
    keypoints = torch.cat([xy, torch.full((1, 16, 1), 2.0)], dim=-1)
    heatmaps, weights = codec.encode(keypoints)
    official = official_hourglass_target(keypoints[0, :, :2].numpy().astype(np.float64) / 4)
    np.testing.assert_allclose(heatmaps[0].numpy(), official, atol=1e-6)
    assert bool(weights.all())


def test_wflw_experiment_is_mmpose_recipe_with_simplebaseline_r50(capsys: pytest.CaptureFixture[str]) -> None:
    config = resolved(WFLW, capsys)
    module = config["model"]["init_args"]
    network = module["model"]
    assert network["class_path"] == "models.simple_baseline.SimpleBaseline"
    assert {k: network["init_args"][k] for k in ("num_keypoints", "depth", "deconv_channels")} == {
        "num_keypoints": 98,
        "depth": 50,
        "deconv_channels": 256,
    }
    assert network["init_args"]["backbone_weights"] == "data/pretrained/resnet50-0676ba61.pth"
    settings = {**network["init_args"], "backbone_weights": None}
    assert parameters_on_meta(SimpleBaseline, settings) == 33_999_697 + (98 - 17) * (256 + 1)
    assert module["optimizer"]["class_path"] == "torch.optim.Adam"
    assert module["optimizer"]["init_args"]["lr"] == 2e-3
    codec = codec_of(module["codec"])
    assert codec == GaussianHeatmapCodec(
        input_size=(256, 256),
        heatmap_size=(64, 64),
        sigma=2.0,
        convention="centres",  # mmpose's MSRAHeatmap: x / stride ...
        placement="rounded",  # ... int(+ 0.5) ...
        window_radius=6,  # ... pasted within 3 sigma
        decoder="argmax",
    )
    data = config["data"]["init_args"]
    assert data["layout"]["class_path"] == "datamodules.keypoint_layouts.face_wflw"
    assert data["batch_size"] == 64 and list(data["input_size"]) == [256, 256]
    assert data["train_annotations"] == "data/wflw/annotations/face_landmarks_wflw_train.json"
    assert data["val_annotations"] == "data/wflw/annotations/face_landmarks_wflw_test.json"
    assert data["augmentation"]["rotation_prob"] == 0.6 and data["augmentation"]["flip_prob"] == 0.5
    trainer = config["trainer"]
    assert trainer["devices"] == 8 and trainer["max_epochs"] == 60 and trainer["check_val_every_n_epoch"] == 1
    # mmpose's epoch milestones 40 and 55 and 500 warm-up iterations, in steps of 8 ranks x 64 crops
    steps_per_epoch = math.ceil(math.ceil(7500 / trainer["devices"]) / data["batch_size"])
    schedule = module["lr_scheduler"]
    assert schedule["class_path"] == "lightning_modules.lr_schedules.WarmupMultiStepLR"
    assert schedule["init_args"] == {
        "milestones": [40 * steps_per_epoch, 55 * steps_per_epoch],
        "gamma": 0.1,
        "warmup_steps": 500,
        "warmup_factor": 0.001,
        "last_epoch": -1,
    }
    [reference] = config["published"]
    assert reference["metrics"] == {"val/keypoints/NME": 0.0406}
    assert "HRNetV2-W18" in reference["source"] and "different architecture" in reference["source"]
