"""CycleGAN: unpaired image-to-image translation with cycle consistency (Zhu et al., ICCV 2017)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn
from torchmetrics import MeanMetric

from datamodules.batch import ImageBatch
from datamodules.metadata import DatasetMetadata
from lightning_modules.generative import GenerativeModule, to_signed, to_unit
from metrics.colour_statistics import ColourStatisticsDistance
from metrics.generative_features import frechet_inception_distance
from models.gan_losses import MODES, adversarial_loss, discriminator_loss
from models.image_pool import ImagePool


class CycleGAN(GenerativeModule):
    """Two generators G: A -> B and F: B -> A, two discriminators D_A (judges domain A) and D_B (Sec. 3).

    Generator loss (Sec. 3.3, Eq. 3, and the identity loss of Sec. 5.2 / the official code):
    ``LSGAN(D_B(G(a)), real) + LSGAN(D_A(F(b)), real) + cycle_weight * (|F(G(a)) - a|_1 + |G(F(b)) - b|_1)
    + identity_weight * cycle_weight * (|G(b) - b|_1 + |F(a) - a|_1)``, lambda = 10, identity 0.5.
    Discriminator loss: ``0.5 * (LSGAN(D(real), real) + LSGAN(D(fake), fake))`` for each, the fakes drawn
    from a history of 50 generated images per domain (Sec. 4, after Shrivastava et al.). One optimizer for
    both generators, one for both discriminators, Adam lr 2e-4, betas (0.5, 0.999), batch size 1, 100
    epochs constant then 100 of linear decay (Sec. 4; the experiments' YAML). The update order is the
    official code's: the generators first, then the discriminators on the same batch's fakes.

    Metrics per split (A -> B is the direction scored): ``colour_distance`` (distance of G(a)'s RGB mean
    and std to the real B images', ``metrics.colour_statistics``; the main metric, needing no pretrained
    network), ``cycle_L1`` (|F(G(a)) - a| in [0, 1]), and given ``fid_features`` (e.g.
    ``metrics.generative_features.FIDInceptionV3`` with its local weights) FID of G(a) against the real B
    images.

    Args:
        generator_a_to_b, generator_b_to_a: e.g. ``models.resnet_generator.ResNetGenerator`` (9 blocks).
        discriminator_a, discriminator_b: e.g. ``models.patch_gan.PatchGANDiscriminator(norm="instance")``.
        cycle_weight: lambda of Eq. 3 (both directions: the official lambda_A = lambda_B = 10).
        identity_weight: the identity loss as a fraction of ``cycle_weight`` (official ``lambda_identity``).
        pool_size: images kept per domain for the discriminators (0: the newest fakes only).
        gan_mode: ``lsgan`` (the paper's, Sec. 4) or ``vanilla``.
        fid_features: the FID feature extractor (images in [0, 1]); None: no FID.
        others: see ``GenerativeModule``.
    """

    main_metric = "val/colour_distance"
    main_metric_mode = "min"
    discriminator_first: ClassVar[bool] = False

    def __init__(
        self,
        generator_a_to_b: nn.Module,
        generator_b_to_a: nn.Module,
        discriminator_a: nn.Module,
        discriminator_b: nn.Module,
        metadata: DatasetMetadata | None,
        cycle_weight: float = 10.0,
        identity_weight: float = 0.5,
        pool_size: int = 50,
        gan_mode: str = "lsgan",
        fid_features: nn.Module | None = None,
        **kwargs,
    ) -> None:
        super().__init__(metadata, **kwargs)
        if gan_mode not in MODES:
            raise ValueError(f"gan_mode must be one of {MODES}, got {gan_mode!r}")
        self.generator = nn.ModuleDict({"a_to_b": generator_a_to_b, "b_to_a": generator_b_to_a})
        self.discriminator = nn.ModuleDict({"a": discriminator_a, "b": discriminator_b})
        self.cycle_weight = cycle_weight
        self.identity_weight = identity_weight
        self.gan_mode = gan_mode
        self.fake_pools = {"a": ImagePool(pool_size), "b": ImagePool(pool_size)}

        def metrics() -> dict:
            chosen = {"colour_distance": ColourStatisticsDistance(), "cycle_L1": MeanMetric()}
            if fid_features is not None:
                chosen["FID"] = frechet_inception_distance(fid_features)
            return chosen

        self.set_evaluation_metrics(metrics)

    def image_pools(self) -> dict[str, ImagePool]:
        return {f"fake_{domain}": pool for domain, pool in self.fake_pools.items()}

    def generate(self, batch: ImageBatch) -> dict[str, Tensor]:
        real_a, real_b = to_signed(batch["a"]), to_signed(batch["b"])
        g, f = self.generator["a_to_b"], self.generator["b_to_a"]
        fake_b, fake_a = g(real_a), f(real_b)
        return {"real_a": real_a, "real_b": real_b, "fake_a": fake_a, "fake_b": fake_b}

    def generator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        g, f = self.generator["a_to_b"], self.generator["b_to_a"]
        real_a, real_b, fake_a, fake_b = (generated[k] for k in ("real_a", "real_b", "fake_a", "fake_b"))
        gan_b = adversarial_loss(self.discriminator["b"](fake_b), True, self.gan_mode)
        gan_a = adversarial_loss(self.discriminator["a"](fake_a), True, self.gan_mode)
        cycle_a = (f(fake_b) - real_a).abs().mean()
        cycle_b = (g(fake_a) - real_b).abs().mean()
        losses = {"GAN_a_to_b": gan_b, "GAN_b_to_a": gan_a, "cycle_a": cycle_a, "cycle_b": cycle_b}
        total = gan_a + gan_b + self.cycle_weight * (cycle_a + cycle_b)
        if self.identity_weight > 0:
            losses["identity_b"] = (g(real_b) - real_b).abs().mean()
            losses["identity_a"] = (f(real_a) - real_a).abs().mean()
            total = total + self.identity_weight * self.cycle_weight * (
                losses["identity_a"] + losses["identity_b"]
            )
        return {"loss": total, **losses}

    def discriminator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        losses = {}
        for domain in ("a", "b"):
            fake = self.fake_pools[domain].query(generated[f"fake_{domain}"])
            discriminator = self.discriminator[domain]
            losses[f"D_{domain}"] = discriminator_loss(
                discriminator(generated[f"real_{domain}"]), discriminator(fake), self.gan_mode
            )
        return {"loss": losses["D_a"] + losses["D_b"], **losses}

    def translate(self, batch: ImageBatch) -> Tensor:
        return to_unit(self.generator["a_to_b"](to_signed(batch["a"]))).clamp(0, 1)

    def evaluation_step(self, batch: ImageBatch, split: str) -> None:
        real_a = to_signed(batch["a"])
        fake_b = self.generator["a_to_b"](real_a)
        output = to_unit(fake_b).clamp(0, 1)
        reconstructed = to_unit(self.generator["b_to_a"](fake_b)).clamp(0, 1)
        metrics = self.evaluation_metrics[split]
        metrics["colour_distance"].update(output, batch["b"])
        metrics["cycle_L1"].update((reconstructed - batch["a"]).abs().mean((1, 2, 3)))
        if "FID" in metrics:
            metrics["FID"].update(batch["b"], real=True)
            metrics["FID"].update(output, real=False)
        self.add_samples(
            split, [batch["a"], output, reconstructed, batch["b"]], ["A", "G(A)", "F(G(A))", "a real B"]
        )
