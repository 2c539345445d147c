"""Hourglass-104, the backbone of CornerNet (Law and Deng, "CornerNet: Detecting Objects as Paired
Keypoints", ECCV 2018, Sec. 4.1) and of CenterNet's best model (Zhou, Wang and Krähenbühl, "Objects as
Points", 2019, Sec. 5, "Hourglass-104"), and the CenterNet ``ctdet`` Hourglass-104 network built on it.

The trunk follows the official code layer for layer -- ``kp``/``kp_module`` of princeton-vl/CornerNet
(``models/py_utils/kp.py``, ``utils.py``, ``models/CornerNet.py``) and its copy ``exkp``/``kp_module`` of
xingyizhou/CenterNet (``src/lib/models/networks/large_hourglass.py``), the two being identical -- so that
the released checkpoints load (``models.keypoint_hourglass_official_weights``):

- stem: 7x7 stride-2 conv-BN-ReLU to 128 channels, then a stride-2 residual module to ``dims[0]`` (256):
  1/4 of the input size;
- residual module (official ``residual``): 3x3 conv-BN-ReLU, 3x3 conv-BN, plus the input (through a 1x1
  conv-BN when the stride or the channel count changes), ReLU; no convolution has a bias;
- hourglass module (official ``kp_module``), recursive over ``n = len(dims) - 1`` levels: an upper branch
  of ``modules[0]`` residuals at the input resolution; a lower branch that halves the resolution with a
  stride-2 residual (no max pooling: the official ``make_pool_layer`` is empty and ``make_hg_layer``
  strides the first residual), then ``modules[0] - 1`` residuals, the next level (``modules[n]``
  residuals of ``dims[n]`` channels at the bottom), ``modules[0]`` residuals back to ``dims[0]`` channels,
  and a nearest x2 upsampling; the branches are added. Hourglass-104: ``dims`` [256, 256, 384, 384, 384,
  512], ``modules`` [2, 2, 2, 2, 2, 4], two stacks;
- after each hourglass a 3x3 conv-BN-ReLU to ``cnv_dim`` (256) channels: the features the prediction
  heads read (official ``cnvs``);
- between stacks (the paper's intermediate supervision): the next input is
  ReLU(1x1 conv-BN(stack input) + 1x1 conv-BN(features)) followed by a residual module (official
  ``inters_``, ``cnvs_``, ``inters``).

Input: ``(B, 3, H, W)`` images as the official pipelines feed them: BGR (OpenCV) order, ``/ 255``, minus the
COCO mean [0.408, 0.447, 0.470], divided by the std [0.289, 0.274, 0.278] (both in BGR order). The stem
output, ``ceil(H / 4)`` by ``ceil(W / 4)``, must be divisible by ``2**n`` (32 for Hourglass-104): the
official test code pads to ``H | 127`` (CornerNet: 511, 639, ...) or ``(H | 127) + 1`` (CenterNet: 512,
...), both giving ``H / 4`` a multiple of 32; CornerNet trains at 511 x 511 -> 128 x 128 maps.

``CenterNetHourglass`` is the official ``HourglassNet`` (``get_large_hourglass_net``) with the ctdet heads
{"hm": 80, "wh": 2, "reg": 2}: 191,284,008 parameters, as the official network. Its heads are
``models.keypoint_heads.KeypointHeads`` (the official ``make_kp_layer``: 3x3 conv with bias to ``dims[0]``
channels, ReLU, 1x1 conv), one set per stack, at PyTorch's default initialisation with the heatmap bias at
-2.19, as the official code. By-design difference: in eval mode the official module still returns every
stack and its detector keeps only ``outputs[-1]`` (``detectors/ctdet.py``); this module returns only the
last stack in eval mode (the earlier stacks' heads are not computed) and every stack in training mode,
where each stack is supervised.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn
from torch.nn import functional as F

from models.corner_pooling import conv_bn_relu
from models.keypoint_heads import KeypointHeads

HOURGLASS_104_DIMS = (256, 256, 384, 384, 384, 512)
HOURGLASS_104_MODULES = (2, 2, 2, 2, 2, 4)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) + BN: the official skip branch and inter-stack merges."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        ),
        nn.BatchNorm2d(out_channels),
    )


class Residual(nn.Module):
    """The official ``residual``: two 3x3 conv-BN (ReLU between), plus the input or its 1x1 conv-BN
    projection (``skip``, only when the stride or the channel count changes), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        projects = stride != 1 or in_channels != out_channels
        self.skip = conv_bn(in_channels, out_channels, 1, stride) if projects else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + self.skip(x))


