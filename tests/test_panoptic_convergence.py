"""Slow: UPSNet's synthetic experiment, exactly as its YAML runs, reaches PQ >= 0.5 on the 100 synthetic val
images within 15 minutes on this 2-core CPU, and the heuristic merge is scored on the same trained network
(``val/panoptic/PQ`` and ``val/heuristic/PQ`` at every validation).

Measured (2 cores, 9 min 18 s): panoptic head PQ 0.765, heuristic merge 0.784 -- the paper's gain of the
head over the heuristic (COCO, 90k iterations) is not reproduced at this scale; both are printed, and the
test asserts no ordering between them (README, "Panoptic segmentation", says why)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from datamodules.synthetic.coco_writer import write_coco_split
from tests.cli_runs import REPO_ROOT, read_metrics
from tests.test_upsnet_experiments import panoptic_data_arguments
from zoo.cli import run_cli

TARGET_PQ = 0.5
BUDGET_S = 15 * 60


@pytest.mark.slow
def test_upsnet_reaches_pq_in_time_with_both_merges_scored(tmp_path: Path) -> None:
    data = tmp_path / "synthetic"
    for split, count in (("train", 600), ("val", 100)):
        write_coco_split(data, split, count, image_size=128, seed=0, keypoints=False, panoptic=True)
    started = time.perf_counter()
    run_cli(
        [
            "fit",
            f"--config={REPO_ROOT / 'experiments' / 'upsnet' / 'synthetic.yaml'}",
            *panoptic_data_arguments(data),
            f"--runs_dir={tmp_path / 'runs'}",
            "--run_id=convergence",
            "--wandb=false",
        ]
    )
    elapsed = time.perf_counter() - started
    final = [
        r
        for r in read_metrics(tmp_path / "runs" / "upsnet_synthetic" / "convergence")
        if "val/panoptic/PQ" in r
    ][-1]
    print(
        f"UPSNet synthetic: fit took {elapsed:.0f} s; step {final['step']}: "
        + ", ".join(
            f"{merge} PQ {final[f'val/{merge}/PQ']:.3f} (things {final[f'val/{merge}/PQ_things']:.3f}, "
            f"stuff {final[f'val/{merge}/PQ_stuff']:.3f})"
            for merge in ("panoptic", "heuristic")
        )
    )
    assert final["val/panoptic/PQ"] >= TARGET_PQ
    assert final["val/heuristic/PQ"] >= TARGET_PQ
    assert elapsed <= BUDGET_S
