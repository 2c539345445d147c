"""YOLACT (Bolya et al. 2019, "YOLACT: Real-time Instance Segmentation", ICCV): a one-stage detector
whose masks are linear combinations of shared prototypes (Sec. 3): a ResNet-FPN (P3-P7), the
``ProtoNet`` on P3, one ``PredictionHead`` shared by all levels (class scores, SSD box deltas, tanh
mask coefficients), the semantic-segmentation conv on P3 used by the training loss only, and at test
time Fast NMS (Sec. 3.4) and masks = sigmoid(prototypes @ coefficients), cropped to the box, pasted at
image size (Sec. 3.3).

``PrototypeInstanceSegmenter`` composes the parts (YolactEdge reuses them); ``Yolact`` builds them from
flat settings whose defaults are the official ``yolact_base`` config (R101-FPN, 550x550, 50,157,071
parameters with 80 classes; ``backbone_depth=50`` is ``yolact_resnet50``, 31,164,943). Input: RGB
images in [0, 1] of any size, resized to 550x550 without keeping the aspect ratio and normalised
with the official mean and std -- the official preprocessing (``FastBaseTransform``: BGR image,
BGR mean (103.94, 116.78, 123.68) and std (57.38, 57.12, 58.40), then channels swapped to RGB) is the
same computation on the RGB image with the RGB-ordered statistics used here.
``official_weights`` loads a checkpoint of the official repository (``models.yolact_official_weights``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import box_convert

from models.backbones import resnet_body
from models.fast_nms import fast_nms
from models.yolact_fpn import YolactFPN
from models.yolact_heads import PredictionHead, ProtoNet, yolact_priors
from models.yolact_loss import SSD_BOX_CODER, YolactLoss, crop_weight

YOLACT_MEAN = (123.68, 116.78, 103.94)  # RGB order, 0-255 scale (official MEANS is BGR)
YOLACT_STD = (58.40, 57.12, 57.38)


class YolactTransform(nn.Module):
    """Resize to ``size`` x ``size`` (bilinear, aspect ratio not kept) and normalise; targets' boxes
    become relative XYXY (invariant to the resize) and masks are kept at the image's size."""

    def __init__(
        self, size: int = 550, mean: Sequence[float] = YOLACT_MEAN, std: Sequence[float] = YOLACT_STD
    ):
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) / 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) / 255.0, persistent=False)

    def forward(self, images: list[Tensor]) -> Tensor:
        resized = [
            F.interpolate(image[None], (self.size, self.size), mode="bilinear", align_corners=False)
            for image in images
        ]
        return (torch.cat(resized) - self.mean) / self.std


def relative_targets(images: list[Tensor], targets: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    """Boxes divided by each image's width and height; labels and masks as they are."""
    out = []
    for index, (image, target) in enumerate(zip(images, targets, strict=True)):
        height, width = image.shape[-2:]
        boxes = target["boxes"]
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"target {index}: boxes must be (N, 4), got {tuple(boxes.shape)}")
        masks = target.get("masks")
        if masks is None or masks.shape[0] != boxes.shape[0] or tuple(masks.shape[-2:]) != (height, width):
            raise ValueError(f"target {index}: YOLACT needs one (H, W) mask per box at the image's size")
        scale = boxes.new_tensor([width, height, width, height])
        out.append({"boxes": boxes / scale, "labels": target["labels"], "masks": masks})
    return out


