"""CenterNet, "Objects as Points" (Zhou, Wang and Krähenbühl, 2019), the ctdet task: each object is the
peak of its class heatmap at its box centre, with the box size and the centre's sub-cell offset regressed
there. Follows the official code (xingyizhou/CenterNet: ``datasets/sample/ctdet.py``, ``trains/ctdet.py``,
``models/losses.py``, ``models/decode.py``, ``detectors/ctdet.py``).

- Targets (Sec. 3, official ``ctdet.py``): boxes at the output stride (4), clipped to the output map; a box
  of size (w, h) > 0 draws a Gaussian bump of radius ``bump_radius(h, w, 0.7)`` at ``int(centre)`` into its
  class channel (``models.object_heatmaps``, max-merged), and regresses (w, h) and ``centre - int(centre)``
  at that cell. Boxes of zero width or height after clipping are counted and skipped, as the official
  ``if h > 0 and w > 0``.
- Loss (Sec. 3, Eq. 1-3): the heatmap focal loss + 0.1 x L1 on sizes + 1 x L1 on offsets at the object
  cells (each L1 summed over objects and both coordinates and divided by 2 x objects, the official
  ``RegL1Loss``), averaged over the network's stacks (Hourglass: intermediate supervision).
- Decode (Sec. 4): sigmoid, 3x3 max-pool NMS, the top 100 peaks over all classes, centre + offset +/-
  size / 2; no IoU NMS. Flip test averages the heatmaps and sizes of the image and its mirror, flipped
  back (the offsets of the image alone), as the official ``flip_test``.

The model follows torchvision's detection convention (``datamodules.batch``): ``forward(images, targets)``
returns the named losses in training and per-image ``boxes`` / ``labels`` (1..C; class channel l - 1) /
``scores`` in eval, in each image's own pixels, through ``models.letterbox.LetterboxTransform``, and
``heatmap``: the highest class probability of each output cell over the image (for the overlays).
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

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CenterTargets:
    """One batch's CenterNet targets at the output stride; M is the most objects of any image."""

    heatmaps: Tensor  # (B, C, h, w)
    indices: Tensor  # (B, M) int64 cell y * w + x of each object's centre
    sizes: Tensor  # (B, M, 2) box width, height in output cells
    offsets: Tensor  # (B, M, 2) centre - int(centre)
    mask: Tensor  # (B, M) bool: a real object (not padding, not degenerate)
    skipped: int  # boxes of zero width or height after clipping


def center_targets(
    boxes: Sequence[Tensor],
    labels: Sequence[Tensor],
    num_classes: int,
    heatmap_size: tuple[int, int],
    min_overlap: float = 0.7,
    corrected_radius: bool = False,
) -> CenterTargets:
    """CenterNet's targets (module docstring) from per-image XYXY ``boxes`` already in output cells and
    ``labels`` 1..C. ``heatmap_size`` is (w, h)."""
    width, height = heatmap_size
    padded, classes, present = pad_objects(boxes, labels)
    device = padded.device
    clipped = torch.stack(
        [
            padded[..., 0].clamp(0, width - 1),
            padded[..., 1].clamp(0, height - 1),
            padded[..., 2].clamp(0, width - 1),
            padded[..., 3].clamp(0, height - 1),
        ],
        dim=-1,
    )
    box_w, box_h = clipped[..., 2] - clipped[..., 0], clipped[..., 3] - clipped[..., 1]
    mask = present & (box_w > 0) & (box_h > 0)
    centres = (clipped[..., :2] + clipped[..., 2:]) / 2
    cells = torch.trunc(centres)
    radii = bump_radius(box_h, box_w, min_overlap, corrected_radius).to(device)
    heatmaps = point_heatmaps(centres, classes, radii, mask, num_classes, heatmap_size)
    indices = (cells[..., 1] * width + cells[..., 0]).long().clamp(0, width * height - 1)
    return CenterTargets(
        heatmaps=heatmaps,
        indices=indices,
        sizes=torch.stack([box_w, box_h], dim=-1),
        offsets=centres - cells,
        mask=mask,
        skipped=int((present & ~mask).sum()),
    )


