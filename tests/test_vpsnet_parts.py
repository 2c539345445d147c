"""VPSNet's track head (Sec. 3.2) and fuse module (Sec. 3.1) against the official counts, hand
computations of the official loss and association score, and ground-truth warps."""

from __future__ import annotations

import math

import pytest
import torch

from models.vps_fuse import FuseModule, SpatialTemporalAttention, correlation, resize_flow, warp_by_flow
from models.vps_track_head import TrackHead, association_scores, box_iou_legacy


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _levels(batch: int = 1, size: int = 16, channels: int = 256, num: int = 5) -> list[torch.Tensor]:
    return [torch.randn(batch, channels, size >> i, size >> i) for i in range(num)]


def test_official_parameter_counts():
    assert _count(TrackHead()) == 13_895_680
    fuse = FuseModule()
    assert _count(fuse) == 3_727_266
    assert _count(fuse.flow_refinement) == 251_298
    assert _count(fuse.attention) == 2_885_888
    assert _count(fuse.refine) == 590_080


def test_track_head_shapes_and_new_object_column():
    torch.manual_seed(0)
    head = TrackHead()
    scores = head(torch.randn(5, 256, 7, 7), torch.randn(3, 256, 7, 7), [2, 3], [1, 2])
    assert [tuple(s.shape) for s in scores] == [(2, 2), (3, 3)]
    for s in scores:
        assert torch.equal(s[:, 0], torch.zeros(len(s)))
    # the other columns are inner products of the shared embeddings
    t, r = head.embed(torch.ones(1, 256, 7, 7)), head.embed(-torch.ones(2, 256, 7, 7))
    out = head(torch.ones(1, 256, 7, 7), -torch.ones(2, 256, 7, 7), [1], [2])[0]
    torch.testing.assert_close(out[0, 1:], (t @ r.t())[0])
    with pytest.raises(ValueError, match="do not add up"):
        head(torch.randn(4, 256, 7, 7), torch.randn(3, 256, 7, 7), [2, 3], [1, 2])


def test_track_loss_equals_hand_computation():
    head = TrackHead()
    affinities = [
        torch.tensor([[0.0, 1.0, 2.0], [0.0, 3.0, -1.0], [0.0, 5.0, 5.0]]),
        torch.tensor([[0.0, 4.0]]),  # no valid RoI: skipped but counted in the image mean
    ]
    ids = [torch.tensor([2, 0, 1]), torch.tensor([1])]
    weights = [torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0])]

    def lse(*xs: float) -> float:
        return math.log(sum(math.exp(x) for x in xs))

    image0 = ((lse(0, 1, 2) - 2) + (lse(0, 3, -1) - 0)) / 2
    expected = 0.5 * (image0 + 0.0) / 2
    assert head.loss(affinities, ids, weights).item() == pytest.approx(expected, rel=1e-6)
    assert head.accuracy(affinities, ids, weights).item() == pytest.approx(50.0)


def test_association_score_equals_official_formula_by_hand():
    affinity = torch.tensor([[0.0, 2.0, 1.0]])
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    ref_boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])
    # +1 convention: 10 x 10 boxes overlapping 5 x 10 -> 50 / 150
    torch.testing.assert_close(box_iou_legacy(boxes, ref_boxes), torch.tensor([[1.0, 1.0 / 3.0]]))
    out = association_scores(
        affinity, torch.tensor([0.5]), torch.tensor([3]), boxes, torch.tensor([3, 4]), ref_boxes
    )
    z = math.log(math.exp(0) + math.exp(2) + math.exp(1))
    log_p = math.log(0.5)
    expected = [
        (0 - z) + log_p + 2.0 * 0.0 + 10.0 * 1.0,  # new object: dummy IoU 0, class term 1
        (2 - z) + log_p + 2.0 * 1.0 + 10.0 * 1.0,
        (1 - z) + log_p + 2.0 / 3.0 + 10.0 * 0.0,
    ]
    torch.testing.assert_close(out, torch.tensor([expected]))
    assert int(out.argmax(1)) == 1


def test_warp_zero_flow_is_identity():
    features = torch.randn(2, 3, 7, 9)
    torch.testing.assert_close(warp_by_flow(features, torch.zeros(2, 2, 7, 9)), features, atol=1e-6, rtol=0)


