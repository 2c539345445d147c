"""Box-frame chart results equal detectron2's converter (``densepose_chart_predictor_output_to_result``)."""

import torch
import torch.nn.functional as F

from models.densepose_head import DensePoseOutputs
from models.densepose_results import box_int_sizes, chart_outputs_to_box_results, quantize_chart_result


def _detectron2_result(outputs: DensePoseOutputs, r: int, box_xyxy: torch.Tensor):
    """Transcription of detectron2's converter for one detection: XYXY -> XYWH on the float tensor,
    truncated to ints (``make_int_box``), then the per-part fill of U and V."""
    xywh = box_xyxy.clone()
    xywh[2:] -= xywh[:2]
    _, _, w, h = xywh.long().tolist()
    w, h = max(int(w), 1), max(int(h), 1)

    def up(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t[r : r + 1], (h, w), mode="bilinear", align_corners=False)

    coarse = up(outputs.coarse_segm).argmax(dim=1)
    labels = (up(outputs.fine_segm).argmax(dim=1) * (coarse > 0).long())[0]
    u_box, v_box = up(outputs.u), up(outputs.v)
    uv = torch.zeros([2, h, w], dtype=torch.float32)
    for part in range(1, u_box.size(1)):
        uv[0][labels == part] = u_box[0, part][labels == part]
        uv[1][labels == part] = v_box[0, part][labels == part]
    return labels, uv


def test_results_equal_detectron2_converter() -> None:
    generator = torch.Generator().manual_seed(0)
    r, size = 5, 28

    def rand(c: int) -> torch.Tensor:
        return torch.randn(r, c, size, size, generator=generator)

    outputs = DensePoseOutputs(rand(2), rand(25), rand(25).sigmoid(), rand(25).sigmoid())
    corners = torch.rand(r, 2, generator=generator) * 50
    extents = torch.tensor([[30.7, 61.2], [5.5, 3.99], [0.4, 12.0], [77.0, 1.0], [13.3, 13.3]])
    boxes = torch.cat([corners, corners + extents], dim=1)
    results = chart_outputs_to_box_results(outputs, boxes)
    assert box_int_sizes(boxes).tolist() == [list(res.labels.shape) for res in results]
    for i, result in enumerate(results):
        labels, uv = _detectron2_result(outputs, i, boxes[i])
        assert result.labels.dtype == torch.uint8 and result.uv.dtype == torch.float32
        assert torch.equal(result.labels.long(), labels)
        assert torch.equal(result.uv, uv)
        assert (labels > 0).any() and (labels == 0).any()


def test_quantization_floors_255_times_clamped_uv() -> None:
    labels = torch.tensor([[0, 3]], dtype=torch.uint8)
    uv = torch.tensor([[[0.0, 0.999]], [[1.2, -0.1]]])
    assert quantize_chart_result(labels, uv).tolist() == [[[0, 3]], [[0, 254]], [[255, 0]]]
