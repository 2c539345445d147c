"""Slow: the paper-size COCO experiment (R50-FPN, 800-1333 px, 1x schedule settings) trains and
evaluates end to end on the real COCO sample on the CPU -- the same YAML a cluster job uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_runs import REPO_ROOT, read_metrics
from zoo.cli import run_cli


@pytest.mark.slow
def test_full_size_coco_experiment_runs_on_the_real_sample(shared_data: Path, tmp_path: Path):
    sample = shared_data / "coco_sample"
    annotations = sample / "test_coco.json"
    cli = run_cli(
        [
            "fit",
            f"--config={REPO_ROOT / 'experiments' / 'mask_rcnn' / 'coco_r50_fpn_1x.yaml'}",
            "--trainer.accelerator=cpu",
            "--trainer.devices=1",
            "--trainer.strategy=auto",
            "--trainer.max_steps=2",
            "--trainer.val_check_interval=2",
            "--trainer.enable_progress_bar=false",
            f"--data.init_args.train_images={sample}",
            f"--data.init_args.train_annotations={annotations}",
            f"--data.init_args.val_images={sample}",
            f"--data.init_args.val_annotations={annotations}",
            "--data.init_args.num_workers=0",
            '--model.init_args.model={"init_args": {"backbone_weights": null, "num_classes": 1}}',
            f"--runs_dir={tmp_path}",
            "--run_id=sample",
            "--wandb=false",
        ]
    )
    assert cli.trainer.global_step == 2
    # the full-size R50-FPN Mask R-CNN with one class (person) + background
    assert sum(p.numel() for p in cli.model.model.parameters()) == 43_922_395
    [record] = read_metrics(tmp_path / "mask_rcnn_coco_r50_fpn_1x" / "sample")
    assert record["step"] == 2 and {"val/segm/AP", "val/bbox/AP"} <= set(record)
