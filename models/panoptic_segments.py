"""From per-pixel class and instance maps to a panoptic segmentation: segment ids per pixel (0 = void)
and the semantic class of each segment -- what both UPSNet's panoptic head and the heuristic merge end
with, in the layout of ``datamodules.batch`` (stuff classes 0..S-1, then thing classes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.batch import IGNORE_INDEX


def segments_from_maps(
    class_map: Tensor, instance_map: Tensor, instance_classes: Tensor
) -> tuple[Tensor, Tensor]:
    """``class_map`` (H, W) int64 semantic classes (``IGNORE_INDEX`` = void), ``instance_map`` (H, W)
    int64 instance numbers (0 = none, k = instance k, whose class is ``instance_classes[k - 1]``) ->
    ``(ids, segment_classes)``: (H, W) int64 segment ids 1..M (0 = void) and the (M,) semantic class of
    segment m + 1. Pixels of no instance form one segment per class (stuff); an instance is a segment
    wherever its pixels are. Segments are numbered classes first, then instances in order."""
    ids, segment_classes, _ = segments_with_instances(class_map, instance_map, instance_classes)
    return ids, segment_classes


def segments_with_instances(
    class_map: Tensor, instance_map: Tensor, instance_classes: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``segments_from_maps`` plus, per segment, its instance's index into ``instance_classes`` (k - 1),
    -1 for a stuff segment: what a tracker needs to give each instance segment its track's id."""
    # one key per segment: the class for pixels of no instance, _INSTANCE_KEYS + k for instance k
    keys = torch.where(instance_map > 0, _INSTANCE_KEYS + instance_map, class_map)
    void = (instance_map == 0) & (class_map == IGNORE_INDEX)
    unique, inverse = torch.unique(torch.where(void, -1, keys), return_inverse=True)
    has_void = bool(unique[0] == -1) if len(unique) else False
    ids = torch.where(void, 0, inverse + 1 - int(has_void))
    unique = unique[int(has_void) :]
    is_instance = unique > _INSTANCE_KEYS
    instance_index = (unique - _INSTANCE_KEYS - 1).clamp(0, max(len(instance_classes) - 1, 0))
    instance_class = instance_classes.to(unique)[instance_index] if len(instance_classes) else unique
    segment_classes = torch.where(is_instance, instance_class, unique)
    return ids, segment_classes, torch.where(is_instance, instance_index, -1)


_INSTANCE_KEYS = IGNORE_INDEX + 1  # above every semantic class


def resize_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of integer maps (..., H, W) to ``size``: label maps back to the original
    image after inference at the network's input scale."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    flat = maps.reshape(1, -1, *maps.shape[-2:]).double()
    resized = F.interpolate(flat, size=size, mode="nearest").reshape(*maps.shape[:-2], *size)
    return resized.round().to(maps.dtype)
