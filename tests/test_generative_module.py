"""The generative base (``lightning_modules.generative``) through the real ``zoo`` CLI on a toy GAN
(``tests.toy_gan``): a step is a generator step for ``max_steps``, checkpoints, ``metrics.jsonl``, the
logged step axis and the schedules; resume repeats both optimizers, both schedules and the image pool bit
for bit; two gloo DDP processes train; bf16-mixed trains.

The toy data has 8 training pairs in batches of 2: 4 generator steps per epoch, validation at step 4."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from tests.checkpoint_spy import LastCheckpointSpy
from tests.cli_runs import read_metrics, run_zoo_command
from tests.test_exact_resume import assert_identical
from zoo.cli import run_cli

D_STEPS = 2
EXPERIMENT = {
    "seed_everything": 0,
    "model": {
        "class_path": "tests.toy_gan.ToyGAN",
        "init_args": {
            "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3, "betas": [0.5, 0.999]}},
            "lr_scheduler": {
                "class_path": "torch.optim.lr_scheduler.StepLR",
                "init_args": {"step_size": 1, "gamma": 0.9},
            },
            "discriminator_steps": D_STEPS,
        },
    },
    "data": {"class_path": "tests.toy_gan.ToyPairsDataModule"},
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    },
}


@pytest.fixture(scope="module")
def toy_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "toy_gan.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT))
    return path


def fit(config: Path, runs: Path, run_id: str, *extra: str):
    return run_cli(
        ["fit", f"--config={config}", f"--runs_dir={runs}", f"--run_id={run_id}", "--wandb=false", *extra]
    )


def test_max_steps_checkpoints_metrics_logs_and_schedules_count_generator_steps(
    toy_config: Path, tmp_path: Path
) -> None:
    LastCheckpointSpy.seen.clear()
    cli = fit(
        toy_config,
        tmp_path,
        "steps",
        "--trainer.max_steps=6",
        "--checkpoint_every_n_steps=2",
        "--trainer.callbacks+=tests.checkpoint_spy.LastCheckpointSpy",
    )
    trainer = cli.trainer
    generator_optimizer, discriminator_optimizer = trainer.optimizers
    assert trainer.global_step == 6
    assert _adam_steps(generator_optimizer) == 6
    assert _adam_steps(discriminator_optimizer) == 6 * D_STEPS
    # both schedules stepped once per generator step
    for config in trainer.lr_scheduler_configs:
        assert config.scheduler.last_epoch == 6
        assert config.scheduler.get_last_lr()[0] == pytest.approx(1e-3 * 0.9**6)
    # last.ckpt rewritten at generator steps 2 and 4 (what the spy finds at the next batch's end), then
    # when training ends at 6
    assert LastCheckpointSpy.seen == [(1, None), (2, None), (3, 2), (4, 2), (5, 4), (6, 4)]
    run_dir = tmp_path / "toygan" / "steps"
    assert [record["step"] for record in read_metrics(run_dir)] == [4]  # the epoch-end validation
    [metrics_csv] = run_dir.glob("csv/version_*/metrics.csv")
    logged_steps = [int(row["step"]) for row in csv.DictReader(metrics_csv.open()) if row.get("train/G_loss")]
    assert logged_steps == list(range(6))
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6


def _adam_steps(optimizer) -> int:
    return {int(state["step"]) for state in optimizer.state_dict()["state"].values()}.pop()


def _final_state(cli) -> dict:
    trainer = cli.trainer
    return {
        "model": cli.model.state_dict(),
        "optimizers": [optimizer.state_dict() for optimizer in trainer.optimizers],
        "schedulers": [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs],
        "pool": cli.model.pool.state_dict(),
        "global_step": trainer.global_step,
    }


def test_stop_and_resume_repeats_weights_optimizers_schedules_and_image_pool(
    toy_config: Path, tmp_path: Path
) -> None:
    expected = _final_state(fit(toy_config, tmp_path, "one-go", "--trainer.max_steps=6"))
    assert len(expected["pool"]["images"]) == 3  # the pool filled up and swaps images
    fit(toy_config, tmp_path, "stopped", "--trainer.max_steps=3")  # mid-epoch
    resumed = fit(toy_config, tmp_path, "stopped", "--trainer.max_steps=6", "--ckpt_path=last")
    assert_identical(_final_state(resumed), expected)


def test_bf16_mixed_trains(toy_config: Path, tmp_path: Path) -> None:
    cli = fit(toy_config, tmp_path, "bf16", "--trainer.max_steps=2", "--trainer.precision=bf16-mixed")
    assert cli.trainer.global_step == 2
    assert all(torch.isfinite(value).all() for value in cli.model.state_dict().values())


def test_two_ddp_processes_train_and_checkpoint_both_pools(toy_config: Path, tmp_path: Path) -> None:
    arguments = ["fit", f"--config={toy_config}", f"--runs_dir={tmp_path}", "--wandb=false"]
    run_zoo_command(
        [
            *arguments,
            "--run_id=ddp",
            "--trainer.devices=2",
            "--trainer.strategy=ddp_find_unused_parameters_true",
            "--trainer.max_steps=4",  # 8 pairs over 2 ranks in batches of 2: 2 steps per epoch
        ]
    )
    run_dir = tmp_path / "toygan" / "ddp"
    assert [record["step"] for record in read_metrics(run_dir)] == [2, 4]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 4
    pools = checkpoint["image_pools"]["fake_pairs"]
    assert len(pools) == 2 and not torch.equal(pools[0], pools[1])  # each rank's own fakes


def test_plain_ddp_is_refused_with_the_strategy_to_use(toy_config: Path, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="ddp_find_unused_parameters_true"):
        run_zoo_command(
            [
                "fit",
                f"--config={toy_config}",
                f"--runs_dir={tmp_path}",
                "--wandb=false",
                "--trainer.devices=2",
                "--trainer.strategy=ddp",
                "--trainer.max_steps=1",
            ],
            timeout=120,
        )
