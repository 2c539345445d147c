"""CornerNet (Law and Deng, "CornerNet: Detecting Objects as Paired Keypoints", ECCV 2018): each object is
a pair of corners -- a top-left and a bottom-right heatmap peak of its class -- whose 1-D embeddings agree.
Follows the official code (princeton-vl/CornerNet: ``sample/coco.py``, ``models/py_utils/kp.py``,
``kp_utils.py``, ``test/coco.py``, ``config/CornerNet.json``).

- Targets (Sec. 3.2-3.3, official ``kp_detection``): boxes in the network input clipped to it (those
  left without width or height are counted and skipped), corners mapped to the output by the ratio of
  output to input size; a bump of radius ``bump_radius(h, w, 0.3)`` (CornerNet's ``gaussian_iou`` 0.3) at
  ``int()`` of each corner, max-merged per class; the offsets ``corner - int(corner)`` and the corners'
  cells for the embeddings and offsets.
- Loss (Sec. 3.3-3.4): the heatmap focal loss of both corner types + 0.1 x pull + 0.1 x push (the
  official ``_ae_loss``: pull = the squared distance of each corner's embedding to the pair's mean, push =
  the hinge max(0, 1 - |e_k - e_j|) over distinct pairs, each averaged per image as the official code
  does) + 1 x smooth-L1 on the offsets of the annotated corners; summed over the stacks and divided by
  their number, as ``AELoss``.
- Decode (Sec. 4.1, official ``_decode`` and ``test/coco.py``): sigmoid, 3x3 max-pool NMS, the top 100
  corners of each type, all pairs scored by the mean of their corner scores, a pair rejected when its
  classes differ, its embeddings are more than 0.5 apart or its bottom-right corner is not below-right of
  the top-left; the best 1000 pairs; with flip test (official default) the mirrored image's pairs are
  added; then per-class Gaussian soft-NMS (``models.soft_nms``) and the 100 best boxes.

The model follows torchvision's detection convention (``datamodules.batch``) as ``models.centernet.CenterNet``
does, through the same ``models.letterbox.LetterboxTransform`` (official input 511, output 128). The
official test instead keeps each image's own resolution (padded to a multiple of 128, minus 1).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.heatmap_focal_loss import heatmap_focal_loss
from models.heatmap_peaks import gather_at, heatmap_nms, top_peaks
from models.keypoint_detector import KeypointDetector
from models.letterbox import image_region
from models.object_heatmaps import bump_radius, pad_objects, point_heatmaps
from models.soft_nms import soft_nms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CornerTargets:
    """One batch's CornerNet targets at the output resolution; M is the most objects of any image."""

    top_left: Tensor  # (B, C, h, w) heatmaps
    bottom_right: Tensor  # (B, C, h, w)
    top_left_indices: Tensor  # (B, M) int64 cell y * w + x
    bottom_right_indices: Tensor  # (B, M)
    top_left_offsets: Tensor  # (B, M, 2) corner - int(corner), in output cells
    bottom_right_offsets: Tensor  # (B, M, 2)
    mask: Tensor  # (B, M) bool: a real object
    skipped: int  # boxes without width or height after clipping to the input


