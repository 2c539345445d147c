"""What the keypoint detectors (``models.centernet.CenterNet``, ``models.cornernet.CornerNet``) share: a
``network`` returning one dict of head maps per stack, the letterbox input transform
(``models.letterbox``), the Gaussian radius settings of their targets, and torchvision's detection
convention (``datamodules.batch``): ``forward(images, targets)`` returns the named losses in training and
per-image detections in eval."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from models.letterbox import LetterboxTransform


class KeypointDetector(nn.Module, ABC):
    """The shared half (module docstring); a method adds ``losses`` and ``detect``."""

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        input_size: int,
        min_overlap: float,
        corrected_radius: bool,
        bgr: bool,
        test_padding: tuple[int, int] | None,
    ) -> None:
        super().__init__()
        self.network = network
        self.num_classes = num_classes
        self.transform = LetterboxTransform(input_size, bgr=bgr, test_padding=test_padding)
        self.min_overlap = min_overlap
        self.corrected_radius = corrected_radius

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        batch = self.transform(images)
        if self.training:
            if targets is None:
                raise ValueError(f"{type(self).__name__} needs targets in training mode")
            scales = self.transform.scales(images)
            return self.losses(self.network(batch), targets, scales, tuple(batch.shape[-2:]))
        return self.detect(batch, images)

    @abstractmethod
    def losses(
        self,
        stacks: list[dict[str, Tensor]],
        targets: list[dict[str, Tensor]],
        scales: list[float],
        input_hw: tuple[int, int],
    ) -> dict[str, Tensor]:
        """The named losses of the network's ``stacks`` against ``targets`` (boxes in each image's pixels,
        which ``scales`` map into the ``input_hw`` network input)."""

    @abstractmethod
    def detect(self, batch: Tensor, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Per image ``boxes`` (XYXY, the image's own pixels), ``labels`` 1..C, ``scores`` and ``heatmap``,
        from the transformed ``batch`` of the original ``images``."""
