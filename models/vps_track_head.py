"""VPSNet's track head (Kim et al., "Video Panoptic Segmentation", CVPR 2020, Sec. 3.2 "track"): RoI
features of the target frame's objects and of the reference frame's objects share two FC layers; the
affinity of a target object to each reference object is the inner product of their embeddings, with a
"new object" column of zeros in front (MaskTrack R-CNN style), trained by cross-entropy against the
matched reference index (0 = new object).

Written by hand following the official mcahny/vps ``mmdet/models/track_heads/track_head.py``
``TrackHead`` (``forward``, ``loss``, ``compute_comp_scores``, ``init_weights``) under
``configs/cityscapes/fusetrack.py``: ``num_fcs=2``, ``in_channels=256``, ``roi_feat_size=7``,
``fc_out_channels=1024``, ``match_coeff=[1.0, 2.0, 10.0]``, ``bbox_dummy_iou=0``, ``dynamic=True`` and
``loss_match`` a softmax cross-entropy with ``loss_weight=0.5``. Parameters: 12544 * 1024 + 1024 +
1024 * 1024 + 1024 = 13,895,680.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MATCH_COEFF = (1.0, 2.0, 10.0)
"""Official ``match_coeff``: weights of log detection score, box IoU and class consistency."""

LOSS_WEIGHT = 0.5
"""Official ``track_head.loss_match.loss_weight`` in ``configs/cityscapes/fusetrack.py``."""


class TrackHead(nn.Module):
    """Two FC layers (ReLU between them, none after the last) shared by target and reference RoIs.

    ``forward(target_features, reference_features, target_counts, reference_counts)``: RoI features
    (N, 256, 7, 7) of all images concatenated, with the per-image counts; returns per image the affinity
    logits (n_target, 1 + n_reference), column 0 the "new object" zeros.
    """

    def __init__(
        self,
        in_channels: int = 256,
        roi_feat_size: int = 7,
        fc_channels: int = 1024,
        num_fcs: int = 2,
        loss_weight: float = LOSS_WEIGHT,
    ) -> None:
        super().__init__()
        self.loss_weight = loss_weight
        widths = [in_channels * roi_feat_size * roi_feat_size] + [fc_channels] * num_fcs
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        for fc in self.fcs:  # official init_weights
            nn.init.normal_(fc.weight, 0.0, 0.01)
            nn.init.zeros_(fc.bias)

    def embed(self, features: Tensor) -> Tensor:
        """(N, C, S, S) RoI features -> (N, fc_channels) embeddings."""
        x = features.flatten(1)
        for i, fc in enumerate(self.fcs):
            x = fc(x)
            if i < len(self.fcs) - 1:
                x = F.relu(x)
        return x

    def forward(
        self,
        target_features: Tensor,
        reference_features: Tensor,
        target_counts: Sequence[int],
        reference_counts: Sequence[int],
    ) -> list[Tensor]:
        if len(target_counts) != len(reference_counts):
            raise ValueError(
                f"{len(target_counts)} target images but {len(reference_counts)} reference images"
            )
        if sum(target_counts) != len(target_features) or sum(reference_counts) != len(reference_features):
            raise ValueError(
                f"counts {list(target_counts)} / {list(reference_counts)} do not add up to the "
                f"{len(target_features)} target / {len(reference_features)} reference RoIs"
            )
        targets = self.embed(target_features).split(list(target_counts))
        references = self.embed(reference_features).split(list(reference_counts))
        return [
            torch.cat([t.new_zeros(len(t), 1), t @ r.t()], dim=1)
            for t, r in zip(targets, references, strict=True)
        ]

    def loss(self, affinities: Sequence[Tensor], ids: Sequence[Tensor], weights: Sequence[Tensor]) -> Tensor:
        """The official ``TrackHead.loss`` (``dynamic=True``, ``reduce=True``) times ``loss_weight``.

        ``ids[i]`` (n_target,): matched reference index + 1, 0 for a new object; ``weights[i]``: 1 for
        RoIs that count (the official positives), 0 otherwise. Per image sum(CE * weight) / max(#weight > 0,
        1); the images' losses are summed and divided by the number of images. The official code also
        skips an image with exactly one valid RoI (``nonzero().squeeze()`` turns 0-d); that is a
        bug and is not reproduced -- only images without any valid RoI are skipped.
        """
        total = affinities[0].new_zeros(())
        for score, target, weight in zip(affinities, ids, weights, strict=True):
            if not bool((weight > 0).any()):
                continue
            raw = F.cross_entropy(score, target.long(), reduction="none")
            total = total + (raw * weight.to(raw.dtype)).sum() / (weight > 0).sum().clamp(min=1)
        return self.loss_weight * total / len(affinities)

    @staticmethod
    def accuracy(affinities: Sequence[Tensor], ids: Sequence[Tensor], weights: Sequence[Tensor]) -> Tensor:
        """The official ``match_acc`` (percent): top-1 accuracy over the valid RoIs of all images."""
        correct = total = 0
        for score, target, weight in zip(affinities, ids, weights, strict=True):
            valid = weight > 0
            correct += int((score[valid].argmax(1) == target[valid]).sum())
            total += int(valid.sum())
        return torch.tensor(100.0 * correct / max(total, 1))


def box_iou_legacy(boxes1: Tensor, boxes2: Tensor, offset: float = 1.0) -> Tensor:
    """Pairwise IoU (M, N) of (x1, y1, x2, y2) boxes with the mmdetection-1.x ``+1`` pixel convention
    (official ``mmdet/core/bbox/geometry.py`` ``bbox_overlaps``, which the test association uses)."""
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:4], boxes2[None, :, 2:4])
    wh = (rb - lt + offset).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area1 = (boxes1[:, 2] - boxes1[:, 0] + offset) * (boxes1[:, 3] - boxes1[:, 1] + offset)
    area2 = (boxes2[:, 2] - boxes2[:, 0] + offset) * (boxes2[:, 3] - boxes2[:, 1] + offset)
    return inter / (area1[:, None] + area2[None, :] - inter)


def association_scores(
    affinity: Tensor,
    scores: Tensor,
    labels: Tensor,
    boxes: Tensor,
    reference_labels: Tensor,
    reference_boxes: Tensor,
    match_coeff: Sequence[float] = MATCH_COEFF,
    dummy_iou: float = 0.0,
) -> Tensor:
    """The official test-time association score (Sec. 3.2), (n, 1 + m), column 0 "new object".

    Follows mcahny/vps ``mmdet/models/detectors/panoptic_fusetrack.py``
    ``PanopticFuseTrack.simple_test_bboxes`` and ``track_head.py`` ``TrackHead.compute_comp_scores``
    with ``add_bbox_dummy=True``::

        log_softmax(affinity) + c0 * log(score) + c1 * [dummy_iou | IoU] + c2 * [1 | same class]

    ``affinity`` (n, 1 + m) from ``TrackHead.forward``; ``scores`` (n,) the detections' confidences (the
    log term is constant per row: it does not change the argmax); ``labels`` / ``boxes`` (n,), (n, 4) of
    the current detections and ``reference_labels`` / ``reference_boxes`` of the m tracked objects; IoU
    with the ``+1`` convention. The "new object" column gets IoU ``dummy_iou`` (official
    ``bbox_dummy_iou=0``) and class consistency 1, as in the official code. Each detection then takes the
    argmax column (0 = new object).
    """
    if affinity.shape != (len(boxes), 1 + len(reference_boxes)):
        raise ValueError(
            f"affinity {tuple(affinity.shape)} must be ({len(boxes)}, 1 + {len(reference_boxes)})"
        )
    ious = box_iou_legacy(boxes.to(affinity.dtype), reference_boxes.to(affinity.dtype))
    ious = torch.cat([ious.new_full((len(ious), 1), dummy_iou), ious], dim=1)
    same = (reference_labels[None, :] == labels[:, None]).to(affinity.dtype)
    same = torch.cat([same.new_ones(len(same), 1), same], dim=1)
    c_score, c_iou, c_label = match_coeff
    return (
        F.log_softmax(affinity, dim=1)
        + c_score * torch.log(scores.to(affinity.dtype))[:, None]
        + c_iou * ious
        + c_label * same
    )
