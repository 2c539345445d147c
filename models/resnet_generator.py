"""The ResNet generator of CycleGAN (Zhu et al., "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks", ICCV 2017), after Johnson et al.'s style-transfer network.

Sec. 4: "We adopt the architecture for our generative networks from Johnson et al. ... contains three
convolutions, several residual blocks, two fractionally-strided convolutions with stride 1/2, and one
convolution that maps features to RGB ... we use instance normalization". Sec. 7.2: c7s1-64, d128, d256,
nine R256 blocks (for 256 x 256 images), u128, u64, c7s1-3; "Reflection padding was used to reduce
artifacts". Layout as the official ``ResnetGenerator`` (junyanz/pytorch-CycleGAN-and-pix2pix
``resnet_9blocks``): one flat Sequential ``model`` whose indices, and each block's ``conv_block``
indices, are the official state-dict names; convolutions followed by InstanceNorm keep their biases, the
last 7x7 convolution always has one; tanh output.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from models.gan_init import init_gan_weights
from models.gan_norm import conv_bias, norm_layer
from models.image_translation_official_weights import load_official_generator_file

PADDINGS = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d, "zero": None}


def _padded_conv(
    in_channels: int, out_channels: int, kernel: int, padding: str, bias: bool
) -> list[nn.Module]:
    """A stride-1 ``kernel`` x ``kernel`` convolution keeping the size: a padding layer then an unpadded
    convolution, or (``"zero"``) a zero-padded convolution alone."""
    pad = kernel // 2
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {tuple(PADDINGS)}, got {padding!r}")
    if PADDINGS[padding] is None:
        return [nn.Conv2d(in_channels, out_channels, kernel, padding=pad, bias=bias)]
    return [PADDINGS[padding](pad), nn.Conv2d(in_channels, out_channels, kernel, bias=bias)]


class ResNetBlock(nn.Module):
    """x + (pad, conv3x3, norm, ReLU, [dropout 0.5], pad, conv3x3, norm)(x) (CycleGAN Sec. 7.2 "R256":
    "a residual block that contains two 3 x 3 convolutional layers with the same number of filters")."""

    def __init__(
        self, channels: int, norm: str = "instance", padding: str = "reflect", dropout: bool = False
    ):
        super().__init__()
        bias = conv_bias(norm)
        layers = [
            *_padded_conv(channels, channels, 3, padding, bias),
            norm_layer(norm, channels),
            nn.ReLU(inplace=True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [*_padded_conv(channels, channels, 3, padding, bias), norm_layer(norm, channels)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResNetGenerator(nn.Module):
    """CycleGAN's generator (Sec. 4, 7.2): (B, in, H, W) in [-1, 1] -> (B, out, H, W) in [-1, 1] (tanh);
    H and W multiples of 4 (two stride-2 down-samplings, two stride-1/2 up-samplings).

    Defaults = the official ``resnet_9blocks`` with InstanceNorm and no dropout (CycleGAN): 11,378,179
    parameters. ``num_blocks=6`` is the paper's 128 x 128 network. Weights N(0, 0.02), or
    ``official_weights``: a released ``latest_net_G.pth`` (local file)."""

    num_downsamplings = 2

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 64,
        num_blocks: int = 9,
        norm: str = "instance",
        padding: str = "reflect",
        dropout: bool = False,
        official_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers = [
            *_padded_conv(in_channels, base_channels, 7, "reflect", bias),  # c7s1-64: always reflect
            norm_layer(norm, base_channels),
            nn.ReLU(inplace=True),
        ]
        channels = base_channels
        for _ in range(self.num_downsamplings):  # d128, d256
            layers += [
                nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1, bias=bias),
                norm_layer(norm, 2 * channels),
                nn.ReLU(inplace=True),
            ]
            channels *= 2
        layers += [ResNetBlock(channels, norm, padding, dropout) for _ in range(num_blocks)]
        for _ in range(self.num_downsamplings):  # u128, u64
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 3, 2, padding=1, output_padding=1, bias=bias),
                norm_layer(norm, channels // 2),
                nn.ReLU(inplace=True),
            ]
            channels //= 2
        layers += [*_padded_conv(channels, out_channels, 7, "reflect", bias=True), nn.Tanh()]  # c7s1-3
        self.model = nn.Sequential(*layers)
        init_gan_weights(self)
        if official_weights is not None:  # the released generator, by its official names
            load_official_generator_file(self, official_weights)

    def forward(self, images: Tensor) -> Tensor:
        multiple = 2**self.num_downsamplings
        if images.shape[-2] % multiple or images.shape[-1] % multiple:
            raise ValueError(
                f"ResNetGenerator needs height and width that are multiples of {multiple}, "
                f"got {tuple(images.shape[-2:])}"
            )
        return self.model(images)
