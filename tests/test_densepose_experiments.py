"""DensePose R-CNN through the zoo CLI on a tiny synthetic DensePose world (fit, validate with box AP and
GPS / GPSm AP, predict with chart results), the paper experiment's settings, and the overlays."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import wandb
import yaml
from PIL import Image

from datamodules.synthetic.coco_writer import write_coco_split
from lightning_modules.densepose_overlay import U_LINE, V_LINE, densepose_overlay, paste_box_maps, uv_contours
from models.densepose_results import ChartResult
from tests.cli_runs import REPO_ROOT, read_metrics, split_arguments
from zoo.cli import run_cli

EXPERIMENTS = REPO_ROOT / "experiments" / "densepose"


@pytest.mark.timeout(400)
def test_synthetic_experiment_fits_validates_and_predicts(tmp_path: Path) -> None:
    data = tmp_path / "world"
    for split, count in (("train", 4), ("val", 3)):
        write_coco_split(data, split, count, image_size=96, seed=0, keypoints=False, densepose=True)
    common = [
        f"--config={EXPERIMENTS / 'synthetic.yaml'}",
        *split_arguments(data, "images/{split}", "annotations/densepose_{split}.json"),
        f"--runs_dir={tmp_path / 'runs'}",
        "--run_id=tiny",
        "--wandb=false",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=2",
    ]
    run_cli(["fit", *common, "--trainer.max_steps=2", "--trainer.val_check_interval=2"])
    run_dir = tmp_path / "runs" / "densepose_synthetic" / "tiny"
    [record] = [r for r in read_metrics(run_dir) if "val/densepose/GPSm/AP" in r]
    logged = {"val/bbox/AP", "val/densepose/GPS/AP", "val/densepose/GPSm/APl", "val/densepose/I_accuracy"}
    assert logged <= set(record)
    run_cli(["predict", *common, "--ckpt_path=last"])
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert predictions and {p["image_id"] for p in predictions} <= {1, 2, 3}
    for result in predictions[:5]:
        chart = result["densepose"]
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(chart["png_base64"]))))
        assert pixels.shape == (*chart["size"], 3) and pixels[..., 0].max() <= 24
        _, _, w, h = result["bbox"]
        assert chart["size"] == [max(int(h), 1), max(int(w), 1)]


def test_coco_experiment_has_detectron2s_settings_and_numbers() -> None:
    config = yaml.safe_load((EXPERIMENTS / "coco_r50_fpn_s1x.yaml").read_text())
    published = config["published"][0]["metrics"]
    assert published == {"val/bbox/AP": 0.612, "val/densepose/GPS/AP": 0.637, "val/densepose/GPSm/AP": 0.653}
    model = config["model"]["init_args"]
    detector = model["model"]["init_args"]["detector"]["init_args"]
    assert detector["num_classes"] == 1 and detector["mask_branch"] is False
    assert (
        detector["min_size"] == [640, 672, 704, 736, 768, 800]
        and detector["rpn_post_nms_top_n_train"] == 1000
    )
    assert model["optimizer"]["init_args"]["lr"] == 0.01
    schedule = model["lr_scheduler"]["init_args"]
    assert schedule["milestones"] == [100000, 120000] and config["trainer"]["max_steps"] == 130000
    assert schedule["warmup_factor"] == 0.1
    assert model["distance"]["class_path"] == "metrics.densepose_geodesic.SmplGeodesicDistance"


def test_overlay_layers() -> None:
    labels = torch.zeros(20, 30, dtype=torch.uint8)
    labels[2:18, 3:27] = 3
    u = torch.linspace(0, 1, 30).expand(20, 30)
    v = torch.linspace(0, 1, 20)[:, None].expand(20, 30)
    chart = ChartResult(labels, torch.stack([u, v]).float() * (labels > 0))
    prediction = {
        "boxes": torch.tensor([[10.0, 5.0, 40.0, 25.0], [0.0, 0.0, 5.0, 5.0]]),
        "labels": torch.tensor([1, 1]),
        "scores": torch.tensor([0.9, 0.1]),
        "densepose": [chart, ChartResult(torch.ones(5, 5, dtype=torch.uint8), torch.zeros(2, 5, 5))],
    }
    parts, uv = paste_box_maps([chart], prediction["boxes"][:1], prediction["scores"][:1], (32, 48))
    assert (parts[7:23, 13:37] == 3).all() and parts.sum() == 3 * 16 * 24
    lines = uv_contours(parts, uv)
    assert {U_LINE, V_LINE} <= set(np.unique(lines).tolist()) and (lines[parts == 0] == 0).all()
    target = {
        "boxes": torch.tensor([[10.0, 5.0, 40.0, 25.0]]),
        "labels": torch.tensor([1]),
        "dense_points": torch.tensor([[[128.0, 128.0, 2.0, 0.5, 0.5], [float("nan")] * 5]]),
    }
    image = densepose_overlay(torch.rand(3, 32, 48), prediction, target, {1: "person"}, 0.5, {3: "part 3"})
    assert isinstance(image, wandb.Image)
