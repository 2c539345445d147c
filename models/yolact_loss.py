"""YOLACT's training loss (Bolya et al. 2019, Sec. 3.3 and Sec. 6), as the official
``layers/modules/multibox_loss.py`` computes it for ``yolact_base``:

- matching (``box_utils.match``): an anchor is positive at IoU >= 0.5 with its best ground truth,
  background below 0.4, ignored in between; every ground truth first claims its best anchor, greedily
  in order of overlap (SSD's bipartite step);
- classes: softmax cross-entropy on the positives and the 3x as many hardest negatives (OHEM, ranked by
  -log p(background)), summed;
- boxes: smooth-L1 on SSD-encoded deltas (variances 0.1, 0.2 -- torchvision's ``BoxCoder`` with
  weights (10, 10, 5, 5) is the same encoding), summed over positives, weight 1.5;
- masks: per positive, sigmoid(prototypes @ coefficients) against the ground-truth mask downsampled to
  the prototypes' size (bilinear, > 0.5), both cropped to the ground-truth box (1 prototype pixel of
  padding), per-pixel BCE summed and divided by the box's area in prototype pixels, weight 6.125; at
  most ``masks_to_train`` (100) random positives per image, rescaled to the full count;
- the semantic segmentation loss on P3 (per-class BCE against the union of that class's masks at P3's
  size, divided by its area), weight 1.

Box, class and mask losses are divided by the batch's number of positives, the semantic loss by the
batch size. A batch without a single positive anchor divides 0 by 0: the losses are NaN and the
training step is skipped and counted (``DetectionModule``), as the official ``train.py`` skips
non-finite losses. The mask BCE is written with logits and the crop as a weight: inside the crop it is
the official ``BCE(clamp(sigmoid(x) * crop))``; outside it both are 0 (ground truth is 0 there), and
the logit form is stable under bf16 autocast, where ``binary_cross_entropy`` refuses to run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_convert, box_iou

SSD_BOX_CODER = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0), bbox_xform_clip=float("inf"))
"""SSD's encoding with variances (0.1, 0.2), unclipped like the official ``decode``."""


def match_anchors(
    priors_xyxy: Tensor, gt_boxes: Tensor, labels: Tensor, positive_iou: float, negative_iou: float
) -> tuple[Tensor, Tensor]:
    """Per anchor: the class target (labels 1..C for positives, 0 background, -1 ignored) and the
    index of its ground truth. ``gt_boxes`` relative XYXY; an image without objects is all background."""
    num_priors = priors_xyxy.shape[0]
    if gt_boxes.shape[0] == 0:
        zeros = torch.zeros(num_priors, dtype=torch.long, device=priors_xyxy.device)
        return zeros, zeros
    overlaps = box_iou(gt_boxes, priors_xyxy)  # (N, P)
    best_overlap, best_truth = overlaps.max(dim=0)
    for _ in range(gt_boxes.shape[0]):  # each ground truth claims its best anchor, best pairs first
        best_prior_overlap, best_prior = overlaps.max(dim=1)
        truth = best_prior_overlap.argmax()
        prior = best_prior[truth]
        overlaps[:, prior] = -1
        overlaps[truth, :] = -1
        best_overlap[prior] = 2
        best_truth[prior] = truth
    classes = labels[best_truth].clone()
    classes[best_overlap < positive_iou] = -1
    classes[best_overlap < negative_iou] = 0
    return classes, best_truth


def crop_weight(height: int, width: int, boxes: Tensor, padding: int = 1) -> Tensor:
    """(H, W, N) 1 inside each relative XYXY box (widened by ``padding`` pixels), else 0: the official
    ``box_utils.crop``."""
    x1 = torch.minimum(boxes[:, 0], boxes[:, 2]) * width
    x2 = torch.maximum(boxes[:, 0], boxes[:, 2]) * width
    y1 = torch.minimum(boxes[:, 1], boxes[:, 3]) * height
    y2 = torch.maximum(boxes[:, 1], boxes[:, 3]) * height
    x1, x2 = (x1 - padding).clamp(min=0), (x2 + padding).clamp(max=width)
    y1, y2 = (y1 - padding).clamp(min=0), (y2 + padding).clamp(max=height)
    cols = torch.arange(width, device=boxes.device, dtype=boxes.dtype).view(1, -1, 1)
    rows = torch.arange(height, device=boxes.device, dtype=boxes.dtype).view(-1, 1, 1)
    inside = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    return inside.to(boxes.dtype)


def downsample_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, H, W) {0, 1} -> (N, h, w) {0, 1}: bilinear then > 0.5, as the official loss does."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size), dtype=torch.float32)
    resized = F.interpolate(masks[None].float(), size, mode="bilinear", align_corners=False)[0]
    return (resized > 0.5).float()


