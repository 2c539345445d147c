"""Every generative method's synthetic experiment, run by the real ``zoo`` CLI on a tiny synthetic world:
it trains (a few generator steps), evaluates its main metric into ``metrics.jsonl`` and ``zoo predict``
writes one PNG per input. Method-specific checks follow: CycleGAN's pools and SRGAN's start from an
SRResNet checkpoint without the frozen VGG in its checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import wandb
from PIL import Image

from tests.cli_runs import REPO_ROOT, read_metrics
from tests.test_exact_resume import assert_identical
from zoo.cli import run_cli

EXPERIMENTS = REPO_ROOT / "experiments"
RANDOM_WEIGHTS = pytest.mark.filterwarnings("ignore:.*RANDOM weights:UserWarning")


def data_overrides(world: Path) -> dict[str, list[str]]:
    return {
        "pix2pix/synthetic.yaml": [f"--data.init_args.root={world / 'pix2pix'}"],
        "cyclegan/synthetic.yaml": [f"--data.init_args.root={world / 'cyclegan'}"],
        "super_resolution/synthetic_srresnet.yaml": [
            f"--data.init_args.train_images={world / 'sr' / 'train'}",
            f"--data.init_args.val_images={world / 'sr' / 'val'}",
        ],
        "super_resolution/synthetic_srgan.yaml": [
            f"--data.init_args.train_images={world / 'sr' / 'train'}",
            f"--data.init_args.val_images={world / 'sr' / 'val'}",
        ],
        "style_transfer/synthetic.yaml": [
            f"--data.init_args.content_images={world / 'style' / 'train'}",
            f"--data.init_args.val_images={world / 'style' / 'val'}",
            f"--data.init_args.style_image={world / 'style' / 'style.png'}",
        ],
        "conditional_gan/synthetic.yaml": [f"--data.init_args.root={world / 'classes'}"],
    }


def zoo(subcommand: str, experiment: str, world: Path, runs: Path, run_id: str, *extra: str):
    arguments = [
        subcommand,
        f"--config={EXPERIMENTS / experiment}",
        *data_overrides(world)[experiment],
        f"--runs_dir={runs}",
        f"--run_id={run_id}",
        "--wandb=false",
        "--data.init_args.num_workers=0",
        *extra,
    ]
    return run_cli(arguments)


TRAINING = ("--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.limit_val_batches=2")


@RANDOM_WEIGHTS
@pytest.mark.parametrize("experiment", list(data_overrides(Path())))
def test_synthetic_experiment_trains_evaluates_and_predicts_images(
    experiment: str, tiny_generative: Path, tmp_path: Path
) -> None:
    cli = zoo("fit", experiment, tiny_generative, tmp_path, "run", *TRAINING)
    module = cli.model
    assert cli.trainer.global_step == 2
    run_dir = Path(cli.trainer.default_root_dir)
    [record] = read_metrics(run_dir)
    assert record["step"] == 2 and torch.isfinite(torch.tensor(record[module.main_metric]))
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    frozen = [key for key in checkpoint["state_dict"] if key.startswith(module._frozen_prefixes())]
    assert frozen == []  # VGG, FID Inception, classifiers come from their files, not the checkpoint
    zoo("predict", experiment, tiny_generative, tmp_path, "run", "--ckpt_path=last")
    written = sorted((run_dir / "predictions").glob("*.png"))
    assert len(written) >= 2
    assert Image.open(written[0]).mode == "RGB"


def test_cyclegan_checkpoints_both_image_pools(tiny_generative: Path, tmp_path: Path) -> None:
    cli = zoo("fit", "cyclegan/synthetic.yaml", tiny_generative, tmp_path, "pools", "--trainer.max_steps=3")
    checkpoint = torch.load(
        Path(cli.trainer.default_root_dir) / "checkpoints" / "last.ckpt", weights_only=False
    )
    pools = checkpoint["image_pools"]
    assert sorted(pools) == ["fake_a", "fake_b"]
    assert [tuple(pools[name][0].shape) for name in sorted(pools)] == [(3, 3, 64, 64)] * 2


@RANDOM_WEIGHTS
def test_srgan_starts_from_the_srresnet_checkpoint(tiny_generative: Path, tmp_path: Path) -> None:
    srresnet = zoo(
        "fit", "super_resolution/synthetic_srresnet.yaml", tiny_generative, tmp_path, "mse", *TRAINING
    )
    checkpoint = Path(srresnet.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
    srgan = zoo(
        "fit",
        "super_resolution/synthetic_srgan.yaml",
        tiny_generative,
        tmp_path,
        "gan",
        "--trainer.max_steps=0",
        f"--model.init_args.generator_checkpoint={checkpoint}",
    )
    expected = srresnet.model.generator.state_dict()
    for name, value in srgan.model.generator.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_a_missing_srresnet_checkpoint_is_named(tiny_generative: Path, tmp_path: Path) -> None:
    # (the CLI reports the module's FileNotFoundError inside its own ValueError)
    with pytest.raises(ValueError, match=r"generator_checkpoint .*no-such.ckpt does not exist"):
        zoo(
            "fit",
            "super_resolution/synthetic_srgan.yaml",
            tiny_generative,
            tmp_path,
            "gan",
            "--trainer.max_steps=1",
            f"--model.init_args.generator_checkpoint={tmp_path / 'no-such.ckpt'}",
            "--model.init_args.vgg.init_args.random_weights_for_tests=true",
        )


def test_pix2pix_logs_input_output_target_grids_to_wandb(tiny_generative: Path, tmp_path: Path) -> None:
    """W&B offline: 3 grid rows for the one validation, each the 128 px input | output | target."""
    try:
        cli = zoo(
            "fit",
            "pix2pix/synthetic.yaml",
            tiny_generative,
            tmp_path,
            "grids",
            *TRAINING,
            "--model.init_args.sample_images=3",
            "--wandb=true",
        )
    finally:
        wandb.finish()
    [offline_run] = (Path(cli.trainer.default_root_dir) / "wandb").glob("offline-run-*")
    grids = sorted((offline_run / "files" / "media" / "images" / "val").glob("predictions_*.png"))
    assert len(grids) == 3
    with Image.open(grids[0]) as grid:
        assert grid.size == (3 * 128, 128)


def _state(cli) -> dict:
    trainer = cli.trainer
    return {
        "model": cli.model.state_dict(),
        "optimizers": [optimizer.state_dict() for optimizer in trainer.optimizers],
        "schedulers": [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs],
        "pools": {name: pool.state_dict() for name, pool in cli.model.image_pools().items()},
    }


def test_cyclegan_resumes_exactly_pools_included(tiny_generative: Path, tmp_path: Path) -> None:
    """4 steps in one go equal 2 steps, a stop and a resume: both generators and discriminators, both
    optimizers and schedules and both image pools, bit for bit (the data's random B images included)."""
    expected = _state(
        zoo("fit", "cyclegan/synthetic.yaml", tiny_generative, tmp_path, "one-go", "--trainer.max_steps=4")
    )
    zoo("fit", "cyclegan/synthetic.yaml", tiny_generative, tmp_path, "stopped", "--trainer.max_steps=2")
    resumed = zoo(
        "fit",
        "cyclegan/synthetic.yaml",
        tiny_generative,
        tmp_path,
        "stopped",
        "--trainer.max_steps=4",
        "--ckpt_path=last",
    )
    assert_identical(_state(resumed), expected)
