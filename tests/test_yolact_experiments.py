"""The COCO YOLACT experiments build the official full-size models (exact parameter counts) with the
official schedule, SSD augmentation and published numbers that ``zoo compare`` reads."""

import pytest
import yaml

from models.yolact import Yolact
from tests.cli_runs import REPO_ROOT


@pytest.mark.parametrize(
    ("name", "parameters", "published"),
    [("coco_r101_550", 50_157_071, 0.298), ("coco_r50_550", 31_164_943, 0.282)],
)
def test_coco_experiment_is_the_official_config(name, parameters, published):
    config = yaml.safe_load((REPO_ROOT / "experiments" / "yolact" / f"{name}.yaml").read_text())
    module = config["model"]["init_args"]
    settings = {**module["model"]["init_args"], "backbone_weights": None}
    assert sum(p.numel() for p in Yolact(**settings).parameters()) == parameters
    assert module["optimizer"]["init_args"] == {"lr": 0.001, "momentum": 0.9, "weight_decay": 0.0005}
    schedule = module["lr_scheduler"]["init_args"]
    assert schedule["milestones"] == [280000, 600000, 700000, 750000] and schedule["warmup_steps"] == 500
    assert config["trainer"]["max_steps"] == 800000 and config["data"]["init_args"]["batch_size"] == 8
    assert config["data"]["init_args"]["train_transforms"]["class_path"].endswith("ssd_train_transforms")
    assert config["published"][0]["metrics"] == {"val/segm/AP": published}
