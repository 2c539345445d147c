"""Pix2Pix: image-to-image translation with a conditional GAN (Isola et al., CVPR 2017)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric

from datamodules.batch import ImageBatch
from datamodules.metadata import DatasetMetadata
from lightning_modules.generative import GenerativeModule, to_signed, to_unit
from metrics.fcn_score import FCNScore, cityscapes_colours_to_train_ids
from metrics.image_quality import PSNR
from models.gan_losses import MODES, adversarial_loss, discriminator_loss


class Pix2Pix(GenerativeModule):
    """A generator G(a) and a conditional discriminator D(a, b) on concatenated channels (Sec. 3).

    Training, as the paper's Sec. 3.3 and the official code: one D update on ``0.5 * (GAN(D(a, b), real)
    + GAN(D(a, G(a).detach()), fake))``, then one G update on ``GAN(D(a, G(a)), real) + l1_weight *
    |G(a) - b|_1`` (Eq. 4, lambda = 100; the non-saturating log D form). Images are mapped to [-1, 1] for
    the networks. Paper settings (the experiments' YAML): Adam lr 2e-4, betas (0.5, 0.999), batch size 1,
    U-Net ``unet_256`` generator and 70x70 PatchGAN on 6 channels, both with BatchNorm, init N(0, 0.02),
    lr constant for 100 epochs then linear decay over 100 (``LinearDecayLR`` per epoch).

    Inference (Sec. 3.3, "we apply dropout at test time, and we apply batch normalization using the
    statistics of the test batch"): with ``paper_inference`` the generator translates in training mode,
    its BatchNorm running statistics restored afterwards so evaluation leaves no trace on the weights.

    Metrics per split: ``L1`` (mean absolute error in [0, 1] to the target; the main metric), ``PSNR``;
    given ``fcn_score``, the FCN score of Sec. 4.1 (``metrics.fcn_score.FCNScore``: the generated photos
    segmented by that network against the train ids of the Cityscapes colour label map ``a``, decoded by
    ``cityscapes_colours_to_train_ids``): ``FCN_per_pixel_accuracy``, ``FCN_per_class_accuracy``,
    ``FCN_class_IoU``. The official Cityscapes A|B files hold the photo left and the label map right, so
    labels -> photo is ``direction: BtoA``.

    Args:
        generator: e.g. ``models.unet_generator.UNetGenerator`` (a -> b in [-1, 1]).
        discriminator: e.g. ``models.patch_gan.PatchGANDiscriminator`` with ``in_channels`` = a's + b's.
        l1_weight: lambda of Eq. 4.
        gan_mode: ``vanilla`` (the paper's cross-entropy) or ``lsgan``.
        paper_inference: translate in training mode at evaluation (above); False: ``eval()`` mode.
        fcn_score: the frozen Cityscapes segmentation network of the FCN score (images in [0, 1] -> logits
            over the 19 train ids), e.g. ``metrics.fcn_score.ExportedSegmenter``; None: no FCN score. It
            lives inside the metric (under ``evaluation_metrics``), so checkpoints leave its weights out.
        others: see ``GenerativeModule``.
    """

    main_metric = "val/L1"
    main_metric_mode = "min"

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        metadata: DatasetMetadata | None,
        l1_weight: float = 100.0,
        gan_mode: str = "vanilla",
        paper_inference: bool = True,
        fcn_score: nn.Module | None = None,
        **kwargs,
    ) -> None:
        super().__init__(metadata, **kwargs)
        if gan_mode not in MODES:
            raise ValueError(f"gan_mode must be one of {MODES}, got {gan_mode!r}")
        self.generator = generator
        self.discriminator = discriminator
        self.l1_weight = l1_weight
        self.gan_mode = gan_mode
        self.paper_inference = paper_inference

        def metrics() -> dict[str, Metric]:
            chosen: dict[str, Metric] = {"L1": MeanMetric(), "PSNR": PSNR(y_channel=False, quantize=False)}
            if fcn_score is not None:
                chosen["FCN"] = FCNScore(fcn_score)
            return chosen

        self.set_evaluation_metrics(metrics)

    def generate(self, batch: ImageBatch) -> dict[str, Tensor]:
        return {"fake_b": self.generator(to_signed(batch["a"]))}

    def discriminator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        a = to_signed(batch["a"])
        real = self.discriminator(torch.cat([a, to_signed(batch["b"])], 1))
        fake = self.discriminator(torch.cat([a, generated["fake_b"].detach()], 1))
        return {"loss": discriminator_loss(real, fake, self.gan_mode)}

    def generator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        fake_b = generated["fake_b"]
        adversarial = adversarial_loss(
            self.discriminator(torch.cat([to_signed(batch["a"]), fake_b], 1)), True, self.gan_mode
        )
        l1 = (fake_b - to_signed(batch["b"])).abs().mean()
        return {"loss": adversarial + self.l1_weight * l1, "adversarial": adversarial, "L1": l1}

    def translate(self, batch: ImageBatch) -> Tensor:
        with torch.no_grad(), self._inference_mode():
            return to_unit(self.generator(to_signed(batch["a"]))).clamp(0, 1)

    @contextmanager
    def _inference_mode(self) -> Iterator[None]:
        if not self.paper_inference:
            yield
            return
        saved = {name: buffer.clone() for name, buffer in self.generator.named_buffers()}
        was_training = self.generator.training
        self.generator.train()
        try:
            yield
        finally:
            self.generator.train(was_training)
            for name, buffer in self.generator.named_buffers():
                buffer.copy_(saved[name])

    def evaluation_step(self, batch: ImageBatch, split: str) -> None:
        output = self.translate(batch)
        target = batch["b"]
        metrics = self.evaluation_metrics[split]
        metrics["L1"].update((output - target).abs().mean((1, 2, 3)))
        metrics["PSNR"].update(output, target)
        if "FCN" in metrics:
            metrics["FCN"].update(output, cityscapes_colours_to_train_ids(batch["a"]))
        self.add_samples(split, [batch["a"], output, target], ["input", "output", "target"])
