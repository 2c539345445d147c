"""Callbacks every zoo run gets, besides checkpointing and the learning-rate monitor."""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer


class MetricsFileWriter(Callback):
    """Append each evaluation's metrics as one JSON line to ``<run>/metrics.jsonl``: a plain record
    of the run that needs neither W&B nor a logger to read (``zoo compare`` reads it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._checkpoint_step: int | None = None

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        """``zoo validate/test --ckpt_path ...`` evaluates a checkpoint: record its training step (the
        trainer's own step counter stays 0 outside ``fit``)."""
        self._checkpoint_step = checkpoint.get("global_step")

    def _write(self, trainer: Trainer, stage: str) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith(f"{stage}/") and value.numel() == 1
        }
        if not metrics:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fitting = trainer.state.fn == "fit"
        step = trainer.global_step if fitting or self._checkpoint_step is None else self._checkpoint_step
        record = {"stage": stage, "epoch": trainer.current_epoch, "step": step, **metrics}
        if not fitting:
            record["checkpoint"] = str(trainer.ckpt_path) if trainer.ckpt_path else None
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, "test")
