"""DensePose R-CNN (Güler, Neverova & Kokkinos, "DensePose: Dense Human Pose Estimation In The Wild",
CVPR 2018, Sec. 4 and Fig. 5): a Faster R-CNN on a ResNet-FPN with a fully-convolutional dense branch on
RoIAlign features that predicts, per RoI, the body part I of every pixel and its surface coordinates U, V,
built as detectron2's ``projects/DensePose`` ``DensePoseROIHeads`` builds ``densepose_rcnn_R_50_FPN_s1x``.

``DensePoseRoIHeads`` composes the project's box branch (``models.roi_heads.BoxRoIHeads``: proposal
sampling, Fast R-CNN losses, per-class NMS) with the dense branch (``models.densepose_head``):

* training: the foreground sampled RoIs whose IoU with their matched ground-truth box exceeds
  ``densepose_fg_iou_thresh`` (0.7, detectron2's ``DensePoseDataFilter``) and whose ground truth has
  DensePose points go through the branch; ``models.densepose_loss.densepose_chart_loss`` scores them
  against the points (``Target.dense_points``) and the coarse segmentation (``Target.dense_segmentation``);
* inference: the branch runs on the final detections; each detection gets its raw 112 x 112 chart outputs
  (``DensePoseOutputs`` sliced per image under ``densepose``), relative to its box, so they are unchanged
  by the resize back to the original image (``models.densepose_results`` turns them into per-box maps).

With ``decoder_on`` (detectron2's default) the branch pools from the Panoptic-FPN decoder's single
stride-4 map; else from the FPN levels by box size, as the box branch does.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from models.densepose_head import DensePoseBranch, DensePoseOutputs
from models.densepose_loss import densepose_chart_loss
from models.mask_rcnn import MaskRCNN, TwoStageDetector
from models.roi_align import FPNRoIAlign
from models.roi_heads import BoxRoIHeads, MaskRoIHeads

DECODER_MAP = "densepose"  # the name of the decoder's output map in the pooled features
POOLER_RESOLUTION = 28  # detectron2 ROI_DENSEPOSE_HEAD.POOLER_RESOLUTION
CHART_LOSS_WEIGHTS = {"index_weight": 5.0, "part_weight": 1.0, "point_regression_weight": 0.01}


def _split(outputs: DensePoseOutputs, counts: list[int]) -> list[DensePoseOutputs]:
    pieces = [field.split(counts) for field in outputs]
    return [DensePoseOutputs(*parts) for parts in zip(*pieces, strict=True)]


def _valid_points(points: Tensor) -> Tensor:
    """(N, P) mask of the real rows of NaN-padded ``dense_points``."""
    return ~torch.isnan(points[..., 0])


class DensePoseRoIHeads(nn.Module):
    """The box branch (``box_heads``) plus the DensePose branch on ``densepose_roi_pool`` features.

    ``chart_loss_weights`` are detectron2's ``INDEX_WEIGHTS`` (S), ``PART_WEIGHTS`` (I) and
    ``POINT_REGRESSION_WEIGHTS`` (U, V): 5.0, 1.0, 0.01.
    """

    def __init__(
        self,
        box_heads: BoxRoIHeads,
        densepose_roi_pool: FPNRoIAlign,
        densepose: DensePoseBranch,
        densepose_fg_iou_thresh: float = 0.7,
        chart_loss_weights: Mapping[str, float] = CHART_LOSS_WEIGHTS,
    ) -> None:
        super().__init__()
        if isinstance(box_heads, MaskRoIHeads):
            raise ValueError(
                "DensePose R-CNN has no mask branch (it would get no loss): build the detector with "
                "mask_branch=False"
            )
        self.box_heads = box_heads
        self.densepose_roi_pool = densepose_roi_pool
        self.densepose = densepose
        self.densepose_fg_iou_thresh = densepose_fg_iou_thresh
        self.chart_loss_weights = dict(chart_loss_weights)

    @property
    def box_predictor(self) -> nn.Module:
        return self.box_heads.box_predictor

    def densepose_outputs(self, features: dict[str, Tensor], boxes: list[Tensor]) -> DensePoseOutputs:
        """Chart outputs (R, *, 112, 112) of per-image ``boxes`` (input-tensor pixels)."""
        if self.densepose.decoder is not None:
            levels = [features[name] for name in self.box_heads.box_roi_pool.featmap_names]
            features = {DECODER_MAP: self.densepose.decoder(levels)}
        return self.densepose(self.densepose_roi_pool(features, boxes))

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        detections, losses, sampled = self.box_heads.box_forward(features, proposals, image_shapes, targets)
        if sampled is None:
            boxes = [d["boxes"] for d in detections]
            outputs = self.densepose_outputs(features, boxes)
            for detection, image_outputs in zip(
                detections, _split(outputs, [len(b) for b in boxes]), strict=True
            ):
                detection["densepose"] = image_outputs  # type: ignore[assignment]
            return detections, losses
        assert targets is not None  # box_forward raised otherwise
        boxes, gt_boxes, gt_index = self.densepose_rois(*sampled.foreground()[::2], targets)
        outputs = self.densepose_outputs(features, boxes)
        losses.update(self.chart_loss(outputs, boxes, gt_boxes, gt_index, targets))
        return detections, losses

    def densepose_rois(
        self, proposals: list[Tensor], matched_idxs: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per image: the foreground RoIs the dense branch trains on (IoU with their ground truth above
        ``densepose_fg_iou_thresh``, ground truth with DensePose points), their ground-truth boxes and
        indices."""
        kept_boxes, kept_gt, kept_index = [], [], []
        for image_proposals, matched, target in zip(proposals, matched_idxs, targets, strict=True):
            keep = torch.zeros(len(matched), dtype=torch.bool, device=matched.device)
            if len(target["boxes"]) and len(matched):
                gt = target["boxes"][matched].to(image_proposals.dtype)
                iou = box_iou(gt, image_proposals).diagonal()
                annotated = _valid_points(target["dense_points"]).any(dim=1)[matched]
                keep = (iou > self.densepose_fg_iou_thresh) & annotated
            kept_boxes.append(image_proposals[keep])
            kept_index.append(matched[keep])
            kept_gt.append(target["boxes"][matched[keep]].to(image_proposals.dtype))
        return kept_boxes, kept_gt, kept_index

    def chart_loss(
        self,
        outputs: DensePoseOutputs,
        boxes: list[Tensor],
        gt_boxes: list[Tensor],
        gt_index: list[Tensor],
        targets: list[dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        """``densepose_chart_loss`` over the RoIs of all images, their ground truth's points gathered."""
        points = [t["dense_points"][i] for t, i in zip(targets, gt_index, strict=True)]
        segmentation = [t["dense_segmentation"][i] for t, i in zip(targets, gt_index, strict=True)]
        offsets = torch.tensor([0] + [len(b) for b in boxes]).cumsum(0)
        all_points = torch.cat([p.reshape(-1, 5) for p in points])
        point_roi = torch.cat(
            [
                torch.arange(len(p), device=p.device).repeat_interleave(p.shape[1]) + o
                for p, o in zip(points, offsets[:-1], strict=True)
            ]
        )
        valid = _valid_points(all_points)
        all_points, point_roi = all_points[valid], point_roi[valid]
        return densepose_chart_loss(
            outputs,
            torch.cat(boxes),
            point_roi,
            all_points[:, :2],
            all_points[:, 2].long(),
            all_points[:, 3:],
            gt_boxes=torch.cat(gt_boxes),
            coarse_segm_gt=torch.cat(segmentation),
            **self.chart_loss_weights,
        )


class DensePoseRCNN(TwoStageDetector):
    """DensePose R-CNN: ``detector``'s transform, backbone, RPN and box branch (a ``MaskRCNN`` built with
    ``mask_branch=False``; default: detectron2's R50-FPN with one class, person, and box deltas for the
    object class only) plus the DensePose branch.

    Full size (the defaults) is detectron2's ``densepose_rcnn_R_50_FPN_s1x``: 63,821,090 parameters (frozen
    BN holds no parameters), the decoder's 4,196,352 included; ``decoder_on=False`` leaves it out and pools
    from the FPN levels. ``num_coarse_segm_channels`` is 2 (foreground / background, the default) or 15.
    ``head_channels`` x ``head_num_convs`` is the conv head (512 x 8, ``DensePoseV1ConvXHead``) and
    ``decoder_channels`` the decoder's width and output (256); smaller values make CPU presets.
    Eval outputs: the detector's boxes, labels, scores plus ``densepose`` (``DensePoseOutputs`` of each
    detection, relative to its box).
    """

    def __init__(
        self,
        detector: TwoStageDetector | None = None,
        *,
        decoder_on: bool = True,
        num_coarse_segm_channels: int = 2,
        head_channels: int = 512,
        head_num_convs: int = 8,
        decoder_channels: int = 256,
        densepose_fg_iou_thresh: float = 0.7,
        aligned: bool = False,
        index_weight: float = 5.0,
        part_weight: float = 1.0,
        point_regression_weight: float = 0.01,
    ) -> None:
        if detector is None:
            detector = MaskRCNN(num_classes=1, mask_branch=False, box_background_deltas=False)
        box_heads = detector.roi_heads
        if not isinstance(box_heads, BoxRoIHeads):
            raise ValueError(f"detector.roi_heads must be BoxRoIHeads, got {type(box_heads).__name__}")
        pool = box_heads.box_roi_pool
        strides = [round(1 / scale) for scale in pool.scales]
        branch = DensePoseBranch(
            detector.backbone.out_channels,
            decoder_on,
            num_coarse_segm_channels,
            in_strides=strides,
            decoder_num_classes=decoder_channels,
            decoder_conv_dims=decoder_channels,
            head_channels=head_channels,
            head_num_convs=head_num_convs,
        )
        if decoder_on:
            common = branch.decoder.common_stride  # type: ignore[union-attr]
            densepose_pool = FPNRoIAlign(POOLER_RESOLUTION, 2, aligned, (DECODER_MAP,), (common,))
        else:
            densepose_pool = FPNRoIAlign(POOLER_RESOLUTION, 2, aligned, pool.featmap_names, strides)
        roi_heads = DensePoseRoIHeads(
            box_heads,
            densepose_pool,
            branch,
            densepose_fg_iou_thresh,
            {
                "index_weight": index_weight,
                "part_weight": part_weight,
                "point_regression_weight": point_regression_weight,
            },
        )
        super().__init__(detector.transform, detector.backbone, detector.rpn, roi_heads)  # type: ignore[arg-type]
