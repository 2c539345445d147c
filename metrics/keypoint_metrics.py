"""Keypoint accuracy as torchmetrics Metrics over DDP ranks: NME with failure rate and CED AUC (face
alignment), PCK normalised by the box (mmpose ``PCKAccuracy``) and MPII's PCKh.

Conventions (``datamodules.batch``): keypoints are continuous pixel coordinates of the SOURCE image (a
top-down module maps its crop predictions back through ``crop_to_image`` before calling these); ground
truth is (N, K, 3) float with visibility v (0 not annotated, 1 occluded, 2 visible) and only annotated
(v > 0) keypoints count; predictions are (N, K, 2) (further columns, e.g. scores, are ignored); boxes are
XYXY pixels.

Every metric stores, per instance, its K distances ||p - g|| divided by the instance's normaliser and
which of them are annotated, as "cat" states: DDP ranks combine exactly (the union of their instances)
and all numbers are computed from them in ``compute``. An instance with no annotated keypoint, or with a
zero or undefined normaliser, cannot be scored: it is skipped and counted in ``skipped_instances``
(summed over ranks once synced), and the first skip after a ``reset`` is logged -- never turned into a
NaN. Values are fractions in [0, 1] (mmpose and the MPII toolkit print percentages), float64 tensors.
With ``instance_ids`` (e.g. the annotation ids) passed to every ``update``, ``compute`` keeps only the first
occurrence of each id, so that the instances DistributedSampler repeats to pad the ranks count once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.integrate import simpson
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

log = logging.getLogger(__name__)

# MPII's 16 joints in the order of its annotations (and of mmpose's ``mpii`` dataset).
MPII_JOINTS = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder",
    "left_elbow", "left_wrist",
)  # fmt: skip
# The rows of the standard MPII table: a group's value is the mean of its joints' PCKh (mmpose
# ``MpiiPCKAccuracy``: 'Head PCK' = PCKh[9], 'Shoulder PCK' = 0.5 * (PCKh[13] + PCKh[12]), ...).
MPII_JOINT_GROUPS = {
    "Head": (9,),
    "Shoulder": (12, 13),
    "Elbow": (11, 14),
    "Wrist": (10, 15),
    "Hip": (2, 3),
    "Knee": (1, 4),
    "Ankle": (0, 5),
}
# The joints the standard 'Mean' leaves out: pelvis and thorax (``jnt_count.mask[6:8] = True``).
MPII_MEAN_EXCLUDED_JOINTS = (6, 7)
# MPII's head size is this times the head box diagonal (SC_BIAS of the official evaluation).
MPII_HEAD_SIZE_FACTOR = 0.6
# The CED is sampled every AUC_STEP of normalised error (the face-alignment evaluations' step).
AUC_STEP = 1e-4


class _NormalizedKeypointDistances(Metric):
    """Shared storage: per instance, the (K,) normalised distances and the (K,) annotated flags."""

    full_state_update = False
    is_differentiable = False
    normalizer_name = "normaliser"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("distances", default=[], dist_reduce_fx="cat")  # (N, K) float64 ||p - g|| / d
        self.add_state("annotated", default=[], dist_reduce_fx="cat")  # (N, K) uint8, 1 where v > 0
        self.add_state("skipped", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        # (N,) int64 ids of the scored instances (rows of `distances`) and of the skipped ones; every update
        # appends to both, (0,) when it gives no ids, so that all ranks gather int64 tensors.
        self.add_state("instance_ids", default=[], dist_reduce_fx="cat")
        self.add_state("skipped_ids", default=[], dist_reduce_fx="cat")
        self._skip_logged = False
        self.last_skipped_instances = 0

    @property
    def skipped_instances(self) -> int:
        """Instances this process did not score (no annotated keypoint, or a zero or undefined
        normaliser) since the last ``reset``, distinct ids counted once when ``instance_ids`` were given;
        ``last_skipped_instances`` is the count of the last ``compute``, over all ranks when synced."""
        skipped_ids = _cat_ids(self.skipped_ids)
        if len(skipped_ids):
            return int(torch.unique(skipped_ids).numel())
        return int(self.skipped)

    def reset(self) -> None:
        super().reset()
        self._skip_logged = False

    def _store(
        self, predictions: Tensor, targets: Tensor, normalizers: Tensor, instance_ids: Tensor | None
    ) -> None:
        """Keep the instances that can be scored; `normalizers` (N,) float64, NaN where undefined;
        `instance_ids` (N,) int64 or None, checked by ``_checked_ids``."""
        annotated = targets[..., 2] > 0
        has_keypoints = annotated.any(dim=1)
        valid_normalizer = torch.isfinite(normalizers) & (normalizers > 0)
        keep = has_keypoints & valid_normalizer
        skipped = int((~keep).sum())
        if skipped:
            self.skipped += skipped
            if not self._skip_logged:
                self._skip_logged = True
                log.warning(
                    "%s: skipped %d of %d instances (%d without an annotated keypoint, %d with a zero or "
                    "undefined %s); further skips are counted in skipped_instances, not logged",
                    type(self).__name__,
                    skipped,
                    len(keep),
                    int((~has_keypoints).sum()),
                    int((has_keypoints & ~valid_normalizer).sum()),
                    self.normalizer_name,
                )
        error = torch.linalg.vector_norm(predictions[keep, :, :2] - targets[keep, :, :2], dim=-1)
        self.distances.append(torch.where(annotated[keep], error / normalizers[keep, None], 0.0))
        self.annotated.append(annotated[keep].to(torch.uint8))
        if instance_ids is None:
            instance_ids = torch.zeros(0, dtype=torch.int64, device=self.device)
            self.instance_ids.append(instance_ids)
            self.skipped_ids.append(instance_ids)
        else:
            self.instance_ids.append(instance_ids[keep])
            self.skipped_ids.append(instance_ids[~keep])

    def _checked_ids(self, instance_ids: Tensor | None, num_instances: int) -> Tensor | None:
        """`instance_ids` as (N,) int64 on the metric's device; refuses ids in some updates but not others
        (since the last ``reset``): the duplicates could not all be recognised."""
        stored_ids = _num_rows(self.instance_ids) + _num_rows(self.skipped_ids)
        if instance_ids is None:
            if stored_ids:
                raise ValueError(f"{type(self).__name__}: {_MIXED_IDS}, got none after some")
            return None
        if not isinstance(instance_ids, Tensor) or instance_ids.shape != (num_instances,):
            shape = tuple(instance_ids.shape) if isinstance(instance_ids, Tensor) else type(instance_ids)
            raise ValueError(f"instance_ids must be ({num_instances},), one id per instance, got {shape}")
        if (
            instance_ids.dtype.is_floating_point
            or instance_ids.dtype.is_complex
            or instance_ids.dtype == torch.bool
        ):
            raise ValueError(
                f"instance_ids must be integers (e.g. int64 annotation ids), got {instance_ids.dtype}"
            )
        if stored_ids != _num_rows(self.distances) + int(self.skipped):
            raise ValueError(f"{type(self).__name__}: {_MIXED_IDS}, got some after none")
        return instance_ids.detach().to(self.device, torch.int64)

    def _check_inputs(self, predictions: Tensor, targets: Tensor, boxes: Tensor | None, what: str) -> None:
        if predictions.ndim != 3 or predictions.shape[-1] < 2:
            raise ValueError(f"predictions must be (N, K, 2) keypoints, got shape {tuple(predictions.shape)}")
        if targets.ndim != 3 or targets.shape[-1] != 3:
            raise ValueError(f"targets must be (N, K, 3) keypoints (x, y, v), got {tuple(targets.shape)}")
        if predictions.shape[:2] != targets.shape[:2]:
            raise ValueError(
                f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in N or K"
            )
        stored = self.distances if isinstance(self.distances, list) else [self.distances]
        if stored and stored[0].shape[1] != targets.shape[1]:
            raise ValueError(f"got K = {targets.shape[1]} keypoints after K = {stored[0].shape[1]}")
        if boxes is None:
            return
        if boxes.shape != (targets.shape[0], 4):
            raise ValueError(f"{what} must be ({targets.shape[0]}, 4) XYXY, got {tuple(boxes.shape)}")
        if not bool(torch.isfinite(boxes).all()) or bool((boxes[:, 2:] < boxes[:, :2]).any()):
            raise ValueError(f"{what} must be finite XYXY boxes with x2 >= x1 and y2 >= y1, got {boxes}")

    def _as_float64(self, tensor: Tensor) -> Tensor:
        return tensor.detach().to(self.device, torch.float64)

    def _gathered(self) -> tuple[Tensor, Tensor]:
        """(N, K) float64 normalised distances and (N, K) bool annotated flags of every scored instance,
        only the first occurrence of each id (in the gathered order) when ``instance_ids`` were given."""
        instance_ids, skipped_ids = _cat_ids(self.instance_ids), _cat_ids(self.skipped_ids)
        with_ids = len(instance_ids) + len(skipped_ids) > 0
        if with_ids and (
            len(instance_ids) != _num_rows(self.distances) or len(skipped_ids) != int(self.skipped)
        ):  # one rank gave ids, another did not: each rank's own updates are checked in ``update``
            raise ValueError(f"{type(self).__name__}: {_MIXED_IDS} (over the ranks)")
        # A padded duplicate of a skipped instance is skipped again: count its id once.
        self.last_skipped_instances = (
            int(torch.unique(skipped_ids).numel()) if with_ids else int(self.skipped)
        )
        if _num_rows(self.distances) == 0:
            raise ValueError(
                f"{type(self).__name__}: no instance was scored ({self.last_skipped_instances} skipped): "
                "no annotated keypoint or no valid normaliser in the evaluated data"
            )
        distances, annotated = dim_zero_cat(self.distances), dim_zero_cat(self.annotated).bool()
        if with_ids:
            first = _first_occurrences(instance_ids)
            distances, annotated = distances[first], annotated[first]
        return distances, annotated


_MIXED_IDS = "instance_ids must be given in every update since the last reset or in none"


def _num_rows(state: list[Tensor] | Tensor) -> int:
    """Rows of a "cat" state: a list of tensors before a sync, one tensor after."""
    return sum(len(t) for t in state) if isinstance(state, list) else len(state)


def _cat_ids(state: list[Tensor] | Tensor) -> Tensor:
    """An ids state as one (N,) int64 tensor: a list before a sync (empty before any update), one tensor
    after it."""
    if isinstance(state, list):
        return torch.cat(state).long() if state else torch.zeros(0, dtype=torch.int64)
    return state.reshape(-1).long()


def _first_occurrences(ids: Tensor) -> Tensor:
    """(N,) bool: True at the first occurrence of each id in `ids`."""
    unique, inverse = torch.unique(ids, return_inverse=True)
    positions = torch.arange(len(ids), device=ids.device)
    first = torch.full((len(unique),), len(ids), device=ids.device).scatter_reduce(
        0, inverse, positions, "amin"
    )
    keep = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
    keep[first] = True
    return keep


class NormalizedMeanError(_NormalizedKeypointDistances):
    """NME, failure rate and CED AUC of face alignment (300W, WFLW, COFW, AFLW).

    Per instance, NME = mean over its annotated keypoints of ||p - g|| / d, where d is the distance of the
    two ``normalizing_keypoints`` of the ground truth (inter-ocular: 300W's outer eye corners 36, 45,
    WFLW's 60, 72 -- mmpose ``NME(norm_mode='keypoint_distance')``, HRNet-facial ``compute_nme``) or, when
    None, sqrt(w * h) of the instance's box. Both normalising keypoints must be annotated. ``compute()``
    returns ``{"NME": ..., "FR@0.1": ..., "AUC@0.1": ...}`` (names from the thresholds):

    - NME: the mean of the per-instance NMEs (with every keypoint annotated, as in 300W and WFLW, this is
      also mmpose's mean over all keypoints of all instances);
    - FR@t: the fraction of instances with NME > t (HRNet-facial ``failure_010``);
    - AUC@t: the area under the cumulative error distribution (fraction of instances with NME <= x) for x
      in [0, t], divided by t, as PIPNet's ``compute_fr_and_auc`` (lib/functions.py; also STAR and ADNet)
      computes it: the CED sampled every 1e-4 and integrated with Simpson's rule (``scipy.integrate``).
      See ``ced_auc``.
    """

    higher_is_better = False
    normalizer_name = "normaliser (inter-ocular distance or box size)"

    def __init__(
        self,
        normalizing_keypoints: tuple[int, int] | None = None,
        failure_threshold: float = 0.1,
        auc_threshold: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if normalizing_keypoints is not None:
            if len(normalizing_keypoints) != 2 or min(normalizing_keypoints) < 0:
                raise ValueError(
                    f"normalizing_keypoints must be two keypoint indices, got {normalizing_keypoints}"
                )
            normalizing_keypoints = (int(normalizing_keypoints[0]), int(normalizing_keypoints[1]))
        if failure_threshold <= 0 or auc_threshold <= 0:
            raise ValueError(f"thresholds must be positive, got {failure_threshold} and {auc_threshold}")
        _auc_grid(auc_threshold)  # refuse a threshold the CED grid cannot end on, before any data
        self.normalizing_keypoints = normalizing_keypoints
        self.failure_threshold = failure_threshold
        self.auc_threshold = auc_threshold

    def update(
        self,
        predictions: Tensor,
        targets: Tensor,
        boxes: Tensor | None = None,
        *,
        instance_ids: Tensor | None = None,
    ) -> None:
        """`predictions` (N, K, 2+), `targets` (N, K, 3), `boxes` (N, 4) XYXY (needed without
        normalizing_keypoints), `instance_ids` (N,) int64 (e.g. annotation ids: repeats count once)."""
        if self.normalizing_keypoints is None and boxes is None:
            raise ValueError("NME without normalizing_keypoints normalises by the box: pass boxes (N, 4)")
        self._check_inputs(predictions, targets, boxes, "boxes")
        instance_ids = self._checked_ids(instance_ids, targets.shape[0])
        predictions, targets = self._as_float64(predictions), self._as_float64(targets)
        if self.normalizing_keypoints is None:
            boxes = self._as_float64(boxes)
            normalizers = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        else:
            first, second = self.normalizing_keypoints
            if max(first, second) >= targets.shape[1]:
                raise ValueError(
                    f"normalizing_keypoints {self.normalizing_keypoints} outside the "
                    f"{targets.shape[1]} keypoints"
                )
            normalizers = torch.linalg.vector_norm(targets[:, first, :2] - targets[:, second, :2], dim=-1)
            both_annotated = (targets[:, first, 2] > 0) & (targets[:, second, 2] > 0)
            normalizers = torch.where(both_annotated, normalizers, torch.nan)
        self._store(predictions, targets, normalizers, instance_ids)

    def compute(self) -> dict[str, Tensor]:
        distances, annotated = self._gathered()
        errors = distances.sum(dim=1) / annotated.sum(dim=1)
        # "not <=" rather than ">": a NaN prediction is a failure, as in the reference's 1 - CED(t).
        failures = ~(errors <= self.failure_threshold)
        auc = ced_auc(errors.cpu().numpy(), self.auc_threshold)
        return {
            "NME": errors.mean(),
            f"FR@{self.failure_threshold:g}": failures.double().mean(),
            f"AUC@{self.auc_threshold:g}": torch.tensor(auc, dtype=torch.float64, device=errors.device),
        }


def ced_auc(errors: np.ndarray, threshold: float, step: float = AUC_STEP) -> float:
    """Area under the cumulative error distribution of per-instance `errors` on [0, threshold], divided by
    `threshold` (so in [0, 1]): the CED ``ys[i] = mean(errors <= xs[i])`` at ``xs = arange(n + 1) * step``,
    n = threshold / step, integrated with Simpson's rule (``scipy.integrate.simpson``) -- PIPNet's
    ``compute_fr_and_auc``. Its grid is ``np.arange(0, threshold + step, step)``: the same points where
    that ends at the threshold (0.1, 0.08), one past it where float rounding adds a point (0.05 gives
    0.0501); here the grid always ends at the threshold."""
    xs = _auc_grid(threshold, step)
    errors = np.sort(np.asarray(errors, dtype=np.float64))  # NaNs sort last and are never <= x
    ys = np.searchsorted(errors, xs, side="right") / len(errors)
    return float(simpson(ys, x=xs) / threshold)


def _auc_grid(threshold: float, step: float = AUC_STEP) -> np.ndarray:
    intervals = round(threshold / step)
    if intervals < 1 or abs(intervals * step - threshold) > 1e-9 * threshold:
        raise ValueError(f"the AUC threshold {threshold} must be a positive multiple of the CED step {step}")
    return np.arange(intervals + 1) * step


class PercentageCorrectKeypoints(_NormalizedKeypointDistances):
    """PCK normalised by the box, following mmpose ``PCKAccuracy(norm_item='bbox')`` exactly
    (``keypoint_pck_accuracy``): the normaliser is max(w, h) of the instance's box; a keypoint is correct
    when ||p - g|| / max(w, h) < alpha (strictly, as ``_distance_acc``); only annotated keypoints count;
    the accuracy of each keypoint type is taken over the instances where it is annotated, and PCK@alpha is
    the mean of those per-type accuracies (types annotated nowhere are left out). Instances with a
    zero-size box are skipped (mmpose masks them out too). Distances are float64 (mmpose: float32).
    ``compute()`` returns ``{"PCK@0.05": ..., "PCK@0.1": ...}`` for the default thresholds."""

    higher_is_better = True
    normalizer_name = "box size max(w, h)"

    def __init__(self, thresholds: Sequence[float] = (0.05, 0.1), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not thresholds or min(thresholds) <= 0:
            raise ValueError(f"thresholds must be positive, got {tuple(thresholds)}")
        self.thresholds = tuple(float(t) for t in thresholds)

    def update(
        self, predictions: Tensor, targets: Tensor, boxes: Tensor, *, instance_ids: Tensor | None = None
    ) -> None:
        """`predictions` (N, K, 2+), `targets` (N, K, 3), `boxes` (N, 4) XYXY instance boxes,
        `instance_ids` (N,) int64 (e.g. annotation ids: repeats count once)."""
        self._check_inputs(predictions, targets, boxes, "boxes")
        instance_ids = self._checked_ids(instance_ids, targets.shape[0])
        boxes = self._as_float64(boxes)
        normalizers = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1)
        self._store(self._as_float64(predictions), self._as_float64(targets), normalizers, instance_ids)

    def compute(self) -> dict[str, Tensor]:
        distances, annotated = self._gathered()
        counts = annotated.sum(dim=0).double()
        types = counts > 0
        output = {}
        for threshold in self.thresholds:
            correct = ((distances < threshold) & annotated).sum(dim=0).double()
            output[f"PCK@{threshold:g}"] = (correct[types] / counts[types]).mean()
        return output


class PCKh(_NormalizedKeypointDistances):
    """MPII's PCKh (Andriluka et al., CVPR 2014; the official MATLAB evaluation as ported in HRNet's and
    mmpose 0.x's ``evaluate``): head size = 0.6 (SC_BIAS) * the head box diagonal; a keypoint is correct
    when ||p - g|| <= threshold * head size (the official "<="; mmpose 1.x's ``MpiiPCKAccuracy`` uses
    "<"); only annotated keypoints count. mmpose adds 1 to the predictions because it scores them against
    the 1-based MATLAB ground truth; here both are in the same pixel frame, so nothing is added.

    ``compute()`` returns ``{"PCKh@0.5": ...}`` for the default threshold: with K == 16 (MPII's joints in
    the order of ``MPII_JOINTS``) it is the standard 'Mean' -- every annotated joint except pelvis and
    thorax (``MPII_MEAN_EXCLUDED_JOINTS``), i.e. mmpose's ``sum(PCKh * jnt_ratio)`` -- and then the MPII
    table follows: ``"PCKh@0.5/Head"``, ``/Shoulder``, ``/Elbow``, ``/Wrist``, ``/Hip``, ``/Knee``,
    ``/Ankle`` (each the mean of its joints' PCKh, ``MPII_JOINT_GROUPS``; joints annotated nowhere left
    out, -1 if none of a group's is annotated) and ``"PCKh@0.5/Mean"`` (the same value as ``"PCKh@0.5"``).
    For other K, ``"PCKh@0.5"`` is the fraction of all annotated keypoints that are correct."""

    higher_is_better = True
    normalizer_name = "head size"

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if threshold <= 0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        self.threshold = float(threshold)

    def update(
        self, predictions: Tensor, targets: Tensor, head_boxes: Tensor, *, instance_ids: Tensor | None = None
    ) -> None:
        """`predictions` (N, K, 2+), `targets` (N, K, 3), `head_boxes` (N, 4) XYXY head boxes,
        `instance_ids` (N,) int64 (e.g. annotation ids: repeats count once)."""
        self._check_inputs(predictions, targets, head_boxes, "head_boxes")
        instance_ids = self._checked_ids(instance_ids, targets.shape[0])
        head_boxes = self._as_float64(head_boxes)
        normalizers = MPII_HEAD_SIZE_FACTOR * torch.linalg.vector_norm(
            head_boxes[:, 2:] - head_boxes[:, :2], dim=-1
        )
        self._store(self._as_float64(predictions), self._as_float64(targets), normalizers, instance_ids)

    def compute(self) -> dict[str, Tensor]:
        distances, annotated = self._gathered()
        correct = ((distances <= self.threshold) & annotated).sum(dim=0).double()
        counts = annotated.sum(dim=0).double()
        name = f"PCKh@{self.threshold:g}"
        if distances.shape[1] != len(MPII_JOINTS):
            return {name: correct.sum() / counts.sum()}
        in_mean = torch.ones_like(counts, dtype=torch.bool)
        in_mean[list(MPII_MEAN_EXCLUDED_JOINTS)] = False
        mean = (
            correct[in_mean].sum() / counts[in_mean].sum()
            if counts[in_mean].sum() > 0
            else -counts.new_ones(())
        )
        output = {name: mean}
        for group, joints in MPII_JOINT_GROUPS.items():
            scored = [j for j in joints if counts[j] > 0]
            rates = torch.stack([correct[j] / counts[j] for j in scored]) if scored else -counts.new_ones(1)
            output[f"{name}/{group}"] = rates.mean()
        output[f"{name}/Mean"] = mean
        return output
