"""The PatchGAN discriminator of pix2pix (Isola et al., "Image-to-Image Translation with Conditional
Adversarial Networks", CVPR 2017), also CycleGAN's discriminator (Zhu et al., ICCV 2017).

Sec. 3.2.2: a discriminator that "only penalizes structure at the scale of patches ... tries to classify if
each N x N patch in an image is real or fake ... run convolutionally across the image"; Sec. 6.1.2
(the 70 x 70 discriminator): C64-C128-C256-C512, then a convolution to one channel; "BatchNorm is not
applied to the first C64 layer. All ReLUs are leaky, with slope 0.2". Layout as the official
``NLayerDiscriminator`` (junyanz/pytorch-CycleGAN-and-pix2pix): 4x4 convolutions, stride 2 except the
last two, padding 1, channels ``base * min(2**i, 8)``; the first and the last convolution have biases,
the others only when followed by InstanceNorm. No sigmoid: the output is a logit map (30 x 30 for a
256 x 256 input), for ``models.gan_losses.adversarial_loss``.
"""

from __future__ import annotations

from torch import Tensor, nn

from models.gan_init import init_gan_weights
from models.gan_norm import conv_bias, norm_layer


class PatchGANDiscriminator(nn.Module):
    """``num_layers``-layer PatchGAN (pix2pix Sec. 3.2.2 & 6.1.2; CycleGAN Sec. 4 & 7.2): (B, C, H, W) ->
    (B, 1, H', W') real/fake logits, one per overlapping patch (70 x 70 receptive field for 3 layers).

    pix2pix: ``in_channels=6`` (the condition and the image, concatenated), ``norm="batch"``:
    2,768,705 parameters. CycleGAN: ``in_channels=3``, ``norm="instance"``: 2,764,737 parameters.
    Weights N(0, 0.02) (``init_gan_weights``)."""

    def __init__(
        self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3, norm: str = "batch"
    ) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = base_channels
        for index in range(1, num_layers + 1):
            out_channels = base_channels * min(2**index, 8)
            stride = 2 if index < num_layers else 1
            layers += [
                nn.Conv2d(channels, out_channels, 4, stride=stride, padding=1, bias=bias),
                norm_layer(norm, out_channels),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)  # "model.<i>": the official NLayerDiscriminator's names
        init_gan_weights(self)

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)
