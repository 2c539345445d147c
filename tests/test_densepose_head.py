"""DensePose R-CNN head / predictor / decoder (detectron2 ``projects/DensePose``) and chart loss checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from models.densepose_head import (
    DensePoseBranch,
    DensePoseDecoder,
    DensePoseHead,
    DensePoseOutputs,
    DensePosePredictor,
    convert_official_state_dict,
    official_name_to_ours,
)
from models.densepose_loss import densepose_chart_loss


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_detectron2() -> None:
    assert _count(DensePoseHead()) == 17_698_816
    assert _count(DensePosePredictor()) == 630_861
    assert _count(DensePoseDecoder()) == 4_196_352
    assert _count(DensePoseBranch()) == 17_698_816 + 630_861 + 4_196_352
    assert _count(DensePoseBranch(decoder_on=False)) == 17_698_816 + 630_861
    # 15 coarse channels: the S deconv grows from 512*2*16+2 to 512*15*16+15.
    assert _count(DensePosePredictor(num_coarse_segm_channels=15)) == 630_861 + 512 * 13 * 16 + 13


def test_output_shapes() -> None:
    torch.manual_seed(0)
    head = DensePoseHead()
    with torch.no_grad():
        feats = head(torch.randn(1, 256, 28, 28))
        assert feats.shape == (1, 512, 28, 28) and bool((feats >= 0).all())
        for channels in (2, 15):
            out = DensePosePredictor(num_coarse_segm_channels=channels)(torch.randn(2, 512, 28, 28))
            assert isinstance(out, DensePoseOutputs)
            assert out.coarse_segm.shape == (2, channels, 112, 112)
            assert out.fine_segm.shape == out.u.shape == out.v.shape == (2, 25, 112, 112)
        empty = DensePosePredictor()(torch.zeros(0, 512, 28, 28))
        assert empty.u.shape == (0, 25, 112, 112)
        decoder = DensePoseDecoder()
        levels = [torch.randn(2, 256, 32 // 2**k, 24 // 2**k) for k in range(4)]
        assert decoder(levels).shape == (2, 256, 32, 24)
        gn = DensePoseDecoder(norm="GN")
        assert gn.scale_heads[0][0].conv.bias is None
        assert gn(levels).shape == (2, 256, 32, 24)


def test_predictor_upsampling_is_bilinear_after_deconv() -> None:
    torch.manual_seed(0)
    pred = DensePosePredictor()
    x = torch.randn(1, 512, 28, 28)
    with torch.no_grad():
        low = pred.u(x)
        assert low.shape == (1, 25, 56, 56)
        expected = F.interpolate(low, size=(112, 112), mode="bilinear", align_corners=False)
        torch.testing.assert_close(pred(x).u, expected)


def _detectron2_state_dict(norm: str = "") -> dict[str, Tensor]:
    """detectron2 DensePose names and shapes for the default config (written from the detectron2 sources)."""
    sd: dict[str, Tensor] = {}
    for n in range(1, 9):
        sd[f"roi_heads.densepose_head.body_conv_fcn{n}.weight"] = torch.randn(
            512, 256 if n == 1 else 512, 3, 3
        )
        sd[f"roi_heads.densepose_head.body_conv_fcn{n}.bias"] = torch.randn(512)
    for name, ch in (("ann_index_lowres", 2), ("index_uv_lowres", 25), ("u_lowres", 25), ("v_lowres", 25)):
        sd[f"roi_heads.densepose_predictor.{name}.weight"] = torch.randn(512, ch, 4, 4)
        sd[f"roi_heads.densepose_predictor.{name}.bias"] = torch.randn(ch)
    # nn.Sequential indices: [conv] for p2, [conv, upsample] * n for the others.
    for feature, indices in (("p2", (0,)), ("p3", (0,)), ("p4", (0, 2)), ("p5", (0, 2, 4))):
        for j in indices:
            sd[f"roi_heads.decoder.{feature}.{j}.weight"] = torch.randn(256, 256, 3, 3)
            if norm:
                sd[f"roi_heads.decoder.{feature}.{j}.norm.weight"] = torch.randn(256)
                sd[f"roi_heads.decoder.{feature}.{j}.norm.bias"] = torch.randn(256)
            else:
                sd[f"roi_heads.decoder.{feature}.{j}.bias"] = torch.randn(256)
    sd["roi_heads.decoder.predictor.weight"] = torch.randn(256, 256, 1, 1)
    sd["roi_heads.decoder.predictor.bias"] = torch.randn(256)
    # Unrelated parts of the checkpoint are dropped.
    sd["backbone.bottom_up.stem.conv1.weight"] = torch.randn(64, 3, 7, 7)
    sd["roi_heads.box_head.fc1.weight"] = torch.randn(1024, 12544)
    return sd


@pytest.mark.parametrize("norm", ["", "GN"])
def test_official_state_dict_loads_strictly(norm: str) -> None:
    official = _detectron2_state_dict(norm)
    ours = convert_official_state_dict(official)
    assert len(ours) == len(official) - 2
    branch = DensePoseBranch(decoder_norm=norm)
    branch.load_state_dict(ours, strict=True)
    assert torch.equal(branch.head.convs[7].bias, official["roi_heads.densepose_head.body_conv_fcn8.bias"])
    assert torch.equal(
        branch.predictor.coarse_segm.weight, official["roi_heads.densepose_predictor.ann_index_lowres.weight"]
    )
    assert torch.equal(
        branch.decoder.scale_heads[3][2].conv.weight, official["roi_heads.decoder.p5.4.weight"]
    )
    assert official_name_to_ours("roi_heads.decoder.p4.2.weight") == "decoder.scale_heads.2.1.conv.weight"
    assert official_name_to_ours("roi_heads.decoder.p2.0.norm.bias") == "decoder.scale_heads.0.0.norm.bias"
    assert official_name_to_ours("roi_heads.densepose_predictor.u_lowres.bias") == "predictor.u.bias"
    assert official_name_to_ours("roi_heads.mask_head.mask_fcn1.weight") is None


# ---------------------------------------------------------------------------------------------------------
# Reference: a plain transcription of detectron2's DensePoseChartLoss path (accumulator -> packed annotations
# -> BilinearInterpolationHelper -> chart losses, SegmentationLoss with resample_data), per-RoI lists.


def _ref_interp(v_norm, v0_src, size_src, v0_dst, size_dst, size_z):
    v = v0_src + v_norm * size_src / 256.0
    j_valid = (v - v0_dst >= 0) * (v - v0_dst < size_dst)
    v_grid = (v - v0_dst) * size_z / size_dst
    v_lo = v_grid.floor().long().clamp(min=0, max=size_z - 1)
    v_hi = (v_lo + 1).clamp(max=size_z - 1)
    v_grid = torch.min(v_hi.float(), v_grid)
    return v_lo, v_hi, v_grid - v_lo.float(), j_valid


def _ref_resample(z, src, dst, wout, hout):
    n = src.size(0)
    x0s, y0s, ws, hs = src.unbind(1)
    x0d, y0d, wd, hd = dst.unbind(1)
    x0n, y0n = 2 * (x0d - x0s) / ws - 1, 2 * (y0d - y0s) / hs - 1
    x1n, y1n = 2 * (x0d + wd - x0s) / ws - 1, 2 * (y0d + hd - y0s) / hs - 1
    gw = (torch.arange(wout, dtype=torch.float) / wout)[None, None, :].expand(n, hout, wout)
    gh = (torch.arange(hout, dtype=torch.float) / hout)[None, :, None].expand(n, hout, wout)
    gx = gw * (x1n - x0n)[:, None, None] + x0n[:, None, None]
    gy = gh * (y1n - y0n)[:, None, None] + y0n[:, None, None]
    grid = torch.stack((gx, gy), dim=3)
    return F.grid_sample(z, grid, mode="nearest", padding_mode="zeros", align_corners=True)


def _xywh(b: Tensor) -> Tensor:
    return torch.stack([b[..., 0], b[..., 1], b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], -1)


def _reference_loss(out, proposals, gts, per_roi, segm, n_segm_chan, heatmap_size=112):
    fake = {
        "loss_densepose_U": out.u.sum() * 0,
        "loss_densepose_V": out.v.sum() * 0,
        "loss_densepose_I": out.fine_segm.sum() * 0,
        "loss_densepose_S": out.coarse_segm.sum() * 0,
    }
    acc = {k: [] for k in ("i", "x", "y", "u", "v", "s", "bgt", "best", "pdp", "pb", "bi")}
    nxt_dp = 0
    for idx, (est, gt, pts) in enumerate(zip(_xywh(proposals), _xywh(gts), per_roi, strict=True)):
        if pts is None or len(pts["x"]) == 0:
            continue
        for key in ("i", "x", "y", "u", "v"):
            acc[key].append(pts[key])
        acc["s"].append(segm[idx].unsqueeze(0))
        acc["bgt"].append(gt.view(-1, 4))
        acc["best"].append(est.view(-1, 4))
        acc["pdp"].append(torch.full_like(pts["i"], nxt_dp))
        acc["pb"].append(torch.full_like(pts["i"], idx))
        acc["bi"].append(idx)
        nxt_dp += 1
    if not acc["i"]:
        return fake
    i_gt, x_gt, y_gt = torch.cat(acc["i"]).long(), torch.cat(acc["x"]), torch.cat(acc["y"])
    u_gt, v_gt, s_gt = torch.cat(acc["u"]), torch.cat(acc["v"]), torch.cat(acc["s"])
    bgt, best = torch.cat(acc["bgt"]), torch.cat(acc["best"])
    pdp, pb, bi = torch.cat(acc["pdp"]).long(), torch.cat(acc["pb"]).long(), torch.tensor(acc["bi"])
    zh, zw = out.u.shape[2:]
    x0g, y0g, wg, hg = bgt[pdp].unbind(1)
    x0e, y0e, we, he = best[pdp].unbind(1)
    x_lo, x_hi, x_w, jx = _ref_interp(x_gt, x0g, wg, x0e, we, zw)
    y_lo, y_hi, y_w, jy = _ref_interp(y_gt, y0g, hg, y0e, he, zh)
    j_valid = jx * jy
    w00, w01, w10, w11 = (1 - x_w) * (1 - y_w), x_w * (1 - y_w), (1 - x_w) * y_w, x_w * y_w

    def extract(z, sl, a, b, c, d):
        return (
            z[pb, sl, y_lo, x_lo] * a
            + z[pb, sl, y_lo, x_hi] * b
            + z[pb, sl, y_hi, x_lo] * c
            + z[pb, sl, y_hi, x_hi] * d
        )

    j_valid_fg = j_valid * (i_gt > 0)
    if not torch.any(j_valid_fg):
        return fake
    u_est = extract(out.u, i_gt, w00, w01, w10, w11)[j_valid_fg]
    v_est = extract(out.v, i_gt, w00, w01, w10, w11)[j_valid_fg]
    fine = extract(out.fine_segm, slice(None), w00[:, None], w01[:, None], w10[:, None], w11[:, None])[
        j_valid, :
    ]
    with torch.no_grad():
        cgt = _ref_resample(s_gt.unsqueeze(1), bgt, best, heatmap_size, heatmap_size).squeeze(1)
    if n_segm_chan == 2:
        cgt = cgt > 0
    return {
        "loss_densepose_U": F.smooth_l1_loss(u_est, u_gt[j_valid_fg], reduction="sum") * 0.01,
        "loss_densepose_V": F.smooth_l1_loss(v_est, v_gt[j_valid_fg], reduction="sum") * 0.01,
        "loss_densepose_I": F.cross_entropy(fine, i_gt[j_valid].long()) * 1.0,
        "loss_densepose_S": F.cross_entropy(out.coarse_segm[bi], cgt.long()) * 5.0,
    }


def _random_outputs(r: int, n_segm_chan: int, size: int = 112) -> DensePoseOutputs:
    def t(c: int) -> Tensor:
        return torch.randn(r, c, size, size, requires_grad=True)

    return DensePoseOutputs(coarse_segm=t(n_segm_chan), fine_segm=t(25), u=t(25), v=t(25))


def _random_problem(seed: int):
    g = torch.Generator().manual_seed(seed)
    r = 5
    xy = torch.rand(r, 2, generator=g) * 300
    wh = 40 + torch.rand(r, 2, generator=g) * 200
    gts = torch.cat([xy, xy + wh], 1)
    # Proposals: jittered GT boxes (some points fall outside), one equal to its GT box.
    jitter = (torch.rand(r, 4, generator=g) - 0.5) * 0.4 * wh.repeat(1, 2)
    proposals = gts + jitter
    proposals[0] = gts[0]
    per_roi = []
    for k in range(r):
        if k == 2:  # a RoI without points
            per_roi.append(None)
            continue
        n = 30
        x = torch.rand(n, generator=g) * 256
        y = torch.rand(n, generator=g) * 256
        x[:4] = torch.tensor([0.0, 255.999, 0.5, 255.5])  # points on / near the box border
        y[:4] = torch.tensor([255.999, 0.0, 0.25, 255.75])
        i = torch.randint(1, 25, (n,), generator=g)
        if k == 3:
            i[5:8] = 0  # background points: I loss only
        per_roi.append(
            {"x": x, "y": y, "i": i, "u": torch.rand(n, generator=g), "v": torch.rand(n, generator=g)}
        )
    segm = torch.randint(0, 15, (r, 256, 256), generator=g).float()
    segm[:, :20] = 0
    return proposals, gts, per_roi, segm


def _pack(per_roi):
    rois = [torch.full((len(p["x"]),), k) for k, p in enumerate(per_roi) if p is not None]
    items = [p for p in per_roi if p is not None]
    if not items:
        return (
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, 2),
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, 2),
        )
    cat = lambda key: torch.cat([p[key] for p in items])  # noqa: E731
    return (
        torch.cat(rois),
        torch.stack([cat("x"), cat("y")], 1),
        cat("i"),
        torch.stack([cat("u"), cat("v")], 1),
    )


@pytest.mark.parametrize("n_segm_chan", [2, 15])
@pytest.mark.parametrize("seed", [0, 1])
def test_chart_loss_matches_detectron2_transcription(n_segm_chan: int, seed: int) -> None:
    torch.manual_seed(seed)
    proposals, gts, per_roi, segm = _random_problem(seed)
    out = _random_outputs(len(proposals), n_segm_chan)
    point_roi, point_xy, point_i, point_uv = _pack(per_roi)
    ours = densepose_chart_loss(out, proposals, point_roi, point_xy, point_i, point_uv, gts, segm)
    ref = _reference_loss(out, proposals, gts, per_roi, segm, n_segm_chan)
    assert ours.keys() == ref.keys()
    for key in ref:
        assert ours[key].item() > 0, key
        torch.testing.assert_close(ours[key], ref[key], rtol=1e-5, atol=1e-5)
    grads_ours = torch.autograd.grad(sum(ours.values()), list(out))
    grads_ref = torch.autograd.grad(sum(ref.values()), list(out))
    for a, b in zip(grads_ours, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # RoI 2 has no points: it gets no gradient from any loss.
    assert all(float(g[2].abs().sum()) == 0 for g in grads_ours)


def test_chart_loss_point_sampling_is_exact_on_grid_points() -> None:
    """A point at the centre of output cell (j, k) of an un-jittered box reads exactly that cell, at the
    grid coordinate ``dp * S / 256`` (no half-pixel shift, as detectron2)."""
    out = _random_outputs(1, 2)
    box = torch.tensor([[10.0, 20.0, 10.0 + 224.0, 20.0 + 224.0]])
    # dp = 256 * 7 / 112 -> grid 7 exactly.
    xy = torch.tensor([[256 * 7 / 112, 256 * 9 / 112]])
    i = torch.tensor([4])
    uv = torch.tensor([[0.5, 0.25]])
    losses = densepose_chart_loss(out, box, torch.tensor([0]), xy, i, uv, point_regression_weight=1.0)
    expected_u = F.smooth_l1_loss(out.u[0, 4, 9, 7], torch.tensor(0.5), reduction="sum")
    torch.testing.assert_close(losses["loss_densepose_U"], expected_u)


def test_chart_loss_empty_cases_are_zero_with_graph() -> None:
    proposals, gts, per_roi, segm = _random_problem(0)
    out = _random_outputs(len(proposals), 2)
    empty = (
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, 2),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, 2),
    )
    cases = [
        densepose_chart_loss(out, proposals, *empty, gts, segm),
        # every point outside its proposal box
        densepose_chart_loss(
            out,
            proposals,
            torch.tensor([1, 1]),
            torch.full((2, 2), 256.0),
            torch.tensor([3, 5]),
            torch.rand(2, 2),
            gts + torch.tensor([500.0, 0, 500, 0]),
            segm,
        ),
    ]
    ref = _reference_loss(out, proposals, gts, [None] * 5, segm, 2)
    cases.append(ref)
    for losses in cases:
        assert set(losses) == {"loss_densepose_U", "loss_densepose_V", "loss_densepose_I", "loss_densepose_S"}
        for value in losses.values():
            assert value.item() == 0 and value.requires_grad
        sum(losses.values()).backward()
    # Without masks, the S loss is a zero with graph while the point losses stay.
    point_roi, point_xy, point_i, point_uv = _pack(per_roi)
    no_masks = densepose_chart_loss(out, proposals, point_roi, point_xy, point_i, point_uv, gts, None)
    assert no_masks["loss_densepose_S"].item() == 0 and no_masks["loss_densepose_S"].requires_grad
    assert no_masks["loss_densepose_I"].item() > 0
