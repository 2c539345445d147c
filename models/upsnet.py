"""UPSNet (Xiong et al., "UPSNet: A Unified Panoptic Segmentation Network", CVPR 2019): a Mask R-CNN
(``detector``) and a deformable-convolution semantic head on one FPN (Sec. 3.1-3.2), merged by a
parameter-free panoptic head with an "unknown" class (Sec. 3.3).

Full size (the defaults) is the official R50 COCO model: 80 thing classes (81 with background), 53 stuff
classes (133 semantic classes), the FPN with global context (official ``fpn_with_gap``), a 3-layer
semantic head with the RoI loss, 46,129,904 parameters -- counting the frozen batch-norm affines, which
torchvision's ``FrozenBatchNorm2d`` keeps as buffers and the official ResNet as parameters (53,120). The
Cityscapes model has a 2-layer semantic head, no global context and no RoI loss
(``experiments/upsnet/cityscapes_r50.yaml``).

``forward(images, targets)``: training returns the named losses -- Mask R-CNN's, ``loss_semantic``,
``loss_semantic_roi`` and ``loss_panoptic`` (unweighted: the experiment weighs them, Sec. 4); targets
carry ``semantic`` (``datamodules.batch``). Eval returns per image Mask R-CNN's detections in the input
frame plus ``panoptic`` (H, W) segment ids (0 = void or unknown) and ``segment_classes`` (semantic class
of segment id m + 1), and, for the paper's ablation on the same network, ``heuristic_panoptic`` and
``heuristic_segment_classes`` from the heuristic merge (``panoptic_head=False``: the heuristic merge is
the panoptic output, and no panoptic loss is trained).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from datamodules.batch import IGNORE_INDEX
from models.deformable_semantic_head import DeformableSemanticHead, semantic_loss, semantic_roi_loss
from models.heuristic_panoptic_merge import HeuristicMerge
from models.mask_rcnn import MaskRCNN, TwoStageDetector, check_targets, to_original_frame
from models.panoptic_head import (
    PanopticInference,
    panoptic_logits,
    panoptic_targets,
    paste_logits_in_boxes,
    remove_overlapping_masks,
    unify,
    upsample_semantic,
)
from models.panoptic_segments import resize_maps, segments_from_maps, segments_with_instances
from models.paste_masks import paste_masks_in_image

SEMANTIC_STRIDE = 4  # the semantic head works on P2's grid


class HeadOutputs(NamedTuple):
    """What ``UPSNet.run_heads`` computes on one set of FPN features: the RPN's ``proposals``, the RoI
    heads' ``detections`` (eval; in the network input's frame), the detector's ``losses`` (training), and
    the semantic head's 1/4-resolution ``semantic_logits`` and ``semantic_features``."""

    proposals: list[Tensor]
    detections: list[dict[str, Tensor]]
    losses: dict[str, Tensor]
    semantic_logits: Tensor
    semantic_features: Tensor


def check_panoptic_targets(images: list[Tensor], targets: list[dict[str, Tensor]] | None) -> None:
    """Mask R-CNN's target checks plus a (H, W) ``semantic`` map of each image's size."""
    check_targets(images, targets)
    assert targets is not None
    for i, target in enumerate(targets):
        if "semantic" not in target or target["semantic"].shape != images[i].shape[-2:]:
            raise ValueError(f"target {i}: UPSNet trains on a (H, W) semantic map of the image's size")


