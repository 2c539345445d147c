"""Slow: CenterNet's and CornerNet's synthetic experiments, exactly as their YAMLs run, reach their box AP50
on the 100 synthetic val images within 15 minutes each on this 2-core CPU (pycocotools)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from datamodules.synthetic.coco_writer import write_coco_instances
from tests.cli_runs import REPO_ROOT, data_arguments, read_metrics
from zoo.cli import run_cli

BUDGET_S = 15 * 60
# (experiment folder, target box AP50): the targets
EXPERIMENTS = [("centernet", 0.7), ("cornernet", 0.5)]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "target_ap50"), EXPERIMENTS)
def test_synthetic_experiment_reaches_its_box_ap50_in_time(tmp_path: Path, method: str, target_ap50: float):
    data = tmp_path / "synthetic"
    write_coco_instances(data, "train", num_images=600, image_size=128, seed=0)
    write_coco_instances(data, "val", num_images=100, image_size=128, seed=0)
    started = time.perf_counter()
    run_cli(
        [
            "fit",
            f"--config={REPO_ROOT / 'experiments' / method / 'synthetic.yaml'}",
            *data_arguments(data),
            f"--runs_dir={tmp_path / 'runs'}",
            "--run_id=convergence",
            "--wandb=false",
        ]
    )
    elapsed = time.perf_counter() - started
    final = [
        r
        for r in read_metrics(tmp_path / "runs" / f"{method}_synthetic" / "convergence")
        if "val/bbox/AP" in r
    ][-1]
    print(
        f"{method}: fit took {elapsed:.0f} s; step {final['step']}: box AP50 {final['val/bbox/AP50']:.3f}, "
        f"box AP {final['val/bbox/AP']:.3f}"
    )
    assert final["val/bbox/AP50"] >= target_ap50
    assert elapsed <= BUDGET_S
