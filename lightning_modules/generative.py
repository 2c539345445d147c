"""The generative family's base: manual optimization of a generator and, for GANs, a discriminator.

Each training step (one batch) is one *iteration*: the subclass's ``generate`` runs once, then
``discriminator_steps`` discriminator updates on ``discriminator_losses`` (none without a
discriminator: SRResNet, style transfer) and one generator update on ``generator_losses``, in the
order of the method's official code (``discriminator_first``: pix2pix updates D then G, CycleGAN G then
D, both on the fakes of the one forward pass).

Step semantics: a step is a generator step. Lightning's manual optimization counts every
``LightningOptimizer.step`` in ``trainer.global_step``, so a D step and a G step per batch would count
two steps and ``max_steps: 1000`` would stop after 500 generator updates. Here the discriminator's
updates go to the strategy's ``optimizer_step`` directly (the same precision-plugin path: AMP grad
scaling, ``on_before_optimizer_step`` hooks) and only the generator's ``LightningOptimizer.step`` is
counted. So ``max_steps``, ``--checkpoint_every_n_steps``, the step of ``metrics.jsonl`` records, the
W&B/CSV step axis (Lightning logs against batches, which equal generator steps here) and the LR
schedules (stepped by hand, once per generator step or once per epoch) all count generator steps.

Checkpoints hold both optimizers and both schedulers (Lightning saves what ``configure_optimizers``
returns) and every image pool (``image_pools``: one per rank, gathered when saving), so a resumed run
repeats an uninterrupted one exactly.

DDP: each backward reaches one network only (the discriminator's loss sees detached fakes, the
generator's update freezes the discriminator through ``toggle_optimizer``), so DistributedDataParallel
must be told to expect unused parameters: ``--trainer.strategy ddp_find_unused_parameters_true``. A plain
``ddp`` strategy is refused at set-up with that advice instead of failing in the second backward.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import Metric

from datamodules.batch import ImageBatch
from datamodules.metadata import DatasetMetadata
from lightning_modules.base import ZooModule
from lightning_modules.image_writer import ImageFolderWriter
from lightning_modules.overlay_log import OverlayLog
from lightning_modules.wandb_overlays import image_grid
from models.image_pool import ImagePool

SCHEDULE_INTERVALS = ("step", "epoch")


class GenerativeModule(ZooModule):
    """Base of the generative methods (pix2pix, CycleGAN, SRResNet/SRGAN, style transfer, conditional GAN).

    A subclass sets ``self.generator`` (every network the generator optimizer updates; an
    ``nn.ModuleDict`` when there are several, as CycleGAN's two) and ``self.discriminator`` (likewise,
    or None), and implements ``generate``, ``generator_losses``, ``discriminator_losses`` (GANs), the
    evaluation hooks and ``translate`` (what ``zoo predict`` writes).

    Args:
        metadata: the dataset's metadata (linked by the CLI).
        optimizer: the generator's optimizer, e.g. ``torch.optim.Adam`` with ``lr: 2.0e-4, betas: [0.5,
            0.999]``.
        lr_scheduler: the generator's LR schedule; None: constant.
        discriminator_optimizer: the discriminator's optimizer; default: the generator's settings.
        discriminator_lr_scheduler: the discriminator's schedule; default: the generator's settings.
        discriminator_steps: discriminator updates per generator update (WGAN's n_critic; 1 in the papers
            here).
        lr_schedule_interval: ``"step"`` steps the schedules after every generator step, ``"epoch"``
            after every training epoch (the official pix2pix/CycleGAN linear decay is per epoch).
        gradient_clip_val: clip each network's gradients to this norm (or value) before its update; None:
            no clipping (the Trainer's ``gradient_clip_val`` does not apply to manual optimization).
        gradient_clip_algorithm: ``"norm"`` or ``"value"``.
        sample_images: validation samples drawn into the W&B grid per evaluation (input | output |
            target).
    """

    main_metric_mode = "min"
    generator: nn.Module
    discriminator: nn.Module | None
    discriminator_first: ClassVar[bool] = True  # pix2pix's order; CycleGAN's official code updates G first
    loss_networks: ClassVar[
        tuple[str, ...]
    ] = ()  # frozen pretrained networks (VGG...): kept out of checkpoints

    def __init__(
        self,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
        discriminator_optimizer: OptimizerCallable | None = None,
        discriminator_lr_scheduler: LRSchedulerCallable | None = None,
        discriminator_steps: int = 1,
        lr_schedule_interval: str = "step",
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        sample_images: int = 8,
    ) -> None:
        super().__init__(metadata, optimizer, lr_scheduler)
        if discriminator_steps < 1:
            raise ValueError(f"discriminator_steps must be >= 1, got {discriminator_steps}")
        if lr_schedule_interval not in SCHEDULE_INTERVALS:
            raise ValueError(
                f"lr_schedule_interval must be one of {SCHEDULE_INTERVALS}, got {lr_schedule_interval!r}"
            )
        self.automatic_optimization = False
        self.discriminator = None  # a GAN subclass assigns its discriminator(s) after this
        self.discriminator_optimizer_factory = discriminator_optimizer or optimizer
        self.discriminator_lr_scheduler_factory = discriminator_lr_scheduler or lr_scheduler
        self.discriminator_steps = discriminator_steps
        self.lr_schedule_interval = lr_schedule_interval
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.samples = OverlayLog(sample_images)

    # --- what a method implements ---------------------------------------------------------------------

    def generate(self, batch: ImageBatch) -> dict[str, Tensor]:
        """The generator's outputs for a training batch (with gradients), shared by both updates."""
        raise NotImplementedError

    def generator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named generator losses; ``"loss"`` is the total that is minimised."""
        raise NotImplementedError

    def discriminator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named discriminator losses (on detached fakes); ``"loss"`` is the total that is minimised."""
        raise NotImplementedError(f"{type(self).__name__} has a discriminator but no discriminator_losses")

    def translate(self, batch: ImageBatch) -> Tensor:
        """The output images of an evaluation batch, (B, 3, H, W) in [0, 1] (``zoo predict`` writes them)."""
        raise NotImplementedError

    def image_pools(self) -> dict[str, ImagePool]:
        """The image pools whose contents a checkpoint must keep (CycleGAN's fake-image histories)."""
        return {}

    # --- optimization ---------------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        networks = [("generator", self.generator, self.optimizer_factory, self.lr_scheduler_factory)]
        if self.discriminator is not None:
            networks.append(
                (
                    "discriminator",
                    self.discriminator,
                    self.discriminator_optimizer_factory,
                    self.discriminator_lr_scheduler_factory,
                )
            )
        optimizers, schedulers = [], []
        for name, network, make_optimizer, make_schedule in networks:
            parameters = [parameter for parameter in network.parameters() if parameter.requires_grad]
            if not parameters:
                raise ValueError(f"{type(self).__name__}'s {name} has no trainable parameters")
            optimizer = make_optimizer(parameters)
            optimizers.append(optimizer)
            if make_schedule is not None:
                schedule = make_schedule(optimizer)
                if isinstance(schedule, ReduceLROnPlateau):
                    raise ValueError("GAN schedules are stepped by hand: ReduceLROnPlateau is not supported")
                schedulers.append(schedule)
        return optimizers, schedulers

    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy if self._trainer is not None else None
        if isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get("find_unused_parameters"):
            raise ValueError(
                f"{type(self).__name__} updates its networks one at a time, so each backward leaves the "
                "other network's parameters unused: "
                "run DDP with --trainer.strategy ddp_find_unused_parameters_true"
            )

    def _optimizers(self) -> tuple[LightningOptimizer, LightningOptimizer | None]:
        optimizers = self.optimizers()
        if isinstance(optimizers, list):
            return optimizers[0], optimizers[1]
        return optimizers, None

    def _update(self, optimizer: LightningOptimizer, loss: Tensor, counted: bool) -> None:
        self.manual_backward(loss)
        if self.gradient_clip_val is not None:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.gradient_clip_val,
                gradient_clip_algorithm=self.gradient_clip_algorithm,
            )
        if counted:
            optimizer.step()
        else:  # the strategy's step without LightningOptimizer's step counter (module docstring)
            self.trainer.strategy.optimizer_step(optimizer.optimizer, closure=lambda: None, model=self)
        optimizer.zero_grad(set_to_none=True)

    def training_step(self, batch: ImageBatch, batch_idx: int) -> None:
        generator_optimizer, discriminator_optimizer = self._optimizers()
        generated = self.generate(batch)
        logged: dict[str, Tensor] = {}
        updates = [("G", generator_optimizer, self.generator_losses, 1)]
        if discriminator_optimizer is not None:
            discriminator = (
                "D",
                discriminator_optimizer,
                self.discriminator_losses,
                self.discriminator_steps,
            )
            updates.insert(0 if self.discriminator_first else 1, discriminator)
        for network, optimizer, compute_losses, repeats in updates:
            for _ in range(repeats):
                with self.toggled_optimizer(optimizer):
                    losses = compute_losses(batch, generated)
                    self._update(optimizer, losses["loss"], counted=network == "G")
            logged.update({f"train/{network}_{name}": value.detach() for name, value in losses.items()})
        self.log_dict(logged, prog_bar=False, batch_size=_batch_size(batch))
        if self.lr_schedule_interval == "step":
            self._step_schedules()

    def on_train_epoch_end(self) -> None:
        if self.lr_schedule_interval == "epoch":
            self._step_schedules()

    def _step_schedules(self) -> None:
        for config in self.trainer.lr_scheduler_configs:
            config.scheduler.step()

    # --- checkpoints: image pools in, frozen pretrained weights out ---------------------------------

    def _frozen_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of weights that come from local files, not from training: the loss
        networks and the metrics' feature extractors (FID's Inception)."""
        return (*(f"{name}." for name in self.loss_networks), "evaluation_metrics.")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every rank's pools (each rank fills its own from its own fakes; all ranks take part); the frozen
        pretrained weights left out (80-100 MB each for VGG19 and the FID Inception): the config that
        resumes or evaluates the checkpoint loads them from their files again."""
        state = checkpoint["state_dict"]
        for key in [key for key in state if key.startswith(self._frozen_prefixes())]:
            del state[key]
        pools = {}
        for name, pool in self.image_pools().items():
            images = pool.state_dict()["images"]
            if self.trainer.world_size > 1:
                gathered = self.all_gather(images.to(self.device))
                pools[name] = [state.cpu() for state in gathered]
            else:
                pools[name] = [images.cpu()]
        if pools:
            checkpoint["image_pools"] = pools

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key, value in self.state_dict().items():  # the frozen weights this module was built with
            if key.startswith(self._frozen_prefixes()):
                state.setdefault(key, value)
        saved = checkpoint.get("image_pools", {})
        for name, pool in self.image_pools().items():
            if name not in saved:
                continue
            per_rank = saved[name]
            rank = self.trainer.global_rank if self._trainer is not None else 0
            if len(per_rank) != (self.trainer.world_size if self._trainer is not None else 1):
                raise ValueError(
                    f"the checkpoint's {name!r} image pool was saved by {len(per_rank)} processes; resuming "
                    f"with another number of processes would not repeat the run (start it from the weights)"
                )
            pool.load_state_dict({"images": per_rank[rank]})

    # --- evaluation ------------------------------------------------------------------------------------

    def set_evaluation_metrics(self, make: Callable[[], dict[str, Metric]]) -> None:
        """One set of torchmetrics per evaluated split (``self.evaluation_metrics[split][name]``), which
        ``evaluation_step`` updates and ``evaluation_epoch_end`` computes (synced across DDP ranks by
        torchmetrics), logs as ``<split>/<name>`` (a metric computing a dict: each entry as
        ``<split>/<name>_<key>``) and resets."""
        self.evaluation_metrics = nn.ModuleDict({split: nn.ModuleDict(make()) for split in ("val", "test")})

    def evaluation_epoch_end(self, split: str) -> None:
        metrics = self.evaluation_metrics[split]
        logged = {}
        for name, metric in metrics.items():
            value = metric.compute()
            if isinstance(value, dict):
                logged.update({f"{split}/{name}_{key}": entry for key, entry in value.items()})
            else:
                logged[f"{split}/{name}"] = value
        self.log_dict(logged)
        for metric in metrics.values():
            metric.reset()
        self.flush_samples(split)

    def add_samples(self, split: str, columns: list[Tensor], captions: list[str]) -> None:
        """Queue W&B grid rows (one per image: ``columns`` side by side, each (B, 3, H, W) in [0, 1])."""
        if not self.samples.wants(self, split):
            return
        rows = [[column[index] for column in columns] for index in range(columns[0].shape[0])]
        draws = [lambda row=row: image_grid(row, captions) for row in rows]
        self.samples.add_while_wanted(self, split, draws)

    def flush_samples(self, split: str) -> None:
        """Log the queued grid rows (rank 0 collected them); the evaluation epoch's end calls it."""
        self.samples.flush(self, split)

    def predict_step(self, batch: ImageBatch, batch_idx: int) -> dict[str, Any]:
        return {"names": list(batch["names"]), "images": self.translate(batch).clamp(0, 1).cpu()}

    def prediction_writer(self, run_dir: Path) -> ImageFolderWriter:
        return ImageFolderWriter(run_dir / "predictions")


def _batch_size(batch: ImageBatch) -> int:
    for key in ("a", "b"):
        if key in batch:
            return int(batch[key].shape[0])
    raise KeyError("an ImageBatch has `a` or `b`")


def to_signed(images: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1], the range of tanh generators (pix2pix/CycleGAN's Normalize(0.5, 0.5))."""
    return images * 2 - 1


def to_unit(images: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1]."""
    return (images + 1) / 2
