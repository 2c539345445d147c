"""The DensePose-COCO evaluation protocol (Güler et al., CVPR 2018, Sec. 4; "GPS" and "GPSm" modes of
detectron2 ``projects/DensePose`` ``densepose/evaluation/densepose_coco_evaluation.py``
``DensePoseCocoEval``), with a pluggable point distance (``metrics.densepose_geodesic``).

Per ground truth person g with DensePose points and detection d (its top ``MAX_DETECTIONS`` by score, per
image and category): the points go to pixels of d's box (``dp_x * w / 255`` -- the official's 255 --
plus g's corner minus d's corner, truncated); GPS(d, g) = mean over g's points of
``exp(-dist^2 / (2 sigma^2))``, a point outside d's box or on d's background at distance inf; GPS = 0 when
no point falls in d's box. GPSm = sqrt(GPS * mask IoU), the IoU of d's foreground (labels > 0) pasted in
the image and g's ``dp_masks`` foreground resized to g's box (``scipy.ndimage.zoom``, order 1, > 0.5; g's
``segmentation`` when it has no ``dp_masks``). Ground truths without ``dp_x`` (incl. crowd regions) are
ignored (GPS 0). Matching is COCOeval's greedy matching on these scores, then the official's extra step:
a detection unmatched at the last threshold whose box IoU with an unmatched ground truth reaches 0.8 takes
that ground truth's ignore flag at every threshold (a detection on a person without DensePose data is no
false positive); in an image where every ground truth is ignored (or none exists) every detection is
ignored. ``accumulate`` and ``summarize`` are pycocotools COCOeval's, unchanged, with its keypoint
``Params`` (thresholds 0.5:0.05:0.95, maxDets 20, areas all / medium / large), which are the official's
``setUvParams``; its keypoint summary is the official's ``_summarizeUvs`` at minimum threshold 0.5.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy.ndimage import zoom

from datamodules.densepose_annotations import FRAME_SIZE, dense_points, segmentation_label_map
from metrics.densepose_geodesic import PointDistance

MODES = ("GPS", "GPSm")
MAX_DETECTIONS = 20  # the official maxDets
POINT_FRAME = 255.0  # the official evaluator maps dp_x, dp_y to the box with / 255 (its loader: / 256)
BOX_MATCH_IOU = 0.8  # the official box IoU that lets a detection take an ignored ground truth
MASK_THRESHOLD = 0.5


class GroundTruth(NamedTuple):
    """One annotation: ``points`` float64 (P, 5) x, y, part, u, v (None when it has no DensePose data:
    ignored), ``rle`` its mask for GPSm (None unless needed)."""

    id: int
    bbox: list[float]
    area: float
    iscrowd: int
    points: np.ndarray | None
    rle: dict[str, Any] | None


class Detection(NamedTuple):
    """One detection: ``bbox`` XYWH, ``iuv`` uint8 (3, h, w) labels, 255 u, 255 v in its box frame."""

    id: int
    image_id: int
    category_id: int
    bbox: list[float]
    score: float
    iuv: np.ndarray


def paste_rle(mask: np.ndarray | None, bbox: list[float], image_size: tuple[int, int]) -> dict[str, Any]:
    """RLE of ``mask`` (box frame) pasted at the box's truncated corner, clipped to the image (the
    official's ``_generate_rlemask_on_image``); an empty mask for None."""
    x, y, w, h = bbox
    image = np.zeros(image_size, np.uint8)
    if mask is not None:
        x0, y0 = max(int(x), 0), max(int(y), 0)
        x1 = min(int(x + w), image_size[1], int(x) + mask.shape[1])
        y1 = min(int(y + h), image_size[0], int(y) + mask.shape[0])
        image[y0:y1, x0:x1] = mask[y0 - int(y) : y1 - int(y), x0 - int(x) : x1 - int(x)]
    return mask_utils.encode(np.asfortranarray((image > 0).astype(np.uint8)))


def ground_truth_rle(annotation: dict[str, Any], coco_gt: COCO, annotation_file: str | Path) -> dict:
    """The ground truth mask of GPSm in the image: ``dp_masks`` foreground zoomed to the box, else the
    ``segmentation``, else empty."""
    image = coco_gt.imgs[annotation["image_id"]]
    size = (image["height"], image["width"])
    if "dp_masks" in annotation:
        foreground = np.minimum(segmentation_label_map(annotation, annotation_file), 1).astype(np.float64)
        _, _, w, h = annotation["bbox"]
        scale = (float(max(h, 1)) / FRAME_SIZE, float(max(w, 1)) / FRAME_SIZE)
        zoomed = zoom(foreground, scale, order=1, prefilter=False) > MASK_THRESHOLD
        return paste_rle(zoomed.astype(np.uint8), annotation["bbox"], size)
    segmentation = annotation.get("segmentation")
    if (isinstance(segmentation, list) and segmentation) or isinstance(segmentation, dict):
        return coco_gt.annToRLE(annotation)
    return paste_rle(None, annotation["bbox"], size)


