"""YolactEdge's feature-matching loss (Liu et al. 2021, "YolactEdge", Sec. 3, second training stage):
the warped P4, P5 of a non-keyframe should equal what the full network computes on that frame. As the
official ``Yolact.extra_loss`` computes it under ``yolact_edge_vid_config`` (``feature_matching_loss=
'cosine'``, ``fm_loss_loc='L+P'``, ``fm_loss_alpha=1``):

- pairs per warped level: "L", the merged maps themselves (before the FPN's output convs), and "P",
  both passed through an FPN output conv (weights detached) and a ReLU;
- per pair, cosine: mean over pixels of 1 - cosine similarity along channels; "SmoothL1" (the other
  official option): smooth-L1 summed and divided by batch size and channels;
- the mean over pairs, times ``weight``.

The official "P" transform takes its conv from the top-down-stored ``pred_layers`` at index
``level + 1``: P4's own output conv for P4, but P3's for P5 (an index shift in the official code).
``official_matching_convs`` returns that pair so that the loss is the one the released models trained
with; ``(fpn.output[1], fpn.output[2])`` gives each level its own conv.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from models.yolact_fpn import YolactFPN


def official_matching_convs(fpn: YolactFPN) -> tuple[nn.Conv2d, nn.Conv2d]:
    """The output convs the official loss applies to P4 and P5: P4's and P3's."""
    return fpn.output[1], fpn.output[0]


def _through_conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    bias = None if conv.bias is None else conv.bias.detach()
    return F.relu(F.conv2d(x, conv.weight.detach(), bias, stride=conv.stride, padding=conv.padding))


def _distance(predicted: Tensor, target: Tensor, kind: str) -> Tensor:
    if kind == "cosine":
        return (1 - F.cosine_similarity(predicted, target, dim=1)).mean()
    batch, channels = predicted.shape[:2]
    return F.smooth_l1_loss(predicted, target, reduction="sum") / batch / channels


def feature_matching_loss(
    predicted: Sequence[Tensor],
    target: Sequence[Tensor],
    output_convs: Sequence[nn.Conv2d],
    locations: str = "L+P",
    distance: str = "cosine",
    weight: float = 1.0,
) -> Tensor:
    """``predicted``: the non-keyframe's warped levels (``FrameFeatures.levels``); ``target``: the full
    network's on the same frame (``forward_keyframe(...)[1].levels``, detached); ``output_convs``: one
    per level (``official_matching_convs(model.fpn)``); ``locations``: "L", "P" or "L+P"."""
    if locations not in ("L", "P", "L+P"):
        raise ValueError(f"locations must be 'L', 'P' or 'L+P', got {locations!r}")
    if distance not in ("cosine", "SmoothL1"):
        raise ValueError(f"distance must be 'cosine' or 'SmoothL1', got {distance!r}")
    if not len(predicted) == len(target) == len(output_convs):
        raise ValueError("one target and one output conv per predicted level")
    pairs = []
    for ours, theirs, conv in zip(predicted, target, output_convs, strict=True):
        if locations != "P":
            pairs.append((ours, theirs))
        if locations != "L":
            pairs.append((_through_conv(ours, conv), _through_conv(theirs, conv)))
    return weight * sum(_distance(ours, theirs, distance) for ours, theirs in pairs) / len(pairs)
