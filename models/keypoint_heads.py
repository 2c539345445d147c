"""The prediction heads of the keypoint detectors (CenterNet, CornerNet): one small branch per output map,
all on the same stride-4 features, named as the official code names them (CenterNet ``hm``, ``wh``,
``reg``; CornerNet ``tl_heat``, ``br_heat``, ``tl_tag``, ``br_tag``, ``tl_regr``, ``br_regr``).

Every official variant is the same branch: a 3x3 conv with bias to ``head_channels``, ReLU, a 1x1 conv
with bias to the output channels (CenterNet's ResNet and DLA heads; the Hourglass ``make_kp_layer``, whose
``convolution(3, ..., with_bn=False)`` is that 3x3 conv + ReLU). Heatmap branches start at a bias of
-2.19 (so sigmoid ~ 0.1: CenterNet Sec. 4 and the official ``fill_(-2.19)``; CornerNet the same). The
other branches' convs start as CenterNet's ResNet and DLA heads (``fill_fc_weights``: normal, std 0.001,
zero bias) or, with ``regression_init_std=None``, at PyTorch's default (the Hourglass heads).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

HEATMAP_BIAS = -2.19


def prediction_branch(in_channels: int, head_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (bias) -> ReLU -> 1x1 conv (bias)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, head_channels, 3, padding=1, bias=True),
        nn.ReLU(inplace=True),
        nn.Conv2d(head_channels, out_channels, 1, bias=True),
    )


class KeypointHeads(nn.ModuleDict):
    """Branches named by ``outputs`` (name -> channels); names containing ``heat`` or equal to ``hm`` are
    heatmaps and get the -2.19 bias. ``forward(features)`` -> {name: (B, channels, H, W)}."""

    def __init__(
        self,
        in_channels: int,
        head_channels: int,
        outputs: Mapping[str, int],
        regression_init_std: float | None = 0.001,
    ) -> None:
        super().__init__(
            {name: prediction_branch(in_channels, head_channels, c) for name, c in outputs.items()}
        )
        for name, branch in self.items():
            if is_heatmap(name):
                nn.init.constant_(branch[-1].bias, HEATMAP_BIAS)
            elif regression_init_std is not None:
                for conv in (branch[0], branch[2]):
                    nn.init.normal_(conv.weight, std=regression_init_std)
                    nn.init.zeros_(conv.bias)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        return {name: branch(features) for name, branch in self.items()}


def is_heatmap(name: str) -> bool:
    return name == "hm" or "heat" in name
