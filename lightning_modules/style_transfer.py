"""Fast style transfer with perceptual losses (Johnson et al., "Perceptual Losses for Real-Time Style
Transfer and Super-Resolution", ECCV 2016), as pytorch/examples' ``fast_neural_style`` trains it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from datamodules.batch import ImageBatch
from datamodules.metadata import DatasetMetadata
from datamodules.style_transfer import read_style_image
from lightning_modules.generative import GenerativeModule
from models.vgg_features import VGGFeatures, gram_matrix, total_variation, vgg_content_loss

PIXEL_SCALE = 255.0  # TransformerNet works on 0..255 images (pytorch/examples)


class StyleTransfer(GenerativeModule):
    """An image transform net f_W trained for one style image y_s against a frozen VGG16 loss network
    (Sec. 3, Fig. 2): ``content_weight * l_feat^{relu2_2}(y, y_c) + style_weight * sum_j l_style^j(y, y_s)
    + tv_weight * l_TV(y)`` with ``y = f_W(x)`` and ``y_c = x`` (Sec. 3.3-3.4, Eq. 2 and 3: the MSE of
    feature maps; the squared Frobenius distance of Gram matrices normalised by C H W at relu1_2,
    relu2_2, relu3_3, relu4_3). pytorch/examples' settings: content weight 1e5, style weight 1e10, Adam lr
    1e-3, batch 4 of 256 x 256 COCO 2014 images, 2 epochs (about 40k iterations, Sec. 4.1); Johnson et al.
    add total-variation regularisation (Sec. 3.4), which pytorch/examples leaves out (``tv_weight`` 0).

    The style image comes from the data (``metadata.style_image``); its Gram matrices are computed once at
    set-up. Metrics per split on the validation content images: ``style_loss`` (the main metric) and
    ``content_loss``, weighted as in training.

    Args:
        generator: ``models.transformer_net.TransformerNet`` (0..255 in and out).
        vgg: frozen VGG16 features with the content and style layers, e.g. ``VGGFeatures(arch="vgg16",
            layers=[relu1_2, relu2_2, relu3_3, relu4_3], weights_path=...)``.
        content_layer, style_layers: which of ``vgg.layers`` give each loss.
        content_weight, style_weight, tv_weight: the loss weights.
        style_size: resize the style image so its longer side is this many pixels; None: as it is.
        others: see ``GenerativeModule``.
    """

    main_metric = "val/style_loss"
    main_metric_mode = "min"
    loss_networks = ("vgg",)

    def __init__(
        self,
        generator: nn.Module,
        vgg: VGGFeatures,
        metadata: DatasetMetadata | None,
        content_layer: str = "relu2_2",
        style_layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        content_weight: float = 1e5,
        style_weight: float = 1e10,
        tv_weight: float = 0.0,
        style_size: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(metadata, **kwargs)
        missing = sorted({content_layer, *style_layers} - set(vgg.layers))
        if missing:
            raise ValueError(f"vgg computes {list(vgg.layers)}, not the loss layers {missing}")
        if self.metadata.style_image is None:
            raise ValueError("StyleTransfer needs the data's style image (metadata.style_image)")
        self.generator = generator
        self.vgg = vgg
        self.content_layer = content_layer
        self.style_layers = tuple(style_layers)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        style = read_style_image(self.metadata.style_image, style_size)[None]
        with torch.no_grad():
            features = vgg(style)
        for index, layer in enumerate(self.style_layers):  # not saved: the style image is the data's
            self.register_buffer(f"style_gram_{index}", gram_matrix(features[layer]), persistent=False)
        self.set_evaluation_metrics(lambda: {"style_loss": MeanMetric(), "content_loss": MeanMetric()})

    def stylise(self, images: Tensor) -> Tensor:
        """[0, 1] content images -> the styled images in [0, 1] (unclamped while training)."""
        return self.generator(images * PIXEL_SCALE) / PIXEL_SCALE

    def generate(self, batch: ImageBatch) -> dict[str, Tensor]:
        return {"styled": self.stylise(batch["a"])}

    def perceptual_losses(self, content: Tensor, styled: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            content_target = self.vgg(content)[self.content_layer]
        features = self.vgg(styled)
        content_loss = self.content_weight * vgg_content_loss(
            {"content": features[self.content_layer]}, {"content": content_target}
        )
        style_loss = self.style_weight * sum(
            F.mse_loss(gram_matrix(features[layer]), self._style_gram(index).expand(len(styled), -1, -1))
            for index, layer in enumerate(self.style_layers)
        )
        losses = {"content": content_loss, "style": style_loss}
        if self.tv_weight > 0:
            losses["total_variation"] = self.tv_weight * total_variation(styled * PIXEL_SCALE, "mean")
        return {"loss": sum(losses.values()), **losses}

    def _style_gram(self, index: int) -> Tensor:
        return getattr(self, f"style_gram_{index}")

    def generator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.perceptual_losses(batch["a"], generated["styled"])

    def translate(self, batch: ImageBatch) -> Tensor:
        return self.stylise(batch["a"]).clamp(0, 1)

    def evaluation_step(self, batch: ImageBatch, split: str) -> None:
        styled = self.stylise(batch["a"])
        losses = self.perceptual_losses(batch["a"], styled)
        metrics = self.evaluation_metrics[split]
        metrics["style_loss"].update(losses["style"], weight=len(styled))
        metrics["content_loss"].update(losses["content"], weight=len(styled))
        self.add_samples(split, [batch["a"], styled.clamp(0, 1)], ["content", "styled"])
