"""The video panoptic family end to end through the ``zoo`` CLI on a tiny synthetic Cityscapes-VPS world:
the frame-by-frame UPSNet baseline (stage 1, ``experiments/vpsnet/synthetic_upsnet.yaml``), VPSNet started
from its checkpoint (stage 2, ``synthetic.yaml``), the fuse ablation on the same checkpoint, and the
predictions the official ``eval_vpq.py`` reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from datamodules.coco_panoptic_png import read_coco_panoptic_png
from datamodules.synthetic.cityscapes_vps_writer import write_cityscapes_vps_split
from models.mask_rcnn import MaskRCNN
from models.upsnet import UPSNet
from models.vpsnet import VPSNet
from tests.cli_runs import REPO_ROOT, read_metrics, split_arguments
from tests.test_vpsnet import official_count
from zoo.cli import run_cli

EXPERIMENTS = REPO_ROOT / "experiments" / "vpsnet"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes_vps")
    write_cityscapes_vps_split(root, "train", 3, 4, 128, 0)
    write_cityscapes_vps_split(root, "val", 2, 4, 128, 0)
    return root


def arguments(config: str, world: Path, runs: Path, run_id: str) -> list[str]:
    return [
        f"--config={EXPERIMENTS / config}",
        *split_arguments(world, "{split}/img", "panoptic_gt_{split}_city_vps.json"),
        f"--runs_dir={runs}",
        f"--run_id={run_id}",
        "--wandb=false",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=2",
    ]


def test_stages_fit_validate_ablate_and_predict_for_eval_vpq(world: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    image = arguments("synthetic_upsnet.yaml", world, runs, "image")
    run_cli(["fit", *image, "--trainer.max_steps=2", "--trainer.val_check_interval=2"])
    image_dir = runs / "vpsnet_synthetic_upsnet" / "image"
    [record] = [r for r in read_metrics(image_dir) if "val/VPQ" in r]
    assert {"val/k0/PQ", "val/k3/PQ", "val/id_switches", "val/panoptic/PQ"} <= set(record)
    assert "val/mask_iou/VPQ" not in record  # an image model's own ids are the mask-IoU links

    video = arguments("synthetic.yaml", world, runs, "video")
    checkpoint = image_dir / "checkpoints" / "last.ckpt"
    run_cli(
        ["fit", *video, f"--model.init_args.checkpoint={checkpoint}", "--trainer.max_steps=2",
         "--trainer.val_check_interval=2"]
    )  # fmt: skip
    video_dir = runs / "vpsnet_synthetic" / "video"
    [record] = [r for r in read_metrics(video_dir) if "val/VPQ" in r]
    assert {"val/mask_iou/VPQ", "val/mask_iou/id_switches", "val/id_switches", "val/k1/PQ"} <= set(record)
    assert 0.0 <= record["val/VPQ"] <= 1.0

    run_cli(["validate", *video, "--ckpt_path=last", "--model.init_args.model.init_args.fusion=false"])
    records = [r for r in read_metrics(video_dir) if "val/VPQ" in r]
    assert len(records) == 2

    run_cli(["predict", *video, "--ckpt_path=last"])
    predictions = json.loads((video_dir / "pred.json").read_text())
    truth = json.loads((world / "panoptic_gt_val_city_vps.json").read_text())
    assert [a["image_id"] for a in predictions["annotations"]] == sorted(i["id"] for i in truth["images"])
    first = predictions["annotations"][0]
    ids = read_coco_panoptic_png(video_dir / "pan_pred" / first["file_name"])
    assert set(ids.unique().tolist()) - {0} == {s["id"] for s in first["segments_info"]}


def test_cityscapes_vps_experiment_is_the_official_fusetrack_configuration() -> None:
    config = yaml.safe_load((EXPERIMENTS / "cityscapes_vps.yaml").read_text())
    module = config["model"]["init_args"]
    upsnet_settings = dict(module["model"]["init_args"]["upsnet"]["init_args"])
    detector = {**upsnet_settings.pop("detector")["init_args"], "backbone_weights": None}
    model = VPSNet(UPSNet(MaskRCNN(**detector), **upsnet_settings))
    assert official_count(model) - sum(p.numel() for p in model.flow_net.parameters()) == 62_782_832
    assert model.detector.transform.min_size[-1] == 1024  # the test scale; training draws 1024 x 0.8-1.5
    assert module["loss_weights"] == {"loss_semantic": 1.0, "loss_panoptic": 0.5}
    assert module["optimizer"]["init_args"] == {"lr": 0.005, "momentum": 0.9, "weight_decay": 0.0001}
    assert module["lr_scheduler"]["init_args"]["milestones"] == [19200, 26400]
    assert (module["window_sizes"], module["frame_step"]) == ([0, 5, 10, 15], 5)
    assert module["checkpoint_submodule"] == "upsnet"
    trainer = config["trainer"]
    assert trainer["max_steps"] == 28800 and trainer["gradient_clip_val"] == 35.0
    assert trainer["devices"] * config["data"]["init_args"]["batch_size"] == 8
    assert config["data"]["init_args"]["reference_offsets"] == [-1, 1]