def ground_truth(
    annotation: dict[str, Any], coco_gt: COCO, annotation_file: str | Path, with_mask: bool
) -> GroundTruth:
    points = None
    if "dp_x" in annotation:
        dense_points(annotation, annotation_file)  # validation only: the evaluation keeps float64
        keys = ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")
        points = np.stack([np.asarray(annotation[k], np.float64) for k in keys], axis=1)
    rle = ground_truth_rle(annotation, coco_gt, annotation_file) if with_mask else None
    return GroundTruth(
        annotation["id"],
        annotation["bbox"],
        annotation["area"],
        int(annotation.get("iscrowd", 0)),
        points,
        rle,
    )


def instance_gps(
    points: np.ndarray, gt_bbox: list[float], dt_bbox: list[float], iuv: np.ndarray, distance: PointDistance
) -> float:
    """GPS of one detection (``dt_bbox`` XYWH, ``iuv`` uint8 (3, h, w)) for one ground truth's ``points``
    (P, 5): the mean of ``exp(-d^2 / (2 sigma^2))`` over the points, 0 if none falls in the box."""
    dx, dy = int(dt_bbox[2]), int(dt_bbox[3])
    px = (points[:, 0] * gt_bbox[2] / POINT_FRAME + gt_bbox[0] - dt_bbox[0]).astype(np.int64)
    py = (points[:, 1] * gt_bbox[3] / POINT_FRAME + gt_bbox[1] - dt_bbox[1]).astype(np.int64)
    inside = (px >= 0) & (px < dx) & (py >= 0) & (py < dy)
    if not inside.any():
        return 0.0
    px, py = np.where(inside, px, 0), np.where(inside, py, 0)
    parts = np.where(inside, iuv[0, py, px], 0)
    uv = np.stack([iuv[1, py, px], iuv[2, py, px]], axis=1) / 255.0
    gt_parts = points[:, 2]
    dist = distance.distances(gt_parts, points[:, 3:5], parts, uv)
    kept = ~np.isnan(dist)
    if not kept.any():
        return 0.0
    sigma = distance.normalisers(gt_parts[kept])
    return float(np.mean(np.exp(-(dist[kept] ** 2) / (2 * sigma**2))))


class ImageScores(NamedTuple):
    """One image and category: its ground truths (file order), detections (top ``MAX_DETECTIONS`` by
    score) and the (D, G) GPS, box IoU and (for GPSm) mask IoU."""

    gts: list[GroundTruth]
    dts: list[Detection]
    gps: np.ndarray
    box_iou: np.ndarray
    mask_iou: np.ndarray | None


def image_scores(
    gts: list[GroundTruth],
    dts: list[Detection],
    distance: PointDistance,
    image_size: tuple[int, int],
    masks: bool,
) -> ImageScores:
    order = np.argsort([-d.score for d in dts], kind="mergesort")[:MAX_DETECTIONS]
    dts = [dts[i] for i in order]
    shape = (len(dts), len(gts))
    gps = np.zeros(shape)
    if not gts or not dts:
        return ImageScores(gts, dts, gps, gps, gps if masks else None)
    for j, g in enumerate(gts):
        if g.points is not None:
            for i, d in enumerate(dts):
                gps[i, j] = instance_gps(g.points, g.bbox, d.bbox, d.iuv, distance)
    crowd = [g.iscrowd for g in gts]
    box_iou = np.asarray(mask_utils.iou([d.bbox for d in dts], [g.bbox for g in gts], crowd)).reshape(shape)
    mask_iou = None
    if masks:
        rles = [paste_rle(d.iuv[0] > 0, d.bbox, image_size) for d in dts]
        mask_iou = np.asarray(mask_utils.iou(rles, [g.rle for g in gts], crowd)).reshape(shape)
    return ImageScores(gts, dts, gps, box_iou, mask_iou)


