"""YolactEdge's added modules compute what the official ones compute (haotian-liu/yolact_edge,
``yolact_edge_vid_resnet50_config``). The reference numbers were produced once, outside this
repository, by the official ``FlowNetMiniPreConvs``, ``FlowNetMini``, ``SPA``, ``deform_op``, the
non-keyframe branch of ``Yolact.forward`` (warp P4, P5, scale, bias, P3 rebuild, SPA) and
``Yolact.extra_loss`` (cosine and SmoothL1, ``fm_loss_loc='L+P'``), with weights from
``tests.yolact_official_layout.official_state_dict`` (seed 7) over the official names in their
registration order -- the order ours are registered in -- and the flow convs of ``pred2`` and
``pred3`` multiplied by 50 so that the warp moves features by several pixels."""

import pytest
import torch

from models.yolact_edge_flow import SPA, FeatFlowNet, transform_features
from models.yolact_edge_loss import feature_matching_loss, official_matching_convs
from models.yolact_fpn import YolactFPN, add_upsampled
from tests.yolact_official_layout import official_state_dict

OFFICIAL = {  # (sum, sum of absolute values) of each official output
    "flow_p4": (-263.34498474001884, 2085.838080614805),
    "flow_p5": (106.63877868652344, 197.94771617650986),
    "warped_p4": (-625.4564783046662, 8155.134621599427),
    "warped_p5": (65.12261357271927, 1073.9838858354196),
    "p3": (-2577.1728709995514, 165808.7755239593),
    "spa_p4": (6310.106772689731, 12608.309555046842),
    "spa_p5": (830.725403588498, 1601.290501927957),
}
OFFICIAL_LOSS = {"cosine": 0.8372846841812134, "SmoothL1": 19.45722007751465}


def _layout(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(value.shape)) for name, value in module.state_dict().items()]


@torch.no_grad()
def test_flow_warp_p3_spa_and_loss_equal_the_official_modules():
    flow, spa = FeatFlowNet(), SPA()
    layout = _layout(flow)  # official flow_net_pre_convs (our ``reduce``) and flow_net: two layouts
    pre_convs = [entry for entry in layout if entry[0].startswith("reduce.")]
    flow_net = [entry for entry in layout if not entry[0].startswith("reduce.")]
    flow.load_state_dict({**official_state_dict(pre_convs, seed=7), **official_state_dict(flow_net, seed=7)})
    spa.load_state_dict(official_state_dict(_layout(spa), seed=7))
    flow.predict2.flow.weight.mul_(50)
    flow.predict3.flow.weight.mul_(50)

    generator = torch.Generator().manual_seed(11)
    lateral, key_lateral = (torch.randn(2, 256, 20, 20, generator=generator) for _ in range(2))
    key_levels = [torch.randn(2, 256, size, size, generator=generator) for size in (10, 5)]
    targets = [torch.randn(2, 256, size, size, generator=generator) for size in (10, 5)]

    fields = flow(lateral, key_lateral)
    warped = [transform_features(level, field) for level, field in zip(key_levels, fields, strict=True)]
    p3 = add_upsampled(lateral, warped[0])
    refined = spa(lateral, warped)
    ours = {"flow_p4": fields[0].flow, "flow_p5": fields[1].flow, "warped_p4": warped[0]}
    ours |= {"warped_p5": warped[1], "p3": p3, "spa_p4": refined[0], "spa_p5": refined[1]}
    for name, (total, absolute) in OFFICIAL.items():
        value = ours[name].double()
        assert value.sum().item() == pytest.approx(total, rel=1e-4, abs=1e-2), name
        assert value.abs().sum().item() == pytest.approx(absolute, rel=1e-5), name

    fpn = YolactFPN([8, 8, 8], 256)  # official pred_layers.k (top-down) is our output[2 - k]
    phase2 = official_state_dict([(f"pred_layers.{k}.{p}", s) for k in range(3) for p, s in (
        ("weight", (256, 256, 3, 3)), ("bias", (256,)))], seed=7)  # fmt: skip
    for k in range(3):
        fpn.output[2 - k].weight.copy_(phase2[f"pred_layers.{k}.weight"])
        fpn.output[2 - k].bias.copy_(phase2[f"pred_layers.{k}.bias"])
    for distance, expected in OFFICIAL_LOSS.items():
        loss = feature_matching_loss(refined, targets, official_matching_convs(fpn), "L+P", distance)
        assert loss.item() == pytest.approx(expected, rel=1e-5), distance


def test_official_state_dict_order_is_ours():
    """The official registration order (pre-convs, then conv1-3, pred3, pred2, pred1, upfeat3, upflow3,
    upfeat2, upflow2; SPA's two refine convs) with our names, so state dicts map one to one."""
    names = [name for name in FeatFlowNet().state_dict() if name.endswith("weight")]
    assert [name.rsplit(".", 1)[0] for name in names] == [
        "reduce.0", "encode1.0.0", "encode1.1.0", "encode2.0.0", "encode2.1.0", "encode3.0.0",
        "encode3.1.0", "predict3.flow", "predict3.scale", "predict3.bias", "predict2.flow", "predict2.scale",
        "predict2.bias", "predict1.flow", "predict1.scale", "predict1.bias", "upfeat3", "upflow3", "upfeat2",
        "upflow2",
    ]  # fmt: skip
    assert [name for name in SPA().state_dict()] == [
        f"refine.{i}.0.{p}" for i in range(2) for p in ("weight", "bias")
    ]
