"""DensePose chart loss (Güler et al., "DensePose: Dense Human Pose Estimation In The Wild", CVPR 2018,
Sec. 4), computed as detectron2's ``projects/DensePose`` ``DensePoseChartLoss`` (``modeling/losses/chart.py``,
``utils.py``, ``segm.py``) with ``COARSE_SEGM_TRAINED_BY_MASKS`` off.

Conventions (pure tensors; R RoIs, K annotated points over all RoIs):

* ``proposal_boxes`` (R, 4) XYXY in image pixels: the boxes the predictions were pooled from;
* ``gt_boxes`` (R, 4) XYXY in image pixels: the matched ground-truth boxes, i.e. the frame the annotation
  lives in (defaults to ``proposal_boxes``);
* ``point_roi`` (K,) int64 RoI index of each point; ``point_xy`` (K, 2) COCO-DensePose ``dp_x``, ``dp_y``
  in [0, 256) relative to the ground-truth box (image x = x0 + dp_x * w / 256); ``point_i`` (K,) int64
  part label in 0..24 (DensePose-COCO uses 1..24; 0 = background takes part in the I loss only);
  ``point_uv`` (K, 2) ``dp_U``, ``dp_V`` in [0, 1];
* ``coarse_segm_gt`` (R, M, M) float/int labels 0..14 (``dp_masks`` rasterised to M = 256 on the ground-truth
  box), or None (then the S loss is a zero with graph, as detectron2 when some instance lacks masks).

Predictions are read at each point by bilinear interpolation on the (S, S) output grid of the proposal box
(grid coordinate ``(x_img - x0_est) * S / w_est``, taps clamped to the grid); points outside the proposal box
are dropped. Losses: ``loss_densepose_I`` = mean cross-entropy of the interpolated 25 part scores over the
kept points, times ``part_weight``; ``loss_densepose_U`` / ``_V`` = summed smooth-L1 (beta 1) of the
annotated part's U / V channel over kept foreground points, times ``point_regression_weight``;
``loss_densepose_S`` = mean cross-entropy of ``coarse_segm`` against the masks of the RoIs that have points,
resampled (nearest, zero padding) from the ground-truth box onto the proposal box's (S, S) grid and
binarised to foreground when ``coarse_segm`` has 2 channels, times ``index_weight``. With no point (or no
kept foreground point) all four are zeros that keep the graph (``produce_fake_densepose_losses``).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


class _ChartOutputs(Protocol):
    coarse_segm: Tensor
    fine_segm: Tensor
    u: Tensor
    v: Tensor


def _zero_losses(outputs: _ChartOutputs) -> dict[str, Tensor]:
    return {
        "loss_densepose_U": outputs.u.sum() * 0,
        "loss_densepose_V": outputs.v.sum() * 0,
        "loss_densepose_I": outputs.fine_segm.sum() * 0,
        "loss_densepose_S": outputs.coarse_segm.sum() * 0,
    }


def _linear_taps(
    rel: Tensor, gt_start: Tensor, gt_size: Tensor, est_start: Tensor, est_size: Tensor, grid_size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """1-D taps of one axis: lower / upper grid index, upper weight, and whether the point is in the box."""
    pos = gt_start + rel * gt_size / 256.0
    offset = pos - est_start
    inside = (offset >= 0) & (offset < est_size)
    coord = offset * grid_size / est_size
    lo = coord.floor().long().clamp(0, grid_size - 1)
    hi = (lo + 1).clamp(max=grid_size - 1)
    weight = torch.minimum(coord, hi.to(coord.dtype)) - lo.to(coord.dtype)
    return lo, hi, weight, inside


def _resample_to_proposals(
    masks: Tensor, gt_xyxy: Tensor, est_xyxy: Tensor, out_h: int, out_w: int
) -> Tensor:
    """(N, M, M) labels on the ground-truth boxes -> (N, out_h, out_w) on the proposal boxes (nearest, zeros
    outside), sampling the proposal at its left/top edge plus j / out of its size (detectron2's grid)."""
    gw = gt_xyxy[:, 2] - gt_xyxy[:, 0]
    gh = gt_xyxy[:, 3] - gt_xyxy[:, 1]
    left = 2 * (est_xyxy[:, 0] - gt_xyxy[:, 0]) / gw - 1
    right = 2 * (est_xyxy[:, 2] - gt_xyxy[:, 0]) / gw - 1
    top = 2 * (est_xyxy[:, 1] - gt_xyxy[:, 1]) / gh - 1
    bottom = 2 * (est_xyxy[:, 3] - gt_xyxy[:, 1]) / gh - 1
    fx = torch.arange(out_w, device=masks.device, dtype=torch.float) / out_w
    fy = torch.arange(out_h, device=masks.device, dtype=torch.float) / out_h
    gx = left[:, None, None] + fx[None, None, :] * (right - left)[:, None, None]
    gy = top[:, None, None] + fy[None, :, None] * (bottom - top)[:, None, None]
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=3)
    out = F.grid_sample(
        masks[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=True
    )
    return out[:, 0]


def densepose_chart_loss(
    outputs: _ChartOutputs,
    proposal_boxes: Tensor,
    point_roi: Tensor,
    point_xy: Tensor,
    point_i: Tensor,
    point_uv: Tensor,
    gt_boxes: Tensor | None = None,
    coarse_segm_gt: Tensor | None = None,
    index_weight: float = 5.0,
    part_weight: float = 1.0,
    point_regression_weight: float = 0.01,
) -> dict[str, Tensor]:
    """DensePose chart losses (see the module docstring for the tensor conventions); weights default to
    detectron2's ``INDEX_WEIGHTS`` 5.0 (S), ``PART_WEIGHTS`` 1.0 (I) and ``POINT_REGRESSION_WEIGHTS`` 0.01
    (U, V). Returns ``loss_densepose_{U,V,I,S}``."""
    if point_roi.numel() == 0:
        return _zero_losses(outputs)
    if gt_boxes is None:
        gt_boxes = proposal_boxes
    point_roi = point_roi.long()
    point_i = point_i.long()
    gt = gt_boxes[point_roi].float()
    est = proposal_boxes[point_roi].float()
    out_h, out_w = outputs.u.shape[-2:]
    x_lo, x_hi, wx, in_x = _linear_taps(
        point_xy[:, 0], gt[:, 0], gt[:, 2] - gt[:, 0], est[:, 0], est[:, 2] - est[:, 0], out_w
    )
    y_lo, y_hi, wy, in_y = _linear_taps(
        point_xy[:, 1], gt[:, 1], gt[:, 3] - gt[:, 1], est[:, 1], est[:, 3] - est[:, 1], out_h
    )
    kept = in_x & in_y
    kept_fg = kept & (point_i > 0)
    if not bool(kept_fg.any()):
        return _zero_losses(outputs)

    taps = (
        (y_lo, x_lo, (1 - wx) * (1 - wy)),
        (y_lo, x_hi, wx * (1 - wy)),
        (y_hi, x_lo, (1 - wx) * wy),
        (y_hi, x_hi, wx * wy),
    )

    def at_points(z: Tensor, channel: Tensor | None) -> Tensor:
        """Bilinear value of ``z`` (R, C, H, W) at each point: (K,) for ``channel`` (K,), else (K, C)."""
        if channel is None:
            return sum(z[point_roi, :, yy, xx] * w[:, None] for yy, xx, w in taps)
        return sum(z[point_roi, channel, yy, xx] * w for yy, xx, w in taps)

    u_est = at_points(outputs.u, point_i)[kept_fg]
    v_est = at_points(outputs.v, point_i)[kept_fg]
    losses = {
        "loss_densepose_U": F.smooth_l1_loss(u_est, point_uv[kept_fg, 0], reduction="sum")
        * point_regression_weight,
        "loss_densepose_V": F.smooth_l1_loss(v_est, point_uv[kept_fg, 1], reduction="sum")
        * point_regression_weight,
        "loss_densepose_I": F.cross_entropy(at_points(outputs.fine_segm, None)[kept], point_i[kept])
        * part_weight,
    }
    if coarse_segm_gt is None:
        losses["loss_densepose_S"] = outputs.coarse_segm.sum() * 0
        return losses
    rois = torch.unique(point_roi)
    segm_h, segm_w = outputs.coarse_segm.shape[-2:]
    with torch.no_grad():
        target = _resample_to_proposals(
            coarse_segm_gt[rois], gt_boxes[rois].float(), proposal_boxes[rois].float(), segm_h, segm_w
        )
        if outputs.coarse_segm.shape[1] == 2:
            target = target > 0
    losses["loss_densepose_S"] = F.cross_entropy(outputs.coarse_segm[rois], target.long()) * index_weight
    return losses
