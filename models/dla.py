"""CenterNet's DLA-34 network (Zhou et al. 2019, "Objects as Points", section "Implementation details"
and Appendix A, Fig. 6(c): Deep Layer Aggregation (Yu et al. 2018, "Deep Layer Aggregation", Sec. 3-4) with
iterative deep aggregation upsampling to stride 4, the up-sampling convolutions replaced by 3x3 deformable
convolutions), as the official code builds it (github.com/xingyizhou/CenterNet,
``src/lib/models/networks/pose_dla_dcn.py``: ``DLASeg('dla34', heads, down_ratio=4, final_kernel=1,
last_level=5, head_conv=256)``):

- ``base``: the DLA-34 body (``DLA([1, 1, 1, 2, 2, 1], [16, 32, 64, 128, 256, 512], BasicBlock)``): a 7x7
  stem at stride 1, two conv levels (the second stride 2), then hierarchical ``Tree`` levels 2-5 (stride 2
  each, by max-pooling; ``Root`` 1x1 conv aggregation nodes, ``level_root`` trees also aggregating the
  level's input). Its names are the official ones (``base_layer``, ``level0`` ... ``level5``, ``tree1``,
  ``tree2``, ``root``, ``project``), so the ImageNet ``dla34-ba72cf86.pth`` loads into it by name.
- ``dla_up`` (official ``DLAUp``): three IDA stages, coarsest first, each upsampling the deeper maps one
  level and merging them (channels 256, 128, 64); the output is the list of merged maps at strides 4, 8,
  16 (and 32).
- ``ida_up`` (official ``IDAUp(64, [64, 128, 256], [1, 2, 4])``): merges the stride 8 and 16 maps into the
  stride-4 one.
- Every IDA node: ``project`` (deformable 3x3 conv -> BN -> ReLU to the stage width), ``upsample``
  (depthwise ConvTranspose2d 2f x 2f stride f, bilinear ``fill_up_weights``, no bias), ``node``
  (deformable 3x3 conv -> BN -> ReLU of the sum with the finer map).
- Heads ``hm`` / ``wh`` / ``reg`` on the 64-channel stride-4 map, ``head_channels`` 256 (``--head_conv``
  default for DLA); official init: heatmap bias -2.19, the other heads' biases zero and weights at PyTorch's
  default (this file's ``fill_fc_weights`` only zeroes biases).

By design, the unused 1000-way ImageNet classifier ``base.fc`` (a 1x1 conv 512 -> 1000, 513,000
parameters), which the official ``load_pretrained_model`` adds to the body and which the released
checkpoints carry, is left out unless ``classifier=True``: 19,675,892 parameters with heads hm 80, wh 2,
reg 2 (20,188,892 with it, the official count). Deformable convs are ``ModulatedDeformConv2d`` (DCNv2 on
torchvision, ``models.centernet_resnet``). Inputs must have sides that are multiples of 32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, cat, nn

from models.centernet_resnet import check_input_size, load_body_weights
from models.dcn_v2 import ModulatedDeformConv2d, fill_bilinear_
from models.keypoint_heads import KeypointHeads, is_heatmap
from models.pretrained_weights import read_state_dict

DLA34_LEVELS = (1, 1, 1, 2, 2, 1)  # conv levels 0-1 (number of convs), tree levels 2-5 (tree depth)
DLA34_CHANNELS = (16, 32, 64, 128, 256, 512)
FIRST_LEVEL = 2  # log2(down_ratio 4): the stride-4 level
LAST_LEVEL = 5  # official last_level: the IDA-up merges levels FIRST_LEVEL .. LAST_LEVEL - 1

# The official ``--arch`` name of the DLA network (``src/lib/models/model.py``).
CENTERNET_DLA_PRESETS: dict[str, dict[str, int | bool]] = {"dla_34": {"head_channels": 256}}


class BasicBlock(nn.Module):
    """3x3 conv (stride) -> BN -> ReLU -> 3x3 conv -> BN, + residual (given by the tree), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + residual)


