"""The image transformation network of fast neural style transfer (Johnson, Alahi, Fei-Fei, "Perceptual
Losses for Real-Time Style Transfer and Super-Resolution", ECCV 2016, Sec. 3.1 and supplementary
Table 1), as pytorch/examples ``fast_neural_style`` builds it, and a loader for that example's released
style models (``candy.pth``, ``mosaic.pth``, ``rain_princess.pth``, ``udnie.pth``).

Where pytorch/examples departs from the paper, this follows pytorch/examples (so its weights load):
instance normalisation with affine parameters (Ulyanov et al. 2016) instead of batch normalisation;
reflection padding in every convolution instead of one 40-pixel reflection padding of the input and
unpadded residual blocks; nearest x2 upsampling then a 3x3 convolution instead of fractionally-strided
convolutions; no scaled tanh at the end.
Images are RGB in 0..255 on both sides (the example multiplies ``ToTensor`` by 255 and clamps the output
to 0..255 only when saving it). 1,679,235 parameters.

Module names are the example's (``conv1.conv2d``, ``in1``, ``res1.conv1.conv2d``, ``deconv1.conv2d``, ...),
so its state dicts load name for name once the stale InstanceNorm statistics are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from models.pretrained_weights import read_state_dict
from models.state_dict_fit import load_fitting_state_dict, state_dict_problems

OFFICIAL_SOURCE = "pytorch/examples' saved style models (fast_neural_style/download_saved_models.py)"

# Style models saved by torch < 0.4 carry InstanceNorm running statistics that InstanceNorm2d no longer
# has (track_running_stats=False); pytorch/examples' neural_style.py deletes them with this pattern.
STALE_INSTANCE_NORM_KEY = re.compile(r"in\d+\.running_(mean|var)$")


class ReflectionConv(nn.Module):
    """Optional nearest upsampling, reflection padding of kernel_size // 2, then a convolution
    (pytorch/examples ``ConvLayer`` and, with ``upsample``, ``UpsampleConvLayer``; the upsampling replaces
    the paper's fractionally-strided convolution, avoiding checkerboard artefacts: Odena et al. 2016)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, upsample: int = 1
    ) -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=upsample, mode="nearest") if upsample > 1 else nn.Identity()
        self.pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, features: Tensor) -> Tensor:
        return self.conv2d(self.pad(self.upsample(features)))


class StyleResidualBlock(nn.Module):
    """Johnson et al. 2016 residual block (supplementary material) as pytorch/examples builds it:
    conv3x3-IN-ReLU-conv3x3-IN plus the input, no ReLU after the sum (Gross & Wilber's ResNet layout)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ReflectionConv(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ReflectionConv(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, features: Tensor) -> Tensor:
        return features + self.in2(self.conv2(self.relu(self.in1(self.conv1(features)))))


class TransformerNet(nn.Module):
    """Johnson et al. 2016 image transformation network (Sec. 3.1, supplementary Table 1) as
    pytorch/examples ``fast_neural_style``: conv9x9-32, conv3x3-64 s2, conv3x3-128 s2 (each + IN + ReLU),
    5 ``StyleResidualBlock``s of 128, two (nearest x2, conv3x3) stages to 64 and 32 (+ IN + ReLU), conv9x9
    to 3.

    (B, 3, H, W) RGB in 0..255 -> (B, 3, H, W) stylised RGB, approximately 0..255 and not clamped (clamp to
    0..255 for display). H and W should be multiples of 4 for the output to have the input's size.
    ``official_weights``: a saved pytorch/examples style model (local file), loaded by its official names.
    """

    def __init__(self, official_weights: str | Path | None = None) -> None:
        super().__init__()
        self.conv1 = ReflectionConv(3, 32, 9)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = ReflectionConv(32, 64, 3, stride=2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = ReflectionConv(64, 128, 3, stride=2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res1 = StyleResidualBlock(128)
        self.res2 = StyleResidualBlock(128)
        self.res3 = StyleResidualBlock(128)
        self.res4 = StyleResidualBlock(128)
        self.res5 = StyleResidualBlock(128)
        self.deconv1 = ReflectionConv(128, 64, 3, upsample=2)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = ReflectionConv(64, 32, 3, upsample=2)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ReflectionConv(32, 3, 9)
        self.relu = nn.ReLU()
        if official_weights is not None:  # a saved pytorch/examples style model (candy.pth, mosaic.pth...)
            official = read_state_dict(official_weights, network="TransformerNet", source=OFFICIAL_SOURCE)
            load_official_style_model(self, official)

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"TransformerNet expects (B, 3, H, W) RGB in 0..255, got {tuple(images.shape)}")
        features = self.relu(self.in1(self.conv1(images)))
        features = self.relu(self.in2(self.conv2(features)))
        features = self.relu(self.in3(self.conv3(features)))
        for block in (self.res1, self.res2, self.res3, self.res4, self.res5):
            features = block(features)
        features = self.relu(self.in4(self.deconv1(features)))
        features = self.relu(self.in5(self.deconv2(features)))
        return self.deconv3(features)


def convert_official_style_state_dict(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A pytorch/examples style model's state dict without the stale ``in*.running_mean`` /
    ``in*.running_var`` entries (the names are otherwise ours already)."""
    return {name: value for name, value in official.items() if not STALE_INSTANCE_NORM_KEY.search(name)}


def load_official_style_model(model: TransformerNet, official: Mapping[str, Tensor]) -> None:
    """Load a pytorch/examples ``fast_neural_style`` state dict (``torch.load("candy.pth",
    weights_only=True)``) into ``model``; a missing, unexpected or mis-shaped name is a ValueError naming
    it."""
    state = convert_official_style_state_dict(official)
    problems = state_dict_problems(model, state)
    if problems:
        raise ValueError("state dict is not a pytorch/examples TransformerNet -- " + "; ".join(problems))
    load_fitting_state_dict(model, state, problems)
