"""CenterNet's ResNet networks (Zhou et al. 2019, "Objects as Points", section "Implementation details":
ResNet-18 / ResNet-101 with three up-convolutional stages to stride 4, the variant with a 3x3 deformable
convolution before each up-convolution, and the 3x3 conv -> ReLU -> 1x1 conv heads), as the official code
builds them (github.com/xingyizhou/CenterNet, ``src/lib/models/networks/``):

- ``res`` (``msra_resnet.py``, the SimpleBaseline network of Xiao et al. 2018): ResNet body, then 3 x
  [ConvTranspose2d 4x4 stride 2 padding 1 without bias -> BN -> ReLU], 256 channels each; heads on 256
  channels.
- ``resdcn`` (``resnet_dcn.py``): ResNet body, then 3 x [modulated deformable 3x3 conv (DCNv2, with bias
  and its offset/mask conv) -> BN -> ReLU -> ConvTranspose2d 4x4 s2 -> BN -> ReLU], channels 256, 128, 64;
  heads on 64 channels.

Both: heads ``hm`` (classes), ``wh`` (2), ``reg`` (2) of ``head_channels`` (official ``--head_conv``
default 64 for ResNets) from ``models.keypoint_heads``; the output is ``[{"hm", "wh", "reg"}]`` at stride 4
(one "stack", the official ``return [ret]``). The body is torchvision's ResNet (the official body has the
same layers and names and loads torchvision's ImageNet files by name), without the classifier.

Initialisation follows the official ``init_weights`` (what it does besides loading the ImageNet body):
``res`` up-convolutions normal(std 0.001); in the heads only the last convs are re-initialised (``wh`` /
``reg``: normal(std 0.001), zero bias; ``hm``: bias -2.19), the rest keeps PyTorch's default. ``resdcn``
up-convolutions get ``fill_up_weights``, heads ``fill_fc_weights`` (``wh`` / ``reg``: both convs
normal(std 0.001), zero bias; ``hm``: last bias -2.19). ``fill_up_weights`` on the *ungrouped*
256/128/64-channel ConvTranspose2d sets only the bilinear kernel of ``weight[:, 0]`` (every input channel
into output channel 0) and leaves the other entries at PyTorch's default init -- a quirk of the official
code, kept. The deformable conv's offset/mask conv starts at zero (DCNv2 ``init_offset``: it starts as a
plain 3x3 conv with mask 0.5) and its bias at zero (DCNv2 ``reset_parameters``). By design, the body
starts at torchvision's init (the official network always loads ImageNet weights first:
``load_imagenet_weights`` does that here, from a local file).

Parameter counts with heads hm 80, wh 2, reg 2 (equal to the official networks'): res_18 15,820,372;
resdcn_18 14,437,349; res_101 53,435,476; resdcn_101 49,673,189 (``tests/test_centernet_networks.py``).
Inputs must have sides that are multiples of 32 (the official code pads test images to them: ``opt.pad``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn
from torchvision.models import resnet

from models.dcn_v2 import ModulatedDeformConv2d, fill_bilinear_
from models.keypoint_heads import KeypointHeads, is_heatmap
from models.pretrained_weights import read_state_dict
from models.state_dict_fit import load_fitting_state_dict, state_dict_problems

RESNETS = {18: resnet.resnet18, 101: resnet.resnet101}
INPUT_MULTIPLE = 32  # the body's stride; the up-convolutions exactly double sizes from there

# The official ``--arch`` names (``src/lib/models/model.py`` ``_model_factory``) of the ResNet networks.
CENTERNET_RESNET_PRESETS: dict[str, dict[str, int | bool]] = {
    "res_18": {"depth": 18, "deformable": False},
    "resdcn_18": {"depth": 18, "deformable": True},
    "res_101": {"depth": 101, "deformable": False},
    "resdcn_101": {"depth": 101, "deformable": True},
}
PLAIN_UPSAMPLING_CHANNELS = (
    256,
    256,
    256,
)  # msra_resnet.py _make_deconv_layer(3, [256, 256, 256], [4, 4, 4])
DEFORMABLE_UPSAMPLING_CHANNELS = (256, 128, 64)  # resnet_dcn.py _make_deconv_layer(3, [256, 128, 64], ...)


def up_convolution(channels: int) -> nn.ConvTranspose2d:
    """ConvTranspose2d 4x4, stride 2, padding 1, no bias: exactly doubles height and width."""
    return nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False)


class UpsamplingStage(nn.Module):
    """One of the three stride-2 stages: [deformable 3x3 conv -> BN -> ReLU ->] ConvTranspose2d 4x4 s2
    -> BN -> ReLU (official ``deconv_layers`` entries 6s..6s+5 for ``resdcn``, 3s..3s+2 for ``res``)."""

    def __init__(self, in_channels: int, out_channels: int, deformable: bool) -> None:
        super().__init__()
        self.conv: ModulatedDeformConv2d | None = None
        self.conv_bn: nn.BatchNorm2d | None = None
        if deformable:
            self.conv = ModulatedDeformConv2d(in_channels, out_channels)
            self.conv_bn = nn.BatchNorm2d(out_channels)
            self.deconv = up_convolution(out_channels)
            fill_bilinear_(self.deconv)
        else:
            self.deconv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False)
            nn.init.normal_(self.deconv.weight, std=0.001)
        self.deconv_bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is not None:
            x = self.relu(self.conv_bn(self.conv(x)))
        return self.relu(self.deconv_bn(self.deconv(x)))


def check_input_size(images: Tensor, multiple: int = INPUT_MULTIPLE) -> None:
    if images.ndim != 4 or images.shape[-2] % multiple or images.shape[-1] % multiple:
        raise ValueError(
            f"CenterNet networks take (B, 3, H, W) images with H and W multiples of {multiple}; got "
            f"{tuple(images.shape)} (pad the images, as the official code does)"
        )


class CenterNetResNet(nn.Module):
    """ResNet-``depth`` (18 or 101) + three stride-2 upsampling stages + CenterNet heads.

    ``deformable=False`` is the official ``res_<depth>``, ``True`` ``resdcn_<depth>``;
    ``forward(images)`` -> ``[{"hm": (B, num_classes, H/4, W/4), "wh": (B, 2, ..), "reg": (B, 2, ..)}]``.
    """

    output_stride = 4

    def __init__(
        self, depth: int = 18, deformable: bool = True, num_classes: int = 80, head_channels: int = 64
    ) -> None:
        super().__init__()
        if depth not in RESNETS:
            raise ValueError(f"CenterNet ResNet depth must be one of {sorted(RESNETS)}, got {depth}")
        self.depth, self.deformable, self.num_classes = depth, deformable, num_classes
        self.body = RESNETS[depth](weights=None)
        del self.body.fc, self.body.avgpool  # no classifier; ``features`` runs the body's stages itself
        channels = [self.body.layer4[-1].conv1.in_channels]  # 512 (ResNet-18) or 2048 (ResNet-101)
        channels += DEFORMABLE_UPSAMPLING_CHANNELS if deformable else PLAIN_UPSAMPLING_CHANNELS
        self.upsample = nn.Sequential(
            *(UpsamplingStage(c_in, c_out, deformable) for c_in, c_out in itertools.pairwise(channels))
        )
        self.heads = KeypointHeads(channels[-1], head_channels, {"hm": num_classes, "wh": 2, "reg": 2})
        if not deformable:  # msra_resnet.py init_weights: only the heads' last convs are re-initialised
            for name, branch in self.heads.items():
                if not is_heatmap(name):
                    branch[0].reset_parameters()

    def features(self, images: Tensor) -> Tensor:
        """The stride-4 features the heads see."""
        check_input_size(images)
        body = self.body
        x = body.maxpool(body.relu(body.bn1(body.conv1(images))))
        x = body.layer4(body.layer3(body.layer2(body.layer1(x))))
        return self.upsample(x)

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        return [self.heads(self.features(images))]

    def load_imagenet_weights(self, path: str | Path) -> None:
        """Load torchvision's ImageNet ResNet file (``resnet18-f37072fd.pth`` / ``resnet101-63fe2227.pth``,
        or the older ``resnet18-5c106cde.pth`` / ``resnet101-5d3b4d8f.pth`` the official code uses) into
        the body, dropping its classifier ``fc``; any other mismatch is an error naming it."""
        state = read_state_dict(
            path, network=f"ResNet-{self.depth}", source="torchvision's ImageNet weights (torchvision.models)"
        )
        load_body_weights(self.body, state, dropped_prefix="fc.", source=str(path))


def load_body_weights(
    body: nn.Module, state: Mapping[str, Tensor], dropped_prefix: str | None, source: str = "state dict"
) -> None:
    """Load an ImageNet state dict into a detector body, without the classifier's ``dropped_prefix``."""
    kept = {
        name: value
        for name, value in state.items()
        if dropped_prefix is None or not name.startswith(dropped_prefix)
    }
    problems = state_dict_problems(body, kept)
    if problems:
        raise ValueError(f"{source} does not fit the body: " + "; ".join(problems))
    load_fitting_state_dict(body, kept, problems)
