"""The UPSNet experiments: the paper configurations build the official models with the official settings
and published numbers; the synthetic one trains, validates and predicts through the ``zoo`` CLI on a
tiny synthetic panoptic world, and the reference evaluator reads its predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from datamodules.synthetic.coco_writer import write_coco_split
from models.mask_rcnn import MaskRCNN
from models.upsnet import UPSNet
from tests.cli_runs import REPO_ROOT, read_metrics, split_arguments
from tests.test_upsnet import official_count
from zoo.cli import run_cli

EXPERIMENTS = REPO_ROOT / "experiments" / "upsnet"


def build(config: dict) -> UPSNet:
    settings = dict(config["model"]["init_args"]["model"]["init_args"])
    detector = {**settings.pop("detector")["init_args"], "backbone_weights": None}
    return UPSNet(MaskRCNN(**detector), **settings)


def test_coco_experiment_is_the_official_r50_configuration() -> None:
    config = yaml.safe_load((EXPERIMENTS / "coco_r50.yaml").read_text())
    model = build(config)
    assert official_count(model) == 46_129_904
    assert (model.num_classes, model.num_stuff_classes) == (80, 53)
    assert model.with_semantic_roi_loss and model.box_keep_fraction == 0.7
    assert model.panoptic_inference.stuff_area_limit == 4096 and model.panoptic_inference.score_thresh == 0.6
    module = config["model"]["init_args"]
    assert module["loss_weights"] == {"loss_semantic": 0.2, "loss_semantic_roi": 0.04, "loss_panoptic": 0.1}
    assert module["optimizer"]["init_args"] == {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.0001}
    schedule = module["lr_scheduler"]["init_args"]
    assert schedule == {
        "milestones": [60000, 80000],
        "gamma": 0.1,
        "warmup_steps": 1500,
        "warmup_factor": 0.1,
    }
    trainer = config["trainer"]
    assert trainer["max_steps"] == 90000 and trainer["devices"] * trainer["num_nodes"] == 16
    assert config["data"]["init_args"]["batch_size"] == 1
    published = config["published"][0]["metrics"]
    assert published == {
        "val/panoptic/PQ": 0.425,
        "val/panoptic/SQ": 0.780,
        "val/panoptic/RQ": 0.524,
        "val/panoptic/PQ_things": 0.485,
        "val/panoptic/PQ_stuff": 0.334,
    }


def test_cityscapes_experiment_is_the_official_r50_configuration() -> None:
    config = yaml.safe_load((EXPERIMENTS / "cityscapes_r50.yaml").read_text())
    model = build(config)
    assert (model.num_classes, model.num_stuff_classes, model.num_semantic_classes) == (8, 11, 19)
    assert len(model.semantic_head.subnet) == 2 and not model.with_semantic_roi_loss
    assert not hasattr(model.detector.backbone.fpn, "global_context")
    assert model.panoptic_inference.stuff_area_limit == 2048
    module = config["model"]["init_args"]
    assert module["loss_weights"] == {"loss_semantic": 1.0, "loss_panoptic": 0.5}
    assert module["lr_scheduler"]["init_args"]["milestones"] == [9000]
    assert config["trainer"]["max_steps"] == 12000
    assert model.detector.transform.min_size[-1] == 1024 and model.detector.transform.max_size == 2048
    assert config["published"][0]["metrics"] == {"val/panoptic/PQ": 0.593}


def panoptic_data_arguments(data_dir: Path) -> list[str]:
    return split_arguments(data_dir, "images/{split}", "annotations/panoptic_{split}.json")


@pytest.mark.timeout(300)
def test_synthetic_experiment_fits_validates_and_predicts_for_the_reference_evaluator(tmp_path: Path) -> None:
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as reference

    data = tmp_path / "synthetic"
    write_coco_split(data, "train", 4, image_size=128, seed=0, keypoints=False, panoptic=True)
    write_coco_split(data, "val", 3, image_size=128, seed=0, keypoints=False, panoptic=True)
    common = [
        f"--config={EXPERIMENTS / 'synthetic.yaml'}",
        *panoptic_data_arguments(data),
        f"--runs_dir={tmp_path / 'runs'}",
        "--run_id=tiny",
        "--wandb=false",
        "--data.init_args.num_workers=0",
    ]
    run_cli(["fit", *common, "--trainer.max_steps=2", "--trainer.val_check_interval=2"])
    run_dir = tmp_path / "runs" / "upsnet_synthetic" / "tiny"
    [record] = [r for r in read_metrics(run_dir) if "val/panoptic/PQ" in r]
    assert {"val/heuristic/PQ", "val/panoptic/PQ_things", "val/panoptic/PQ/sky"} <= set(record)
    run_cli(["predict", *common, "--ckpt_path=last"])
    predictions = json.loads((run_dir / "panoptic.json").read_text())
    gt = json.loads((data / "annotations" / "panoptic_val.json").read_text())
    assert sorted(a["image_id"] for a in predictions["annotations"]) == [1, 2, 3]
    pairs = [
        (a, next(p for p in predictions["annotations"] if p["image_id"] == a["image_id"]))
        for a in gt["annotations"]
    ]
    categories = {c["id"]: c for c in gt["categories"]}
    stat = reference.pq_compute_single_core(
        0, pairs, str(data / "annotations" / "panoptic_val"), str(run_dir / "panoptic"), categories
    )
    assert 0.0 <= reference.average_pq(stat, categories)["All"]["pq"] <= 1.0
