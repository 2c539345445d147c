"""``last.ckpt`` is the newest state even when the main metric stops improving."""

from pathlib import Path

import torch

from tests.cli_runs import read_metrics, run_zoo_in_process


def test_last_checkpoint_follows_training_not_the_best_metric(tiny_synthetic: Path, tmp_path: Path):
    # Evaluations at steps 2, 4 and 6 plus the end of training at step 7.
    run_zoo_in_process(
        "fit",
        tiny_synthetic,
        tmp_path,
        "latest",
        "--wandb=false",
        "--trainer.max_steps=7",
        "--trainer.val_check_interval=2",
        "--model.init_args.lr_milestones=[5]",
    )
    checkpoints = tmp_path / "mask_rcnn_synthetic" / "latest" / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["global_step"] == 7
    [best] = checkpoints.glob("best-*.ckpt")
    records = read_metrics(checkpoints.parent)
    assert [record["step"] for record in records] == [2, 4, 6]
    first_best = max(records, key=lambda record: record["val/segm/AP"])  # ties: the earliest is kept
    assert best.name == f"best-{first_best['step']}.ckpt"
    assert sorted(path.name for path in checkpoints.iterdir()) == sorted(["last.ckpt", best.name])


def test_last_checkpoint_every_n_steps_between_evaluations(tiny_synthetic: Path, tmp_path: Path):
    from tests.checkpoint_spy import LastCheckpointSpy

    LastCheckpointSpy.seen = []
    run_zoo_in_process(
        "fit",
        tiny_synthetic,
        tmp_path,
        "periodic",
        "--wandb=false",
        "--trainer.max_steps=5",
        "--trainer.val_check_interval=100",
        "--checkpoint_every_n_steps=2",
        "--trainer.callbacks+=tests.checkpoint_spy.LastCheckpointSpy",
    )
    # The spy runs before the checkpoint callback in the same hook: it sees the previous save.
    assert LastCheckpointSpy.seen == [(1, None), (2, None), (3, 2), (4, 2), (5, 4)]
    last = tmp_path / "mask_rcnn_synthetic" / "periodic" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 5