class YolactLoss(nn.Module):
    """``forward(outputs, targets)`` -> ``loss_class``, ``loss_box``, ``loss_mask``, ``loss_semantic``
    (already weighted). ``outputs``: the network's ``loc`` (B, P, 4), ``conf`` (B, P, C + 1), ``coef``
    (B, P, k), ``priors`` (P, 4) relative (cx, cy, w, h), ``proto`` (B, h, w, k), ``segm`` (B, C, hs,
    ws); ``targets``: per image ``boxes`` relative XYXY, ``labels`` 1..C and ``masks`` (N, H, W)."""

    def __init__(
        self,
        positive_iou: float = 0.5,
        negative_iou: float = 0.4,
        negatives_per_positive: int = 3,
        class_weight: float = 1.0,
        box_weight: float = 1.5,
        mask_weight: float = 6.125,
        semantic_weight: float = 1.0,
        masks_to_train: int = 100,
    ) -> None:
        super().__init__()
        self.positive_iou, self.negative_iou = positive_iou, negative_iou
        self.negatives_per_positive = negatives_per_positive
        self.class_weight, self.box_weight = class_weight, box_weight
        self.mask_weight, self.semantic_weight = mask_weight, semantic_weight
        self.masks_to_train = masks_to_train

    def forward(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        with torch.autocast(outputs["loc"].device.type, enabled=False):
            outputs = {key: value.float() for key, value in outputs.items()}
            return self._losses(outputs, targets)

    def _losses(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        loc, conf, priors = outputs["loc"], outputs["conf"], outputs["priors"]
        priors_xyxy = box_convert(priors, "cxcywh", "xyxy")
        matches = [
            match_anchors(priors_xyxy, t["boxes"], t["labels"], self.positive_iou, self.negative_iou)
            for t in targets
        ]
        class_t = torch.stack([classes for classes, _ in matches])
        positive = class_t > 0
        num_positives = positive.sum()

        box_t = torch.cat(
            [
                SSD_BOX_CODER.encode_single(t["boxes"][truth[pos]], priors_xyxy[pos])
                for t, (_, truth), pos in zip(targets, matches, positive, strict=True)
            ]
        )
        loss_box = F.smooth_l1_loss(loc[positive], box_t, reduction="sum") * self.box_weight
        loss_class = self._ohem_class_loss(conf, class_t, positive) * self.class_weight
        loss_mask = self._mask_loss(outputs, targets, matches, positive) * self.mask_weight
        loss_semantic = self._semantic_loss(outputs["segm"], targets) * self.semantic_weight
        return {
            "loss_class": loss_class / num_positives,
            "loss_box": loss_box / num_positives,
            "loss_mask": loss_mask / num_positives,
            "loss_semantic": loss_semantic / len(targets),
        }

    def _ohem_class_loss(self, conf: Tensor, class_t: Tensor, positive: Tensor) -> Tensor:
        with torch.no_grad():
            background_loss = torch.logsumexp(conf, dim=-1) - conf[..., 0]
            background_loss[positive | (class_t < 0)] = 0
            rank = background_loss.argsort(dim=1, descending=True).argsort(dim=1)
            num_negatives = (self.negatives_per_positive * positive.sum(dim=1, keepdim=True)).clamp(
                max=positive.shape[1] - 1
            )
            negative = (rank < num_negatives) & ~positive & (class_t >= 0)
        chosen = positive | negative
        return F.cross_entropy(conf[chosen], class_t[chosen], reduction="sum")

    def _mask_loss(self, outputs, targets, matches, positive) -> Tensor:
        proto, coef = outputs["proto"], outputs["coef"]
        height, width = proto.shape[1:3]
        total = proto.sum() * 0  # keeps the graph (and DDP) whole when an image has no positives
        for index, (target, (_, truth), pos) in enumerate(zip(targets, matches, positive, strict=True)):
            truth_index = truth[pos]
            coefficients = coef[index, pos]
            num_pos = truth_index.shape[0]
            if num_pos == 0:
                continue
            if num_pos > self.masks_to_train:
                select = torch.randperm(num_pos, device=coef.device)[: self.masks_to_train]
                coefficients, truth_index = coefficients[select], truth_index[select]
            mask_t = downsample_masks(target["masks"], (height, width)).permute(1, 2, 0)[..., truth_index]
            boxes = target["boxes"][truth_index]
            logits = proto[index] @ coefficients.t()  # (h, w, n)
            weight = crop_weight(height, width, boxes)
            bce = F.binary_cross_entropy_with_logits(logits, mask_t, weight=weight, reduction="none")
            box_area = (boxes[:, 2] - boxes[:, 0]) * width * (boxes[:, 3] - boxes[:, 1]) * height
            per_instance = bce.sum(dim=(0, 1)) / box_area
            total = total + per_instance.sum() * (num_pos / truth_index.shape[0])
        return total

    def _semantic_loss(self, segm: Tensor, targets: list[dict[str, Tensor]]) -> Tensor:
        num_classes, height, width = segm.shape[1:]
        total = segm.sum() * 0
        for index, target in enumerate(targets):
            semantic_t = segm.new_zeros(num_classes, height, width)
            masks = downsample_masks(target["masks"], (height, width))
            for label in target["labels"].unique():
                semantic_t[label - 1] = masks[target["labels"] == label].amax(dim=0)
            total = total + F.binary_cross_entropy_with_logits(segm[index], semantic_t, reduction="sum")
        return total / (height * width)
