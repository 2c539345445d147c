"""SimpleBaseline (Xiao, Wu, Wei, "Simple Baselines for Human Pose Estimation and Tracking", ECCV 2018):
a ResNet and three deconvolution layers predicting one Gaussian heatmap per keypoint at stride 4.

Sec. 2 (Fig. 1c): "three deconvolutional layers with batch normalization and ReLU activation are used.
Each layer has 256 filters with 4 x 4 kernel. The stride is 2. A 1 x 1 convolutional layer is added at
last to generate predicted heatmaps for all k key points". Initialisation as the official code
(microsoft/human-pose-estimation.pytorch ``PoseResNet.init_weights``): deconvolutions and the final
convolution N(0, 0.001), zero biases, BatchNorm (1, 0). Defaults = the paper's ResNet-50 COCO model
(33,999,697 parameters for 17 keypoints, as the official ``pose_resnet`` builds it).

The heatmaps are encoded and decoded by ``models.heatmaps.GaussianHeatmapCodec`` (stride 4).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from models.backbones import ResNetTrunk


class DeconvHeatmapHead(nn.Module):
    """``num_layers`` x (4x4 transposed convolution, stride 2, no bias + BN + ReLU), then a 1x1
    convolution to ``num_keypoints`` heatmaps: C5 at stride 32 -> heatmaps at stride 32 / 2**num_layers."""

    def __init__(
        self, in_channels: int, num_keypoints: int, channels: int = 256, num_layers: int = 3
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(num_layers):
            layers += [
                nn.ConvTranspose2d(in_channels if index == 0 else channels, channels, 4, 2, 1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        self.deconvolutions = nn.Sequential(*layers)
        self.predict = nn.Conv2d(channels if num_layers else in_channels, num_keypoints, 1)
        for module in self.modules():
            if isinstance(module, nn.ConvTranspose2d | nn.Conv2d):
                nn.init.normal_(module.weight, std=0.001)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.predict(self.deconvolutions(features))


class SimpleBaseline(nn.Module):
    """ResNet-``depth`` + ``DeconvHeatmapHead``: (B, 3, H, W) RGB in [0, 1] -> (B, K, H / 4, W / 4).

    ``backbone_weights``: a local torchvision ImageNet ResNet state dict (the paper starts from ImageNet);
    None trains from scratch."""

    output_stride = 4

    def __init__(
        self,
        num_keypoints: int = 17,
        depth: int = 50,
        deconv_channels: int = 256,
        backbone_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.backbone = ResNetTrunk(depth, backbone_weights)
        self.head = DeconvHeatmapHead(self.backbone.out_channels, num_keypoints, deconv_channels)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images))