class Root(nn.Module):
    """An aggregation node: 1x1 conv of the concatenated children -> BN -> ReLU (DLA-34: no residual)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, *children: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(cat(children, 1))))


class Tree(nn.Module):
    """Hierarchical deep aggregation (DLA paper Sec. 3.2, Fig. 2(c)-(f)) of depth ``levels``.

    A depth-1 tree is two blocks and a ``root`` merging both outputs (and, for a ``level_root`` tree, the
    level's downsampled input); a deeper tree is two subtrees whose second's root also takes the first's
    output. ``root_channels`` is the width of the root's concatenated input (0: the two blocks')."""

    def __init__(
        self,
        levels: int,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        level_root: bool = False,
        root_channels: int = 0,
    ) -> None:
        super().__init__()
        root_channels = root_channels or 2 * out_channels
        if level_root:
            root_channels += in_channels
        self.tree1: nn.Module
        self.tree2: nn.Module
        self.root: Root | None = None
        if levels == 1:
            self.tree1 = BasicBlock(in_channels, out_channels, stride)
            self.tree2 = BasicBlock(out_channels, out_channels)
            self.root = Root(root_channels, out_channels)
        else:
            self.tree1 = Tree(levels - 1, in_channels, out_channels, stride)
            self.tree2 = Tree(
                levels - 1, out_channels, out_channels, root_channels=root_channels + out_channels
            )
        self.level_root = level_root
        self.downsample = nn.MaxPool2d(stride, stride=stride) if stride > 1 else None
        self.project: nn.Sequential | None = None
        if in_channels != out_channels:
            self.project = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(
        self, x: Tensor, residual: Tensor | None = None, children: list[Tensor] | None = None
    ) -> Tensor:
        # ``residual`` (given by a parent tree) is recomputed here, as in the official Tree.forward.
        children = [] if children is None else children
        bottom = x if self.downsample is None else self.downsample(x)
        residual = bottom if self.project is None else self.project(bottom)
        if self.level_root:
            children.append(bottom)
        x1 = self.tree1(x, residual)
        if self.root is not None:
            return self.root(self.tree2(x1), x1, *children)
        children.append(x1)
        return self.tree2(x1, children=children)


def conv_level(in_channels: int, out_channels: int, convs: int, stride: int = 1) -> nn.Sequential:
    """``convs`` x [3x3 conv (the first with ``stride``) -> BN -> ReLU]."""
    layers: list[nn.Module] = []
    for index in range(convs):
        layers += [
            nn.Conv2d(
                in_channels, out_channels, 3, stride=stride if index == 0 else 1, padding=1, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
        in_channels = out_channels
    return nn.Sequential(*layers)


class DLA34(nn.Module):
    """The DLA-34 body: ``forward(images)`` -> the six level outputs, strides 1, 2, 4, 8, 16, 32 with
    ``channels`` 16, 32, 64, 128, 256, 512. ``classifier=True`` adds the official (unused) ``fc``."""

    def __init__(self, classifier: bool = False, num_imagenet_classes: int = 1000) -> None:
        super().__init__()
        levels, channels = DLA34_LEVELS, DLA34_CHANNELS
        self.channels = channels
        self.base_layer = nn.Sequential(
            nn.Conv2d(3, channels[0], 7, padding=3, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        self.level0 = conv_level(channels[0], channels[0], levels[0])
        self.level1 = conv_level(channels[0], channels[1], levels[1], stride=2)
        self.level2 = Tree(levels[2], channels[1], channels[2], 2, level_root=False)
        self.level3 = Tree(levels[3], channels[2], channels[3], 2, level_root=True)
        self.level4 = Tree(levels[4], channels[3], channels[4], 2, level_root=True)
        self.level5 = Tree(levels[5], channels[4], channels[5], 2, level_root=True)
        if classifier:
            self.fc = nn.Conv2d(channels[-1], num_imagenet_classes, 1, bias=True)

    def forward(self, images: Tensor) -> list[Tensor]:
        x = self.base_layer(images)
        outputs = []
        for level in (self.level0, self.level1, self.level2, self.level3, self.level4, self.level5):
            x = level(x)
            outputs.append(x)
        return outputs


class DeformConvBlock(nn.Module):
    """Deformable 3x3 conv -> BN -> ReLU (official ``DeformConv``: ``conv``, ``actf``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ModulatedDeformConv2d(in_channels, out_channels)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class IDAUp(nn.Module):
    """Iterative deep aggregation up (official ``IDAUp(o, channels, up_f)``): maps ``features[0..n-1]``
    (``in_channels[i]`` channels, ``up_factors[i]`` times coarser than the output) to a list whose
    ``[i]`` (i >= 1) is ``node(upsample(project(features[i])) + result[i - 1])`` at ``features[0]``'s
    resolution, ``channels`` wide; ``result[0]`` is ``features[0]``, which must already be that map."""

    def __init__(self, channels: int, in_channels: Sequence[int], up_factors: Sequence[int]) -> None:
        super().__init__()
        self.project = nn.ModuleList(DeformConvBlock(c, channels) for c in in_channels[1:])
        self.upsample = nn.ModuleList()
        for factor in up_factors[1:]:
            up = nn.ConvTranspose2d(
                channels,
                channels,
                2 * factor,
                stride=factor,
                padding=factor // 2,
                groups=channels,
                bias=False,
            )
            fill_bilinear_(up)
            self.upsample.append(up)
        self.node = nn.ModuleList(DeformConvBlock(channels, channels) for _ in in_channels[1:])

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        merged = [features[0]]
        for x, project, upsample, node in zip(
            features[1:], self.project, self.upsample, self.node, strict=True
        ):
            merged.append(node(upsample(project(x)) + merged[-1]))
        return merged


class DLAUp(nn.Module):
    """The official ``DLAUp``: for levels at ``scales`` (relative strides 1, 2, 4, ...) with
    ``channels``, stage i merges the deepest ``i + 2`` maps into level ``-(i + 2)``'s resolution and
    width (the deeper maps having become that stage's width and resolution in stage i - 1).
    ``forward(levels)`` -> [stage n-2's output, ..., stage 0's output, the deepest input], finest first.
    """

    def __init__(self, channels: Sequence[int], scales: Sequence[int]) -> None:
        super().__init__()
        in_channels, scales = list(channels), list(scales)
        self.stages = nn.ModuleList()
        for i in range(len(channels) - 1):
            j = len(channels) - i - 2  # the level this stage merges into
            self.stages.append(
                IDAUp(channels[j], in_channels[j:], [scale // scales[j] for scale in scales[j:]])
            )
            scales[j + 1 :] = [scales[j]] * (len(scales) - j - 1)
            in_channels[j + 1 :] = [channels[j]] * (len(in_channels) - j - 1)

    def forward(self, levels: Sequence[Tensor]) -> list[Tensor]:
        levels = list(levels)
        outputs = [levels[-1]]
        for i, stage in enumerate(self.stages):
            j = len(levels) - i - 2
            levels[j:] = stage(levels[j:])
            outputs.insert(0, levels[-1])
        return outputs


class CenterNetDLA(nn.Module):
    """DLA-34 + DLAUp + IDAUp (deformable) + CenterNet heads, the official ``dla_34``.

    ``forward(images)`` -> ``[{"hm": (B, num_classes, H/4, W/4), "wh": (B, 2, ..), "reg": (B, 2, ..)}]``.
    """

    output_stride = 4

    def __init__(self, num_classes: int = 80, head_channels: int = 256, classifier: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.base = DLA34(classifier=classifier)
        channels = self.base.channels[FIRST_LEVEL:]
        self.dla_up = DLAUp(channels, [2**i for i in range(len(channels))])
        merged = LAST_LEVEL - FIRST_LEVEL
        self.ida_up = IDAUp(channels[0], channels[:merged], [2**i for i in range(merged)])
        self.heads = KeypointHeads(
            channels[0], head_channels, {"hm": num_classes, "wh": 2, "reg": 2}, regression_init_std=None
        )
        for name, branch in self.heads.items():  # pose_dla_dcn.py fill_fc_weights: zero biases only
            if not is_heatmap(name):
                nn.init.zeros_(branch[0].bias)
                nn.init.zeros_(branch[2].bias)

    def features(self, images: Tensor) -> Tensor:
        """The stride-4, 64-channel map the heads see."""
        check_input_size(images)
        levels = self.dla_up(self.base(images)[FIRST_LEVEL:])
        return self.ida_up(levels[: LAST_LEVEL - FIRST_LEVEL])[-1]

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        return [self.heads(self.features(images))]

    def load_imagenet_weights(self, path: str | Path) -> None:
        """Load the official ImageNet DLA-34 file (``dla34-ba72cf86.pth``, dl.yf.io/dla/models/imagenet)
        into ``base``; its classifier ``fc`` is dropped unless the body has one."""
        state = read_state_dict(path, network="DLA-34", source="http://dl.yf.io/dla/models/imagenet/")
        dropped = None if hasattr(self.base, "fc") else "fc."
        load_body_weights(self.base, state, dropped_prefix=dropped, source=str(path))
