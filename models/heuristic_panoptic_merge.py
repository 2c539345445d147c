"""The heuristic merge of semantic and instance outputs into a panoptic segmentation (Kirillov et al.,
"Panoptic Segmentation", CVPR 2019, Sec. 7; UPSNet's baseline without the panoptic head, official
``get_combined_pan_result``): instances by decreasing score, each keeping the pixels no earlier instance
took if those are at least ``overlap_fraction`` of its mask; the rest from the semantic argmax, where
stuff classes smaller than ``stuff_area_limit`` pixels (in the whole argmax) become void, and so do
pixels that the semantic head calls a thing but no instance covers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from datamodules.batch import IGNORE_INDEX
from models.panoptic_head import drop_small_stuff


@dataclass(frozen=True)
class HeuristicMerge:
    """Settings of the heuristic merge (official values)."""

    score_thresh: float = 0.6
    overlap_fraction: float = 0.7
    stuff_area_limit: int = 4096

    def __call__(
        self,
        semantic_classes: Tensor,
        masks: Tensor,
        instance_classes: Tensor,
        scores: Tensor,
        num_stuff: int,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``semantic_classes`` (H, W) semantic argmax, ``masks`` (N, H, W) bool instance masks with their
        semantic ``instance_classes`` and ``scores`` -> ``(class_map, instance_map, kept_classes)`` for
        ``panoptic_segments.segments_from_maps`` (instance k of the map is ``kept_classes[k - 1]``)."""
        instance_map = torch.zeros_like(semantic_classes)
        kept: list[int] = []
        for n in torch.argsort(scores, descending=True, stable=True).tolist():
            if float(scores[n]) < self.score_thresh:
                continue
            area = int(masks[n].sum())
            remaining = masks[n] & (instance_map == 0)
            if area == 0 or int(remaining.sum()) < self.overlap_fraction * area:
                continue
            kept.append(n)
            instance_map[remaining] = len(kept)
        kept_classes = instance_classes[torch.tensor(kept, dtype=torch.int64, device=scores.device)]
        # stuff areas of the semantic argmax itself, before instances cover it (as the official merge)
        no_instances = torch.zeros_like(instance_map)
        class_map = drop_small_stuff(semantic_classes, no_instances, num_stuff, self.stuff_area_limit)
        thing_without_instance = (class_map >= num_stuff) & (class_map != IGNORE_INDEX) & (instance_map == 0)
        class_map = torch.where(thing_without_instance, IGNORE_INDEX, class_map)
        return class_map, instance_map, kept_classes