def residuals(in_channels: int, out_channels: int, count: int, stride: int = 1) -> nn.Sequential:
    """``count`` residual modules; the first changes the channels (and strides), the rest keep them."""
    return nn.Sequential(
        Residual(in_channels, out_channels, stride),
        *(Residual(out_channels, out_channels) for _ in range(count - 1)),
    )


def residuals_to(in_channels: int, out_channels: int, count: int) -> nn.Sequential:
    """``count`` residual modules; the LAST changes the channels (the official ``make_layer_revr``)."""
    return nn.Sequential(
        *(Residual(in_channels, in_channels) for _ in range(count - 1)),
        Residual(in_channels, out_channels),
    )


class HourglassModule(nn.Module):
    """One hourglass (official ``kp_module``), ``len(dims) - 1`` levels deep (module docstring).

    ``upper`` / ``lower_in`` / ``inner`` / ``lower_out`` are the official ``up1`` / ``low1`` / ``low2`` /
    ``low3``; ``inner`` is the next level, or ``modules[1]`` residuals at the bottom."""

    def __init__(self, dims: Sequence[int], modules: Sequence[int]) -> None:
        super().__init__()
        if len(dims) < 2 or len(dims) != len(modules):
            raise ValueError(f"need len(dims) == len(modules) >= 2, got dims {dims}, modules {modules}")
        channels, next_channels = dims[0], dims[1]
        self.upper = residuals(channels, channels, modules[0])
        self.lower_in = residuals(channels, next_channels, modules[0], stride=2)
        if len(dims) > 2:
            self.inner: nn.Module = HourglassModule(dims[1:], modules[1:])
        else:
            self.inner = residuals(next_channels, next_channels, modules[1])
        self.lower_out = residuals_to(next_channels, channels, modules[0])

    def forward(self, x: Tensor) -> Tensor:
        lower = self.lower_out(self.inner(self.lower_in(x)))
        return self.upper(x) + F.interpolate(lower, scale_factor=2, mode="nearest")


