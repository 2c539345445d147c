"""The training half every "the model returns its named losses in training mode" method shares
(torchvision's detection convention, kept by Mask R-CNN, YOLACT and UPSNet): the training loss is a
weighted sum of the model's named losses, each logged unweighted; a non-finite loss skips the step on
every rank and is counted across checkpoints; the model's class counts are checked against the dataset's.
Families (``lightning_modules.detection``, ``lightning_modules.panoptic``) add evaluation and prediction."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from datamodules.batch import Batch, Target
from datamodules.metadata import DatasetMetadata
from lightning_modules.base import ZooModule

log = logging.getLogger(__name__)


def init_argument_path(module: nn.Module, name: str) -> str | None:
    """Where ``name`` is set among a model's init arguments, as the CLI spells it below the model
    (``num_classes``, or ``detector.init_args.num_classes`` for a model built around a detector that
    takes it); None when no init argument of the model or of a sub-module it takes is named so."""
    parameters = inspect.signature(type(module).__init__).parameters
    if name in parameters:
        return name
    for child_name, child in module.named_children():
        if child_name in parameters and (path := init_argument_path(child, name)) is not None:
            return f"{child_name}.init_args.{path}"
    return None


class LossDictModule(ZooModule):
    """A model that returns a dict of named losses from ``model(images, targets)`` in training mode;
    in eval mode ``forward(images)`` is ``model(images)``, whose output the family evaluates.

    Args:
        model: the network; its ``num_classes`` (C, no background), when it has one, must equal the dataset's.
        metadata, optimizer, lr_scheduler: see ``ZooModule``.
        loss_weights: multiplies the model's losses by name (``{loss_mask: 2.0}``); unnamed losses
            weigh 1. Each loss is logged unweighted as ``train/<name>``, the weighted sum as ``train/loss``.

    The init arguments of the whole class chain (less ``model``, ``metadata``, ``optimizer``,
    ``lr_scheduler`` and a subclass's ``unsaved_arguments``, objects rather than settings) are saved as
    hyperparameters.
    """

    unsaved_arguments: tuple[str, ...] = ()

    def __init__(
        self,
        model: nn.Module,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
        loss_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(metadata, optimizer, lr_scheduler)
        self.model = model
        self.loss_weights = dict(loss_weights or {})
        self.require_model_setting("num_classes", self.metadata.num_classes, self._class_summary())
        # collects the subclasses' init arguments too (Lightning walks the chain of __init__ frames)
        self.save_hyperparameters(
            ignore=["model", "metadata", "optimizer", "lr_scheduler", *self.unsaved_arguments]
        )
        self.skipped_nonfinite_steps = 0

    def _class_summary(self) -> str:
        names = self.metadata.class_names
        return f"{len(names)} classes ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"

    def require_model_setting(self, name: str, expected: int, dataset_has: str) -> None:
        """Refuse a model whose ``name`` attribute (when it has one) differs from the dataset's
        ``expected`` value, naming the CLI override that fixes it; ``dataset_has`` describes the
        dataset's value ("2 classes (circle, square)")."""
        value = getattr(self.model, name, None)
        if value is not None and value != expected:
            path = init_argument_path(self.model, name) or name
            raise ValueError(
                f"the model has {name}={value} but the dataset has {dataset_has}; "
                f"set --model.init_args.model.init_args.{path}={expected}"
            )

    # -- training -----------------------------------------------------------------------------------
    def compute_losses(self, images: list[Tensor], targets: list[Target]) -> dict[str, Tensor]:
        """The model's named losses; a method whose losses are not computed by its model overrides this."""
        return self.model(images, targets)

    def weighted_loss(self, losses: Mapping[str, Tensor]) -> Tensor:
        unknown = sorted(set(self.loss_weights) - set(losses))
        if unknown:
            raise ValueError(f"loss_weights names {unknown}, but the model's losses are {sorted(losses)}")
        return sum(self.loss_weights.get(name, 1.0) * value for name, value in losses.items())

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        """The weighted loss; a non-finite loss on any rank skips the optimizer step on every rank
        (Lightning skips backward and step when this returns None; ``global_step`` still counts the batch),
        counted in ``train/skipped_nonfinite_steps`` and logged -- the official YOLACT ``train.py``
        rule, kept for every method of this kind."""
        images, targets = batch
        losses = self.compute_losses(images, targets)
        loss = self.weighted_loss(losses)
        if not bool(self.all_gather(torch.isfinite(loss.detach())).all()):
            self.skipped_nonfinite_steps += 1
            log.warning(
                "step %d, batch %d: non-finite loss (%s); optimizer step skipped (%d so far)",
                self.global_step, batch_idx,
                ", ".join(f"{name}={float(value.detach()):.4g}" for name, value in losses.items()),
                self.skipped_nonfinite_steps,
            )  # fmt: skip
            self.log(
                "train/skipped_nonfinite_steps", float(self.skipped_nonfinite_steps), batch_size=len(images)
            )
            return None
        self.log_dict({f"train/{name}": value for name, value in losses.items()}, batch_size=len(images))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        self.log("train/skipped_nonfinite_steps", float(self.skipped_nonfinite_steps), batch_size=len(images))
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["skipped_nonfinite_steps"] = self.skipped_nonfinite_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.skipped_nonfinite_steps = int(checkpoint.get("skipped_nonfinite_steps", 0))

    # -- inference ----------------------------------------------------------------------------------
    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return self.model(images)
