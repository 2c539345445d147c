"""WIDER FACE average precision for the easy, medium and hard subsets, computed as the official evaluation
(``widerface_evaluate/evaluation.py`` of the WIDER FACE toolbox port that RetinaFace's implementations
ship), as a torchmetrics Metric synced over DDP ranks:

- an image without ground-truth faces is skipped, so its predictions are no false positives (the
  toolbox's ``if len(gt_boxes) == 0: continue``);
- per image, the predictions in decreasing score order are matched greedily: each takes the ground-truth
  face it overlaps most (IoU with the toolbox's "+1" pixel convention: a box x..x+w covers w + 1 pixels);
  at IoU >= 0.5, a face outside the subset's keep list makes the prediction ignored (not a proposal), a
  kept face is recalled (once); ``pred_recall[k]`` is the number of faces recalled by the first k + 1
  predictions;
- scores are normalised over the whole dataset to [0, 1] (``(s - min) / (max - min)``, min starting at 1
  and max at 0 as the toolbox's loop does);
- for 1000 thresholds t_i = 1 - (i + 1) / 1000, each image adds its proposals and recalled faces among the
  predictions scoring >= t_i; precision = recalled / proposals, recall = recalled / faces kept in the
  subset (over all images, also those without predictions);
- AP is VOC's all-point interpolated area (the toolbox's ``voc_ap``).

Written by hand: no library computes this protocol (it is neither COCO's nor VOC's matching). Subsets: a
target's ``face_subsets`` (N, 3) bool marks the faces each of easy / medium / hard keeps (the official
``wider_{easy,medium,hard}_val.mat`` lists, ``read_official_subsets``); without it, every face counts in
all three (the synthetic world). Predictions must carry ``boxes`` (XYXY) and ``scores``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchvision.ops import box_iou

SUBSETS = ("easy", "medium", "hard")
THRESHOLDS = 1000
IOU_THRESHOLD = 0.5


def toolbox_iou(boxes: Tensor, others: Tensor) -> Tensor:
    """IoU with the toolbox's "+1" convention: torchvision's IoU of the boxes grown by one pixel right and
    down is exactly the Cython ``bbox_overlaps``."""
    grow = boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
    return box_iou(boxes.double() + grow.double(), others.double() + grow.double())


def evaluate_image(boxes: Tensor, gt_boxes: Tensor, keep: Tensor, iou_threshold: float = IOU_THRESHOLD):
    """The toolbox's ``image_eval`` for predictions already in decreasing score order: (proposal flags
    (P,) bool, recalled-so-far counts (P,) int64)."""
    recalled_so_far = torch.zeros(len(boxes), dtype=torch.int64)
    if len(gt_boxes) == 0:  # the toolbox skips an image without faces: its predictions count nowhere
        return torch.zeros(len(boxes), dtype=torch.bool), recalled_so_far
    proposals = torch.ones(len(boxes), dtype=torch.bool)
    if len(boxes) == 0:
        return proposals, recalled_so_far
    overlaps = toolbox_iou(boxes, gt_boxes)
    best_overlap, best_face = overlaps.max(dim=1)
    state = torch.zeros(len(gt_boxes), dtype=torch.int64)  # 0 unseen, 1 recalled, -1 matched but not kept
    recalled = 0
    for k in range(len(boxes)):  # sequential: each face counts once, in score order (P is small)
        if best_overlap[k] >= iou_threshold:
            face = int(best_face[k])
            if not keep[face]:
                state[face] = -1
                proposals[k] = False
            elif state[face] == 0:
                state[face] = 1
                recalled += 1
        recalled_so_far[k] = recalled
    return proposals, recalled_so_far


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC's all-point AP, as the toolbox's ``voc_ap`` (precision NaN where there are no proposals; those
    points lie before any recall and never enter the sum)."""
    recall_points = np.concatenate(([0.0], recall, [1.0]))
    precision_points = np.concatenate(([0.0], np.nan_to_num(precision, nan=0.0), [0.0]))
    precision_points = np.maximum.accumulate(precision_points[::-1])[::-1]
    changes = np.where(recall_points[1:] != recall_points[:-1])[0]
    return float(
        np.sum((recall_points[changes + 1] - recall_points[changes]) * precision_points[changes + 1])
    )


