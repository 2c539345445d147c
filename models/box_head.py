"""Fast R-CNN box branch on RoIAligned FPN features: the 2-fc head ("2fc MLP", FPN paper Sec. 4.2,
used by Mask R-CNN Fig. 4 right), its class/box predictor, and the Fast R-CNN loss
(Girshick 2015, Sec. 2.3 Eq. 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TwoMLPHead(nn.Module):
    """Flattened (C, 7, 7) RoI features -> fc6 -> ReLU -> fc7 -> ReLU."""

    def __init__(self, in_channels: int, representation_size: int = 1024) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(start_dim=1)))))


class FastRCNNPredictor(nn.Module):
    """Per-RoI class logits (``num_classes`` includes background) and class-specific box deltas.

    ``background_deltas=True`` predicts deltas for the background class too (torchvision's
    ``FastRCNNPredictor``, never used); False predicts them for the object classes only, as detectron2's
    ``FastRCNNOutputLayers`` (4 (C) outputs rather than 4 (C + 1)), and puts zeros in the background's
    place, so the output layout is the same either way.
    """

    def __init__(self, in_channels: int, num_classes: int, background_deltas: bool = True) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, (num_classes - (not background_deltas)) * 4)
        self.background_deltas = background_deltas

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        deltas = self.bbox_pred(x)
        if not self.background_deltas:
            deltas = F.pad(deltas, (4, 0))
        return self.cls_score(x), deltas


def fast_rcnn_loss(
    class_logits: Tensor, box_regression: Tensor, labels: Tensor, regression_targets: Tensor
) -> tuple[Tensor, Tensor]:
    """Cross-entropy over all sampled RoIs and smooth-L1 (beta 1/9) on the GT class's deltas of the
    foreground RoIs, summed and divided by the number of sampled RoIs (Fast R-CNN Eq. 1-3)."""
    classification_loss = F.cross_entropy(class_logits, labels)
    foreground = torch.where(labels > 0)[0]
    deltas = box_regression.reshape(len(box_regression), -1, 4)[foreground, labels[foreground]]
    box_loss = F.smooth_l1_loss(deltas, regression_targets[foreground], beta=1 / 9, reduction="sum")
    return classification_loss, box_loss / labels.numel()