def corner_targets(
    boxes: Sequence[Tensor],
    labels: Sequence[Tensor],
    num_classes: int,
    input_size: tuple[int, int],
    heatmap_size: tuple[int, int],
    min_overlap: float = 0.3,
    corrected_radius: bool = False,
) -> CornerTargets:
    """CornerNet's targets (module docstring) from per-image XYXY ``boxes`` in the network input's pixels
    and ``labels`` 1..C; sizes are (w, h)."""
    (in_w, in_h), (out_w, out_h) = input_size, heatmap_size
    padded, classes, present = pad_objects(boxes, labels)
    device = padded.device
    limits = torch.tensor([in_w - 1, in_h - 1, in_w - 1, in_h - 1], dtype=torch.float32, device=device)
    clipped = torch.minimum(padded.clamp_min(0), limits)
    box_w, box_h = clipped[..., 2] - clipped[..., 0], clipped[..., 3] - clipped[..., 1]
    mask = present & (box_w > 0) & (box_h > 0)
    ratio = torch.tensor([out_w / in_w, out_h / in_h], device=device)
    top_left, bottom_right = clipped[..., :2] * ratio, clipped[..., 2:] * ratio
    radii = bump_radius(box_h * ratio[1], box_w * ratio[0], min_overlap, corrected_radius).to(device)

    def cells_of(points: Tensor) -> Tensor:
        cells = torch.trunc(points)
        return (cells[..., 1] * out_w + cells[..., 0]).long().clamp(0, out_w * out_h - 1)

    return CornerTargets(
        top_left=point_heatmaps(top_left, classes, radii, mask, num_classes, heatmap_size),
        bottom_right=point_heatmaps(bottom_right, classes, radii, mask, num_classes, heatmap_size),
        top_left_indices=cells_of(top_left),
        bottom_right_indices=cells_of(bottom_right),
        top_left_offsets=top_left - torch.trunc(top_left),
        bottom_right_offsets=bottom_right - torch.trunc(bottom_right),
        mask=mask,
        skipped=int((present & ~mask).sum()),
    )


