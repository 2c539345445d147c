"""SRResNet and SRGAN: single-image super-resolution (Ledig et al., "Photo-Realistic Single Image
Super-Resolution Using a Generative Adversarial Network", CVPR 2017)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.batch import ImageBatch
from datamodules.metadata import DatasetMetadata
from lightning_modules.generative import GenerativeModule, to_signed, to_unit
from metrics.image_quality import PSNR, SSIM
from models.gan_losses import adversarial_loss, discriminator_loss
from models.vgg_features import VGGFeatures, vgg_content_loss

VGG_RESCALE = 1 / 12.75
"""Sec. 3.2: "we rescaled the VGG feature maps by a factor of 1/12.75 to obtain VGG losses of a scale
that is comparable to the MSE loss"."""


class SRResNet(GenerativeModule):
    """The generator alone, trained on the pixel-wise MSE (Sec. 2.2.1, Eq. 4; Sec. 3.2: "SRResNet ...
    trained with MSE"): low-resolution input ``a`` in [0, 1], high-resolution target ``b`` compared in
    [-1, 1] as the paper scales it. Paper settings (the experiments' YAML): 96 x 96 HR crops of ImageNet
    images, batch 16, Adam lr 1e-4, beta1 0.9, 10^6 updates.

    Metrics per split, the SR papers' convention: ``PSNR`` (the main metric) and ``SSIM`` on the Y channel
    with ``scale`` pixels cut from each border, and ``PSNR_bicubic``, bicubic upscaling's PSNR on the
    same images, the baseline to beat.

    Args:
        generator: e.g. ``models.srresnet.SRResNet`` (its ``scale`` must equal the data's).
        scale: the upscaling factor (the border cropped before the metrics).
        others: see ``GenerativeModule``.
    """

    main_metric = "val/PSNR"
    main_metric_mode = "max"

    def __init__(
        self, generator: nn.Module, metadata: DatasetMetadata | None, scale: int = 4, **kwargs
    ) -> None:
        super().__init__(metadata, **kwargs)
        self.generator = generator
        self.scale = scale
        self.set_evaluation_metrics(
            lambda: {
                "PSNR": PSNR(crop_border=scale),
                "SSIM": SSIM(crop_border=scale),
                "PSNR_bicubic": PSNR(crop_border=scale),
            }
        )

    def generate(self, batch: ImageBatch) -> dict[str, Tensor]:
        low, high = batch["a"], batch["b"]
        if high.shape[-1] != low.shape[-1] * self.scale or high.shape[-2] != low.shape[-2] * self.scale:
            raise ValueError(
                f"high-resolution images {tuple(high.shape[-2:])} are not {self.scale} x the low-resolution "
                f"{tuple(low.shape[-2:])}: make model.init_args.scale and data.init_args.scale agree"
            )
        return {"super_resolved": self.generator(low)}

    def generator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        mse = F.mse_loss(generated["super_resolved"], to_signed(batch["b"]))
        return {"loss": mse, "MSE": mse}

    def translate(self, batch: ImageBatch) -> Tensor:
        return to_unit(self.generator(batch["a"])).clamp(0, 1)

    def evaluation_step(self, batch: ImageBatch, split: str) -> None:
        output, target = self.translate(batch), batch["b"]
        bicubic = F.interpolate(batch["a"], size=target.shape[-2:], mode="bicubic", align_corners=False)
        metrics = self.evaluation_metrics[split]
        metrics["PSNR"].update(output, target)
        metrics["SSIM"].update(output, target)
        metrics["PSNR_bicubic"].update(bicubic.clamp(0, 1), target)
        self.add_samples(
            split, [batch["a"], bicubic.clamp(0, 1), output, target], ["LR", "bicubic", "SR", "HR"]
        )


class SRGAN(SRResNet):
    """SRResNet's generator, initialised from a trained SRResNet, against the discriminator of Fig. 4
    (Sec. 2.2): perceptual loss ``l_VGG/5.4 + 1e-3 * l_Gen`` (Eq. 3), the content loss the MSE of VGG19
    relu5_4 feature maps of SR and HR rescaled by 1/12.75 (Eq. 5, Sec. 3.2), ``l_Gen = -log D(G(LR))``
    (Eq. 6); the discriminator on cross-entropy. Paper settings: 10^5 updates at lr 1e-4 then 10^5 at
    1e-5, Adam beta1 0.9, batch 16, one D update per G update.

    Args:
        discriminator: e.g. ``models.srresnet.SRGANDiscriminator`` (input size = the HR crop size).
        vgg: the frozen features, e.g. ``models.vgg_features.VGGFeatures(arch="vgg19",
            layers=["relu5_4"], weights_path=...)``; the content loss uses its deepest layer.
        adversarial_weight: the 10^-3 of Eq. 3.
        generator_checkpoint: a trained SRResNet's Lightning checkpoint whose ``generator.*`` weights
            start the generator (Sec. 3.2: "we employed the trained MSE-based SRResNet network as
            initialization for the generator"); None: start from the generator as given.
        others: see ``SRResNet``.
    """

    loss_networks = ("vgg",)

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        vgg: VGGFeatures,
        metadata: DatasetMetadata | None,
        adversarial_weight: float = 1e-3,
        generator_checkpoint: str | Path | None = None,
        **kwargs,
    ) -> None:
        super().__init__(generator, metadata, **kwargs)
        self.discriminator = discriminator
        self.vgg = vgg
        self.content_layer = max(vgg.layers, key=vgg.layer_indices.__getitem__)
        self.adversarial_weight = adversarial_weight
        if generator_checkpoint is not None:
            self.generator.load_state_dict(generator_weights(generator_checkpoint))

    def discriminator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        real = self.discriminator(to_signed(batch["b"]))
        fake = self.discriminator(generated["super_resolved"].detach())
        # Eq. 2's two cross-entropy terms, halved as the pix2pix/CycleGAN discriminators (scale only)
        return {"loss": discriminator_loss(real, fake, "vanilla")}

    def generator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        super_resolved = generated["super_resolved"]
        layer = self.content_layer
        with torch.no_grad():
            hr_features = {layer: self.vgg(batch["b"])[layer]}
        sr_features = {layer: self.vgg(to_unit(super_resolved))[layer]}
        content = vgg_content_loss(sr_features, hr_features, feature_scale=VGG_RESCALE)
        adversarial = adversarial_loss(self.discriminator(super_resolved), True, "vanilla")
        return {
            "loss": content + self.adversarial_weight * adversarial,
            "content_VGG": content,
            "adversarial": adversarial,
        }


def generator_weights(checkpoint: str | Path) -> dict[str, Tensor]:
    """The ``generator.*`` weights of a Lightning checkpoint, without the prefix."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"generator_checkpoint {path} does not exist (a trained SRResNet's .ckpt)")
    state = torch.load(path, map_location="cpu", weights_only=False).get("state_dict", {})
    weights = {
        name.removeprefix("generator."): value
        for name, value in state.items()
        if name.startswith("generator.")
    }
    if not weights:
        raise ValueError(f"{path} holds no generator.* weights (is it a zoo SRResNet checkpoint?)")
    return weights
