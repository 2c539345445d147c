"""The RPN head (Ren et al. 2015, Sec. 3.1: a 3x3 conv, then sibling 1x1 convs for objectness and
box deltas per anchor) with float32 outputs under autocast.

torchvision's ``BoxCoder.decode`` casts the anchors to the deltas' dtype; with bf16 deltas the
proposals would snap to bf16's grid (4 px between 512 and 1024, 8 px up to 1333). detectron2 decodes
in float32 for the same reason; the convolutions themselves still run in the autocast dtype."""

from __future__ import annotations

from torch import Tensor
from torchvision.models.detection.rpn import RPNHead


class Float32RPNHead(RPNHead):
    """torchvision's ``RPNHead`` (same parameters and state-dict keys), outputs cast to float32."""

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        objectness, deltas = super().forward(features)
        return [o.float() for o in objectness], [d.float() for d in deltas]
