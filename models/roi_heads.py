"""RoI heads of Faster/Mask R-CNN: proposal sampling and box-branch losses for training, per-class
NMS post-processing for inference (Ren et al. 2015, Sec. 3.2; Mask R-CNN paper Sec. 3 "Training"
and "Inference"), with the mask branch run on the positive RoIs in training and on the final
detections at test time. ``BoxRoIHeads.box_forward`` exposes the sampled RoIs so that methods with
further RoI branches (masks, DensePose, track embeddings) subclass it."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.ops import boxes as box_ops

from models.box_head import fast_rcnn_loss
from models.mask_head import mask_probabilities, mask_rcnn_loss, project_masks_on_boxes
from models.roi_align import FPNRoIAlign


class SampledRoIs(NamedTuple):
    """Training RoIs per image with their class label (0 background) and matched GT index."""

    proposals: list[Tensor]
    labels: list[Tensor]
    matched_idxs: list[Tensor]

    def foreground(self) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per image: the foreground RoIs, their labels and their matched GT indices."""
        keep = [torch.where(labels > 0)[0] for labels in self.labels]
        return (
            [p[k] for p, k in zip(self.proposals, keep, strict=True)],
            [lab[k] for lab, k in zip(self.labels, keep, strict=True)],
            [m[k] for m, k in zip(self.matched_idxs, keep, strict=True)],
        )


