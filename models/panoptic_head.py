"""UPSNet's parameter-free panoptic head (Xiong et al., CVPR 2019, Sec. 3.3 and Fig. 4): per-pixel logits
over the S stuff classes, one channel per instance and an "unknown" channel, decided by one argmax.

- Stuff channels are the semantic head's stuff logits.
- Instance i (class c, box B_i): the semantic head's logit of c inside B_i (zero outside) plus its mask
  logit resized to B_i and pasted there (zero outside).
- Unknown: max over the semantic thing logits minus max over the instances' cropped thing logits -- high
  where the semantic head sees a thing that no instance explains (the official code takes the second
  max over the cropped semantic logits; the paper writes the mask logits).
Training (Sec. 3.4): ground-truth boxes as the instances, a random ``box_keep_fraction`` of them kept so
that the pixels of the dropped ones teach "unknown", cross-entropy at 1/4 resolution. Inference (Sec. 3.5,
official ``MaskRemoval`` and ``get_unified_pan_result``): detections above a score, class-agnostic NMS,
masks covering more than ``overlap_thresh`` of their pixels with a higher-scoring mask of the same class
removed; then each instance region whose semantic majority is a stuff class (at least half) becomes that
stuff, and stuff segments smaller than ``stuff_area_limit`` pixels (at the network's input scale) become
void, as does "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import nms

from datamodules.batch import IGNORE_INDEX
from models.paste_masks import clipped_integer_box, paste_in_integer_boxes


def paste_logits_in_boxes(logits: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """(K, M, M) RoI logits -> (K, H, W), each resized to its box (integer corners, the official
    ``MaskTerm``) and zero outside it."""
    return paste_in_integer_boxes(logits, boxes, size)


def logits_in_boxes(semantic_logits: Tensor, classes: Tensor, boxes: Tensor) -> Tensor:
    """(K_sem, H, W) semantic logits -> (K, H, W): instance k's class channel inside its box, zero outside.

    The box is the pasted mask logits' own (``clipped_integer_box``: corners truncated, x0..x1 inclusive),
    as the paper crops both terms to one box B_i (Sec. 3.3). The official ``SegTerm`` reaches one row and
    column further (``round(x1)``) than its ``MaskTerm`` whenever x1's fraction is >= .5; on that strip an
    instance gets its thing logit without its mask logit, and claims 1-pixel lines of whatever the semantic
    head calls its class there (seen on the synthetic world: things PQ -0.005, SQ -0.006 on one trained
    network)."""
    image_shape = semantic_logits.shape[-2:]
    cropped = semantic_logits.new_zeros((len(classes), *image_shape))
    for k, (box, c) in enumerate(zip(boxes.to(torch.int64).tolist(), classes.tolist(), strict=True)):
        top, bottom, left, right = clipped_integer_box(box, image_shape)
        cropped[k, top:bottom, left:right] = semantic_logits[c, top:bottom, left:right]
    return cropped


def panoptic_logits(
    semantic_logits: Tensor,
    num_stuff: int,
    instance_classes: Tensor,
    boxes: Tensor,
    mask_logits: Tensor,
    with_unknown: bool = True,
) -> Tensor:
    """(S + K [+ 1], H, W) panoptic logits from (K_sem, H, W) semantic logits, the K instances' semantic
    ``instance_classes`` and ``boxes`` (XYXY in this map's pixels) and their pasted (K, H, W)
    ``mask_logits``; the last channel is "unknown" when ``with_unknown``."""
    things = logits_in_boxes(semantic_logits, instance_classes, boxes)
    channels = [semantic_logits[:num_stuff], things + mask_logits]
    if with_unknown:
        explained = things.max(dim=0, keepdim=True).values if len(things) else 0.0
        channels.append(semantic_logits[num_stuff:].max(dim=0, keepdim=True).values - explained)
    return torch.cat(channels)


def panoptic_targets(semantic: Tensor, masks: Tensor, num_stuff: int, with_unknown: bool = True) -> Tensor:
    """The panoptic head's (H, W) target (official ``MaskMatching``): stuff pixels keep their class, the
    pixels of instance k (``masks`` (K, H, W), later ones on top) become S + k, void stays
    ``IGNORE_INDEX``, and the remaining thing pixels (dropped or crowd instances) become "unknown", S + K
    (``IGNORE_INDEX`` without the unknown class)."""
    unexplained = (semantic >= num_stuff) & (semantic != IGNORE_INDEX)
    target = torch.where(unexplained, num_stuff + len(masks) if with_unknown else IGNORE_INDEX, semantic)
    for k, mask in enumerate(masks):
        target = torch.where(mask.bool(), num_stuff + k, target)
    return target


def remove_overlapping_masks(
    mask_logits: Tensor, classes: Tensor, scores: Tensor, overlap_thresh: float = 0.3
) -> Tensor:
    """Indices (by decreasing score) of the pasted (K, H, W) instance masks (logit > 0) to keep: a mask
    is dropped when it is empty or more than ``overlap_thresh`` of it lies on kept masks of its class."""
    keep: list[int] = []
    occupied: dict[int, Tensor] = {}
    for k in torch.argsort(scores, descending=True, stable=True).tolist():
        mask = mask_logits[k] > 0
        area = int(mask.sum())
        label = int(classes[k])
        taken = occupied.setdefault(label, torch.zeros_like(mask))
        if area == 0 or int((mask & taken).sum()) > overlap_thresh * area:
            continue
        keep.append(k)
        taken |= mask
    return torch.tensor(keep, dtype=torch.int64, device=scores.device)


def unify(
    panoptic_classes: Tensor,
    semantic_classes: Tensor,
    instance_classes: Tensor,
    num_stuff: int,
    stuff_area_limit: int,
) -> tuple[Tensor, Tensor]:
    """The panoptic argmax (H, W) over [S stuff, K instances, unknown] -> ``(class_map, instance_map)``
    for ``panoptic_segments.segments_from_maps``. An instance region whose semantic argmax
    (``semantic_classes``) is mostly (at least half) one stuff class, other than its own class, becomes
    that stuff; stuff classes with fewer than ``stuff_area_limit`` pixels and unknown become void."""
    num_instances = len(instance_classes)
    is_instance = (panoptic_classes >= num_stuff) & (panoptic_classes < num_stuff + num_instances)
    instance_map = torch.where(is_instance, panoptic_classes - num_stuff + 1, 0)
    class_map = torch.where(panoptic_classes < num_stuff, panoptic_classes, IGNORE_INDEX)
    if num_instances:
        num_semantic = int(semantic_classes.max()) + 1
        pairs = (instance_map[is_instance] - 1) * num_semantic + semantic_classes[is_instance]
        counts = torch.bincount(pairs, minlength=num_instances * num_semantic).view(
            num_instances, num_semantic
        )
        majority_count, majority = counts.max(dim=1)
        to_stuff = (
            (majority != instance_classes)
            & (majority < num_stuff)
            & (2 * majority_count >= counts.sum(1))
            & (counts.sum(1) > 0)
        )
        to_stuff_pixels = is_instance & to_stuff[(instance_map - 1).clamp_min(0)]
        class_map = torch.where(to_stuff_pixels, majority[(instance_map - 1).clamp_min(0)], class_map)
        instance_map = torch.where(to_stuff_pixels, 0, instance_map)
    return drop_small_stuff(class_map, instance_map, num_stuff, stuff_area_limit), instance_map


def drop_small_stuff(class_map: Tensor, instance_map: Tensor, num_stuff: int, area_limit: int) -> Tensor:
    """``class_map`` with every stuff class covering fewer than ``area_limit`` pixels (outside instances)
    set to void."""
    stuff = (instance_map == 0) & (class_map < num_stuff)
    areas = torch.bincount(class_map[stuff], minlength=num_stuff)
    small = areas < area_limit
    return torch.where(stuff & small[class_map.clamp(0, num_stuff - 1)], IGNORE_INDEX, class_map)


@dataclass(frozen=True)
class PanopticInference:
    """The panoptic head's inference settings (official COCO values)."""

    score_thresh: float = 0.6
    nms_thresh: float = 0.5
    overlap_thresh: float = 0.3
    stuff_area_limit: int = 4096

    def select(self, boxes: Tensor, scores: Tensor) -> Tensor:
        """Indices of the detections the panoptic head takes: score >= ``score_thresh`` and kept by a
        class-agnostic NMS at ``nms_thresh``."""
        confident = torch.where(scores >= self.score_thresh)[0]
        return confident[nms(boxes[confident].float(), scores[confident].float(), self.nms_thresh)]


def upsample_semantic(logits: Tensor, stride: int = 4) -> Tensor:
    """(B, K, H/stride, W/stride) logits -> (B, K, H, W), bilinear (the official ``fcn_output``)."""
    full = (logits.shape[-2] * stride, logits.shape[-1] * stride)
    return F.interpolate(logits, size=full, mode="bilinear", align_corners=False)