class PrototypeInstanceSegmenter(nn.Module):
    """YOLACT's parts composed. ``num_classes`` is C (labels 1..C; the head has C + 1 scores, 0 being
    background). Training: ``forward(images, targets)`` -> named losses; eval: per image ``boxes``
    XYXY, ``labels``, ``scores`` and ``masks`` (N, 1, H, W) probabilities in the input image's frame."""

    def __init__(
        self,
        transform: YolactTransform,
        backbone: nn.Module,
        fpn: YolactFPN,
        protonet: ProtoNet,
        head: PredictionHead,
        semantic_head: nn.Conv2d,
        criterion: YolactLoss,
        anchor_scales: Sequence[float],
        anchor_aspect_ratios: Sequence[float],
        square_anchors: bool = True,
        score_threshold: float = 0.05,
        nms_iou_threshold: float = 0.5,
        nms_top_k: int = 200,
        detections_per_image: int = 100,
    ) -> None:
        super().__init__()
        self.transform, self.backbone, self.fpn = transform, backbone, fpn
        self.protonet, self.head, self.semantic_head = protonet, head, semantic_head
        self.criterion = criterion
        self.anchor_scales, self.anchor_aspect_ratios = tuple(anchor_scales), tuple(anchor_aspect_ratios)
        self.square_anchors = square_anchors
        self.score_threshold, self.nms_iou_threshold = score_threshold, nms_iou_threshold
        self.nms_top_k, self.detections_per_image = nms_top_k, detections_per_image
        self.num_classes = head.num_classes_with_background - 1

    def network(self, x: Tensor) -> dict[str, Tensor]:
        """The network on a normalised (B, 3, S, S) batch: ``loc``, ``conf`` (logits), ``coef``,
        ``priors``, ``proto`` and ``segm`` (the official training-mode outputs, same layout)."""
        return self.predict(self.fpn(list(self.backbone(x).values())))

    def predict(self, pyramid: list[Tensor]) -> dict[str, Tensor]:
        """The heads, protonet and semantic conv on ``[P3, ..., P7]`` (what YolactEdge reuses)."""
        per_level = [self.head(level) for level in pyramid]
        priors = yolact_priors(
            [tuple(level.shape[-2:]) for level in pyramid],
            self.anchor_scales,
            self.anchor_aspect_ratios,
            self.transform.size,
            self.square_anchors,
            device=pyramid[0].device,
        )
        loc, conf, coef = (torch.cat(parts, dim=1) for parts in zip(*per_level, strict=True))
        return {
            "loc": loc,
            "conf": conf,
            "coef": coef,
            "priors": priors,
            "proto": self.protonet(pyramid[0]),
            "segm": self.semantic_head(pyramid[0]),
        }

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        outputs = self.network(self.transform(images))
        if self.training:
            if targets is None or len(targets) != len(images):
                raise ValueError("training needs one target dict per image")
            return self.criterion(outputs, relative_targets(images, targets))
        return self.detections(outputs, images)

    def detections(self, outputs: dict[str, Tensor], images: list[Tensor]) -> list[dict[str, Tensor]]:
        """``detect`` for every image of the batch, in its own frame."""
        priors_xyxy = box_convert(outputs["priors"], "cxcywh", "xyxy")
        return [
            self.detect(outputs, priors_xyxy, index, tuple(image.shape[-2:]))
            for index, image in enumerate(images)
        ]

    @torch.no_grad()
    def detect(
        self, outputs: dict[str, Tensor], priors_xyxy: Tensor, index: int, image_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """Decode (``priors_xyxy``: the anchors as XYXY), Fast NMS and assemble the masks of image
        ``index`` at ``image_size`` (H, W)."""
        height, width = image_size
        boxes = SSD_BOX_CODER.decode_single(outputs["loc"][index].float(), priors_xyxy)
        scores = outputs["conf"][index].float().softmax(dim=-1)[:, 1:].t()
        keep, classes, kept_scores = fast_nms(
            boxes, scores, self.nms_iou_threshold, self.nms_top_k, self.detections_per_image,
            self.score_threshold,
        )  # fmt: skip
        boxes = boxes[keep]
        proto = outputs["proto"][index].float()
        masks = (proto @ outputs["coef"][index, keep].float().t()).sigmoid()
        masks = masks * crop_weight(proto.shape[0], proto.shape[1], boxes)
        if len(keep) == 0:  # bilinear interpolation refuses zero channels
            masks = masks.new_zeros(1, 0, height, width)
        else:
            masks = F.interpolate(
                masks.permute(2, 0, 1)[None], (height, width), mode="bilinear", align_corners=False
            )
        scale = boxes.new_tensor([width, height, width, height])
        return {
            "boxes": (boxes * scale).clamp(min=0).minimum(scale),
            "labels": classes + 1,
            "scores": kept_scores,
            "masks": masks[0][:, None],
        }


class Yolact(PrototypeInstanceSegmenter):
    """YOLACT from flat settings (what the experiment YAMLs set); defaults = official ``yolact_base``.

    ``frozen_bn=False`` keeps ordinary BatchNorm as the official code trains it (frozen anyway when the
    per-device batch is below 6: ``lightning_modules.batchnorm_freeze``). ``backbone_weights`` is a
    local torchvision ImageNet ResNet state dict; ``official_weights`` a checkpoint of the official
    repository (e.g. ``yolact_base_54_800000.pth``), loaded after construction.
    """

    def __init__(
        self,
        num_classes: int = 80,
        *,
        backbone_depth: int = 101,
        frozen_bn: bool = False,
        trainable_backbone_layers: int = 5,
        backbone_weights: Path | None = None,
        official_weights: Path | None = None,
        image_size: int = 550,
        fpn_channels: int = 256,
        num_prototypes: int = 32,
        protonet_channels: int = 256,
        anchor_scales: Sequence[float] = (24, 48, 96, 192, 384),
        anchor_aspect_ratios: Sequence[float] = (1.0, 0.5, 2.0),
        square_anchors: bool = True,
        positive_iou: float = 0.5,
        negative_iou: float = 0.4,
        negatives_per_positive: int = 3,
        box_loss_weight: float = 1.5,
        mask_loss_weight: float = 6.125,
        semantic_loss_weight: float = 1.0,
        masks_to_train: int = 100,
        score_threshold: float = 0.05,
        nms_iou_threshold: float = 0.5,
        nms_top_k: int = 200,
        detections_per_image: int = 100,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes counts object classes (no background), got {num_classes}")
        if len(anchor_scales) != 5:
            raise ValueError(f"one anchor scale per pyramid level P3-P7 (5), got {list(anchor_scales)}")
        body = resnet_body(backbone_depth, frozen_bn, trainable_backbone_layers, backbone_weights)
        stage2 = body.inplanes // 8
        backbone = IntermediateLayerGetter(body, {"layer2": "c3", "layer3": "c4", "layer4": "c5"})
        super().__init__(
            YolactTransform(image_size),
            backbone,
            YolactFPN([stage2 * 2, stage2 * 4, stage2 * 8], fpn_channels),
            ProtoNet(fpn_channels, protonet_channels, num_prototypes),
            PredictionHead(fpn_channels, num_classes + 1, len(anchor_aspect_ratios), num_prototypes),
            nn.Conv2d(fpn_channels, num_classes, kernel_size=1),
            YolactLoss(
                positive_iou,
                negative_iou,
                negatives_per_positive,
                1.0,
                box_loss_weight,
                mask_loss_weight,
                semantic_loss_weight,
                masks_to_train,
            ),
            anchor_scales,
            anchor_aspect_ratios,
            square_anchors,
            score_threshold,
            nms_iou_threshold,
            nms_top_k,
            detections_per_image,
        )
        for part in (self.fpn, self.protonet, self.head, self.semantic_head):
            for module in part.modules():
                if isinstance(module, nn.Conv2d):  # the official init_weights: Xavier, zero bias
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)
        if official_weights is not None:
            from models.yolact_official_weights import load_official_weights

            load_official_weights(self, official_weights)
