"""Mask R-CNN (He et al. 2017, "Mask R-CNN", ICCV): a ResNet-FPN backbone, an RPN (Ren et al.
2015) and RoIAlign-based box and mask heads run in parallel (Sec. 3, Fig. 4 right).

``TwoStageDetector`` is the composition of the parts -- ``transform``, ``backbone``, ``rpn``,
``roi_heads`` -- like torchvision's ``GeneralizedRCNN``, so that methods built on Mask R-CNN (UPSNet,
DensePose R-CNN, VPSNet) reach its features (``features``) and heads, or compose their own parts.
``MaskRCNN`` builds the parts from flat settings (what the experiment YAMLs set); its defaults are
the paper's R50-FPN configuration as trained by torchvision's ``maskrcnn_resnet50_fpn`` (frozen BN,
800/1333 resizing), and with ``num_classes=90`` (torchvision's COCO labels 1..90) the state dict is
key-for-key that model's and the eval outputs are identical.
Training (Sec. 3): L = L_cls + L_box + L_mask on the sampled RoIs, L_mask the average binary
cross-entropy of the ground-truth class's 28x28 mask only, plus the RPN's objectness and box losses
(Ren et al. 2015, Sec. 3.1.2) -- the losses ``forward`` returns in training mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from models.backbones import MASK_RCNN_LEVELS, level_strides, resnet_fpn_backbone
from models.box_head import FastRCNNPredictor, TwoMLPHead
from models.mask_head import MaskHead, MaskPredictor
from models.paste_masks import paste_masks_in_image
from models.roi_align import FPNRoIAlign
from models.roi_heads import BoxRoIHeads, MaskRoIHeads
from models.rpn_head import Float32RPNHead

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TwoStageDetector(nn.Module):
    """An R-CNN on a list of (3, H, W) images in [0, 1], composed of its parts.

    ``num_classes`` is C, the object classes (labels 1..C; the classifier has C + 1 outputs, 0 being
    background: ``datamodules.batch``). ``forward(images, targets)`` returns, in training, the losses
    ``loss_classifier``, ``loss_box_reg``, ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg``; in
    eval, per image ``boxes`` (N, 4) XYXY, ``labels``, ``scores`` and (with a mask branch) ``masks``
    (N, 1, H, W) probabilities, all in the input image's pixel frame; RoI heads with other branches add
    their own outputs (box-relative ones pass through unchanged).
    """

    def __init__(
        self,
        transform: GeneralizedRCNNTransform,
        backbone: nn.Module,
        rpn: RegionProposalNetwork,
        roi_heads: BoxRoIHeads,
    ) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.num_classes = roi_heads.box_predictor.cls_score.out_features - 1

    def features(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None, dict[str, Tensor]]:
        """Resized, normalised images (and targets in their frame) and the FPN features: what a method
        that adds branches to Mask R-CNN (semantic head, DensePose, tracking) starts from."""
        image_list, targets = self.transform(images, targets)
        return image_list, targets, self.backbone(image_list.tensors)

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training:
            check_targets(images, targets, need_masks=isinstance(self.roi_heads, MaskRoIHeads))
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, targets, features = self.features(images, targets)
        proposals, rpn_losses = self.rpn(image_list, features, targets)
        detections, head_losses = self.roi_heads(features, proposals, image_list.image_sizes, targets)
        if self.training:
            return {**head_losses, **rpn_losses}
        return to_original_frame(detections, image_list.image_sizes, original_sizes)


class MaskRCNN(TwoStageDetector):
    """Mask R-CNN with its parts built from flat settings (the experiment YAMLs name this class).

    ``backbone_levels`` are the ResNet stages the FPN is built on, with a max-pooled level above the
    last; ``anchor_sizes`` gives one anchor size per pyramid level (each with
    ``anchor_aspect_ratios``). ``aligned=True`` switches every RoIAlign (box, mask, mask targets) to
    detectron2's half-pixel version. ``backbone_weights`` is a local torchvision ResNet state dict.
    ``fpn_global_context`` adds the global-average context of C5 to the FPN's top lateral
    (``backbones.GlobalContextFPN``, UPSNet's COCO backbone). ``mask_branch=False`` leaves the mask
    branch out (Faster R-CNN: the detector that DensePose R-CNN puts its own branch on);
    ``box_background_deltas=False`` predicts box deltas for the object classes only (detectron2's layout).
    """

    def __init__(
        self,
        num_classes: int = 90,
        *,
        backbone_depth: int = 50,
        backbone_levels: Sequence[int] = MASK_RCNN_LEVELS,
        frozen_bn: bool = True,
        trainable_backbone_layers: int = 3,
        backbone_weights: Path | None = None,
        fpn_channels: int = 256,
        fpn_global_context: bool = False,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
        anchor_aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        rpn_pre_nms_top_n_train: int = 2000,
        rpn_pre_nms_top_n_test: int = 1000,
        rpn_post_nms_top_n_train: int = 2000,
        rpn_post_nms_top_n_test: int = 1000,
        rpn_nms_thresh: float = 0.7,
        rpn_fg_iou_thresh: float = 0.7,
        rpn_bg_iou_thresh: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        rpn_score_thresh: float = 0.0,
        representation_size: int = 1024,
        box_score_thresh: float = 0.05,
        box_nms_thresh: float = 0.5,
        box_detections_per_img: int = 100,
        box_fg_iou_thresh: float = 0.5,
        box_bg_iou_thresh: float = 0.5,
        box_batch_size_per_image: int = 512,
        box_positive_fraction: float = 0.25,
        bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        mask_head_channels: int = 256,
        aligned: bool = False,
        mask_branch: bool = True,
        box_background_deltas: bool = True,
    ) -> None:
        if num_classes < 1:
            raise ValueError(
                f"num_classes counts object classes (no background) and must be >= 1, got {num_classes}"
            )
        if len(anchor_sizes) != len(backbone_levels) + 1:
            raise ValueError(
                f"{len(anchor_sizes)} anchor sizes for {len(backbone_levels) + 1} pyramid levels "
                f"(levels {list(backbone_levels)} and the max-pooled one above): give one size per level"
            )
        min_sizes = (min_size,) if isinstance(min_size, int) else tuple(min_size)
        transform = GeneralizedRCNNTransform(min_sizes, max_size, list(image_mean), list(image_std))
        backbone = resnet_fpn_backbone(
            backbone_depth,
            fpn_channels,
            frozen_bn,
            trainable_backbone_layers,
            backbone_weights,
            backbone_levels,
            global_context=fpn_global_context,
        )
        anchor_generator = AnchorGenerator(
            tuple((s,) for s in anchor_sizes), (tuple(anchor_aspect_ratios),) * len(anchor_sizes)
        )
        rpn = RegionProposalNetwork(
            anchor_generator,
            Float32RPNHead(fpn_channels, anchor_generator.num_anchors_per_location()[0]),
            rpn_fg_iou_thresh,
            rpn_bg_iou_thresh,
            rpn_batch_size_per_image,
            rpn_positive_fraction,
            {"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
            {"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
            rpn_nms_thresh,
            score_thresh=rpn_score_thresh,
        )
        level_names = [str(index) for index in range(len(backbone_levels))]
        strides = level_strides(backbone_levels)
        box_pool = FPNRoIAlign(
            7, sampling_ratio=2, aligned=aligned, featmap_names=level_names, strides=strides
        )
        with_background = num_classes + 1
        box_parts = (
            box_pool,
            TwoMLPHead(fpn_channels * 7 * 7, representation_size),
            FastRCNNPredictor(representation_size, with_background, box_background_deltas),
        )
        box_settings = dict(
            fg_iou_thresh=box_fg_iou_thresh,
            bg_iou_thresh=box_bg_iou_thresh,
            batch_size_per_image=box_batch_size_per_image,
            positive_fraction=box_positive_fraction,
            bbox_reg_weights=bbox_reg_weights,
            score_thresh=box_score_thresh,
            nms_thresh=box_nms_thresh,
            detections_per_img=box_detections_per_img,
        )
        if mask_branch:
            mask_pool = FPNRoIAlign(
                14, sampling_ratio=2, aligned=aligned, featmap_names=level_names, strides=strides
            )
            roi_heads: BoxRoIHeads = MaskRoIHeads(
                *box_parts,
                mask_pool,
                MaskHead(fpn_channels, mask_head_channels),
                MaskPredictor(mask_head_channels, with_background, mask_head_channels),
                **box_settings,
            )
        else:
            roi_heads = BoxRoIHeads(*box_parts, **box_settings)
        super().__init__(transform, backbone, rpn, roi_heads)


def to_original_frame(
    detections: list[dict[str, Tensor]],
    image_sizes: list[tuple[int, int]],
    original_sizes: list[tuple[int, int]],
) -> list[dict[str, Tensor]]:
    """Detections of the resized images (boxes, 28 x 28 mask probabilities) -> boxes and pasted (N, 1, H, W)
    masks in the original images' pixel frames."""
    for detection, size, original in zip(detections, image_sizes, original_sizes, strict=True):
        detection["boxes"] = resize_boxes(detection["boxes"], size, original)
        if "masks" in detection:
            detection["masks"] = paste_masks_in_image(detection["masks"], detection["boxes"], original)
    return detections


def check_targets(
    images: list[Tensor], targets: list[dict[str, Tensor]] | None, need_masks: bool = True
) -> None:
    if targets is None or len(targets) != len(images):
        raise ValueError("training needs one target dict per image")
    for i, target in enumerate(targets):
        boxes = target["boxes"]
        if boxes.dim() != 2 or boxes.shape[-1] != 4 or not boxes.is_floating_point():
            raise ValueError(f"target {i}: boxes must be a float (N, 4) tensor, got {tuple(boxes.shape)}")
        degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
        if degenerate.any():
            raise ValueError(f"target {i}: box {boxes[degenerate][0].tolist()} has no positive width/height")
        if target["labels"].dtype != torch.int64 or len(target["labels"]) != len(boxes):
            raise ValueError(f"target {i}: labels must be int64 with one entry per box")
        if (need_masks or "masks" in target) and len(target.get("masks", ())) != len(boxes):
            raise ValueError(f"target {i}: masks must be (N, H, W) with one mask per box")
