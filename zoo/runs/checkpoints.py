"""The two checkpoints every run keeps in ``<run>/checkpoints/``: ``best-<step>.ckpt`` on the
method's main metric and ``last.ckpt``, the newest state.

Lightning 2.6's ``save_last=True`` rewrites ``last.ckpt`` only when a top-k checkpoint was saved at
the same step, so a run whose metric stopped improving would resume from an old state; a separate
unmonitored checkpoint written at every evaluation and at the end of training keeps it current."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class LatestCheckpoint(ModelCheckpoint):
    """``last.ckpt`` after every evaluation, or every ``every_n_train_steps`` optimizer steps when given
    (long evaluation periods: a node lost between two evaluations costs at most that many steps), and
    when training ends (``max_steps`` between two saves)."""

    def __init__(self, dirpath: str | Path, every_n_train_steps: int | None = None) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
            every_n_train_steps=every_n_train_steps,
        )

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._last_global_step_saved != trainer.global_step:
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        """When training ends with an epoch (``max_steps`` at its last batch), Lightning has already
        counted the epoch as done but still saves that epoch's batch progress as "all batches done":
        restored, the next epoch would be taken as finished too and skipped, and the epoch counter run
        one ahead. The next epoch's batch progress starts at 0."""
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        epochs = trainer.fit_loop.epoch_progress.current
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        if epochs.completed == epochs.ready and "epoch_loop.batch_progress" in fit_loop:
            progress = fit_loop["epoch_loop.batch_progress"]
            progress["current"] = {key: 0 for key in progress["current"]}
            progress["is_last_batch"] = False


def run_checkpoints(
    dirpath: str | Path, main_metric: str, mode: str, latest_every_n_steps: int | None = None
) -> list[ModelCheckpoint]:
    best = ModelCheckpoint(
        dirpath=dirpath, filename="best-{step}", monitor=main_metric, mode=mode, auto_insert_metric_name=False
    )
    return [best, LatestCheckpoint(dirpath, latest_every_n_steps)]
