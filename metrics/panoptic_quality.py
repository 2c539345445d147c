"""Panoptic quality (Kirillov et al., "Panoptic Segmentation", CVPR 2019, Sec. 4.1) as a torchmetrics
Metric over DDP ranks, computed exactly as the reference ``pq_compute`` of panopticapi (shipped as
``cityscapesscripts.evaluation.evalPanopticSemanticLabeling``):

- a ground-truth segment and a predicted segment of the same category match when their IoU > 0.5, the
  IoU's union leaving out the predicted pixels that are void (id 0) in the ground truth; crowd
  ground-truth segments never match;
- unmatched non-crowd ground truth segments are false negatives;
- an unmatched predicted segment is a false positive unless more than half of its pixels are void in the
  ground truth or lie in the crowd region of its own category (the reference takes, per category, the
  crowd segment listed last: COCO panoptic has at most one crowd segment per category and image);
- per category PQ = sum(IoU of matches) / (TP + FP/2 + FN/2), SQ = sum(IoU) / TP (0 without TP),
  RQ = TP / (TP + FP/2 + FN/2); the overall, things and stuff values are the plain means over the
  categories with TP + FP + FN > 0 (their number is ``N``; a category never seen reads 0 per class).

States are one row of per-category counts per image ("cat" states, float64 IoU sums and integer
counts): DDP ranks combine exactly, and an image given twice under the same ``image_ids`` entry (the
padding a ``DistributedSampler`` adds to even out the ranks) counts once -- the first occurrence.
Written by hand: torchmetrics' ``PanopticQuality`` takes (category, instance) maps with no crowd
regions and merges every stuff category into one segment per image, so it cannot reproduce the
reference on COCO ground truth (``tests/test_panoptic_quality.py`` shows by how much).
Differences from the reference only where it refuses or mis-handles input: a pixel id missing from the
segments, or a category missing from ``categories``, raises ``ValueError`` (the reference raises for
predictions and silently skips unknown ground-truth ids); a predicted segment listed but without pixels
is ignored (the reference raises); segment areas come from the pixels (the reference reads the
ground truth's from its JSON, equal in COCO).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

VOID = 0
NO_IMAGE_ID = -1


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a panoptic segmentation: its category id and whether it is a crowd region."""

    category_id: int
    iscrowd: bool = False


@dataclass
class PanopticSegmentation:
    """An image's panoptic segmentation: ``ids`` (H, W) int64 segment ids (0 = void) and ``segments``,
    segment id -> ``SegmentInfo`` (in the order of the JSON's ``segments_info``: crowd handling depends on
    it as in the reference)."""

    ids: Tensor
    segments: dict[int, SegmentInfo] = field(default_factory=dict)

    @classmethod
    def from_coco(cls, ids: Tensor, segments_info: Iterable[Mapping[str, Any]]) -> PanopticSegmentation:
        """From a COCO panoptic annotation's ``segments_info`` (``id``, ``category_id``, ``iscrowd``)."""
        segments = {
            int(info["id"]): SegmentInfo(int(info["category_id"]), bool(info.get("iscrowd", 0)))
            for info in segments_info
        }
        return cls(ids=ids, segments=segments)


@dataclass
class _SegmentTable:
    ids: Tensor  # (S,) segment ids, in the given order
    categories: Tensor  # (S,) category index
    crowd: Tensor  # (S,) bool
    pixels: Tensor  # (H*W,) 0 for void, 1 + position in ``ids`` otherwise


