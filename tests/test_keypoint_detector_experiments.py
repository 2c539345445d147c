"""The CenterNet and CornerNet experiments: the COCO configurations build the official full-size models
(exact parameter counts) with the official schedules, augmentation, test settings and published numbers;
the synthetic ones train, validate and predict through the ``zoo`` CLI on a tiny synthetic world, and
pycocotools reads their predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from datamodules.synthetic.coco_writer import write_coco_instances
from tests.cli_runs import REPO_ROOT, data_arguments, read_metrics
from zoo.cli import run_cli


def build(config: dict):
    """The wrapper (CenterNet or CornerNet) around its network, as the YAML's class paths say."""
    import importlib

    def instantiate(spec: dict, **extra):
        module, name = spec["class_path"].rsplit(".", 1)
        return getattr(importlib.import_module(module), name)(**{**spec.get("init_args", {}), **extra})

    spec = config["model"]["init_args"]["model"]
    network = instantiate(spec["init_args"]["network"])
    settings = {k: v for k, v in spec["init_args"].items() if k != "network"}
    return instantiate({"class_path": spec["class_path"], "init_args": settings}, network=network)


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("path", "parameters", "lr", "batch", "devices", "max_steps", "milestones", "published"),
    [
        ("centernet/coco_resdcn18.yaml", 14_437_349, 5e-4, 28, 4, 147_980, [95_130, 126_840], 0.281),
        ("centernet/coco_dla34.yaml", 19_675_892, 5e-4, 16, 8, 212_750, [166_500, 194_250], 0.374),
        ("centernet/coco_hg104.yaml", 191_284_008, 2.5e-4, 6, 4, 246_450, [197_160], 0.403),
        ("cornernet/coco_hg104.yaml", 201_035_212, 2.5e-4, 7, 7, 500_000, [450_000], 0.406),
    ],
)
def test_coco_experiment_is_the_official_configuration(
    path, parameters, lr, batch, devices, max_steps, milestones, published
) -> None:
    config = yaml.safe_load((REPO_ROOT / "experiments" / path).read_text())
    model = build(config)
    assert count(model) == parameters
    cornernet = path.startswith("cornernet")
    assert model.transform.input_size == (511 if cornernet else 512)
    hourglass = path.endswith("hg104.yaml")
    assert model.transform.test_padding == ((128, 1) if cornernet else (128, 0) if hourglass else (32, 0))
    module = config["model"]["init_args"]
    assert module["optimizer"]["class_path"] == "torch.optim.Adam"
    assert module["optimizer"]["init_args"] == {"lr": lr}
    assert module["lr_scheduler"]["init_args"]["milestones"] == milestones
    trainer = config["trainer"]
    assert trainer["max_steps"] == max_steps and trainer["devices"] == devices
    data = config["data"]["init_args"]
    assert data["batch_size"] == batch
    assert data["train_transforms"]["class_path"].endswith("centernet_train_transforms")
    assert data["train_transforms"]["init_args"]["size"] == model.transform.input_size
    assert config["published"][0]["metrics"] == {"val/bbox/AP": published}
    if cornernet:
        assert model.min_overlap == 0.3 and model.decoding.flip_test and model.decoding.ae_threshold == 0.5
    else:
        assert model.min_overlap == 0.7 and not model.flip_test and model.max_detections == 100


@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["centernet", "cornernet"])
def test_synthetic_experiment_fits_validates_and_predicts(tmp_path: Path, method: str) -> None:
    from pycocotools.coco import COCO

    data = tmp_path / "synthetic"
    write_coco_instances(data, "train", num_images=4, image_size=128, seed=0)
    write_coco_instances(data, "val", num_images=3, image_size=128, seed=0)
    common = [
        f"--config={REPO_ROOT / 'experiments' / method / 'synthetic.yaml'}",
        *data_arguments(data),
        f"--runs_dir={tmp_path / 'runs'}",
        "--run_id=tiny",
        "--wandb=false",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=2",
    ]
    run_cli(["fit", *common, "--trainer.max_steps=2", "--trainer.val_check_interval=2"])
    run_dir = tmp_path / "runs" / f"{method}_synthetic" / "tiny"
    [record] = [r for r in read_metrics(run_dir) if "val/bbox/AP" in r]
    assert {"val/bbox/AP50", "val/bbox/AP75"} <= set(record)
    run_cli(["predict", *common, "--ckpt_path=last"])
    results = run_dir / "predictions.json"
    detections = json.loads(results.read_text())
    assert detections and {"image_id", "category_id", "bbox", "score"} <= set(detections[0])
    ground_truth = COCO(str(data / "annotations" / "instances_val.json"))
    assert len(ground_truth.loadRes(str(results)).getAnnIds()) == len(detections)