class HourglassTrunk(nn.Module):
    """The stacked Hourglass trunk shared by CornerNet and CenterNet (official ``kp``/``exkp`` without the
    heads); defaults = Hourglass-104. ``forward(images)`` -> every stack's ``cnv_dim``-channel features at
    stride 4, in stack order (module docstring).

    Official names: ``stem`` = ``pre``, ``hourglasses`` = ``kps``, ``features`` = ``cnvs``, ``merge_inputs``
    = ``inters_``, ``merge_features`` = ``cnvs_``, ``merge_residuals`` = ``inters``."""

    output_stride = 4

    def __init__(
        self,
        dims: Sequence[int] = HOURGLASS_104_DIMS,
        modules: Sequence[int] = HOURGLASS_104_MODULES,
        num_stacks: int = 2,
        cnv_dim: int = 256,
        stem_channels: int = 128,
    ) -> None:
        super().__init__()
        if num_stacks < 1:
            raise ValueError(f"need num_stacks >= 1, got {num_stacks}")
        self.dims, self.level_modules = tuple(dims), tuple(modules)
        self.num_stacks, self.cnv_dim = num_stacks, cnv_dim
        channels = dims[0]
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False),
                bn=nn.BatchNorm2d(stem_channels),
                relu=nn.ReLU(inplace=True),
                residual=Residual(stem_channels, channels, stride=2),
            )
        )
        self.hourglasses = nn.ModuleList(HourglassModule(dims, modules) for _ in range(num_stacks))
        self.features = nn.ModuleList(conv_bn_relu(channels, cnv_dim) for _ in range(num_stacks))
        self.merge_inputs = nn.ModuleList(conv_bn(channels, channels) for _ in range(num_stacks - 1))
        self.merge_features = nn.ModuleList(conv_bn(cnv_dim, channels) for _ in range(num_stacks - 1))
        self.merge_residuals = nn.ModuleList(Residual(channels, channels) for _ in range(num_stacks - 1))
        self.relu = nn.ReLU(inplace=True)

    @property
    def depth(self) -> int:
        """The number of hourglass levels (official ``n``): 5 for Hourglass-104."""
        return len(self.dims) - 1

    def check_input(self, images: Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"the Hourglass trunk takes (B, 3, H, W) images, got {tuple(images.shape)}")
        multiple = 2**self.depth
        stem_size = [-(-size // self.output_stride) for size in images.shape[-2:]]
        if any(size % multiple for size in stem_size):
            raise ValueError(
                f"the Hourglass trunk (depth {self.depth}) needs ceil(H / 4) and ceil(W / 4) divisible by "
                f"{multiple} (e.g. H, W = 128k or 128k - 1 for depth 5), got {tuple(images.shape[-2:])}"
            )

    def forward(self, images: Tensor) -> list[Tensor]:
        self.check_input(images)
        x = self.stem(images)
        outputs = []
        for index, (hourglass, features) in enumerate(zip(self.hourglasses, self.features, strict=True)):
            outputs.append(features(hourglass(x)))
            if index < self.num_stacks - 1:
                merged = self.merge_inputs[index](x) + self.merge_features[index](outputs[-1])
                x = self.merge_residuals[index](self.relu(merged))
        return outputs


class CenterNetHourglass(nn.Module):
    """CenterNet ctdet Hourglass-104 (official ``HourglassNet`` with heads {"hm", "wh", "reg"}); module
    docstring. ``forward(images)`` -> one dict per stack (training) or for the last stack only (eval) of
    "hm" ``(B, num_classes, H/4, W/4)`` heatmap logits, "wh" ``(B, 2, ...)`` box sizes and "reg"
    ``(B, 2, ...)`` centre offsets, in output pixels.

    ``dims``/``modules``/``num_stacks``/``cnv_dim``/``stem_channels`` configure the trunk
    (``HourglassTrunk``; defaults Hourglass-104); the heads' hidden width is ``dims[0]``, as the official
    ``make_kp_layer(cnv_dim, curr_dim, ...)``. ``official_weights`` is a released ``ctdet_coco_hg.pth``
    (local file), loaded by ``models.keypoint_hourglass_official_weights.load_centernet_weights``.
    """

    output_stride = 4

    def __init__(
        self,
        num_classes: int = 80,
        *,
        dims: Sequence[int] = HOURGLASS_104_DIMS,
        modules: Sequence[int] = HOURGLASS_104_MODULES,
        num_stacks: int = 2,
        cnv_dim: int = 256,
        stem_channels: int = 128,
        official_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.trunk = HourglassTrunk(dims, modules, num_stacks, cnv_dim, stem_channels)
        outputs = {"hm": num_classes, "wh": 2, "reg": 2}
        self.heads = nn.ModuleList(
            KeypointHeads(cnv_dim, dims[0], outputs, regression_init_std=None) for _ in range(num_stacks)
        )
        if official_weights is not None:
            from models.keypoint_hourglass_official_weights import load_centernet_weights

            load_centernet_weights(self, official_weights)

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        features = self.trunk(images)
        return [self.heads[index](features[index]) for index in returned_stacks(len(features), self.training)]


def returned_stacks(num_stacks: int, training: bool) -> range:
    """The stacks whose predictions a network returns: all in training, the last in eval mode."""
    return range(num_stacks) if training else range(num_stacks - 1, num_stacks)
