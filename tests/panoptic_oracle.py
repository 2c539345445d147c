"""A test double of the panoptic model contract (``lightning_modules.panoptic``; UPSNet follows it): named
losses of one parameter in training, and in eval a fixed answer per image, looked up by the image's
(H, W) -- the panoptic segmentation given in COCO form (segment ids and ``segments_info`` with category
ids), returned as segment ids 1..M with their semantic classes, plus Mask R-CNN's instance output of its
thing segments and, optionally, a second ("heuristic") answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from datamodules.metadata import DatasetMetadata

CocoAnswer = tuple[Tensor, list[dict[str, Any]]]  # (H, W) segment ids, segments_info (id, category_id)


class OraclePanopticNet(nn.Module):
    def __init__(
        self,
        metadata: DatasetMetadata,
        answers: Mapping[tuple[int, int], CocoAnswer],
        heuristic: Mapping[tuple[int, int], CocoAnswer] | None = None,
        num_semantic_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = metadata.num_classes
        self.num_semantic_classes = num_semantic_classes or metadata.num_semantic_classes
        self.num_stuff = len(metadata.stuff_names)
        self.semantic_of = {category: i for i, category in enumerate(metadata.semantic_category_ids)}
        self.answers = {size: self._encode(*answer) for size, answer in answers.items()}
        self.heuristic = {size: self._encode(*answer) for size, answer in (heuristic or {}).items()}
        self.weight = nn.Parameter(torch.tensor(0.5))

    def _encode(self, ids: Tensor, segments_info: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        """COCO ids -> ids 1..M in the order of ``segments_info``, and each segment's semantic class."""
        encoded = torch.zeros_like(ids)
        for m, segment in enumerate(segments_info, start=1):
            encoded[ids == segment["id"]] = m
        classes = [self.semantic_of[segment["category_id"]] for segment in segments_info]
        return encoded, torch.tensor(classes, dtype=torch.int64)

    def _instances(self, ids: Tensor, classes: Tensor) -> dict[str, Tensor]:
        things = [m for m, c in enumerate(classes.tolist(), start=1) if c >= self.num_stuff]
        masks = (
            torch.stack([ids == m for m in things])
            if things
            else torch.zeros(0, *ids.shape, dtype=torch.bool)
        )
        boxes = []
        for mask in masks:
            rows, columns = torch.nonzero(mask, as_tuple=True)
            boxes.append([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1])
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": classes[[m - 1 for m in things]] - self.num_stuff + 1,
            "scores": torch.full((len(things),), 0.9),
            "masks": masks[:, None].float(),
        }

    def forward(self, images: list[Tensor], targets: Any = None) -> Any:
        if self.training:
            return {"loss_semantic": (self.weight - 1) ** 2, "loss_panoptic": 0.5 * self.weight**2}
        outputs = []
        for image in images:
            size = tuple(image.shape[-2:])
            ids, classes = self.answers[size]
            output = {
                **self._instances(ids, classes),
                "panoptic": ids.clone(),
                "segment_classes": classes.clone(),
            }
            if size in self.heuristic:
                output["heuristic_panoptic"], output["heuristic_segment_classes"] = self.heuristic[size]
            outputs.append({key: value.to(image.device) for key, value in output.items()})
        return outputs
