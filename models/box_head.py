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
    """Per-RoI class logits (``num_classes`` includes background) and class-specific box deltas."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


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