class PanopticQuality(Metric):
    """PQ, SQ, RQ overall, for things and for stuff, and per category (see the module docstring).

    ``categories``: category id -> isthing, for every category that ground truth and predictions may use
    (COCO: ``{c["id"]: bool(c["isthing"]) for c in panoptic_coco_categories}``).

    ``compute()`` returns float64 tensors: ``PQ``, ``SQ``, ``RQ``, ``PQ_things``, ..., ``RQ_stuff``
    (NaN where no category of the group was seen; the reference divides by zero there), ``N``,
    ``N_things``, ``N_stuff`` (categories averaged), and ``PQ_per_class``, ``SQ_per_class``,
    ``RQ_per_class`` of shape (C,) in the order of ``category_ids`` (sorted ids)."""

    higher_is_better = True
    full_state_update = False
    is_differentiable = False

    def __init__(self, categories: Mapping[int, bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not categories:
            raise ValueError("PanopticQuality needs at least one category")
        self.category_ids: list[int] = sorted(int(c) for c in categories)
        if self.category_ids[0] < 0:
            raise ValueError(f"category ids must be >= 0, got {self.category_ids[0]}")
        self.isthing: list[bool] = [bool(categories[c]) for c in self.category_ids]
        self._category_index = {c: i for i, c in enumerate(self.category_ids)}
        # per image: its id (NO_IMAGE_ID: never de-duplicated) and a (4, C) row of IoU sum, TP, FP, FN
        self.add_state("image_ids", [], dist_reduce_fx="cat")
        self.add_state("per_image", [], dist_reduce_fx="cat")

    def _table(self, segmentation: PanopticSegmentation, which: str) -> _SegmentTable:
        ids = segmentation.ids
        if ids.ndim != 2:
            raise ValueError(f"{which} segment ids must be (H, W), got {tuple(ids.shape)}")
        device = ids.device
        try:
            categories = [self._category_index[info.category_id] for info in segmentation.segments.values()]
        except KeyError as error:
            raise ValueError(
                f"{which} segment has a category id not in categories: {error.args[0]}"
            ) from None
        if VOID in segmentation.segments:
            raise ValueError(f"{which} segment id {VOID} is void and cannot be a segment")
        segment_ids = torch.tensor(list(segmentation.segments), dtype=torch.int64, device=device)
        crowd = torch.tensor(
            [i.iscrowd for i in segmentation.segments.values()], dtype=torch.bool, device=device
        )
        # pixel id -> 1 + position of the segment, void -> 0: one search in the sorted [void, ids...]
        flat = ids.reshape(-1).long()
        table = torch.cat([segment_ids.new_zeros(1), segment_ids])
        order = torch.argsort(table)
        sorted_ids = table[order]
        position = torch.searchsorted(sorted_ids, flat).clamp_max(len(sorted_ids) - 1)
        found = sorted_ids[position]
        if not torch.equal(found, flat):
            missing = torch.unique(flat[found != flat])[:5].tolist()
            raise ValueError(f"{which} pixel ids {missing} are neither void (0) nor listed in the segments")
        pixels = order[position]
        return _SegmentTable(
            segment_ids, torch.tensor(categories, dtype=torch.int64, device=device), crowd, pixels
        )

    def update(
        self,
        predictions: Sequence[PanopticSegmentation] | PanopticSegmentation,
        targets: Sequence[PanopticSegmentation] | PanopticSegmentation,
        image_ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """One prediction and one ground truth per image, of equal (H, W). ``image_ids`` (one per image,
        >= 0) lets an image seen twice -- DDP sampler padding -- count once; without them every image
        counts."""
        if isinstance(predictions, PanopticSegmentation):
            predictions = [predictions]
        if isinstance(targets, PanopticSegmentation):
            targets = [targets]
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions for {len(targets)} ground truths")
        if image_ids is None:
            image_ids = [NO_IMAGE_ID] * len(targets)
        image_ids = [int(i) for i in image_ids]
        if len(image_ids) != len(targets) or any(i < 0 for i in image_ids if i != NO_IMAGE_ID):
            raise ValueError(f"need one image id >= 0 per image, got {image_ids} for {len(targets)} images")
        for prediction, target, image_id in zip(predictions, targets, image_ids, strict=True):
            if prediction.ids.shape != target.ids.shape:
                raise ValueError(
                    f"prediction ids {tuple(prediction.ids.shape)} and ground truth ids "
                    f"{tuple(target.ids.shape)} differ in size"
                )
            row = self._image_row(self._table(prediction, "predicted"), self._table(target, "ground truth"))
            self.per_image.append(row[None])
            self.image_ids.append(torch.tensor([image_id], dtype=torch.int64, device=self.device))

    def _image_row(self, pred: _SegmentTable, gt: _SegmentTable) -> Tensor:
        """(4, C) float64: per category the IoU sum of the matches, TP, FP and FN of one image."""
        device = self.device
        row = torch.zeros(4, len(self.category_ids), dtype=torch.float64, device=device)
        iou_sum, tp, fp, fn = row
        pred_pixels, gt_pixels = pred.pixels.to(device), gt.pixels.to(device)
        pred_categories, gt_categories = pred.categories.to(device), gt.categories.to(device)
        gt_crowd = gt.crowd.to(device)
        num_pred, num_gt = len(pred.ids), len(gt.ids)
        # (1 + G, 1 + P) pixel counts of every (ground truth, prediction) pair, row/column 0 = void
        counts = torch.bincount(
            gt_pixels * (num_pred + 1) + pred_pixels, minlength=(num_gt + 1) * (num_pred + 1)
        ).view(num_gt + 1, num_pred + 1)
        intersection = counts[1:, 1:]
        gt_area = counts[1:].sum(1)
        pred_area = counts[:, 1:].sum(0)
        pred_on_void = counts[0, 1:]
        listed = pred_area > 0  # a listed predicted segment without pixels takes no part
        same_category = gt_categories[:, None] == pred_categories[None, :]

        union = pred_area[None, :] + gt_area[:, None] - intersection - pred_on_void[None, :]
        iou = intersection.double() / union.clamp_min(1).double()
        matched = same_category & ~gt_crowd[:, None] & (intersection > 0) & (iou > 0.5)
        tp.index_add_(0, gt_categories, matched.sum(1).double())
        iou_sum.index_add_(0, gt_categories, torch.where(matched, iou, 0.0).sum(1))

        gt_matched = matched.any(1)
        fn.index_add_(0, gt_categories, (~gt_matched & ~gt_crowd).double())

        # the crowd segment of each category: the last one listed, as the reference's dict keeps it
        segment_order = torch.arange(num_gt, device=device)
        crowd_rank = torch.where(gt_crowd, segment_order, -1)
        last_crowd = torch.full((len(self.category_ids),), -1, dtype=torch.int64, device=device)
        last_crowd.scatter_reduce_(0, gt_categories, crowd_rank, reduce="amax")
        is_category_crowd = gt_crowd & (last_crowd[gt_categories] == segment_order)
        on_crowd = torch.where(is_category_crowd[:, None] & same_category, intersection, 0).sum(0)
        ignored = 2 * (pred_on_void + on_crowd) > pred_area  # more than half void or crowd
        false_positive = listed & ~matched.any(0) & ~ignored
        fp.index_add_(0, pred_categories, false_positive.double())
        return row

    def _totals(self) -> Tensor:
        """(4, C): the per-image rows summed, each image id counted once (its first row)."""
        count = len(self.category_ids)
        rows = (
            dim_zero_cat(self.per_image)
            if len(self.per_image)
            else torch.zeros(0, 4, count, dtype=torch.float64)
        )
        ids = dim_zero_cat(self.image_ids) if len(self.image_ids) else torch.zeros(0, dtype=torch.int64)
        keep = torch.ones(len(ids), dtype=torch.bool, device=ids.device)
        seen_ids: set[int] = set()
        for position, image_id in enumerate(ids.tolist()):
            if image_id != NO_IMAGE_ID:
                keep[position] = image_id not in seen_ids
                seen_ids.add(image_id)
        return rows[keep].sum(0) if len(rows) else rows.new_zeros(4, count)

    def compute(self) -> dict[str, Tensor]:
        iou_sum, tp, fp, fn = self._totals()
        seen = (tp + fp + fn) > 0
        denominator = (tp + 0.5 * fp + 0.5 * fn).clamp_min(1e-300)
        pq = torch.where(seen, iou_sum / denominator, 0.0)
        sq = torch.where(tp > 0, iou_sum / tp.clamp_min(1), 0.0)
        rq = torch.where(seen, tp / denominator, 0.0)
        isthing = torch.tensor(self.isthing, dtype=torch.bool, device=seen.device)
        results: dict[str, Tensor] = {}
        for suffix, group in (("", torch.ones_like(isthing)), ("_things", isthing), ("_stuff", ~isthing)):
            averaged = seen & group
            count = averaged.sum()
            for name, values in (("PQ", pq), ("SQ", sq), ("RQ", rq)):
                results[f"{name}{suffix}"] = torch.where(averaged, values, 0.0).sum() / count.double()
            results[f"N{suffix}"] = count
        results.update(PQ_per_class=pq, SQ_per_class=sq, RQ_per_class=rq)
        return results
