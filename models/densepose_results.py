"""DensePose chart predictions as per-detection results in the detection's box frame, as detectron2's
``projects/DensePose`` turns them into results for evaluation and visualisation
(``converters/chart_output_to_chart_result.py`` ``densepose_chart_predictor_output_to_result``,
``converters/segm_to_mask.py`` ``resample_fine_and_coarse_segm_tensors_to_bbox``,
``structures/chart_result.py`` ``DensePoseChartResult`` and ``quantize_densepose_chart_result``).

For a box of integer size ``(h, w)`` (the XYWH box truncated to integers, at least 1, ``box_int_sizes``):
the coarse and fine segmentation scores and U, V are resampled to ``(h, w)`` by bilinear interpolation
(``align_corners=False``); a pixel's label is the argmax of the fine scores where the argmax of the coarse
scores is not background, else 0; its U, V are the resampled U, V of its label's channel (0 on the
background).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from models.densepose_head import DensePoseOutputs

# Quantized results keep U, V as round-down(255 * value) in uint8 (detectron2's quantization).
UV_QUANTIZATION = 255


class ChartResult(NamedTuple):
    """One detection's chart result in its box frame: ``labels`` uint8 ``(h, w)`` parts 0 (background)
    ..24, ``uv`` float32 ``(2, h, w)`` chart coordinates (0 on the background)."""

    labels: Tensor
    uv: Tensor


def box_int_sizes(boxes: Tensor) -> Tensor:
    """``(R, 2)`` int64 ``(h, w)`` of ``(R, 4)`` XYXY boxes: width and height computed in the boxes' own
    dtype (detectron2's ``BoxMode.convert`` on the box tensor), truncated to integers (``make_int_box``),
    at least 1."""
    boxes = boxes.detach().reshape(-1, 4)
    sizes = torch.stack([boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]], dim=1)
    return sizes.long().clamp(min=1).cpu()


def _resample(scores: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(scores[None], size, mode="bilinear", align_corners=False)[0]


def chart_outputs_to_box_results(outputs: DensePoseOutputs, boxes: Tensor) -> list[ChartResult]:
    """Per detection ``r`` the ``ChartResult`` of ``outputs[r]`` (``coarse_segm`` (R, K, S, S), ``fine_segm``,
    ``u``, ``v`` (R, C, S, S)) resampled into ``boxes[r]`` (``(R, 4)`` XYXY image pixels), on the outputs'
    device."""
    sizes = box_int_sizes(boxes)
    if len(sizes) != len(outputs.fine_segm):
        raise ValueError(f"{len(sizes)} boxes for {len(outputs.fine_segm)} DensePose outputs")
    results = []
    for r, (h, w) in enumerate(sizes.tolist()):
        coarse = _resample(outputs.coarse_segm[r], (h, w)).argmax(dim=0)
        labels = _resample(outputs.fine_segm[r], (h, w)).argmax(dim=0) * (coarse > 0)
        index = labels[None]
        u = _resample(outputs.u[r], (h, w)).gather(0, index)[0]
        v = _resample(outputs.v[r], (h, w)).gather(0, index)[0]
        uv = torch.where(labels > 0, torch.stack([u, v]).float(), 0.0)
        results.append(ChartResult(labels.to(torch.uint8), uv))
    return results


def quantize_chart_result(labels: Tensor, uv: Tensor) -> Tensor:
    """uint8 ``(3, h, w)``: labels, then U and V as ``floor(255 * clamp(value, 0, 1))`` (detectron2's
    ``quantize_densepose_chart_result``, the form its evaluator reads)."""
    quantized = (uv.detach().float() * UV_QUANTIZATION).clamp(0, UV_QUANTIZATION).to(torch.uint8)
    return torch.cat([labels.detach().to(torch.uint8)[None], quantized])