def embedding_losses(top_left: Tensor, bottom_right: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The official ``_ae_loss`` of (B, M) corner embeddings and (B, M) ``mask``: (pull, push).

    Pull: per image, the squared distances of both embeddings to their mean, divided by the image's N
    objects. Push: per image, max(0, 1 - |m_j - m_k|) over all ordered pairs of its objects' means, less
    the N pairs of an object with itself (1 each, removed by subtracting 1/N per pair), divided by
    N (N - 1) -- with the official 1e-4 guards, so an image of one object adds a constant ~1."""
    mask = mask.bool()
    num = mask.sum(dim=1, keepdim=True).float()
    mean = (top_left + bottom_right) / 2
    pull = ((top_left - mean) ** 2 / (num + 1e-4))[mask].sum() + ((bottom_right - mean) ** 2 / (num + 1e-4))[
        mask
    ].sum()
    pairs = mask[:, None, :] & mask[:, :, None]
    num = num[..., None]
    distance = F.relu(1 - (mean[:, None, :] - mean[:, :, None]).abs())
    distance = (distance - 1 / (num + 1e-4)) / ((num - 1) * num + 1e-4)
    return pull, distance[pairs].sum()


def smooth_l1_at(predictions: Tensor, indices: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """The official ``_regr_loss``: smooth-L1 of (B, 2, h, w) ``predictions`` read at ``indices`` against
    (B, M, 2) ``targets``, summed over the masked objects and divided by their number (+1e-4)."""
    read = gather_at(predictions, indices).float()
    selected = mask[..., None].expand_as(read)
    loss = F.smooth_l1_loss(read[selected], targets[selected].float(), reduction="sum")
    return loss / (mask.float().sum() + 1e-4)


@dataclass(frozen=True)
class CornerNetLossWeights:
    """The official ``AELoss(pull_weight=1e-1, push_weight=1e-1)``, regression weight 1."""

    heatmap: float = 1.0
    pull: float = 0.1
    push: float = 0.1
    offset: float = 1.0


@dataclass(frozen=True)
class CornerNetDecoding:
    """The official test settings (``db/detection.py``, ``config/CornerNet.json``)."""

    top_k: int = 100
    ae_threshold: float = 0.5
    nms_kernel: int = 3
    num_dets: int = 1000
    soft_nms_sigma: float = 0.5
    max_per_image: int = 100
    flip_test: bool = True


class CornerNet(KeypointDetector):
    """CornerNet around a ``network`` whose ``forward(x)`` returns one dict per stack of ``tl_heat``,
    ``br_heat`` (C), ``tl_tag``, ``br_tag`` (1) and ``tl_regr``, ``br_regr`` (2) maps
    (``models.cornernet_hourglass.CornerNetHourglass``).

    Args:
        network: the backbone, corner pooling and heads.
        num_classes: C.
        input_size: the square network input (official 511).
        min_overlap, corrected_radius: the Gaussian radius (``models.object_heatmaps.gaussian_radius``).
        loss_weights: heatmap / pull / push / offset weights.
        decoding: the test settings.
        bgr: feed the network BGR (for the official weights).
        test_padding: evaluate each image at its own resolution, padded as the official test does
            ((128, 1); ``models.letterbox``); None: letterboxed to ``input_size`` as in training.
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int = 80,
        *,
        input_size: int = 511,
        min_overlap: float = 0.3,
        corrected_radius: bool = False,
        loss_weights: CornerNetLossWeights | None = None,
        decoding: CornerNetDecoding | None = None,
        bgr: bool = False,
        test_padding: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(network, num_classes, input_size, min_overlap, corrected_radius, bgr, test_padding)
        self.loss_weights = loss_weights or CornerNetLossWeights()
        self.decoding = decoding or CornerNetDecoding()

    def losses(
        self,
        stacks: list[dict[str, Tensor]],
        targets: list[dict[str, Tensor]],
        scales: list[float],
        input_hw: tuple[int, int],
    ) -> dict[str, Tensor]:
        heat = stacks[0]["tl_heat"]
        goal = corner_targets(
            [t["boxes"].to(heat.device) * scale for t, scale in zip(targets, scales, strict=True)],
            [t["labels"].to(heat.device) for t in targets],
            self.num_classes,
            (int(input_hw[1]), int(input_hw[0])),
            (heat.shape[-1], heat.shape[-2]),
            self.min_overlap,
            self.corrected_radius,
        )
        if goal.skipped:
            log.debug("CornerNet: %d boxes without width or height in the input skipped", goal.skipped)
        totals = dict.fromkeys(("loss_heatmap", "loss_pull", "loss_push", "loss_offset"), heat.new_zeros(()))
        for stack in stacks:
            totals["loss_heatmap"] = (
                totals["loss_heatmap"]
                + heatmap_focal_loss(stack["tl_heat"], goal.top_left)
                + heatmap_focal_loss(stack["br_heat"], goal.bottom_right)
            )
            pull, push = embedding_losses(
                gather_at(stack["tl_tag"], goal.top_left_indices)[..., 0].float(),
                gather_at(stack["br_tag"], goal.bottom_right_indices)[..., 0].float(),
                goal.mask,
            )
            totals["loss_pull"] = totals["loss_pull"] + pull
            totals["loss_push"] = totals["loss_push"] + push
            totals["loss_offset"] = (
                totals["loss_offset"]
                + smooth_l1_at(stack["tl_regr"], goal.top_left_indices, goal.top_left_offsets, goal.mask)
                + smooth_l1_at(
                    stack["br_regr"], goal.bottom_right_indices, goal.bottom_right_offsets, goal.mask
                )
            )
        weights = self.loss_weights
        factors = {
            "loss_heatmap": weights.heatmap,
            "loss_pull": weights.pull,
            "loss_push": weights.push,
            "loss_offset": weights.offset,
        }
        return {name: value * factors[name] / len(stacks) for name, value in totals.items()}

    @torch.no_grad()
    def detect(self, batch: Tensor, images: list[Tensor]) -> list[dict[str, Tensor]]:
        settings = self.decoding
        count = len(batch)
        inputs = torch.cat([batch, batch.flip(-1)]) if settings.flip_test else batch
        outputs = self.network(inputs)[-1]
        out_h, out_w = outputs["tl_heat"].shape[-2:]
        boxes, scores, labels = decode_corners(
            outputs["tl_heat"].float().sigmoid(),
            outputs["br_heat"].float().sigmoid(),
            outputs["tl_tag"].float(),
            outputs["br_tag"].float(),
            outputs["tl_regr"].float(),
            outputs["br_regr"].float(),
            settings,
        )
        if settings.flip_test:  # the mirrored image's boxes, mirrored back and added
            mirrored = boxes[count:].clone()
            mirrored[..., 0], mirrored[..., 2] = out_w - boxes[count:, :, 2], out_w - boxes[count:, :, 0]
            boxes = torch.cat([boxes[:count], mirrored], dim=1)
            scores = torch.cat([scores[:count], scores[count:]], dim=1)
            labels = torch.cat([labels[:count], labels[count:]], dim=1)
        to_input = torch.tensor(
            [batch.shape[-1] / out_w, batch.shape[-2] / out_h] * 2, dtype=boxes.dtype, device=boxes.device
        )
        detections = []
        corners = (
            torch.maximum(outputs["tl_heat"][:count], outputs["br_heat"][:count]).float().sigmoid().amax(1)
        )
        for image_boxes, image_scores, image_labels, image_corners, image, scale in zip(
            boxes, scores, labels, corners, images, self.transform.scales(images), strict=True
        ):
            valid = image_scores > -1
            image_boxes = image_boxes[valid] * to_input / scale
            height, width = image.shape[-2:]
            image_boxes[:, 0::2] = image_boxes[:, 0::2].clamp(0, width)
            image_boxes[:, 1::2] = image_boxes[:, 1::2].clamp(0, height)
            keep, kept_scores = soft_nms(
                image_boxes, image_scores[valid], image_labels[valid], sigma=settings.soft_nms_sigma
            )
            best = torch.argsort(kept_scores, descending=True)[: settings.max_per_image]
            detections.append(
                {
                    "boxes": image_boxes[keep][best],
                    "scores": kept_scores[best],
                    "labels": image_labels[valid][keep][best],
                    "heatmap": image_region(image_corners, (height, width), scale, float(to_input[0])),
                }
            )
        return detections


def decode_corners(
    tl_heat: Tensor,
    br_heat: Tensor,
    tl_tag: Tensor,
    br_tag: Tensor,
    tl_regr: Tensor,
    br_regr: Tensor,
    settings: CornerNetDecoding | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The official ``_decode`` (module docstring): corner heatmap probabilities (B, C, h, w), embeddings
    (B, 1, h, w) and offsets (B, 2, h, w) -> (B, D, 4) XYXY boxes in output cells, (B, D) scores (-1 for a
    rejected pair) and (B, D) labels 1..C, D = min(num_dets, K^2)."""
    settings = settings or CornerNetDecoding()
    k = settings.top_k
    tl = top_peaks(heatmap_nms(tl_heat, settings.nms_kernel), k)
    br = top_peaks(heatmap_nms(br_heat, settings.nms_kernel), k)
    tl_offset, br_offset = gather_at(tl_regr, tl.indices), gather_at(br_regr, br.indices)
    tl_x, tl_y = (tl.xs + tl_offset[..., 0])[:, :, None], (tl.ys + tl_offset[..., 1])[:, :, None]
    br_x, br_y = (br.xs + br_offset[..., 0])[:, None, :], (br.ys + br_offset[..., 1])[:, None, :]
    k_tl, k_br = tl.scores.shape[1], br.scores.shape[1]
    boxes = torch.stack(
        [
            tl_x.expand(-1, k_tl, k_br),
            tl_y.expand(-1, k_tl, k_br),
            br_x.expand(-1, k_tl, k_br),
            br_y.expand(-1, k_tl, k_br),
        ],
        dim=3,
    )
    distance = (
        gather_at(tl_tag, tl.indices)[..., 0][:, :, None] - gather_at(br_tag, br.indices)[..., 0][:, None, :]
    ).abs()
    scores = (tl.scores[:, :, None] + br.scores[:, None, :]) / 2
    rejected = (
        (tl.classes[:, :, None] != br.classes[:, None, :])
        | (distance > settings.ae_threshold)
        | (br_x < tl_x)
        | (br_y < tl_y)
    )
    scores = torch.where(rejected, -1.0, scores).flatten(1)
    batch = len(scores)
    scores, order = scores.topk(min(settings.num_dets, scores.shape[1]), dim=1)
    boxes = boxes.reshape(batch, -1, 4).gather(1, order[..., None].expand(-1, -1, 4))
    labels = tl.classes[:, :, None].expand(-1, k_tl, k_br).reshape(batch, -1).gather(1, order) + 1
    return boxes, scores, labels
