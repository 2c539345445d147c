"""Exact resume: 6 steps in one go equal 3 steps, a stop and a resume to 6 -- weights, optimizer and
scheduler state bit for bit (the runs share this process and its thread count; the CPU kernels involved
are deterministic, so no tolerance is needed).

The tiny config has 8 training images in batches of 2: 4 steps per epoch, validation at step 4. So the
stop at step 3 is mid-epoch, the resumed run crosses an epoch boundary and a validation (which draws from
the global random generators), and training shuffles and augments (flip, colour jitter) throughout. What
makes it exact: the training DataLoader's state (``zoo.training.resumable_loader``) and the per-batch
seeding of the global random generators (``zoo.training.batch_seeding``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.cli_runs import read_metrics, run_zoo_in_process

# pycocotools 2.0.x under numpy 2 warns inside its own decode; nothing this project can change
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

STEPS = 6


def final_state(cli) -> dict[str, object]:
    trainer = cli.trainer
    assert trainer.global_step == STEPS
    return {
        "model": cli.model.state_dict(),
        "optimizer": trainer.optimizers[0].state_dict(),
        "lr_scheduler": trainer.lr_scheduler_configs[0].scheduler.state_dict(),
    }


def assert_identical(actual: object, expected: object, where: str = "") -> None:
    if isinstance(expected, torch.Tensor):
        assert torch.equal(actual, expected), (
            f"{where} differs by {(actual.double() - expected.double()).abs().max()}"
        )
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            assert_identical(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_identical(a, e, f"{where}[{index}]")
    else:
        assert actual == expected, where


@pytest.fixture(scope="module")
def uninterrupted(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """6 steps in one go (no workers); the stream does not depend on the number of workers."""
    runs = tmp_path_factory.mktemp("runs")
    cli = run_zoo_in_process(
        "fit", tiny_synthetic, runs, "one-go", "--wandb=false", f"--trainer.max_steps={STEPS}"
    )
    return runs / "mask_rcnn_synthetic" / "one-go", final_state(cli)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_stop_mid_epoch_and_resume_last_gives_the_same_weights(
    tiny_synthetic: Path, tmp_path: Path, uninterrupted: tuple[Path, dict], num_workers: int
):
    common = ("--wandb=false", f"--data.init_args.num_workers={num_workers}")
    run_zoo_in_process(
        "fit", tiny_synthetic, tmp_path, "stopped", *common, f"--trainer.max_steps={STEPS // 2}"
    )
    cli = run_zoo_in_process(
        "fit",
        tiny_synthetic,
        tmp_path,
        "stopped",
        *common,
        f"--trainer.max_steps={STEPS}",
        "--ckpt_path=last",
    )
    assert_identical(final_state(cli), uninterrupted[1])


def test_resume_from_an_epoch_end_checkpoint_gives_the_same_weights(
    tiny_synthetic: Path, tmp_path: Path, uninterrupted: tuple[Path, dict]
):
    """The checkpoint written after the validation at step 4 (end of epoch 0), given by path."""
    run_dir, expected = uninterrupted
    [checkpoint] = (run_dir / "checkpoints").glob("best-4.ckpt")
    cli = run_zoo_in_process(
        "fit",
        tiny_synthetic,
        tmp_path,
        "from-epoch-end",
        "--wandb=false",
        f"--trainer.max_steps={STEPS}",
        f"--ckpt_path={checkpoint}",
    )
    assert_identical(final_state(cli), expected)


def test_training_that_ends_with_an_epoch_resumes_into_the_next_one(
    tiny_synthetic: Path, tmp_path: Path, uninterrupted: tuple[Path, dict]
):
    """A run stopped by max_steps at the last batch of epoch 0 (no evaluation there): Lightning has
    counted the epoch as done when ``last.ckpt`` is written; the resumed run must neither skip epoch 1
    nor count it twice."""
    _, expected = uninterrupted
    common = ("--wandb=false", "--trainer.val_check_interval=3")
    run_zoo_in_process("fit", tiny_synthetic, tmp_path, "epoch-end", *common, "--trainer.max_steps=4")
    cli = run_zoo_in_process(
        "fit",
        tiny_synthetic,
        tmp_path,
        "epoch-end",
        *common,
        f"--trainer.max_steps={STEPS}",
        "--ckpt_path=last",
    )
    assert [record["epoch"] for record in read_metrics(tmp_path / "mask_rcnn_synthetic" / "epoch-end")] == [
        0,
        1,
    ]
    assert_identical(final_state(cli), expected)
