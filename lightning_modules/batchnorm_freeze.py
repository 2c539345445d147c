"""Freeze BatchNorm when the per-device batch is too small for batch statistics, as the official
YOLACT ``train.py`` does (``batch_size // num_gpus < 6`` sets ``freeze_bn``): every ``BatchNorm2d``
of the module runs on its running statistics with its affine parameters fixed."""

from __future__ import annotations

import logging

from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

log = logging.getLogger(__name__)


class FreezeBatchNormBelowBatchSize(Callback):
    """Decided once at ``setup("fit")`` -- before DDP wraps the model, so the frozen parameters never
    become DDP's unused ones -- from the datamodule's ``batch_size`` (per device). Lightning puts the
    module back in train mode after each validation; frozen layers are set to eval again before every
    training batch."""

    def __init__(self, min_batch_size: int = 6) -> None:
        self.min_batch_size = min_batch_size
        self.frozen: list[nn.BatchNorm2d] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        batch_size = getattr(trainer.datamodule, "batch_size", None)
        if not isinstance(batch_size, int):
            raise ValueError(
                f"{type(self).__name__} needs the datamodule's per-device batch_size, "
                f"got {batch_size!r} from {type(trainer.datamodule).__name__}"
            )
        if batch_size >= self.min_batch_size:
            return
        self.frozen = [m for m in pl_module.modules() if isinstance(m, nn.BatchNorm2d)]
        for module in self.frozen:
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        log.info(
            "per-device batch %d < %d: %d BatchNorm layers frozen",
            batch_size,
            self.min_batch_size,
            len(self.frozen),
        )

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int
    ) -> None:
        for module in self.frozen:
            module.eval()