def masked_l1(predictions: Tensor, indices: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """The official ``RegL1Loss``: (B, 2, h, w) ``predictions`` read at ``indices``, L1 to (B, M, 2)
    ``targets`` summed over the masked objects and both coordinates, divided by their count (+1e-4)."""
    read = gather_at(predictions, indices).float()
    weight = mask[..., None].expand_as(read).float()
    return F.l1_loss(read * weight, targets * weight, reduction="sum") / (weight.sum() + 1e-4)


@dataclass(frozen=True)
class CenterNetLossWeights:
    """The official defaults: ``hm_weight`` 1, ``wh_weight`` 0.1, ``off_weight`` 1."""

    heatmap: float = 1.0
    size: float = 0.1
    offset: float = 1.0


class CenterNet(KeypointDetector):
    """CenterNet around a ``network`` whose ``forward(x)`` returns one dict per stack of ``hm`` (C), ``wh``
    (2) and ``reg`` (2) maps at ``network.output_stride`` (``models.centernet_resnet``, ``models.dla``,
    ``models.keypoint_hourglass``).

    Args:
        network: the backbone + heads.
        num_classes: C, the heatmap channels.
        input_size: the square network input (official 512; CornerNet's 511).
        max_detections: K peaks decoded per image (official 100).
        flip_test: average with the mirrored image at test time (official ``--flip_test``).
        min_overlap, corrected_radius: the Gaussian radius (``models.object_heatmaps.gaussian_radius``).
        loss_weights: heatmap / size / offset weights.
        bgr: feed the network BGR (for the official weights).
        test_padding: evaluate each image at its own resolution, padded as the official test does
            ((32, 0); ``models.letterbox``); None: letterboxed to ``input_size`` as in training.
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int = 80,
        *,
        input_size: int = 512,
        max_detections: int = 100,
        flip_test: bool = False,
        min_overlap: float = 0.7,
        corrected_radius: bool = False,
        loss_weights: CenterNetLossWeights | None = None,
        bgr: bool = False,
        test_padding: tuple[int, int] | None = None,
    ) -> None:
        stride = int(getattr(network, "output_stride", 4))
        if input_size % stride:
            raise ValueError(f"input_size {input_size} must be a multiple of the output stride {stride}")
        super().__init__(network, num_classes, input_size, min_overlap, corrected_radius, bgr, test_padding)
        self.output_stride = stride
        self.max_detections = max_detections
        self.flip_test = flip_test
        self.loss_weights = loss_weights or CenterNetLossWeights()

    def losses(
        self,
        stacks: list[dict[str, Tensor]],
        targets: list[dict[str, Tensor]],
        scales: list[float],
        input_hw: tuple[int, int],
    ) -> dict[str, Tensor]:
        heatmap = stacks[0]["hm"]
        size = (heatmap.shape[-1], heatmap.shape[-2])
        boxes = [
            t["boxes"].to(heatmap.device) * scale / self.output_stride
            for t, scale in zip(targets, scales, strict=True)
        ]
        goal = center_targets(
            boxes,
            [t["labels"].to(heatmap.device) for t in targets],
            self.num_classes,
            size,
            self.min_overlap,
            self.corrected_radius,
        )
        if goal.skipped:
            log.debug("CenterNet: %d boxes of zero size at the output stride skipped", goal.skipped)
        weights = self.loss_weights
        total = {
            "loss_heatmap": heatmap.new_zeros(()),
            "loss_size": heatmap.new_zeros(()),
            "loss_offset": heatmap.new_zeros(()),
        }
        for stack in stacks:
            total["loss_heatmap"] = total["loss_heatmap"] + heatmap_focal_loss(stack["hm"], goal.heatmaps)
            total["loss_size"] = total["loss_size"] + masked_l1(
                stack["wh"], goal.indices, goal.sizes, goal.mask
            )
            total["loss_offset"] = total["loss_offset"] + masked_l1(
                stack["reg"], goal.indices, goal.offsets, goal.mask
            )
        factors = {"loss_heatmap": weights.heatmap, "loss_size": weights.size, "loss_offset": weights.offset}
        return {name: value * factors[name] / len(stacks) for name, value in total.items()}

    @torch.no_grad()
    def detect(self, batch: Tensor, images: list[Tensor]) -> list[dict[str, Tensor]]:
        outputs = self.network(torch.cat([batch, batch.flip(-1)]) if self.flip_test else batch)[-1]
        heat, sizes, offsets = outputs["hm"].float().sigmoid(), outputs["wh"].float(), outputs["reg"].float()
        if self.flip_test:
            count = len(batch)
            heat = (heat[:count] + heat[count:].flip(-1)) / 2
            sizes = (sizes[:count] + sizes[count:].flip(-1)) / 2
            offsets = offsets[:count]
        boxes, scores, labels = decode_centers(heat, sizes, offsets, self.max_detections)
        detections = []
        for image_boxes, image_scores, image_labels, image_heat, image, scale in zip(
            boxes, scores, labels, heat.amax(dim=1), images, self.transform.scales(images), strict=True
        ):
            height, width = image.shape[-2:]
            image_boxes = image_boxes * self.output_stride / scale
            image_boxes[:, 0::2] = image_boxes[:, 0::2].clamp(0, width)
            image_boxes[:, 1::2] = image_boxes[:, 1::2].clamp(0, height)
            detections.append(
                {
                    "boxes": image_boxes,
                    "scores": image_scores,
                    "labels": image_labels,
                    "heatmap": image_region(image_heat, (height, width), scale, self.output_stride),
                }
            )
        return detections


def decode_centers(
    heat: Tensor, sizes: Tensor, offsets: Tensor, max_detections: int = 100
) -> tuple[Tensor, Tensor, Tensor]:
    """The official ``ctdet_decode``: (B, C, h, w) heatmap probabilities, (B, 2, h, w) sizes and offsets ->
    (B, K, 4) XYXY boxes in output cells, (B, K) scores and (B, K) labels 1..C."""
    peaks = top_peaks(heatmap_nms(heat), max_detections)
    offset = gather_at(offsets, peaks.indices)
    size = gather_at(sizes, peaks.indices)
    xs, ys = peaks.xs + offset[..., 0], peaks.ys + offset[..., 1]
    half_w, half_h = size[..., 0] / 2, size[..., 1] / 2
    boxes = torch.stack([xs - half_w, ys - half_h, xs + half_w, ys + half_h], dim=-1)
    return boxes, peaks.scores, peaks.classes + 1
