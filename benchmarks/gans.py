"""Pix2Pix's G+D training step through Lightning (``lightning_modules.pix2pix.Pix2Pix`` under a
``Trainer``: manual optimization, the discriminator's update through the strategy, the generator's
counted) against the same networks stepped by a plain PyTorch loop that does what
``Pix2Pix.training_step`` does, as the official pix2pix code writes it (one forward of G; D on real and
detached fake pairs, its loss halved; G on the adversarial loss + 100 * L1 with D frozen; Adam 2e-4,
betas (0.5, 0.999)). One process, the same initial weights and the same pre-made in-memory batches on
both sides (no data loading cost). Prints seconds per step of each (medians of repeats that alternate
which side goes first) and the ratio Lightning / plain (goal: <= 1.05x).

Before timing, both sides take one step from the same weights on the same batch (the dropout masks
seeded alike) and the generator's and discriminator's weights and BatchNorm statistics are compared: they
agree to floating-point noise when the benchmark compares the same computation (exit status 1 if not).

Default: a CPU-feasible pix2pix at half width (U-Net num_downs 7, base 32; PatchGAN base 32; 128x128
images, batch 4). ``--full-size``: the paper's (``unet_256``, 70x70 PatchGAN, 256x256, batch 1), for a GPU.
On a CPU that other jobs share, pass ``--threads`` no larger than the idle cores: oversubscribed OpenMP
threads make steps erratic (several times slower, in bursts) on both sides alike, which swamps a 5% goal.

    python benchmarks/gans.py [--full-size] [--device cpu|cuda] [--precision 32|bf16] [--steps 20]
        [--warmup 5] [--repeats 3] [--batch-size N] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import time
import warnings
from dataclasses import dataclass

import torch
from lightning import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader

from datamodules.batch import ImageBatch
from datamodules.metadata import DatasetMetadata
from lightning_modules.generative import to_signed
from lightning_modules.pix2pix import Pix2Pix
from models.gan_losses import adversarial_loss, discriminator_loss
from models.patch_gan import PatchGANDiscriminator
from models.unet_generator import UNetGenerator

LR, BETAS, L1_WEIGHT, GAN_MODE = 2e-4, (0.5, 0.999), 100.0, "vanilla"
CHECK_SEED = 1234


@dataclass(frozen=True)
class Size:
    num_downs: int
    base_channels: int
    image_size: int
    batch_size: int

    def generator(self) -> nn.Module:
        return UNetGenerator(num_downs=self.num_downs, base_channels=self.base_channels)

    def discriminator(self) -> nn.Module:
        return PatchGANDiscriminator(in_channels=6, base_channels=self.base_channels)


SMALL = Size(num_downs=7, base_channels=32, image_size=128, batch_size=4)
FULL = Size(num_downs=8, base_channels=64, image_size=256, batch_size=1)  # unet_256 + 70x70 PatchGAN


def adam(parameters) -> torch.optim.Optimizer:
    return torch.optim.Adam(parameters, lr=LR, betas=BETAS)


def make_batches(count: int, size: Size, device: torch.device) -> list[ImageBatch]:
    """``count`` batches of random pairs in [0, 1], already on ``device``."""
    generator = torch.Generator().manual_seed(0)
    shape = (size.batch_size, 3, size.image_size, size.image_size)
    return [
        {
            "a": torch.rand(shape, generator=generator).to(device),
            "b": torch.rand(shape, generator=generator).to(device),
            "names": [f"{index:04d}_{item}" for item in range(size.batch_size)],
        }
        for index in range(count)
    ]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """What Lightning's ``bf16-mixed`` wraps the training step in (``MixedPrecision.forward_context``)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


# --- the plain PyTorch loop ----------------------------------------------------------------------------


