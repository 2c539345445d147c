"""The one contract every LightningModule of the zoo follows; each family base derives from it.

A module declares
- ``main_metric`` and ``main_metric_mode``: its headline number (``<stage>/<task>/<metric>``, e.g.
  ``val/segm/AP``) and whether higher is better; the CLI's best checkpoint and ``zoo compare`` read them;
- its optimizer and LR schedule as LightningCLI callables from the experiment YAML
  (``model.init_args.optimizer`` / ``lr_scheduler`` with a ``class_path`` such as ``torch.optim.SGD``,
  ``torch.optim.Adam``, ``lightning_modules.lr_schedules.WarmupMultiStepLR``,
  ``torch.optim.lr_scheduler.CosineAnnealingLR`` or ``ReduceLROnPlateau``), so an experiment changes
  them without code;
- how it evaluates a split (``evaluation_step(batch, split)`` and ``evaluation_epoch_end(split)``, which
  the validation and test hooks call with ``"val"`` and ``"test"``);
- how its predictions are written (``prediction_writer``): COCO results for detectors, PNG + JSON for
  panoptic, image folders for generators;
- what it knows of its dataset: the ``DatasetMetadata`` the CLI links from ``data.metadata``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch.optim.lr_scheduler import ReduceLROnPlateau

from datamodules.metadata import DatasetMetadata

METRIC_MODES = ("max", "min")


class ZooModule(LightningModule):
    """Base of every method's module.

    Args:
        metadata: the dataset's classes, category ids and annotation files (linked by the CLI from
            ``data.metadata``; required).
        optimizer: builds the optimizer from the trainable parameters, e.g. in YAML
            ``{class_path: torch.optim.SGD, init_args: {lr: 0.02, momentum: 0.9}}``.
        lr_scheduler: builds the schedule from the optimizer; None keeps the learning rate constant.
            Schedules step once per optimizer step, except ``ReduceLROnPlateau``, which steps once per
            training epoch on ``main_metric`` (its ``mode`` must be ``main_metric_mode``).
    """

    main_metric: ClassVar[str]
    main_metric_mode: ClassVar[str] = "max"

    def __init__(
        self,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if metadata is None:  # Optional only so that the CLI parser accepts the link that fills it
            raise ValueError(
                f"{type(self).__name__} needs the dataset's metadata: the zoo CLI links it from "
                "data.metadata; "
                "in Python, pass datamodule.metadata"
            )
        if getattr(type(self), "main_metric", None) is None or self.main_metric_mode not in METRIC_MODES:
            raise TypeError(
                f"{type(self).__name__} must declare main_metric and main_metric_mode (max or min)"
            )
        self.metadata = metadata
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler

    def configure_optimizers(self) -> Any:
        parameters = [parameter for parameter in self.parameters() if parameter.requires_grad]
        optimizer = self.optimizer_factory(parameters)
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        if isinstance(scheduler, ReduceLROnPlateau):
            if scheduler.mode != self.main_metric_mode:
                raise ValueError(
                    f"ReduceLROnPlateau(mode={scheduler.mode!r}) watches {self.main_metric}, which is better "
                    f"when {self.main_metric_mode}er: "
                    f"set lr_scheduler.init_args.mode to {self.main_metric_mode!r}"
                )
            schedule = {"scheduler": scheduler, "interval": "epoch", "monitor": self.main_metric}
        else:
            schedule = {"scheduler": scheduler, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def evaluation_step(self, batch: Any, split: str) -> None:
        """Accumulate one batch of ``split`` (``"val"`` or ``"test"``) into the split's metrics."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")

    def evaluation_epoch_end(self, split: str) -> None:
        """Compute, log and reset the split's metrics."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluation_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.evaluation_epoch_end("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluation_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.evaluation_epoch_end("test")

    def prediction_writer(self, run_dir: Path) -> BasePredictionWriter | None:
        """The callback that writes ``zoo predict``'s output into ``run_dir``; None: this module has no
        prediction output (``zoo predict`` then refuses to run)."""
        return None
