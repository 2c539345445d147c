"""The ``zoo`` CLI end to end on a tiny synthetic world: run directories, W&B, resume, bf16, DDP."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import wandb
import yaml

from tests.cli_runs import read_metrics, run_zoo_in_process, run_zoo_subprocess
from zoo.cli import main


@pytest.fixture(autouse=True)
def _finish_wandb():
    yield
    wandb.finish()


def test_fit_writes_config_checkpoints_metrics_and_offline_wandb(tiny_synthetic: Path, tmp_path: Path):
    cli = run_zoo_in_process("fit", tiny_synthetic, tmp_path, "run-a", "--tags=[smoke]")
    run_dir = tmp_path / "mask_rcnn_synthetic" / "run-a"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["run_id"] == "run-a" and config["experiment"] == "mask_rcnn_synthetic"
    assert config["model"]["init_args"]["model"]["init_args"]["fpn_channels"] == 16  # stacked config applied
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "checkpoints").glob("best-*.ckpt"))
    [record] = read_metrics(run_dir)
    assert record["step"] == 4 and 0.0 <= record["val/segm/AP"] <= 1.0 and "val/bbox/AP50" in record

    logger = cli.trainer.logger
    assert logger.experiment.settings.mode == "offline"
    assert logger.experiment.id == "mask_rcnn_synthetic-run-a"
    assert logger.experiment.group == "mask_rcnn_synthetic"
    assert set(logger.experiment.tags) == {"smoke", "fit"}
    logged = logger.experiment.config
    assert logged["run"]["parameters"] == sum(p.numel() for p in cli.model.parameters())
    assert "git_commit" in logged["run"]
    assert logged["model"]["init_args"]["optimizer"]["init_args"]["lr"] == pytest.approx(0.02)
    [offline_run] = (run_dir / "wandb").glob("offline-run-*-mask_rcnn_synthetic-run-a")
    overlays = list((offline_run / "files" / "media" / "images" / "val").glob("predictions_*.png"))
    assert len(overlays) == 2  # overlay_images in the tiny config: one validation, two images
    assert list((offline_run / "files" / "media" / "images" / "mask" / "val").glob("*.mask.png"))


def test_resume_from_last_checkpoint_continues_at_the_saved_step(tiny_synthetic: Path, tmp_path: Path):
    run_zoo_in_process("fit", tiny_synthetic, tmp_path, "resumed", "--wandb=false")
    cli = run_zoo_in_process(
        "fit",
        tiny_synthetic,
        tmp_path,
        "resumed",
        "--wandb=false",
        "--trainer.max_steps=8",
        "--ckpt_path=last",
    )
    assert cli.trainer.global_step == 8
    run_dir = tmp_path / "mask_rcnn_synthetic" / "resumed"
    # Restarting from step 0 would have evaluated at step 4 a second time.
    assert [record["step"] for record in read_metrics(run_dir)] == [4, 8]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 8


def test_bf16_mixed_precision_trains_on_cpu(tiny_synthetic: Path, tmp_path: Path):
    cli = run_zoo_in_process(
        "fit",
        tiny_synthetic,
        tmp_path,
        "bf16",
        "--wandb=false",
        "--trainer.precision=bf16-mixed",
        "--trainer.max_steps=2",
        "--trainer.val_check_interval=2",
    )
    assert cli.trainer.precision == "bf16-mixed"
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))
    assert "val/segm/AP" in cli.trainer.callback_metrics


def test_wandb_flag_off_writes_a_csv_log(tiny_synthetic: Path, tmp_path: Path):
    run_zoo_in_process(
        "fit",
        tiny_synthetic,
        tmp_path,
        "csv",
        "--wandb=false",
        "--trainer.max_steps=2",
        "--trainer.val_check_interval=2",
    )
    run_dir = tmp_path / "mask_rcnn_synthetic" / "csv"
    assert not (run_dir / "wandb").exists()
    assert "train/loss" in (run_dir / "csv" / "version_0" / "metrics.csv").read_text()
    assert (run_dir / "config.yaml").is_file()


def test_print_config_shows_the_resolved_experiment(tiny_synthetic: Path, tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_zoo_in_process("fit", tiny_synthetic, tmp_path, "printed", "--print_config")
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "lightning_modules.detection.InstanceSegmentationModule"
    assert printed["trainer"]["max_steps"] == 4


def test_tools_are_subcommands_of_zoo(tmp_path: Path):
    assert (
        main(
            ["synthetic", "--out", str(tmp_path), "--train-images", "1", "--val-images", "1", "--size", "64"]
        )
        == 0
    )
    assert (tmp_path / "annotations" / "instances_val.json").is_file()
    assert (
        main(
            [
                "check-dataset",
                "--images",
                str(tmp_path / "images" / "val"),
                "--annotations",
                str(tmp_path / "annotations" / "instances_val.json"),
            ]
        )
        == 0
    )


def test_ddp_on_two_cpu_processes_gives_the_single_process_metric(tiny_synthetic: Path, tmp_path: Path):
    """5 val images over 2 gloo ranks: DistributedSampler pads one rank with a duplicate image, and the
    synced COCO evaluation must still equal one process evaluating the 5 images once."""
    run_zoo_in_process("fit", tiny_synthetic, tmp_path, "trained", "--wandb=false")
    checkpoint = tmp_path / "mask_rcnn_synthetic" / "trained" / "checkpoints" / "last.ckpt"
    common = ("--wandb=false", f"--ckpt_path={checkpoint}", "--trainer.accelerator=cpu")
    run_zoo_subprocess("validate", tiny_synthetic, tmp_path, "single", *common, "--trainer.devices=1")
    run_zoo_subprocess(
        "validate", tiny_synthetic, tmp_path, "ddp", *common, "--trainer.devices=2", "--trainer.strategy=ddp"
    )
    [single] = read_metrics(tmp_path / "mask_rcnn_synthetic" / "single")
    [distributed] = read_metrics(tmp_path / "mask_rcnn_synthetic" / "ddp")
    assert single["step"] == distributed["step"] == 4  # the checkpoint's training step
    assert single["checkpoint"] == distributed["checkpoint"] == str(checkpoint)
    metric_names = [name for name in single if name.startswith("val/")]
    assert len(metric_names) == 12
    assert single["val/bbox/AP50"] > 0.0, (
        "the tiny model must detect something for the comparison to mean anything"
    )
    for name in metric_names:
        assert distributed[name] == pytest.approx(single[name], abs=1e-9), name


def test_predict_writes_coco_results_that_pycocotools_loads(tiny_synthetic: Path, tmp_path: Path):
    from pycocotools.coco import COCO

    run_zoo_in_process("fit", tiny_synthetic, tmp_path, "predicted", "--wandb=false")
    run_zoo_in_process("predict", tiny_synthetic, tmp_path, "predicted", "--wandb=false", "--ckpt_path=last")
    results = json.loads((tmp_path / "mask_rcnn_synthetic" / "predicted" / "predictions.json").read_text())
    assert results, "the tiny model must detect something"
    assert {"image_id", "category_id", "bbox", "score", "segmentation"} <= set(results[0])
    ground_truth = COCO(str(tiny_synthetic / "annotations" / "instances_val.json"))
    detections = ground_truth.loadRes(results)
    assert set(detections.getImgIds()) <= set(ground_truth.getImgIds())
    assert {r["category_id"] for r in results} <= set(ground_truth.getCatIds())


def test_evaluating_a_run_that_does_not_exist_fails_and_names_the_runs(tiny_synthetic: Path, tmp_path: Path):
    run_zoo_in_process("fit", tiny_synthetic, tmp_path, "real-run", "--wandb=false", "--trainer.max_steps=1")
    for subcommand in ("validate", "predict"):
        with pytest.raises(
            ValueError, match=r"no run 'real-rnu' of experiment 'mask_rcnn_synthetic'.*real-run"
        ):
            run_zoo_in_process(
                subcommand, tiny_synthetic, tmp_path, "real-rnu", "--wandb=false", "--ckpt_path=last"
            )
    assert sorted(path.name for path in (tmp_path / "mask_rcnn_synthetic").iterdir()) == [
        "real-run"
    ]  # no stray run


def test_last_checkpoint_of_a_run_without_checkpoints_is_an_error(tiny_synthetic: Path, tmp_path: Path):
    (tmp_path / "mask_rcnn_synthetic" / "empty").mkdir(parents=True)
    with pytest.raises(ValueError, match="has no checkpoint to evaluate"):
        run_zoo_in_process("validate", tiny_synthetic, tmp_path, "empty", "--wandb=false", "--ckpt_path=last")


def test_evaluation_configs_are_named_after_the_stage(tiny_synthetic: Path, tmp_path: Path):
    run_zoo_in_process("fit", tiny_synthetic, tmp_path, "staged", "--wandb=false", "--trainer.max_steps=1")
    run_zoo_in_process("validate", tiny_synthetic, tmp_path, "staged", "--wandb=false", "--ckpt_path=last")
    names = sorted(path.name for path in (tmp_path / "mask_rcnn_synthetic" / "staged").glob("config*.yaml"))
    assert names == ["config-validate.yaml", "config.yaml"]


def test_the_num_classes_hint_is_an_override_that_works_as_written(tiny_synthetic: Path, tmp_path: Path):
    wrong = "--model.init_args.model.init_args.num_classes=7"
    with pytest.raises(ValueError, match="num_classes=7") as error:
        run_zoo_in_process("fit", tiny_synthetic, tmp_path, "hint", "--wandb=false", wrong)
    [hint] = re.findall(r"set (--\S+)", str(error.value))
    assert hint == "--model.init_args.model.init_args.num_classes=4"
    cli = run_zoo_in_process(
        "fit", tiny_synthetic, tmp_path, "hint", "--wandb=false", "--trainer.max_steps=1", hint
    )
    assert cli.model.model.num_classes == 4


def test_a_checkpoint_files_settings_apply_unless_the_command_line_names_them(
    tiny_synthetic: Path, tmp_path: Path
):
    run_zoo_in_process(
        "fit", tiny_synthetic, tmp_path, "saved", "--wandb=false", "--trainer.max_steps=1",
        "--model.init_args.overlay_images=3", "--model.init_args.overlay_score_threshold=0.7",
    )  # fmt: skip
    checkpoint = tmp_path / "mask_rcnn_synthetic" / "saved" / "checkpoints" / "last.ckpt"
    cli = run_zoo_in_process(
        "validate", tiny_synthetic, tmp_path, "evaluated", "--wandb=false", f"--ckpt_path={checkpoint}",
        "--model.init_args.overlay_score_threshold=0.9",
    )  # fmt: skip
    assert cli.model.hparams.overlay_images == 3  # from the checkpoint, over the config files
    assert cli.model.hparams.overlay_score_threshold == 0.9  # the command line over the checkpoint
