"""The image-logging plumbing every family shares: up to ``limit`` W&B overlays per validation pass,
collected on rank 0 only (never during the sanity check) and logged once at the pass's end under
``<split>/predictions`` with the global step. What an overlay shows is the family's business
(``lightning_modules.wandb_overlays``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import wandb
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import WandbLogger


class OverlayLog:
    def __init__(self, limit: int = 8) -> None:
        if limit < 0:
            raise ValueError(f"overlay_images must be >= 0, got {limit}")
        self.limit = limit
        self._images: list[wandb.Image] = []

    def wants(self, module: LightningModule, split: str) -> bool:
        """Whether this step should draw overlays: validation, W&B, rank 0, not the sanity check, and
        fewer than ``limit`` drawn so far."""
        trainer = module.trainer
        return (
            split == "val"
            and len(self._images) < self.limit
            and isinstance(module.logger, WandbLogger)
            and trainer.is_global_zero
            and not trainer.sanity_checking
        )

    def add_while_wanted(self, module: LightningModule, split: str, draws: list[Callable[[], wandb.Image]]):
        """Draw (lazily) and keep overlays until the limit is reached."""
        for draw in draws:
            if not self.wants(module, split):
                return
            self._images.append(draw())

    def add_per_image(
        self,
        module: LightningModule,
        split: str,
        draw: Callable[..., wandb.Image],
        images: list,
        predictions: list,
        targets: list,
        *shared: object,
    ) -> None:
        """``draw(image, prediction, target, *shared)`` for the batch's images while overlays are wanted."""
        if self.wants(module, split):
            self.add_while_wanted(
                module,
                split,
                [
                    partial(draw, image, prediction, target, *shared)
                    for image, prediction, target in zip(images, predictions, targets, strict=True)
                ],
            )

    def flush(self, module: LightningModule, split: str) -> None:
        if self._images:
            module.logger.experiment.log(
                {f"{split}/predictions": self._images, "trainer/global_step": module.global_step}
            )
            self._images = []
