"""``zoo predict`` writes what the model's ``predict_step`` returns -- a list of JSON-ready records
per batch (COCO results for detection methods) -- to ``<run>/predictions.json``, one file per rank
under DDP (``predictions-rank<k>.json``), ready for ``COCO.loadRes`` or a benchmark server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info


class JsonPredictionWriter(BasePredictionWriter):
    def __init__(self, run_dir: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.run_dir = Path(run_dir)
        self._records: list[Any] = []

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        self._records.extend(prediction)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        name = (
            "predictions.json" if trainer.world_size == 1 else f"predictions-rank{trainer.global_rank}.json"
        )
        path = self.run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self._records))
        rank_zero_info(f"Wrote {len(self._records)} predictions to {path}")
        self._records = []
