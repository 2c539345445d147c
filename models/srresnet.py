"""SRResNet and the SRGAN discriminator (Ledig et al., "Photo-Realistic Single Image Super-Resolution Using
a Generative Adversarial Network", CVPR 2017), Sec. 2.1 and Fig. 4.

No official code was released; the layers are read off Fig. 4 and Sec. 2.1, the value ranges off Sec. 3.2
("We scaled the range of the LR input images to [0, 1] and for the HR images to [-1, 1]"). Choices the
paper leaves open, made here:

- PReLU (He et al. 2015) is channel-wise, that paper's main form (one slope per feature map);
- a convolution followed by BatchNorm has no bias (BN's shift makes it redundant); the others have one;
- the generator ends with the 9x9 convolution and no activation, as Fig. 4 draws it (no tanh): it
  regresses HR values in [-1, 1] and callers clamp to [-1, 1] for display and metrics;
- initialisation is PyTorch's default (the paper states none).

Defaults are the paper's x4 model: 1,548,547 parameters for ``SRResNet()`` and 23,563,649 for
``SRGANDiscriminator()`` on 96x96 HR crops (``tests/test_srresnet.py`` derives both layer by layer).
"""

from __future__ import annotations

import math

from torch import Tensor, nn


def _check_images(images: Tensor, channels: int, what: str) -> None:
    if images.dim() != 4 or images.shape[1] != channels:
        raise ValueError(f"{what} expects (B, {channels}, H, W) images, got shape {tuple(images.shape)}")


class SRResidualBlock(nn.Module):
    """Fig. 4 top, one of the B residual blocks: conv3x3-BN-PReLU-conv3x3-BN, then the elementwise sum with
    the input (Sec. 2.1: "two convolutional layers with small 3x3 kernels and 64 feature maps followed by
    batch-normalization layers and ParametricReLU")."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, features: Tensor) -> Tensor:
        return features + self.body(features)


class SRResNet(nn.Module):
    """The SRGAN generator G (Ledig et al. 2017, Sec. 2.1, Fig. 4 top), also the MSE-trained SRResNet.

    conv9x9-``channels`` + PReLU; ``num_blocks`` ``SRResidualBlock``s; conv3x3-BN added to the output of the
    first convolution (the long skip); log2(``scale``) sub-pixel stages (Shi et al. 2016: conv3x3 to
    4 x ``channels``, PixelShuffle x2, PReLU); conv9x9 to ``in_channels``.

    (B, ``in_channels``, h, w) LR in [0, 1] -> (B, ``in_channels``, ``scale`` h, ``scale`` w), an estimate of
    the HR image in [-1, 1] (Sec. 3.2), not bounded by an activation (see the module docstring).
    """

    def __init__(
        self, scale: int = 4, num_blocks: int = 16, channels: int = 64, in_channels: int = 3
    ) -> None:
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"SRResNet scale must be a power of 2 (2, 4, 8, ...), got {scale}")
        self.scale = scale
        self.in_channels = in_channels
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 9, padding=4), nn.PReLU(channels))
        self.blocks = nn.Sequential(*(SRResidualBlock(channels) for _ in range(num_blocks)))
        self.trunk_end = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        upsampling: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            upsampling += [
                nn.Conv2d(channels, 4 * channels, 3, padding=1),
                nn.PixelShuffle(2),
                nn.PReLU(channels),
            ]
        self.upsample = nn.Sequential(*upsampling)
        self.tail = nn.Conv2d(channels, in_channels, 9, padding=4)

    def forward(self, low_resolution: Tensor) -> Tensor:
        _check_images(low_resolution, self.in_channels, "SRResNet")
        shallow = self.head(low_resolution)
        features = shallow + self.trunk_end(self.blocks(shallow))
        return self.tail(self.upsample(features))


class SRGANDiscriminator(nn.Module):
    """The SRGAN discriminator D (Ledig et al. 2017, Sec. 2.1, Fig. 4 bottom).

    conv3x3-``base_channels`` + LeakyReLU(0.2); seven conv3x3-BN-LeakyReLU blocks (64 s2, 128, 128 s2, 256,
    256 s2, 512, 512 s2 at ``base_channels`` = 64: "Strided convolutions are used to reduce the image
    resolution each time the number of features is doubled"); Dense 1024, LeakyReLU(0.2), Dense 1.

    (B, ``in_channels``, ``input_size``, ``input_size``) HR image in [-1, 1] (real or ``SRResNet``'s output)
    -> (B, 1) logits: the paper's final sigmoid belongs to the loss (BCE with logits). ``input_size`` fixes
    the first dense layer (96x96 HR crops in the paper, Sec. 3.2) and must be divisible by 16.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, input_size: int = 96) -> None:
        super().__init__()
        if input_size < 16 or input_size % 16:
            raise ValueError(
                f"SRGANDiscriminator input_size must be a multiple of 16 (four stride-2 convolutions), "
                f"got {input_size}"
            )
        self.in_channels = in_channels
        self.input_size = input_size
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = base_channels
        for multiplier, stride in ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2)):
            out_channels = base_channels * multiplier
            layers += [
                nn.Conv2d(channels, out_channels, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * (input_size // 16) ** 2, 1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(1024, 1),
        )

    def forward(self, images: Tensor) -> Tensor:
        _check_images(images, self.in_channels, "SRGANDiscriminator")
        if images.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"SRGANDiscriminator was built for {self.input_size}x{self.input_size} inputs (its dense "
                f"layer's size), got {images.shape[-2]}x{images.shape[-1]}"
            )
        return self.classifier(self.features(images))
