"""A class-conditional GAN, P(x | y): Mirza & Osindero, "Conditional Generative Adversarial Nets" (2014),
Sec. 3.2 -- generator and discriminator both receive the label y -- built from DCGAN's convolutional layers
(Radford, Metz, Chintala, ICLR 2016, Sec. 3: strided convolutions, BatchNorm, ReLU / LeakyReLU(0.2), tanh
output; Sec. 4: weights N(0, 0.02)) and conditioned as follows:

- generator: the label's learnt embedding is concatenated with z (Mirza & Osindero feed y beside z; an
  embedding replaces their one-hot input);
- discriminator: a projection discriminator (Miyato & Koyama, "cGANs with Projection Discriminator",
  ICLR 2018, Sec. 3): logit = psi(phi(x)) + <V y, phi(x)>, phi(x) the flattened last 4x4 features, psi
  DCGAN's last (4x4 convolution) layer written as a linear map.

Labels follow the project's convention, 1..C (``num_classes`` = C, no background): label l uses embedding
row l - 1. Images are in [-1, 1]. At the defaults with 10 classes (32x32 RGB, z of 100, embedding of 50,
64 base maps) the generator has 1,274,228 parameters and the discriminator 704,257.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.gan_init import init_gan_weights


def _check_image_size(image_size: int, what: str) -> int:
    """The number of x2 steps between 4x4 and ``image_size`` (a power of two >= 16)."""
    if image_size < 16 or image_size & (image_size - 1):
        raise ValueError(f"{what} image_size must be a power of two >= 16, got {image_size}")
    return int(math.log2(image_size)) - 2


def _embedding_rows(labels: Tensor, num_classes: int, batch_size: int) -> Tensor:
    """Labels 1..C as embedding rows 0..C-1, after checking their shape, dtype and range."""
    if labels.shape != (batch_size,) or labels.is_floating_point() or labels.is_complex():
        got = f"{labels.dtype} {tuple(labels.shape)}"
        raise ValueError(f"labels must be an integer tensor of shape ({batch_size},), got {got}")
    outside = labels[(labels < 1) | (labels > num_classes)]
    if outside.numel():
        raise ValueError(f"labels must be in 1..{num_classes} (num_classes), got {outside.unique().tolist()}")
    return labels.long() - 1


def sample_latents(
    batch_size: int,
    latent_dim: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """z ~ N(0, I), (batch_size, latent_dim), on ``generator``'s device unless ``device`` is given."""
    if device is None and generator is not None:
        device = generator.device
    return torch.randn(batch_size, latent_dim, generator=generator, device=device)


class ConditionalGenerator(nn.Module):
    """G(z, y) (Mirza & Osindero 2014, Sec. 3.2) with the DCGAN generator (Radford et al. 2016, Sec. 3,
    Fig. 1): [z, embed(y)] -> 4x4 transposed convolution to ``base_channels`` * 2^(n-1) maps at 4x4, then
    n - 1 stride-2 transposed convolutions halving the maps (each + BN + ReLU), a last one to
    ``out_channels`` and tanh; n = log2(image_size) - 2.

    (z (B, latent_dim), labels (B,) in 1..num_classes) -> (B, out_channels, image_size, image_size) in
    [-1, 1]. Weights N(0, 0.02) (``init_gan_weights``, Radford et al. Sec. 4) except the label embedding,
    N(0, 1) like z so that the label is as loud as the noise at the start.
    """

    def __init__(
        self,
        num_classes: int,
        latent_dim: int = 100,
        embedding_dim: int = 50,
        image_size: int = 32,
        base_channels: int = 64,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        steps = _check_image_size(image_size, "ConditionalGenerator")
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.label_embedding = nn.Embedding(num_classes, embedding_dim)
        channels = base_channels * 2 ** (steps - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim + embedding_dim, channels, 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        ]
        for _ in range(steps - 1):
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(channels // 2),
                nn.ReLU(inplace=True),
            ]
            channels //= 2
        layers += [nn.ConvTranspose2d(channels, out_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_gan_weights(self.net)

    def forward(self, latents: Tensor, labels: Tensor) -> Tensor:
        if latents.dim() != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"latents must be (B, {self.latent_dim}), got {tuple(latents.shape)}")
        rows = _embedding_rows(labels, self.num_classes, latents.shape[0])
        inputs = torch.cat([latents, self.label_embedding(rows)], dim=1)
        return self.net(inputs[:, :, None, None])


class ConditionalDiscriminator(nn.Module):
    """D(x, y): the DCGAN discriminator (Radford et al. 2016, Sec. 3: 4x4 stride-2 convolutions doubling
    the maps from ``base_channels``, LeakyReLU(0.2), BatchNorm except on the first) down to 4x4, and a
    projection output (Miyato & Koyama 2018, Sec. 3): logit = psi(phi) + <V[y], phi>, phi the flattened 4x4
    features, psi a linear layer, V a label embedding of phi's size.

    (images (B, in_channels, image_size, image_size) in [-1, 1], labels (B,) in 1..num_classes) -> (B, 1)
    logits, as ``SRGANDiscriminator`` (the sigmoid belongs to the BCE-with-logits loss). Weights, V included,
    N(0, 0.02) (``init_gan_weights``, Radford et al. Sec. 4).
    """

    def __init__(
        self, num_classes: int, image_size: int = 32, base_channels: int = 64, in_channels: int = 3
    ) -> None:
        super().__init__()
        steps = _check_image_size(image_size, "ConditionalDiscriminator")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = base_channels
        for _ in range(steps - 1):
            layers += [
                nn.Conv2d(channels, channels * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(channels * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels *= 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        feature_dim = channels * 4 * 4
        self.unconditional = nn.Linear(feature_dim, 1)
        self.label_projection = nn.Embedding(num_classes, feature_dim)
        init_gan_weights(self)
        nn.init.normal_(self.label_projection.weight, 0.0, 0.02)

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        expected = (self.in_channels, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must be (B, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
            )
        rows = _embedding_rows(labels, self.num_classes, images.shape[0])
        features = self.features(images)
        projection = (self.label_projection(rows) * features).sum(dim=1, keepdim=True)
        return self.unconditional(features) + projection
