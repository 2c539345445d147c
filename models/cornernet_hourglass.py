"""CornerNet (Law and Deng, "CornerNet: Detecting Objects as Paired Keypoints", ECCV 2018): the Hourglass-104
trunk (``models.keypoint_hourglass.HourglassTrunk``) with, per stack, a top-left and a bottom-right corner
branch, as the official code builds it (princeton-vl/CornerNet ``models/CornerNet.py`` and
``models/py_utils/kp.py``, class ``kp``), so the released ``CornerNet_500000.pkl`` loads
(``models.keypoint_hourglass_official_weights``).

Each corner branch (official ``tl_cnvs``/``br_cnvs`` + heads) is the corner pooling module
(``models.corner_pooling.CornerPool``, Sec. 3.4, Fig. 7; 1,542,144 parameters at 256 channels) on the
stack's features, and three prediction heads on the POOLED features (official ``kp._train``: the
``tl_*`` heads read ``tl_cnv``, the ``br_*`` ones ``br_cnv``): heatmaps (C classes, bias -2.19),
embeddings (1 channel) and offsets (2 channels), each the official ``make_kp_layer`` (3x3 conv with bias to
``dims[0]`` channels, ReLU, 1x1 conv; ``models.keypoint_heads.KeypointHeads`` at PyTorch's default
initialisation). Every stack has its own pools and heads (official ``nn.ModuleList(... for _ in
range(nstack))``), all supervised in training. With 80 classes: 201,035,212 parameters, as the official
network.

By-design differences: the official forward takes ``(images, tl_inds, br_inds)`` in training and gathers
the tags and offsets at the ground-truth corner indices inside the network, and in eval mode runs the
corner branches of the last stack only and decodes detections (``_decode``). Here ``forward(images)``
returns the dense maps -- of every stack in training, of the last stack only in eval mode (the same
branches the official test path computes) -- and gathering and decoding are left to the loss and the
decoder. Corner pooling is ``torch.cummax`` instead of the official C++ extension (same values).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from models.corner_pooling import Corner, CornerPool
from models.keypoint_heads import KeypointHeads
from models.keypoint_hourglass import (
    HOURGLASS_104_DIMS,
    HOURGLASS_104_MODULES,
    HourglassTrunk,
    returned_stacks,
)

CORNER_PREFIXES: dict[Corner, str] = {"top_left": "tl", "bottom_right": "br"}


class CornerBranch(nn.Module):
    """Corner pooling then the heat/tag/regr heads of one corner type, named ``{tl,br}_{heat,tag,regr}``."""

    def __init__(
        self, corner: Corner, channels: int, head_channels: int, num_classes: int, pool_channels: int = 128
    ) -> None:
        super().__init__()
        prefix = CORNER_PREFIXES[corner]
        self.pool = CornerPool(channels, corner, pool_channels)
        outputs = {f"{prefix}_heat": num_classes, f"{prefix}_tag": 1, f"{prefix}_regr": 2}
        self.heads = KeypointHeads(channels, head_channels, outputs, regression_init_std=None)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        return self.heads(self.pool(features))


class CornerNetHourglass(nn.Module):
    """CornerNet on Hourglass-104 (module docstring). ``forward(images)`` -> one dict per stack (training)
    or for the last stack only (eval) of ``tl_heat``/``br_heat`` ``(B, num_classes, H/4, W/4)`` heatmap
    logits, ``tl_tag``/``br_tag`` ``(B, 1, ...)`` embeddings and ``tl_regr``/``br_regr`` ``(B, 2, ...)``
    offsets, in the official output order.

    ``dims``/``modules``/``num_stacks``/``cnv_dim``/``stem_channels`` configure the trunk
    (``HourglassTrunk``; defaults Hourglass-104) and ``pool_channels`` the corner pools' branches (128 as
    the official). ``official_weights`` is a released ``CornerNet_500000.pkl`` (local file), loaded by
    ``models.keypoint_hourglass_official_weights.load_cornernet_weights``.
    """

    output_stride = 4
    output_order = ("tl_heat", "br_heat", "tl_tag", "br_tag", "tl_regr", "br_regr")

    def __init__(
        self,
        num_classes: int = 80,
        *,
        dims: Sequence[int] = HOURGLASS_104_DIMS,
        modules: Sequence[int] = HOURGLASS_104_MODULES,
        num_stacks: int = 2,
        cnv_dim: int = 256,
        stem_channels: int = 128,
        pool_channels: int = 128,
        official_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.trunk = HourglassTrunk(dims, modules, num_stacks, cnv_dim, stem_channels)
        self.top_left, self.bottom_right = (
            nn.ModuleList(
                CornerBranch(corner, cnv_dim, dims[0], num_classes, pool_channels) for _ in range(num_stacks)
            )
            for corner in ("top_left", "bottom_right")
        )
        if official_weights is not None:
            from models.keypoint_hourglass_official_weights import load_cornernet_weights

            load_cornernet_weights(self, official_weights)

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        features = self.trunk(images)
        outputs = []
        for index in returned_stacks(len(features), self.training):
            maps = self.top_left[index](features[index]) | self.bottom_right[index](features[index])
            outputs.append({name: maps[name] for name in self.output_order})
        return outputs