class PlainPix2Pix:
    """Pix2Pix's training step written as a plain loop (the official ``Pix2PixModel.optimize_parameters``)."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, device: torch.device, precision: str):
        self.generator, self.discriminator = generator.to(device).train(), discriminator.to(device).train()
        self.generator_optimizer = adam(self.generator.parameters())
        self.discriminator_optimizer = adam(self.discriminator.parameters())
        self.device, self.precision = device, precision

    def step(self, batch: ImageBatch) -> None:
        with autocast(self.device, self.precision):
            a, b = to_signed(batch["a"]), to_signed(batch["b"])
            fake_b = self.generator(a)
            # D: real pairs as real, detached fake pairs as fake
            self.discriminator.requires_grad_(True)
            real = self.discriminator(torch.cat([a, b], 1))
            fake = self.discriminator(torch.cat([a, fake_b.detach()], 1))
            discriminator_loss(real, fake, GAN_MODE).backward()
            self.discriminator_optimizer.step()
            self.discriminator_optimizer.zero_grad(set_to_none=True)
            # G: fool the (updated, frozen) D and match b
            self.discriminator.requires_grad_(False)
            adversarial = adversarial_loss(self.discriminator(torch.cat([a, fake_b], 1)), True, GAN_MODE)
            (adversarial + L1_WEIGHT * (fake_b - b).abs().mean()).backward()
            self.generator_optimizer.step()
            self.generator_optimizer.zero_grad(set_to_none=True)
        self.discriminator.requires_grad_(True)


def time_plain(networks: tuple[nn.Module, nn.Module], batches: list[ImageBatch], warmup: int, args) -> float:
    """Seconds per step over ``batches[warmup:]`` after ``batches[:warmup]``."""
    loop = PlainPix2Pix(*networks, args.device, args.precision)
    for batch in batches[:warmup]:
        loop.step(batch)
    synchronize(args.device)
    started = time.perf_counter()
    for batch in batches[warmup:]:
        loop.step(batch)
    synchronize(args.device)
    return (time.perf_counter() - started) / (len(batches) - warmup)


# --- Lightning -----------------------------------------------------------------------------------------


class StepTimer(Callback):
    """The time of the steps after ``warmup``: from the end of the last warm-up batch (or the start of the
    first batch without warm-up) to the end of the last batch, so each measured step includes the loop's
    work between batches (fetching, hooks, logging) once."""

    def __init__(self, warmup: int, last: int, device: torch.device) -> None:
        self.warmup, self.last, self.device = warmup, last, device
        self.started: float | None = None
        self.ended: float | None = None

    def _now(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def on_train_batch_start(self, trainer: Trainer, module: LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == 0 and self.warmup == 0:
            self.started = self._now()

    def on_train_batch_end(
        self, trainer: Trainer, module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        if batch_idx == self.warmup - 1:
            self.started = self._now()
        if batch_idx == self.last:
            self.ended = self._now()


class Reseed(Callback):
    """Seeds torch right before each training step (the same-step check's dropout masks)."""

    def on_train_batch_start(self, trainer: Trainer, module: LightningModule, batch, batch_idx: int) -> None:
        torch.manual_seed(CHECK_SEED)


def as_is(item: ImageBatch) -> ImageBatch:
    return item


def train_lightning(
    networks: tuple[nn.Module, nn.Module], batches: list[ImageBatch], args, callbacks: list[Callback]
) -> Pix2Pix:
    """Pix2Pix trained by a bare Trainer for one generator step per batch of ``batches``."""
    generator, discriminator = networks
    module = Pix2Pix(
        generator=generator,
        discriminator=discriminator,
        metadata=DatasetMetadata.without_classes(),
        optimizer=adam,
        l1_weight=L1_WEIGHT,
        gan_mode=GAN_MODE,
    )
    trainer = Trainer(
        max_steps=len(batches),
        accelerator=args.device.type,
        devices=1,
        precision="bf16-mixed" if args.precision == "bf16" else "32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, collate_fn=as_is))
    if trainer.global_step != len(batches):  # a step is a generator step: D's updates are not counted
        raise RuntimeError(f"{len(batches)} batches made {trainer.global_step} steps, not one each")
    return module


def time_lightning(
    networks: tuple[nn.Module, nn.Module], batches: list[ImageBatch], warmup: int, args
) -> float:
    timer = StepTimer(warmup, len(batches) - 1, args.device)
    train_lightning(networks, batches, args, [timer])
    if timer.started is None or timer.ended is None:
        raise RuntimeError("the Lightning run did not reach its measured steps")
    return (timer.ended - timer.started) / (len(batches) - warmup)


# --- both ----------------------------------------------------------------------------------------------


def copy_networks(template: tuple[nn.Module, nn.Module], size: Size) -> tuple[nn.Module, nn.Module]:
    """Fresh networks with the template's weights and BatchNorm statistics."""
    generator, discriminator = size.generator(), size.discriminator()
    generator.load_state_dict(template[0].state_dict())
    discriminator.load_state_dict(template[1].state_dict())
    return generator, discriminator


def largest_difference(first: nn.Module, second: nn.Module, buffers: bool = True) -> float:
    """The largest absolute difference of two networks' floating-point parameters (and buffers: the
    BatchNorm statistics)."""
    state = first.state_dict() if buffers else dict(first.named_parameters())
    second_state = second.state_dict()
    return max(
        (value.detach().float() - second_state[name].float()).abs().max().item()
        for name, value in state.items()
        if value.is_floating_point()
    )


def check_same_step(template: tuple[nn.Module, nn.Module], batch: ImageBatch, size: Size, args) -> bool:
    """One step of each side from the template's weights on ``batch``, dropout seeded alike (deterministic
    cuDNN on a GPU); prints how far their weights are apart and returns whether that is below a hundredth
    of the learning rate (Adam moves every weight by about the learning rate in its first step, so any
    difference in the computation shows up at that scale)."""
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        module = train_lightning(copy_networks(template, size), [batch], args, [Reseed()])
        plain = PlainPix2Pix(*copy_networks(template, size), args.device, args.precision)
        torch.manual_seed(CHECK_SEED)
        plain.step(batch)
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    tolerance = LR / 100
    moved = largest_difference(module.generator.cpu(), template[0], buffers=False)
    differences = {
        "generator": largest_difference(module.generator.cpu(), plain.generator.cpu()),
        "discriminator": largest_difference(module.discriminator.cpu(), plain.discriminator.cpu()),
    }
    agree = max(differences.values()) <= tolerance
    print(
        "same step from the same weights: max |Lightning - plain| "
        + ", ".join(f"{name} {value:.1e}" for name, value in differences.items())
        + f" (one step moves the generator by up to {moved:.1e}; tolerance {tolerance:.0e}): "
        + ("agree" if agree else "DISAGREE -- the two sides do not compute the same step")
    )
    return agree


def parameters(network: nn.Module) -> str:
    return f"{sum(parameter.numel() for parameter in network.parameters()):,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--full-size", action="store_true", help="unet_256 + 70x70 PatchGAN, 256x256, batch 1"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("32", "bf16"), default="32", help="bf16: bf16-mixed autocast")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per run (default 20 CPU, 200 GPU)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them, per run")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each side, alternating which is first"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default 4, 1 with --full-size")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.device = torch.device(args.device)
    size = FULL if args.full_size else SMALL
    if args.batch_size is not None:
        size = Size(size.num_downs, size.base_channels, size.image_size, args.batch_size)
    steps = args.steps if args.steps is not None else (200 if args.device.type == "cuda" else 20)
    if steps < 1 or args.warmup < 0 or args.repeats < 1:
        parser.error("--steps and --repeats must be positive, --warmup not negative")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # "GPU available: ..." and the like
    warnings.filterwarnings("ignore", ".*does not have many workers.*")  # in-memory batches, on purpose
    warnings.filterwarnings("ignore", ".*no `val_dataloader`.*")  # training steps only
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")  # Lightning's, not ours

    torch.manual_seed(0)
    template = (size.generator(), size.discriminator())
    batches = make_batches(args.warmup + steps, size, args.device)
    print(
        f"pix2pix {'full size' if args.full_size else 'half width'}: U-Net num_downs={size.num_downs} "
        f"base={size.base_channels} ({parameters(template[0])} parameters), "
        f"PatchGAN base={size.base_channels} ({parameters(template[1])}), "
        f"{size.image_size}x{size.image_size}, batch {size.batch_size}; "
        f"device={args.device} precision={args.precision} threads={torch.get_num_threads()} "
        f"steps={steps} warmup={args.warmup} repeats={args.repeats}"
    )
    agree = check_same_step(template, batches[0], size, args)

    sides = {"plain": time_plain, "Lightning": time_lightning}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(args.repeats):
        for name in list(sides)[:: 1 if repeat % 2 == 0 else -1]:
            times[name].append(sides[name](copy_networks(template, size), batches, args.warmup, args))
        print(f"repeat {repeat + 1}: " + "  ".join(f"{n} {times[n][-1]:.4f} s/step" for n in sides))
    plain, ours = statistics.median(times["plain"]), statistics.median(times["Lightning"])
    print(f"plain PyTorch loop: {plain:.4f} s/step (median of {args.repeats})")
    print(f"Lightning Pix2Pix:  {ours:.4f} s/step (median of {args.repeats})")
    print(f"ratio (Lightning / plain) = {ours / plain:.3f}x (goal <= 1.05x)")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
