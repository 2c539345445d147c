"""Slow: each method's synthetic experiment, exactly as its YAML runs (Mask R-CNN's is `make quickstart`),
learns the task within its time budget on this 2-core CPU; heatmaps beat coordinate regression."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from datamodules.synthetic.coco_writer import write_coco_instances, write_coco_keypoints
from tests.cli_runs import REPO_ROOT, data_arguments, read_metrics, split_arguments
from zoo.cli import run_cli
from zoo.tools.landmark_comparison import markdown_table, run_experiment

# (experiment folder, run folder, target mask AP50, time budget in s). Measured on 2 cores: Mask R-CNN
# about 5 min; YOLACT 349 s (400 steps). The budgets leave room for a slower machine.
EXPERIMENTS = [
    ("mask_rcnn", "mask_rcnn_synthetic", 0.7, 480),
    ("yolact", "yolact_synthetic", 0.6, 900),
]

# After the same 600 steps: heatmap NME (DARK) at most this fraction of regression's (measured 0.54:
# 0.0158 vs 0.0292), and heatmap PCK@0.05 at least this much above regression's (measured 0.975 vs 0.903);
# each fit within the budget (measured 322 s and 338 s on 2 cores).
HEATMAP_TO_REGRESSION_NME = 0.7
HEATMAP_PCK05_MARGIN = 0.04
LANDMARK_BUDGET_S = 600


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


@pytest.mark.slow
def test_heatmaps_beat_coordinate_regression_on_held_out_synthetic_keypoints(tmp_path: Path) -> None:
    """The landmark comparison's claim (mmpose R50 on COCO: DeepPose regression 54.1 AP vs heatmap 71.8):
    on the 100 held-out images' stars, after the same 600 steps on the same data and backbone, the
    heatmap network's NME (DARK decoding) is at most HEATMAP_TO_REGRESSION_NME of regression's and its
    PCK@0.05 at least HEATMAP_PCK05_MARGIN above.
    Measured on 2 cores: see README (landmark comparison)."""
    data_dir = tmp_path / "synthetic"
    write_coco_keypoints(data_dir, "train", num_images=600, image_size=128, seed=0)
    write_coco_keypoints(data_dir, "val", num_images=100, image_size=128, seed=0)
    configs = [
        REPO_ROOT / "experiments" / "landmarks" / f"synthetic_{kind}.yaml"
        for kind in ("regression", "heatmap")
    ]
    overrides = [
        *split_arguments(data_dir, "images/{split}", "annotations/keypoints_{split}.json"),
    ]
    started = time.perf_counter()
    rows = []
    for config in configs:
        rows += run_experiment(config, tmp_path / "runs", "convergence", False, overrides)
    elapsed = time.perf_counter() - started
    print(markdown_table(rows))
    nme = {row.decoder: row.values["NME"] for row in rows}
    pck = {row.decoder: row.values["PCK@0.05"] for row in rows}
    assert nme["dark"] <= HEATMAP_TO_REGRESSION_NME * nme["-"]
    assert pck["dark"] >= pck["-"] + HEATMAP_PCK05_MARGIN
    assert elapsed <= 2 * LANDMARK_BUDGET_S
