"""A callback for tests: what ``last.ckpt`` holds at the end of every training batch."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from lightning.pytorch import Callback


class LastCheckpointSpy(Callback):
    seen: ClassVar[list[tuple[int, int | None]]] = []  # (global step, global step stored in last.ckpt)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        path = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        stored = torch.load(path, weights_only=False)["global_step"] if path.is_file() else None
        LastCheckpointSpy.seen.append((trainer.global_step, stored))