class WiderFaceAP(Metric):
    """Easy / medium / hard AP (module docstring). ``update(predictions, targets)`` with per-image dicts:
    predictions ``boxes`` (P, 4) XYXY pixels and ``scores`` (P,); targets ``boxes`` (N, 4) and optionally
    ``face_subsets`` (N, 3) bool. ``compute()`` -> ``{"AP_easy", "AP_medium", "AP_hard"}`` (float64)."""

    higher_is_better = True
    full_state_update = False
    is_differentiable = False

    def __init__(self, iou_threshold: float = IOU_THRESHOLD, **kwargs) -> None:
        super().__init__(**kwargs)
        self.iou_threshold = iou_threshold
        # per prediction: its score, whether it starts its image's run (images stay contiguous through the
        # DDP gather), and per subset the proposal flag and the recalled-so-far count of its image
        self.add_state("scores", [], dist_reduce_fx="cat")
        self.add_state("proposals", [], dist_reduce_fx="cat")
        self.add_state("recalled", [], dist_reduce_fx="cat")
        self.add_state("starts", [], dist_reduce_fx="cat")
        self.add_state("faces", torch.zeros(len(SUBSETS), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[dict[str, Tensor]], targets: Sequence[dict[str, Tensor]]) -> None:
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
        for prediction, target in zip(predictions, targets, strict=True):
            order = torch.argsort(prediction["scores"].detach().cpu(), descending=True, stable=True)
            boxes = prediction["boxes"].detach().cpu()[order]
            scores = prediction["scores"].detach().cpu().double()[order]
            gt_boxes = target["boxes"].detach().cpu()
            subsets = target.get("face_subsets")
            keep = (
                torch.ones(len(gt_boxes), len(SUBSETS), dtype=torch.bool)
                if subsets is None
                else subsets.cpu()
            )
            self.faces += keep.sum(0).to(self.faces.device)
            flags, recalled = zip(
                *(
                    evaluate_image(boxes, gt_boxes, keep[:, s], self.iou_threshold)
                    for s in range(len(SUBSETS))
                ),
                strict=True,
            )
            self.images += 1
            starts = torch.zeros(len(boxes), dtype=torch.bool)
            starts[:1] = True
            self.scores.append(scores.to(self.device))
            self.proposals.append(torch.stack(flags, dim=1).to(self.device))
            self.recalled.append(torch.stack(recalled, dim=1).to(self.device))
            self.starts.append(starts.to(self.device))

    def compute(self) -> dict[str, Tensor]:
        if not self.scores or sum(len(s) for s in self.scores) == 0:
            return {f"AP_{name}": torch.tensor(0.0, dtype=torch.float64) for name in SUBSETS}
        scores = dim_zero_cat(self.scores).cpu().numpy()
        proposals = dim_zero_cat(self.proposals).cpu().numpy()
        recalled = dim_zero_cat(self.recalled).cpu().numpy()
        image = np.cumsum(dim_zero_cat(self.starts).cpu().numpy()) - 1
        low, high = min(1.0, scores.min()), max(0.0, scores.max())
        with np.errstate(invalid="ignore", divide="ignore"):  # one distinct score: NaN, as the toolbox
            normalised = (scores - low) / (high - low)
        thresholds = 1 - (np.arange(THRESHOLDS) + 1) / THRESHOLDS
        faces = self.faces.cpu().numpy()
        results = {}
        for s, name in enumerate(SUBSETS):
            proposal_counts, recall_counts = np.zeros(THRESHOLDS), np.zeros(THRESHOLDS)
            cumulative_proposals = _per_image_cumsum(proposals[:, s].astype(np.int64), image)
            for t, threshold in enumerate(thresholds):
                above = normalised >= threshold
                # each image's last prediction above the threshold (its predictions are in score order)
                last = above & np.concatenate((~above[1:] | (image[1:] != image[:-1]), [True]))
                proposal_counts[t] = cumulative_proposals[last].sum()
                recall_counts[t] = recalled[last, s].sum()
            with np.errstate(invalid="ignore", divide="ignore"):
                precision = recall_counts / proposal_counts
            recall = recall_counts / faces[s]
            results[f"AP_{name}"] = torch.tensor(voc_ap(recall, precision), dtype=torch.float64)
        return results


def _per_image_cumsum(values: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Running sums of ``values`` restarting at each new image."""
    total = np.cumsum(values)
    starts = np.concatenate(([0], np.where(image[1:] != image[:-1])[0] + 1))
    offsets = np.zeros_like(total)
    offsets[starts[1:]] = total[starts[1:] - 1]
    return total - np.maximum.accumulate(offsets)


def read_official_subsets(ground_truth_dir: str | Path) -> dict[str, dict[str, list[np.ndarray]]]:
    """The official subset keep lists from ``wider_{easy,medium,hard}_val.mat`` (1-based face indices per
    image), keyed by subset, then by image name (``file_list``), as index arrays into the image's faces in
    ``wider_face_val.mat`` order; a missing file is an error naming it."""
    from scipy.io import loadmat

    folder = Path(ground_truth_dir)
    names = ["wider_face_val.mat", *(f"wider_{s}_val.mat" for s in SUBSETS)]
    for name in names:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: the official WIDER FACE evaluation file is missing")
    files = loadmat(str(folder / "wider_face_val.mat"))["file_list"]
    subsets: dict[str, dict[str, list[np.ndarray]]] = {}
    for subset in SUBSETS:
        gt_list = loadmat(str(folder / f"wider_{subset}_val.mat"))["gt_list"]
        keep: dict[str, list[np.ndarray]] = {}
        for event_files, event_keep in zip(files, gt_list, strict=True):
            for file, kept in zip(event_files[0], event_keep[0], strict=True):
                keep[str(file[0][0])] = np.asarray(kept[0]).reshape(-1).astype(np.int64) - 1
        subsets[subset] = keep
    return subsets
