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
from typing import Any, NamedTuple

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
class _BatchSegments:
    """The listed segments of a batch of B images, one side (predicted or ground truth). Row b < B stands
    for image b's void, row B + s for the s-th segment (images in order, each in its listed order)."""

    ids: Tensor  # (S,) segment ids
    images: Tensor  # (S,) index of each segment's image in the batch
    categories: Tensor  # (S,) category index
    crowd: Tensor  # (S,) bool
    id_base: int  # > every id of this side, listed or in the pixels
    which: str  # "predicted" or "ground truth", for error messages

    def rows(self, images: Tensor, ids: Tensor, image_ids: Sequence[int]) -> Tensor:
        """The row of each (image, pixel id): b for void, B + s for a listed segment -- one search in the
        sorted [voids..., segments...]; an id neither void nor listed raises ``ValueError``."""
        batch = len(image_ids)
        voids = torch.arange(batch, device=ids.device) * self.id_base
        table = torch.cat([voids, self.images * self.id_base + self.ids])
        order = torch.argsort(table)
        sorted_keys = table[order]
        keys = images * self.id_base + ids
        position = torch.searchsorted(sorted_keys, keys).clamp_max(len(sorted_keys) - 1)
        if not torch.equal(sorted_keys[position], keys):
            first = int(torch.nonzero(sorted_keys[position] != keys)[0])
            image = int(images[first])
            missing = torch.unique(ids[(images == image) & (sorted_keys[position] != keys)])[:5].tolist()
            name = (
                f"image {image_ids[image]}"
                if image_ids[image] != NO_IMAGE_ID
                else f"image {image} of the batch"
            )
            raise ValueError(
                f"{self.which} pixel ids {missing} of {name} are neither void (0) nor listed in the segments"
            )
        return order[position]


class _Matching(NamedTuple):
    """The pairs of a batch of images: ``intersection`` (G, P) pixels, ``pred_area`` (P,), ``pred_on_void``
    (P,) pixels on ground-truth void, ``same_category`` (G, P) (and same image), ``iou`` and ``matched``."""

    pred: _BatchSegments
    gt: _BatchSegments
    intersection: Tensor
    pred_area: Tensor
    pred_on_void: Tensor
    same_category: Tensor
    iou: Tensor
    matched: Tensor