class BoxRoIHeads(nn.Module):
    """Box branch: RoIAlign -> ``box_head`` -> ``box_predictor`` (Fast R-CNN on FPN proposals).

    Training samples ``batch_size_per_image`` RoIs per image with up to ``positive_fraction``
    foreground (IoU >= ``fg_iou_thresh``; background below ``bg_iou_thresh``), GT boxes added to the
    proposals. Inference keeps per-class scores > ``score_thresh``, drops boxes smaller than 0.01 px,
    runs per-class NMS at ``nms_thresh`` and keeps the top ``detections_per_img``.
    """

    def __init__(
        self,
        box_roi_pool: FPNRoIAlign,
        box_head: nn.Module,
        box_predictor: nn.Module,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.proposal_matcher = det_utils.Matcher(
            fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False
        )
        self.fg_bg_sampler = det_utils.BalancedPositiveNegativeSampler(
            batch_size_per_image, positive_fraction
        )
        self.box_coder = det_utils.BoxCoder(bbox_reg_weights)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Training: ``([], {"loss_classifier", "loss_box_reg"})``; eval: (per-image dicts with
        ``boxes``, ``labels``, ``scores`` in the resized-image frame, ``{}``)."""
        detections, losses, _ = self.box_forward(features, proposals, image_shapes, targets)
        return detections, losses

    def box_forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor], SampledRoIs | None]:
        """``forward`` plus the sampled training RoIs (None in eval) for further RoI branches."""
        if not self.training:
            class_logits, box_regression = self._predict_boxes(features, proposals)
            return (
                self.postprocess_detections(class_logits, box_regression, proposals, image_shapes),
                {},
                None,
            )
        if targets is None:
            raise ValueError("targets are required in training mode")
        sampled = self.sample_rois(proposals, targets)
        class_logits, box_regression = self._predict_boxes(features, sampled.proposals)
        gt_boxes = [t["boxes"].to(p.dtype) for t, p in zip(targets, sampled.proposals, strict=True)]
        matched_gt_boxes = [
            (gt if len(gt) else gt.new_zeros((1, 4)))[m]
            for gt, m in zip(gt_boxes, sampled.matched_idxs, strict=True)
        ]
        regression_targets = self.box_coder.encode(matched_gt_boxes, sampled.proposals)
        loss_classifier, loss_box_reg = fast_rcnn_loss(
            class_logits, box_regression, torch.cat(sampled.labels), torch.cat(regression_targets)
        )
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}, sampled

    def _predict_boxes(self, features: dict[str, Tensor], boxes: list[Tensor]) -> tuple[Tensor, Tensor]:
        return self.box_predictor(self.box_head(self.box_roi_pool(features, boxes)))

    def sample_rois(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]) -> SampledRoIs:
        """Adds the GT boxes to each image's proposals, labels them by IoU matching (ignored between
        the thresholds) and samples a fixed-size foreground/background mini-batch."""
        proposals = [torch.cat([p, t["boxes"].to(p.dtype)]) for p, t in zip(proposals, targets, strict=True)]
        labels, matched_idxs = [], []
        for boxes, target in zip(proposals, targets, strict=True):
            if len(target["boxes"]) == 0:
                matched = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
                labels.append(torch.zeros_like(matched))
                matched_idxs.append(matched)
                continue
            matched = self.proposal_matcher(box_ops.box_iou(target["boxes"].to(boxes.dtype), boxes))
            image_labels = target["labels"][matched.clamp(min=0)].to(torch.int64)
            image_labels[matched == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
            image_labels[matched == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1
            labels.append(image_labels)
            matched_idxs.append(matched.clamp(min=0))
        positive, negative = self.fg_bg_sampler(labels)
        keep = [torch.where(pos | neg)[0] for pos, neg in zip(positive, negative, strict=True)]
        return SampledRoIs(
            [p[k] for p, k in zip(proposals, keep, strict=True)],
            [lab[k] for lab, k in zip(labels, keep, strict=True)],
            [m[k] for m, k in zip(matched_idxs, keep, strict=True)],
        )

    def postprocess_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Decodes class-specific boxes, clips them to the image and keeps per-class NMS survivors."""
        num_classes = class_logits.shape[-1]
        counts = [len(p) for p in proposals]
        # float32 decoding: BoxCoder casts the proposals to the deltas' dtype (bf16 under autocast)
        all_boxes = self.box_coder.decode(box_regression.float(), proposals).split(counts)
        all_scores = F.softmax(class_logits, -1).split(counts)
        detections = []
        for boxes, scores, image_shape in zip(all_boxes, all_scores, image_shapes, strict=True):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)[:, 1:].reshape(-1, 4)
            labels = torch.arange(1, num_classes, device=scores.device).repeat(len(scores))
            scores = scores[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            detections.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
        return detections


class MaskRoIHeads(BoxRoIHeads):
    """Box branch plus the parallel mask branch (Mask R-CNN paper Sec. 3): in training the mask
    head sees the foreground sampled RoIs (``loss_mask``); in inference the final detections, adding
    ``masks`` (N, 1, 28, 28) probabilities of the predicted class. ``aligned`` also applies to the
    RoIAlign that cuts out the mask targets."""

    def __init__(
        self,
        box_roi_pool: FPNRoIAlign,
        box_head: nn.Module,
        box_predictor: nn.Module,
        mask_roi_pool: FPNRoIAlign,
        mask_head: nn.Module,
        mask_predictor: nn.Module,
        **box_kwargs: Any,
    ) -> None:
        super().__init__(box_roi_pool, box_head, box_predictor, **box_kwargs)
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        detections, losses, sampled = self.box_forward(features, proposals, image_shapes, targets)
        if sampled is None:
            boxes = [d["boxes"] for d in detections]
            mask_logits = self.mask_logits(features, boxes)
            labels = [d["labels"] for d in detections]
            probabilities = mask_probabilities(mask_logits, torch.cat(labels)).split(
                [len(lab) for lab in labels]
            )
            for detection, masks in zip(detections, probabilities, strict=True):
                detection["masks"] = masks
            return detections, losses
        assert targets is not None  # box_forward raised otherwise
        boxes, labels, matched_idxs = sampled.foreground()
        mask_logits = self.mask_logits(features, boxes)
        size = mask_logits.shape[-1]
        aligned = self.mask_roi_pool.aligned
        mask_targets = [
            project_masks_on_boxes(t["masks"], b, m, size, aligned)
            for t, b, m in zip(targets, boxes, matched_idxs, strict=True)
        ]
        losses["loss_mask"] = mask_rcnn_loss(mask_logits, torch.cat(labels), torch.cat(mask_targets))
        return detections, losses

    def mask_logits(self, features: dict[str, Tensor], boxes: list[Tensor]) -> Tensor:
        """(sum N_i, C + 1, 28, 28) mask logits of every class for per-image ``boxes`` (input-tensor
        pixels): the mask branch on any boxes, as UPSNet's panoptic head runs it on its own."""
        return self.mask_predictor(self.mask_head(self.mask_roi_pool(features, boxes)))
