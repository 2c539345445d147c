"""A class-conditional GAN (Mirza & Osindero, "Conditional Generative Adversarial Nets", 2014): the
minimal demonstration of P(x | condition), here conditioned on the dataset's classes."""

from __future__ import annotations

import zlib

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from datamodules.batch import ImageBatch
from datamodules.metadata import DatasetMetadata
from lightning_modules.generative import GenerativeModule, to_signed, to_unit
from metrics.colour_statistics import ColourStatisticsDistance
from metrics.generative_features import frechet_inception_distance
from models.conditional_gan import sample_latents
from models.gan_losses import adversarial_loss, discriminator_loss

EVALUATION_SEED = 1234  # the latents of evaluation samples: the same at every evaluation


class ConditionalGAN(GenerativeModule):
    """G(z, y) and D(x, y) play the two-player game of Eq. 2 with the class label y given to both (Sec. 3.2);
    G is trained on the non-saturating ``-log D(G(z, y), y)`` (Goodfellow et al. 2014, Sec. 3), D on the
    cross-entropy of real and generated images (halved), z ~ N(0, I). DCGAN's settings (Radford et al.
    2016, Sec. 4): Adam lr 2e-4, beta1 0.5, batch 128, weights N(0, 0.02).

    Evaluation generates one image per real validation image, with its label and fixed latents, and
    measures ``class_colour_distance`` (per class, the distance of generated to real colour statistics,
    ``metrics.colour_statistics``; the main metric, needing no pretrained network), given a ``classifier``
    trained on the real data ``condition_accuracy`` (how often it classifies a sample as the class it
    was conditioned on), and given ``fid_features`` (e.g. ``metrics.generative_features.FIDInceptionV3``) FID
    against the real images.

    Args:
        generator: e.g. ``models.conditional_gan.ConditionalGenerator`` (``latent_dim`` attribute).
        discriminator: e.g. ``models.conditional_gan.ConditionalDiscriminator``.
        classifier: images in [0, 1] -> (B, C) logits over the dataset's classes; frozen; None: no accuracy.
        fid_features: the FID feature extractor (images in [0, 1]); None: no FID.
        others: see ``GenerativeModule``.
    """

    main_metric = "val/class_colour_distance"
    main_metric_mode = "min"
    loss_networks = ("classifier",)

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        metadata: DatasetMetadata | None,
        classifier: nn.Module | None = None,
        fid_features: nn.Module | None = None,
        **kwargs,
    ) -> None:
        super().__init__(metadata, **kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.classifier = classifier.requires_grad_(False).eval() if classifier is not None else None
        num_classes = self.metadata.num_classes

        def metrics() -> dict[str, Metric]:
            chosen: dict[str, Metric] = {"class_colour_distance": ColourStatisticsDistance(num_classes)}
            if classifier is not None:
                chosen["condition_accuracy"] = MulticlassAccuracy(num_classes, average="micro")
            if fid_features is not None:
                chosen["FID"] = frechet_inception_distance(fid_features)
            return chosen

        self.set_evaluation_metrics(metrics)

    def sample(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Images (B, 3, S, S) in [-1, 1] of the given labels (1..C)."""
        latents = sample_latents(
            len(labels), self.generator.latent_dim, generator=generator, device=labels.device
        )
        return self.generator(latents, labels)

    def generate(self, batch: ImageBatch) -> dict[str, Tensor]:
        return {"fake": self.sample(batch["labels"])}

    def discriminator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        labels = batch["labels"]
        real = self.discriminator(to_signed(batch["b"]), labels)
        fake = self.discriminator(generated["fake"].detach(), labels)
        return {"loss": discriminator_loss(real, fake, "vanilla")}

    def generator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.discriminator(generated["fake"], batch["labels"])
        adversarial = adversarial_loss(logits, True, "vanilla")
        return {"loss": adversarial, "adversarial": adversarial}

    def translate(self, batch: ImageBatch) -> Tensor:
        """Samples of the batch's labels, their latents seeded by the batch's first item name (the same
        samples at every evaluation, different ones per batch)."""
        seed = EVALUATION_SEED + zlib.crc32(str(batch["names"][0]).encode())
        generator = torch.Generator(device=batch["labels"].device).manual_seed(seed)
        return to_unit(self.sample(batch["labels"], generator)).clamp(0, 1)

    def evaluation_step(self, batch: ImageBatch, split: str) -> None:
        samples, real, labels = self.translate(batch), batch["b"], batch["labels"]
        metrics = self.evaluation_metrics[split]
        metrics["class_colour_distance"].update(samples, real, labels, labels)
        if "condition_accuracy" in metrics:
            metrics["condition_accuracy"].update(self.classifier(samples), labels - 1)
        if "FID" in metrics:
            metrics["FID"].update(real, real=True)
            metrics["FID"].update(samples, real=False)
        names = self.metadata.label_names
        for image, sample, label in zip(real, samples, labels.tolist(), strict=True):
            self.add_samples(split, [sample[None], image[None]], [f"G(z, {names[label]})", "a real one"])
