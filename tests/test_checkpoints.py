"""``last.ckpt`` is the newest state even when the main metric stops improving."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import nn

from datamodules.metadata import DatasetMetadata
from lightning_modules.base import ZooModule
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
        "--model.init_args.lr_scheduler.init_args.milestones=[5]",
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


class ScriptedScoreModule(ZooModule):
    """Logs a given sequence of main-metric values, one per evaluation, so the best is known."""

    main_metric = "val/score"
    scores = (0.5, 0.2, 0.4)

    def __init__(
        self, metadata: DatasetMetadata | None, optimizer: OptimizerCallable, mode: str = "max"
    ) -> None:
        super().__init__(metadata, optimizer)
        self.main_metric_mode = mode
        self.weight = nn.Parameter(torch.zeros(1))
        self.evaluations = 0

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return (self.weight - 1).pow(2).sum()

    def validation_step(self, batch, batch_idx: int) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        self.log("val/score", self.scores[self.evaluations])
        self.evaluations += 1


@pytest.mark.parametrize(("mode", "best_step", "best_score"), [("max", 2, 0.5), ("min", 4, 0.2)])
def test_best_checkpoint_is_the_best_main_metric_by_value(
    tiny_synthetic: Path, tmp_path: Path, mode: str, best_step: int, best_score: float
):
    run_zoo_in_process(
        "fit", tiny_synthetic, tmp_path, mode, "--wandb=false", "--trainer.max_steps=6",
        "--trainer.val_check_interval=2", "--model=tests.test_checkpoints.ScriptedScoreModule",
        f"--model.init_args.mode={mode}", "--model.init_args.optimizer=torch.optim.SGD",
        "--model.init_args.optimizer.init_args.lr=0.1", "--experiment=scripted",
    )  # fmt: skip
    checkpoints = tmp_path / "scripted" / mode / "checkpoints"
    assert [record["val/score"] for record in read_metrics(checkpoints.parent)] == pytest.approx(
        [0.5, 0.2, 0.4]
    )
    [best] = checkpoints.glob("best-*.ckpt")
    assert best.name == f"best-{best_step}.ckpt"
    state = torch.load(best, weights_only=False)
    [best_callback] = [value for key, value in state["callbacks"].items() if "val/score" in key]
    assert float(best_callback["best_model_score"]) == pytest.approx(best_score)
    assert state["global_step"] == best_step
