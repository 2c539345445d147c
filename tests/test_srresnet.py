"""models/srresnet.py: SRResNet and the SRGAN discriminator (Ledig et al. 2017, Fig. 4) -- parameter counts
derived layer by layer, shapes, and the errors for unusable settings and inputs."""

import pytest
import torch

from models.srresnet import SRGANDiscriminator, SRResNet


def conv(in_channels: int, out_channels: int, kernel: int, bias: bool = True) -> int:
    return in_channels * out_channels * kernel * kernel + (out_channels if bias else 0)


def batch_norm(channels: int) -> int:
    return 2 * channels


def test_full_size_srresnet_parameter_count() -> None:
    """Fig. 4 top at x4, B = 16, 64 feature maps (channel-wise PReLU, no bias before BN): 1,548,547."""
    head = conv(3, 64, 9) + 64  # conv 9x9 + PReLU
    block = 2 * (conv(64, 64, 3, bias=False) + batch_norm(64)) + 64
    trunk_end = conv(64, 64, 3, bias=False) + batch_norm(64)
    upsampling_stage = conv(64, 256, 3) + 64  # conv to 256, PixelShuffle x2, PReLU on 64 maps
    tail = conv(64, 3, 9)
    expected = head + 16 * block + trunk_end + 2 * upsampling_stage + tail
    assert expected == 1_548_547
    assert sum(p.numel() for p in SRResNet().parameters()) == expected


def test_full_size_discriminator_parameter_count() -> None:
    """Fig. 4 bottom on 96x96 crops: 8 convolutions, 512 x 6 x 6 -> Dense 1024 -> Dense 1: 23,563,649."""
    blocks = [(64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
    expected = (
        conv(3, 64, 3)
        + sum(conv(c_in, c_out, 3, bias=False) + batch_norm(c_out) for c_in, c_out in blocks)
        + (512 * 6 * 6 * 1024 + 1024)
        + (1024 + 1)
    )
    assert expected == 23_563_649
    assert sum(p.numel() for p in SRGANDiscriminator().parameters()) == expected


@pytest.mark.parametrize(("scale", "low", "high"), [(4, 24, 96), (2, 12, 24), (8, 5, 40)])
def test_srresnet_upscales_by_its_scale(scale: int, low: int, high: int) -> None:
    model = SRResNet(scale=scale, num_blocks=2, channels=16).eval()
    with torch.no_grad():
        output = model(torch.rand(2, 3, low, low + 1))
    assert output.shape == (2, 3, high, high + scale)


def test_full_size_srresnet_maps_24_to_96_and_trains() -> None:
    model = SRResNet()
    low = torch.rand(2, 3, 24, 24)
    output = model(low)
    assert output.shape == (2, 3, 96, 96)
    (output - torch.zeros_like(output)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_discriminator_gives_one_logit_per_image() -> None:
    model = SRGANDiscriminator()
    logits = model(torch.rand(3, 3, 96, 96) * 2 - 1)
    assert logits.shape == (3, 1)
    small = SRGANDiscriminator(base_channels=8, input_size=32)
    assert small(torch.rand(2, 3, 32, 32)).shape == (2, 1)


@pytest.mark.parametrize("scale", [0, 1, 3, 6, -4])
def test_scale_not_a_power_of_two_is_refused(scale: int) -> None:
    with pytest.raises(ValueError, match=f"power of 2.*got {scale}"):
        SRResNet(scale=scale)


def test_discriminator_refuses_other_input_sizes() -> None:
    with pytest.raises(ValueError, match=r"multiple of 16.*got 100"):
        SRGANDiscriminator(input_size=100)
    model = SRGANDiscriminator(base_channels=8, input_size=32)
    with pytest.raises(ValueError, match=r"built for 32x32 inputs.*got 48x32"):
        model(torch.rand(1, 3, 48, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*\(1, 1, 32, 32\)"):
        model(torch.rand(1, 1, 32, 32))


def test_srresnet_refuses_images_with_other_channels() -> None:
    with pytest.raises(ValueError, match=r"SRResNet expects \(B, 3, H, W\).*\(3, 24, 24\)"):
        SRResNet(num_blocks=1, channels=8)(torch.rand(3, 24, 24))