def _pixel_runs(gt_ids: Tensor, pred_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One image's (ground truth id, predicted id) pixel pairs run-length encoded along its rows: each
    run's ground truth id, predicted id and length in pixels.

    Written by hand because counting the distinct pairs with a plain ``unique`` sorts every pixel: panoptic
    maps come in long runs of one pair, so encoding the runs (two comparisons per pixel) and counting only
    them takes 2.0 ms against ``torch.unique``'s 26.7 ms on a 1024 x 1024 map of 40 boxes (2 CPU cores),
    with the same counts. One image at a time: concatenating a batch's maps first costs more than it
    saves beyond small images (at 512 px, 93 against 40 ms for 48 images)."""
    gt_ids, pred_ids = gt_ids.reshape(-1), pred_ids.reshape(-1)
    pixels = gt_ids.numel()
    run_starts = torch.ones(pixels, dtype=torch.bool, device=gt_ids.device)
    torch.ne(gt_ids[1:], gt_ids[:-1], out=run_starts[1:])
    run_starts[1:] |= pred_ids[1:] != pred_ids[:-1]
    starts = run_starts.nonzero().squeeze(1)
    lengths = torch.diff(starts, append=starts.new_full((1,), pixels))
    return gt_ids[starts], pred_ids[starts], lengths


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
    # images evaluated together: the (segments x segments) pair matrix grows with its square
    IMAGES_PER_PASS = 16
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

    def _segments(
        self, segmentations: Sequence[PanopticSegmentation], highest_pixel_id: int, which: str
    ) -> _BatchSegments:
        ids, images, categories, crowd = [], [], [], []
        for image, segmentation in enumerate(segmentations):
            if VOID in segmentation.segments:
                raise ValueError(f"{which} segment id {VOID} is void and cannot be a segment")
            for segment_id, info in segmentation.segments.items():
                if info.category_id not in self._category_index:
                    raise ValueError(
                        f"{which} segment has a category id not in categories: {info.category_id}"
                    )
                ids.append(segment_id)
                images.append(image)
                categories.append(self._category_index[info.category_id])
                crowd.append(info.iscrowd)
        device = self.device
        return _BatchSegments(
            ids=torch.tensor(ids, dtype=torch.int64, device=device),
            images=torch.tensor(images, dtype=torch.int64, device=device),
            categories=torch.tensor(categories, dtype=torch.int64, device=device),
            crowd=torch.tensor(crowd, dtype=torch.bool, device=device),
            id_base=max([highest_pixel_id, *ids]) + 1,
            which=which,
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
        for prediction, target in zip(predictions, targets, strict=True):
            for which, ids in (("predicted", prediction.ids), ("ground truth", target.ids)):
                if ids.ndim != 2:
                    raise ValueError(f"{which} segment ids must be (H, W), got {tuple(ids.shape)}")
            if prediction.ids.shape != target.ids.shape:
                raise ValueError(
                    f"prediction ids {tuple(prediction.ids.shape)} and ground truth ids "
                    f"{tuple(target.ids.shape)} differ in size"
                )
        for start in range(0, len(targets), self.IMAGES_PER_PASS):
            chunk = slice(start, start + self.IMAGES_PER_PASS)
            rows = self.batch_counts(predictions[chunk], targets[chunk], image_ids[chunk])
            self.per_image.append(rows)
            self.image_ids.append(torch.tensor(image_ids[chunk], dtype=torch.int64, device=self.device))

    def matched_pairs(self, prediction: PanopticSegmentation, target: PanopticSegmentation) -> dict[int, int]:
        """Ground-truth segment id -> the predicted segment id it matches in one image (the matching
        ``batch_counts`` scores: same category, IoU > 0.5 with the ground-truth void left out of the union,
        crowd never matched), for inputs ``update`` would accept."""
        m = self._matching([prediction], [target], [NO_IMAGE_ID])
        gt_index, pred_index = torch.nonzero(m.matched, as_tuple=True)
        return dict(zip(m.gt.ids[gt_index].tolist(), m.pred.ids[pred_index].tolist(), strict=True))

    def _matching(
        self,
        predictions: Sequence[PanopticSegmentation],
        targets: Sequence[PanopticSegmentation],
        image_ids: Sequence[int],
    ) -> _Matching:
        """Every image's segments, their pairwise pixel counts and which pairs match (``batch_counts``)."""
        device = self.device
        batch = len(targets)
        # every image's pixel pairs run-length encoded, the runs of all images together
        runs = [
            _pixel_runs(t.ids.to(device), p.ids.to(device)) for t, p in zip(targets, predictions, strict=True)
        ]
        run_gt, run_pred, run_lengths = (torch.cat(parts).long() for parts in zip(*runs, strict=True))
        run_images = torch.repeat_interleave(
            torch.arange(batch, device=device), torch.tensor([len(r[0]) for r in runs], device=device)
        )
        pred_max, gt_max = 0, 0
        if run_gt.numel():
            (pred_low, pred_high), (gt_low, gt_high) = torch.aminmax(run_pred), torch.aminmax(run_gt)
            if min(int(pred_low), int(gt_low)) < 0:
                lowest = min(int(pred_low), int(gt_low))
                raise ValueError(f"segment ids must be >= 0 (0 = void), got {lowest}")
            pred_max, gt_max = int(pred_high), int(gt_high)
        pred = self._segments(predictions, pred_max, "predicted")
        gt = self._segments(targets, gt_max, "ground truth")
        if batch * max(gt.id_base, pred.id_base) >= 2**63:
            raise ValueError("segment ids too large to key by image in int64")

        # (B + G, B + P) pixel counts of every (ground truth, prediction) pair, the runs' lengths summed
        # (the reference counts pixels per ``gt * OFFSET + pred``); the first B rows and columns are the
        # images' voids
        pred_columns = pred.rows(run_images, run_pred, image_ids)
        gt_rows = gt.rows(run_images, run_gt, image_ids)
        num_gt, num_pred = len(gt.ids), len(pred.ids)
        width = batch + num_pred
        counts = (
            torch.zeros((batch + num_gt) * width, dtype=torch.int64, device=device)
            .index_add_(0, gt_rows * width + pred_columns, run_lengths)
            .view(batch + num_gt, width)
        )
        intersection = counts[batch:, batch:]
        gt_area = counts[batch:].sum(1)
        pred_area = counts[:, batch:].sum(0)
        pred_on_void = counts[pred.images, torch.arange(batch, width, device=device)]
        same_category = (gt.categories[:, None] == pred.categories[None, :]) & (
            gt.images[:, None] == pred.images[None, :]
        )

        union = pred_area[None, :] + gt_area[:, None] - intersection - pred_on_void[None, :]
        iou = intersection.double() / union.clamp_min(1).double()
        matched = same_category & ~gt.crowd[:, None] & (intersection > 0) & (iou > 0.5)
        return _Matching(pred, gt, intersection, pred_area, pred_on_void, same_category, iou, matched)

    def batch_counts(
        self,
        predictions: Sequence[PanopticSegmentation],
        targets: Sequence[PanopticSegmentation],
        image_ids: Sequence[int],
    ) -> Tensor:
        """(B, 4, C) float64: per image and category the IoU sum of the matches, TP, FP and FN, for inputs
        ``update`` has checked (equal (H, W) per pair, one id per image). All images in one pass (the
        per-image work is a few dozen small tensor operations, which would otherwise dominate on small
        images)."""
        m = self._matching(predictions, targets, image_ids)
        pred, gt, matched, iou, intersection = m.pred, m.gt, m.matched, m.iou, m.intersection
        batch, num_categories, device = len(targets), len(self.category_ids), self.device
        num_gt, pred_area, pred_on_void = len(gt.ids), m.pred_area, m.pred_on_void
        listed = pred_area > 0  # a listed predicted segment without pixels takes no part
        rows = torch.zeros(4, batch * num_categories, dtype=torch.float64, device=device)
        iou_sum, tp, fp, fn = rows
        gt_slot = gt.images * num_categories + gt.categories
        pred_slot = pred.images * num_categories + pred.categories
        tp.index_add_(0, gt_slot, matched.sum(1).double())
        iou_sum.index_add_(0, gt_slot, torch.where(matched, iou, 0.0).sum(1))
        fn.index_add_(0, gt_slot, (~matched.any(1) & ~gt.crowd).double())

        # the crowd segment of each image and category: the last one listed, as the reference's dict keeps it
        segment_order = torch.arange(num_gt, device=device)
        crowd_rank = torch.where(gt.crowd, segment_order, -1)
        last_crowd = torch.full((batch * num_categories,), -1, dtype=torch.int64, device=device)
        last_crowd.scatter_reduce_(0, gt_slot, crowd_rank, reduce="amax")
        is_category_crowd = gt.crowd & (last_crowd[gt_slot] == segment_order)
        on_crowd = torch.where(is_category_crowd[:, None] & m.same_category, intersection, 0).sum(0)
        ignored = 2 * (pred_on_void + on_crowd) > pred_area  # more than half void or crowd
        false_positive = listed & ~matched.any(0) & ~ignored
        fp.index_add_(0, pred_slot, false_positive.double())
        return rows.view(4, batch, num_categories).transpose(0, 1)

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
        return quality_of_totals(self._totals(), self.isthing)


def quality_of_totals(totals: Tensor, isthing: Sequence[bool]) -> dict[str, Tensor]:
    """``PanopticQuality.compute()``'s values from (4, C) summed IoU, TP, FP, FN per category (``isthing``
    per category, in the same order), as the reference's ``pq_average`` computes them."""
    iou_sum, tp, fp, fn = totals
    seen = (tp + fp + fn) > 0
    denominator = (tp + 0.5 * fp + 0.5 * fn).clamp_min(1e-300)
    pq = torch.where(seen, iou_sum / denominator, 0.0)
    sq = torch.where(tp > 0, iou_sum / tp.clamp_min(1), 0.0)
    rq = torch.where(seen, tp / denominator, 0.0)
    isthing_mask = torch.tensor(list(isthing), dtype=torch.bool, device=seen.device)
    results: dict[str, Tensor] = {}
    for suffix, group in (
        ("", torch.ones_like(isthing_mask)),
        ("_things", isthing_mask),
        ("_stuff", ~isthing_mask),
    ):
        averaged = seen & group
        count = averaged.sum()
        for name, values in (("PQ", pq), ("SQ", sq), ("RQ", rq)):
            results[f"{name}{suffix}"] = torch.where(averaged, values, 0.0).sum() / count.double()
        results[f"N{suffix}"] = count
    results.update(PQ_per_class=pq, SQ_per_class=sq, RQ_per_class=rq)
    return results