class DensePoseCOCOeval(COCOeval):
    """COCOeval with the DensePose per-image evaluation of ``mode`` ("GPS" or "GPSm") on precomputed
    ``ImageScores`` per (image id, category id); ``accumulate`` and ``summarize`` are COCOeval's."""

    def __init__(
        self,
        coco_gt: COCO,
        scores: dict[tuple[int, int], ImageScores],
        mode: str,
        image_ids: list[int],
        category_ids: list[int],
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown DensePose mode {mode!r}: choose one of {MODES}")
        super().__init__(coco_gt, None, "keypoints")  # its Params are the official's setUvParams
        self.scores, self.mode = scores, mode
        self.params.imgIds, self.params.catIds = sorted(set(image_ids)), sorted(set(category_ids))

    def evaluate(self) -> None:
        p = self.params
        empty = ImageScores([], [], np.zeros((0, 0)), np.zeros((0, 0)), None)
        self.evalImgs = [
            self._evaluate_image(self.scores.get((image_id, category_id), empty), image_id, category_id, area)
            for category_id in p.catIds
            for area in p.areaRng
            for image_id in p.imgIds
        ]
        self._paramsEval = copy.deepcopy(p)

    def _evaluate_image(self, s: ImageScores, image_id: int, category_id: int, area: list[float]):
        if not s.gts and not s.dts:
            return None
        ignored = np.array([g.points is None or g.area < area[0] or g.area > area[1] for g in s.gts], bool)
        order = np.argsort(ignored, kind="mergesort")
        gts, gt_ignore = [s.gts[i] for i in order], ignored[order]
        crowd = [g.iscrowd for g in gts]
        thresholds = self.params.iouThrs
        gt_matches = np.zeros((len(thresholds), len(gts)))
        dt_matches = np.zeros((len(thresholds), len(s.dts)))
        dt_ignore = np.full((len(thresholds), len(s.dts)), bool(gt_ignore.all()))
        if gts and s.dts:
            score = s.gps if self.mode == "GPS" else np.sqrt(s.mask_iou * s.gps)
            score, box_iou = score[:, order], s.box_iou[:, order]
            for t, threshold in enumerate(thresholds):
                for i, d in enumerate(s.dts):
                    best, m = min(threshold, 1 - 1e-10), -1
                    for j in range(len(gts)):
                        if gt_matches[t, j] > 0 and not crowd[j]:
                            continue
                        if m > -1 and not gt_ignore[m] and gt_ignore[j]:
                            break
                        if score[i, j] < best or score[i, j] == 0.0:
                            continue
                        best, m = score[i, j], j
                    if m > -1:
                        dt_ignore[t, i], dt_matches[t, i], gt_matches[t, m] = gt_ignore[m], gts[m].id, d.id
            last = len(thresholds) - 1
            for i, d in enumerate(s.dts):
                if dt_matches[last, i] != 0:
                    continue
                best, m = BOX_MATCH_IOU, -1
                for j in range(len(gts)):
                    if (gt_matches[last, j] > 0 and not crowd[j]) or box_iou[i, j] < best:
                        continue
                    best, m = box_iou[i, j], j
                if m > -1:
                    dt_ignore[:, i] = gt_ignore[m]
                    if gt_ignore[m]:
                        dt_matches[last, i], gt_matches[last, m] = gts[m].id, d.id
        outside = np.array(
            [d.bbox[2] * d.bbox[3] < area[0] or d.bbox[2] * d.bbox[3] > area[1] for d in s.dts], bool
        )
        dt_ignore |= (dt_matches == 0) & outside.reshape(1, -1)
        return {
            "image_id": image_id,
            "category_id": category_id,
            "aRng": area,
            "maxDet": self.params.maxDets[-1],
            "dtIds": [d.id for d in s.dts],
            "gtIds": [g.id for g in gts],
            "dtMatches": dt_matches,
            "gtMatches": gt_matches,
            "dtScores": [d.score for d in s.dts],
            "gtIgnore": gt_ignore,
            "dtIgnore": dt_ignore,
        }


def evaluate_densepose(
    coco_gt: COCO,
    detections: list[Detection],
    image_ids: list[int],
    category_ids: list[int],
    distance: PointDistance,
    modes: tuple[str, ...] = MODES,
    annotation_file: str | Path = "",
    cache: dict[int, GroundTruth] | None = None,
) -> dict[str, np.ndarray]:
    """Per mode the 10 stats of ``summarize`` (AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl) of the
    detections on ``image_ids`` and ``category_ids``. ``cache`` keeps parsed ground truths by id."""
    masks = "GPSm" in modes
    cache = {} if cache is None else cache
    by_image: dict[tuple[int, int], list[Detection]] = {}
    for d in detections:
        by_image.setdefault((d.image_id, d.category_id), []).append(d)
    scores = {}
    for image_id in sorted(set(image_ids)):
        image = coco_gt.imgs[image_id]
        if image.get("ignore_regions_x"):
            raise ValueError(
                f"image_id {image_id} has ignore regions, which this evaluation does not support"
            )
        for category_id in category_ids:
            gts = []
            for annotation in coco_gt.imgToAnns.get(image_id, []):
                if annotation["category_id"] == category_id:
                    g = cache.get(annotation["id"])
                    if g is None or (masks and g.rle is None):
                        g = cache[annotation["id"]] = ground_truth(
                            annotation, coco_gt, annotation_file, masks
                        )
                    gts.append(g)
            dts = by_image.get((image_id, category_id), [])
            if gts or dts:
                size = (image["height"], image["width"])
                scores[image_id, category_id] = image_scores(gts, dts, distance, size, masks)
    stats = {}
    for mode in modes:
        evaluator = DensePoseCOCOeval(coco_gt, scores, mode, image_ids, category_ids)
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats[mode] = np.asarray(evaluator.stats, np.float64).copy()
    return stats
