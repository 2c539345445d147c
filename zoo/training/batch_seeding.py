"""Global random state that a resumed run reproduces: python, numpy and torch (CPU and CUDA) are reseeded
before every training batch from (seed, batch index, global rank)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from zoo.training.resumable_loader import global_seed


class BatchSeeding(Callback):
    """Reseed the global random generators before each training batch, so that the random draws of a
    step (RPN/RoI sampling, dropout, ...) depend only on where the step is in training.

    A resumed run then draws what an uninterrupted run draws, which saving and restoring the generators'
    states in the checkpoint does not give: Lightning writes only rank 0's hooks into the checkpoint
    (the other ranks' states would be lost), and after restoring a checkpoint it creates the training
    DataLoader iterator, which draws from the global torch generator, before the first resumed step.
    The seed (``seed_everything``'s, from rank 0) is saved in the checkpoint and wins on resume.
    """

    def __init__(self) -> None:
        self.seed = 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.seed = global_seed(trainer)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        entropy = (self.seed, trainer.fit_loop.total_batch_idx, trainer.global_rank)
        seed = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)  # seeds every CUDA device as well

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.seed = state_dict["seed"]