@pytest.mark.parametrize("shift", [(3, -2), (-1, 4), (0, 1)])
def test_warp_undoes_integer_translation(shift):
    tx, ty = shift
    features = torch.randn(1, 4, 12, 15)
    # the reference frame: the target translated by (tx, ty) pixels
    reference = torch.roll(features, shifts=(ty, tx), dims=(2, 3))
    flow = torch.tensor([float(tx), float(ty)]).view(1, 2, 1, 1).expand(1, 2, 12, 15)
    warped = warp_by_flow(reference, flow)
    m = max(abs(tx), abs(ty))
    interior = (slice(None), slice(None), slice(m, 12 - m), slice(m, 15 - m))
    torch.testing.assert_close(warped[interior], features[interior], atol=1e-5, rtol=0)


def test_resize_flow_scales_pixels():
    flow = torch.tensor([8.0, -4.0]).view(1, 2, 1, 1).expand(1, 2, 64, 128)
    small = resize_flow(flow, (16, 32))
    torch.testing.assert_close(small, torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand(1, 2, 16, 32))


def test_correlation_layout():
    x1, x2 = torch.randn(1, 5, 6, 6), torch.randn(1, 5, 6, 6)
    corr = correlation(x1, x2, max_displacement=2)
    assert corr.shape == (1, 25, 6, 6)
    # channel (dy + 2) * 5 + (dx + 2) at (y, x): mean_c x1[y, x] * x2[y + dy, x + dx]
    dy, dx, y, x = 1, -2, 3, 4
    assert corr[0, (dy + 2) * 5 + dx + 2, y, x].item() == pytest.approx(
        (x1[0, :, y, x] * x2[0, :, y + dy, x + dx]).mean().item(), rel=1e-5
    )
    assert corr[0, (1 + 2) * 5 + 2, 5, 0].item() == 0.0  # outside: zero padding


def test_fuse_module_shapes_and_alignment():
    torch.manual_seed(0)
    fuse = FuseModule().eval()
    target = _levels()
    out = fuse(target, _levels(), torch.zeros(1, 2, 64, 64))
    assert [o.shape for o in out] == [t.shape for t in target]
    # with the residual flow silenced, alignment warps the gathered reference by the resized input flow
    torch.nn.init.zeros_(fuse.flow_refinement.estimator[-1].weight)
    g = fuse.gather(target)
    reference_map = torch.roll(g, shifts=2, dims=3)  # 2 px at stride 4 = 8 px in the 64 x 64 input
    with torch.no_grad():
        aligned = fuse.align(g, reference_map, torch.tensor([8.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 64, 64))
    torch.testing.assert_close(aligned[..., 2:-2], g[..., 2:-2], atol=1e-5, rtol=0)


def test_three_frame_fusion_and_errors():
    fuse = FuseModule(num_frames=3, center=1)
    assert isinstance(fuse.attention, SpatialTemporalAttention)
    # odd sizes (the official fixed x2 upsampling of the spatial attention needs even ones)
    assert fuse.attention(torch.randn(1, 3, 256, 5, 7)).shape == (1, 256, 5, 7)
    target = _levels(size=16)
    out = fuse(
        target, _levels(size=16), torch.zeros(1, 2, 64, 64), _levels(size=16), torch.zeros(1, 2, 64, 64)
    )
    assert [o.shape for o in out] == [t.shape for t in target]
    with pytest.raises(ValueError, match="next_features"):
        fuse(target, _levels(size=16), torch.zeros(1, 2, 64, 64))


def test_gradients_reach_fuse_and_track_parameters():
    torch.manual_seed(0)
    fuse, head = FuseModule(), TrackHead()
    out = fuse(_levels(size=16), _levels(size=16), torch.randn(1, 2, 64, 64))
    fused_loss = sum(o.square().mean() for o in out)
    roi = out[0][:, :, :7, :7].expand(3, -1, -1, -1)
    affinities = head(roi, torch.randn(2, 256, 7, 7), [3], [2])
    loss = fused_loss + head.loss(affinities, [torch.tensor([1, 2, 0])], [torch.ones(3)])
    loss.backward()
    for name, p in [*fuse.named_parameters(), *head.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
