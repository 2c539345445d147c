"""``zoo predict`` for generators: each output image as ``<run>/predictions/<name>.png`` (the input's
file stem), what users compare by eye or hand to an offline evaluator (FCN score, FID)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image


class ImageFolderWriter(BasePredictionWriter):
    """Writes the ``{"names": [...], "images": (B, 3, H, W) in [0, 1]}`` a generator's ``predict_step``
    returns as 8-bit PNGs; every rank writes its own items (names are unique per dataset)."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.folder = Path(folder)
        self._written = 0

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, image in zip(prediction["names"], prediction["images"], strict=True):
            pixels = (image.float().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(self.folder / f"{name}.png")
            self._written += 1

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rank_zero_info(f"Wrote {self._written} images to {self.folder}")
        self._written = 0