class UPSNet(nn.Module):
    """UPSNet around a Mask R-CNN ``detector`` (default: the R50-FPN with global context, 80 things).

    Args:
        detector: the instance branch and the backbone the semantic head shares.
        num_stuff_classes: S; semantic classes are S + the detector's ``num_classes``.
        semantic_layers, semantic_channels: the deformable stack (3 and 128 for COCO, 2 for Cityscapes).
        semantic_group_norm: VPSNet's semantic head (GroupNorm after bias-free deformable convolutions).
        semantic_roi_loss: train the semantic RoI loss (COCO yes, Cityscapes no).
        panoptic_head: train and use the panoptic head; False gives the heuristic-merge baseline.
        box_keep_fraction: the share of ground-truth boxes the panoptic head trains on (< 1 enables
            "unknown").
        panoptic_score_thresh, panoptic_nms_thresh, overlap_thresh, stuff_area_limit: panoptic inference.
        heuristic_score_thresh, heuristic_overlap_fraction: the heuristic merge (same stuff limit).
    """

    def __init__(
        self,
        detector: TwoStageDetector | None = None,
        num_stuff_classes: int = 53,
        *,
        semantic_layers: int = 3,
        semantic_channels: int = 128,
        semantic_group_norm: bool = False,
        semantic_roi_loss: bool = True,
        panoptic_head: bool = True,
        box_keep_fraction: float = 0.7,
        panoptic_score_thresh: float = 0.6,
        panoptic_nms_thresh: float = 0.5,
        overlap_thresh: float = 0.3,
        stuff_area_limit: int = 4096,
        heuristic_score_thresh: float = 0.6,
        heuristic_overlap_fraction: float = 0.7,
    ) -> None:
        super().__init__()
        if num_stuff_classes < 1:
            raise ValueError(f"num_stuff_classes must be >= 1, got {num_stuff_classes}")
        if not 0.0 < box_keep_fraction <= 1.0:
            raise ValueError(f"box_keep_fraction must be in (0, 1], got {box_keep_fraction}")
        self.detector = (
            detector if detector is not None else MaskRCNN(num_classes=80, fpn_global_context=True)
        )
        self.num_stuff_classes = num_stuff_classes
        fpn_channels = self.detector.backbone.out_channels
        self.semantic_head = DeformableSemanticHead(
            self.num_semantic_classes, fpn_channels, semantic_channels, semantic_layers, semantic_group_norm
        )
        self.with_semantic_roi_loss = semantic_roi_loss
        self.with_panoptic_head = panoptic_head
        self.box_keep_fraction = box_keep_fraction
        self.panoptic_inference = PanopticInference(
            panoptic_score_thresh, panoptic_nms_thresh, overlap_thresh, stuff_area_limit
        )
        self.heuristic_merge = HeuristicMerge(
            heuristic_score_thresh, heuristic_overlap_fraction, stuff_area_limit
        )

    @property
    def num_classes(self) -> int:
        """C, the thing classes (no background)."""
        return self.detector.num_classes

    @property
    def num_semantic_classes(self) -> int:
        return self.num_stuff_classes + self.num_classes

    @property
    def with_unknown(self) -> bool:
        """The panoptic head has the "unknown" class when it trains on a fraction of the boxes."""
        return self.box_keep_fraction < 1.0

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training:
            check_panoptic_targets(images, targets)
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, targets, features = self.detector.features(images, targets)
        heads = self.run_heads(image_list, features, targets)
        if not self.training:
            return self.postprocess(
                features, heads.semantic_logits, heads.detections, image_list.image_sizes, original_sizes
            )
        assert targets is not None
        return self.losses(image_list, features, heads, targets)

    def run_heads(
        self, image_list: ImageList, features: dict[str, Tensor], targets: list[dict[str, Tensor]] | None
    ) -> HeadOutputs:
        """RPN, RoI heads and semantic head on FPN ``features`` (UPSNet's own, or VPSNet's fused ones)."""
        proposals, rpn_losses = self.detector.rpn(image_list, features, targets)
        detections, head_losses = self.detector.roi_heads(
            features, proposals, image_list.image_sizes, targets
        )
        levels = [features[name] for name in list(features)[:4]]  # P2-P5 (P6 is the RPN's only)
        semantic_logits, semantic_features = self.semantic_head(levels)
        return HeadOutputs(
            proposals, detections, {**head_losses, **rpn_losses}, semantic_logits, semantic_features
        )

    def losses(
        self,
        image_list: ImageList,
        features: dict[str, Tensor],
        heads: HeadOutputs,
        targets: list[dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        """Mask R-CNN's losses and the semantic, semantic RoI and panoptic losses (Sec. 3.2, 3.4)."""
        semantic = padded_semantic(targets, image_list.image_sizes, image_list.tensors.shape[-2:])
        losses = {**heads.losses, "loss_semantic": semantic_loss(heads.semantic_logits, semantic)}
        if self.with_semantic_roi_loss:
            boxes = [t["boxes"] for t in targets]
            losses["loss_semantic_roi"] = semantic_roi_loss(
                self.semantic_head.score, heads.semantic_features, boxes, semantic, SEMANTIC_STRIDE
            )
        if self.with_panoptic_head:
            losses["loss_panoptic"] = self.panoptic_loss(features, heads.semantic_logits, semantic, targets)
        return losses

    # -- training -------------------------------------------------------------------------------------
    def kept_boxes(self, count: int, device: torch.device) -> Tensor:
        """A random ``box_keep_fraction`` (at least one) of ``count`` ground-truth instances, in order."""
        if count == 0 or not self.with_unknown:
            return torch.arange(count, device=device)
        keep = max(int(count * self.box_keep_fraction), 1)
        return torch.randperm(count)[:keep].sort().values.to(device)

    def panoptic_loss(
        self,
        features: dict[str, Tensor],
        semantic_logits: Tensor,
        semantic: Tensor,
        targets: list[dict[str, Tensor]],
    ) -> Tensor:
        """Sec. 3.4: the panoptic head on kept ground-truth boxes at 1/4 resolution, cross-entropy against
        ``panoptic_targets``, averaged over the images."""
        kept = [self.kept_boxes(len(t["boxes"]), semantic.device) for t in targets]
        boxes = [t["boxes"][k] for t, k in zip(targets, kept, strict=True)]
        labels = [t["labels"][k] for t, k in zip(targets, kept, strict=True)]
        all_labels = torch.cat(labels)
        mask_logits = self.detector.roi_heads.mask_logits(features, boxes)
        mask_logits = mask_logits[torch.arange(len(all_labels), device=all_labels.device), all_labels]
        size = tuple(semantic_logits.shape[-2:])
        padded_size = semantic.shape[-2:]
        losses = []
        for i, (target, keep, image_boxes, image_labels, image_masks) in enumerate(
            zip(targets, kept, boxes, labels, mask_logits.split([len(b) for b in boxes]), strict=True)
        ):
            scaled = image_boxes / SEMANTIC_STRIDE
            pasted = paste_logits_in_boxes(image_masks, scaled, size)
            classes = self.num_stuff_classes + image_labels - 1
            logits = panoptic_logits(
                semantic_logits[i], self.num_stuff_classes, classes, scaled, pasted, self.with_unknown
            )
            masks = _pad(target["masks"][keep], padded_size, 0)[:, ::SEMANTIC_STRIDE, ::SEMANTIC_STRIDE]
            grid = semantic[i, ::SEMANTIC_STRIDE, ::SEMANTIC_STRIDE]
            panoptic = panoptic_targets(grid, masks, self.num_stuff_classes, self.with_unknown)
            if bool((panoptic == IGNORE_INDEX).all()):
                losses.append(logits.sum() * 0)
                continue
            losses.append(F.cross_entropy(logits[None].float(), panoptic[None], ignore_index=IGNORE_INDEX))
        return torch.stack(losses).mean()

    # -- inference ------------------------------------------------------------------------------------
    def postprocess(
        self,
        features: dict[str, Tensor],
        semantic_logits: Tensor,
        detections: list[dict[str, Tensor]],
        image_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
        chosen: list[Tensor] | None = None,
    ) -> list[dict[str, Tensor]]:
        """Per image the detections in the original frame, ``panoptic`` / ``segment_classes`` and (with
        the panoptic head) ``segment_detections`` (M,): the index into the detections of each segment's
        instance, -1 for stuff. ``chosen``: the detections the panoptic head takes (default
        ``panoptic_inference.select``; VPSNet passes those it tracked)."""
        semantic_full = upsample_semantic(semantic_logits, SEMANTIC_STRIDE)
        if chosen is None:
            chosen = self.select_detections(detections)
        chosen_boxes = [d["boxes"][c] for d, c in zip(detections, chosen, strict=True)]
        chosen_labels = torch.cat([d["labels"][c] for d, c in zip(detections, chosen, strict=True)])
        mask_logits = self.detector.roi_heads.mask_logits(features, chosen_boxes)
        mask_logits = mask_logits[
            torch.arange(len(chosen_labels), device=chosen_labels.device), chosen_labels
        ]
        mask_logits = mask_logits.split([len(b) for b in chosen_boxes])
        for i, (detection, size, original) in enumerate(
            zip(detections, image_sizes, original_sizes, strict=True)
        ):
            semantic = semantic_full[i, :, : size[0], : size[1]].float()
            semantic_classes = semantic.argmax(0)
            heuristic = self.heuristic_segments(detection, semantic_classes, size, original)
            if self.with_panoptic_head:
                chosen_i = chosen[i]
                panoptic = self.panoptic_segments(
                    semantic,
                    semantic_classes,
                    detection["boxes"][chosen_i],
                    detection["labels"][chosen_i],
                    detection["scores"][chosen_i],
                    mask_logits[i].float(),
                    original,
                )
                detection["panoptic"], detection["segment_classes"], instances = panoptic
                detection["segment_detections"] = _take(chosen_i, instances)
                detection["heuristic_panoptic"], detection["heuristic_segment_classes"] = heuristic
            else:
                detection["panoptic"], detection["segment_classes"] = heuristic
        return to_original_frame(detections, image_sizes, original_sizes)

    def select_detections(self, detections: list[dict[str, Tensor]]) -> list[Tensor]:
        """Per image the indices of the detections the panoptic head takes (Sec. 3.5)."""
        return [self.panoptic_inference.select(d["boxes"], d["scores"]) for d in detections]

    def panoptic_segments(
        self,
        semantic: Tensor,
        semantic_classes: Tensor,
        boxes: Tensor,
        labels: Tensor,
        scores: Tensor,
        mask_logits: Tensor,
        original: tuple[int, int],
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Sec. 3.5: the panoptic head's segmentation of one image (semantic logits at the input scale):
        segment ids, segment classes and each segment's index into ``boxes`` (-1 for stuff)."""
        size = tuple(semantic.shape[-2:])
        pasted = paste_logits_in_boxes(mask_logits, boxes, size)
        keep = remove_overlapping_masks(pasted, labels, scores, self.panoptic_inference.overlap_thresh)
        classes = self.num_stuff_classes + labels[keep] - 1
        logits = panoptic_logits(
            semantic, self.num_stuff_classes, classes, boxes[keep], pasted[keep], self.with_unknown
        )
        class_map, instance_map = unify(
            logits.argmax(0),
            semantic_classes,
            classes,
            self.num_stuff_classes,
            self.panoptic_inference.stuff_area_limit,
        )
        maps = resize_maps(torch.stack([class_map, instance_map]), original)
        ids, segment_classes, instances = segments_with_instances(maps[0], maps[1], classes)
        return ids, segment_classes, _take(keep, instances)

    def heuristic_segments(
        self,
        detection: dict[str, Tensor],
        semantic_classes: Tensor,
        size: tuple[int, int],
        original: tuple[int, int],
    ) -> tuple[Tensor, Tensor]:
        """The heuristic merge of Mask R-CNN's detections (masks at 0.5) with the semantic argmax."""
        masks = paste_masks_in_image(detection["masks"], detection["boxes"], size)[:, 0] > 0.5
        classes = self.num_stuff_classes + detection["labels"] - 1
        class_map, instance_map, kept_classes = self.heuristic_merge(
            semantic_classes, masks, classes, detection["scores"], self.num_stuff_classes
        )
        maps = resize_maps(torch.stack([class_map, instance_map]), original)
        return segments_from_maps(maps[0], maps[1], kept_classes)


def padded_semantic(
    targets: list[dict[str, Tensor]], image_sizes: list[tuple[int, int]], padded_size: tuple[int, int]
) -> Tensor:
    """(B, H, W) semantic targets resized (nearest) to the network's input sizes and padded with void to
    the batch tensor's size."""
    resized = []
    for target, size in zip(targets, image_sizes, strict=True):
        semantic = resize_maps(target["semantic"], tuple(size))
        resized.append(_pad(semantic, padded_size, IGNORE_INDEX))
    return torch.stack(resized)


def _take(values: Tensor, index: Tensor) -> Tensor:
    """``values[index]`` where ``index >= 0``, -1 elsewhere (``values`` may be empty then)."""
    if len(values) == 0:
        return torch.full_like(index, -1)
    return torch.where(index >= 0, values[index.clamp_min(0)], -1)


def _pad(maps: Tensor, size: tuple[int, int], value: int) -> Tensor:
    """Pads (..., h, w) at the bottom and right to (..., H, W) with ``value``."""
    return F.pad(maps, (0, size[1] - maps.shape[-1], 0, size[0] - maps.shape[-2]), value=value)
