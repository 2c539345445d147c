"""Slow: each method's synthetic experiment, exactly as its YAML runs (Mask R-CNN's is `make quickstart`),
learns the task within its time budget on this 2-core CPU."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from datamodules.synthetic.coco_writer import write_coco_instances
from tests.cli_runs import REPO_ROOT, data_arguments, read_metrics
from zoo.cli import run_cli

# (experiment folder, run folder, target mask AP50, time budget in s). Measured on 2 cores: Mask R-CNN
# about 5 min; YOLACT 349 s (400 steps). The budgets leave room for a slower machine.
EXPERIMENTS = [
    ("mask_rcnn", "mask_rcnn_synthetic", 0.7, 480),
    ("yolact", "yolact_synthetic", 0.6, 900),
]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "experiment", "target_mask_ap50", "budget_s"), EXPERIMENTS)
def test_synthetic_experiment_reaches_its_mask_ap50_in_time(
    tmp_path: Path, method: str, experiment: str, target_mask_ap50: float, budget_s: float
):
    data_dir = tmp_path / "synthetic"
    write_coco_instances(data_dir, "train", num_images=600, image_size=128, seed=0)
    write_coco_instances(data_dir, "val", num_images=100, image_size=128, seed=0)
    started = time.perf_counter()
    run_cli(
        [
            "fit",
            f"--config={REPO_ROOT / 'experiments' / method / 'synthetic.yaml'}",
            *data_arguments(data_dir),
            f"--runs_dir={tmp_path / 'runs'}",
            "--run_id=convergence",
            "--wandb=false",
        ]
    )
    elapsed = time.perf_counter() - started
    records = read_metrics(tmp_path / "runs" / experiment / "convergence")
    final = records[-1]
    print(
        f"{method}: fit took {elapsed:.0f} s; final step {final['step']}: "
        f"mask AP50 {final['val/segm/AP50']:.3f}, "
        f"mask AP {final['val/segm/AP']:.3f}, box AP50 {final['val/bbox/AP50']:.3f}, "
        f"box AP {final['val/bbox/AP']:.3f}"
    )
    assert final["val/segm/AP50"] >= target_mask_ap50
    assert elapsed <= budget_s
