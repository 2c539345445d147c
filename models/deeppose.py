"""Coordinate regression (DeepPose: Toshev and Szegedy, "DeepPose: Human Pose Estimation via Deep Neural
Networks", CVPR 2014, Sec. 3): the network regresses the keypoints' coordinates, normalised to the input
crop, directly. As in mmpose's ResNet DeepPose (``RegressionHead``), the CNN is a ResNet whose globally
average-pooled C5 feeds one fully connected layer with 2K outputs; the paper's cascade of refining stages
is left out (mmpose's baseline has none either). Defaults: ResNet-50, 17 keypoints (23,577,698 parameters).

Its backbone is the one ``models.simple_baseline.SimpleBaseline`` uses, so the two compare with the
backbone, input size and data held fixed (regression vs heatmaps, ``experiments/landmarks``).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from models.backbones import ResNetTrunk


class CoordinateRegression(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, K, 2): each keypoint's (x / W, y / H) in the input crop (0 and 1
    at its edges, the batch convention's continuous pixel frame)."""

    def __init__(
        self, num_keypoints: int = 17, depth: int = 50, backbone_weights: str | Path | None = None
    ) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.backbone = ResNetTrunk(depth, backbone_weights)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.regress = nn.Linear(self.backbone.out_channels, 2 * num_keypoints)

    def forward(self, images: Tensor) -> Tensor:
        features = self.pool(self.backbone(images)).flatten(1)
        return self.regress(features).view(len(images), self.num_keypoints, 2)
