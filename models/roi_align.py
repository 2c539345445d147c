"""Multi-level RoIAlign over an FPN (Mask R-CNN paper Sec. 3 "RoIAlign"; level assignment by
Eq. 1 of the FPN paper). Written here because torchvision's ``MultiScaleRoIAlign`` has no
``aligned`` flag: ``aligned=True`` is detectron2's half-pixel-corrected RoIAlign
(detectron2 ``ROIAlign(aligned=True)``: box coordinates shifted by -0.5 before sampling)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align
from torchvision.ops.poolers import LevelMapper


class FPNRoIAlign(nn.Module):
    """Pools each box from the FPN level its size maps to.

    ``strides`` are the levels' output strides (powers of two, finest first) for the feature maps
    named ``featmap_names``; with ``aligned=False`` the result equals torchvision's
    ``MultiScaleRoIAlign(featmap_names, output_size, sampling_ratio)``.
    """

    def __init__(
        self,
        output_size: int,
        sampling_ratio: int = 2,
        aligned: bool = False,
        featmap_names: Sequence[str] = ("0", "1", "2", "3"),
        strides: Sequence[int] = (4, 8, 16, 32),
        canonical_scale: int = 224,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        if len(featmap_names) != len(strides):
            raise ValueError(f"{len(featmap_names)} feature maps but {len(strides)} strides")
        self.output_size = (output_size, output_size)
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.featmap_names = tuple(featmap_names)
        self.scales = tuple(1.0 / s for s in strides)
        levels = [round(math.log2(s)) for s in strides]
        self.map_levels = LevelMapper(levels[0], levels[-1], canonical_scale, canonical_level)

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor]) -> Tensor:
        """``boxes``: per image (N_i, 4) XYXY in input-tensor pixels -> (sum N_i, C, S, S)."""
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])
        maps = [features[name] for name in self.featmap_names]
        if len(maps) == 1:
            return self._pool(maps[0], rois, self.scales[0])
        levels = self.map_levels(boxes)
        result = maps[0].new_zeros((len(rois), maps[0].shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(maps, self.scales, strict=True)):
            index = torch.where(levels == level)[0]
            result[index] = self._pool(feature, rois[index], scale).to(result.dtype)
        return result

    def _pool(self, feature: Tensor, rois: Tensor, scale: float) -> Tensor:
        return roi_align(feature, rois, self.output_size, scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, "
            f"featmap_names={self.featmap_names}"
        )
