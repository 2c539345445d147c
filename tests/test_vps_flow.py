"""VPSNet's flow networks: the compact task-trained ``CompactFlowNet`` (zero flow at init, shapes, gradients
through the feature warp, learning known shifts) and the official ``FlowNet2`` (names, shapes and count of
the official mcahny/vps instantiation, checkpoint loading and its errors, a forward smoke test)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models.vps_flow import CompactFlowNet, FlowNet2, _resample2d, _strided_correlation, load_flownet2
from models.vps_fuse import correlation, warp_by_flow

# The official FlowNet2 (mcahny/vps mmdet/models/flow_modules/flownet2.py, rgb_max=255, fp16=False) as
# instantiated with parameter-free stand-ins for its CUDA packages: module -> weight shape, every module
# with a bias of its output size (dim 0, dim 1 for the transposed convs) unless marked "nobias".
# flownets_1 and flownets_2 are both FLOWNET_S.
_FLOWNET_C = """conv1.0 64x3x7x7; conv2.0 128x64x5x5; conv3.0 256x128x5x5; conv_redir.0 32x256x1x1;
conv3_1.0 256x473x3x3; conv4.0 512x256x3x3; conv4_1.0 512x512x3x3; conv5.0 512x512x3x3; conv5_1.0 512x512x3x3;
conv6.0 1024x512x3x3; conv6_1.0 1024x1024x3x3; deconv5.0 1024x512x4x4; deconv4.0 1026x256x4x4;
deconv3.0 770x128x4x4; deconv2.0 386x64x4x4; predict_flow6 2x1024x3x3; predict_flow5 2x1026x3x3;
predict_flow4 2x770x3x3; predict_flow3 2x386x3x3; predict_flow2 2x194x3x3; upsampled_flow6_to_5 2x2x4x4;
upsampled_flow5_to_4 2x2x4x4; upsampled_flow4_to_3 2x2x4x4; upsampled_flow3_to_2 2x2x4x4"""
_FLOWNET_S = """conv1.0 64x12x7x7; conv2.0 128x64x5x5; conv3.0 256x128x5x5; conv3_1.0 256x256x3x3;
conv4.0 512x256x3x3; conv4_1.0 512x512x3x3; conv5.0 512x512x3x3; conv5_1.0 512x512x3x3; conv6.0 1024x512x3x3;
conv6_1.0 1024x1024x3x3; deconv5.0 1024x512x4x4; deconv4.0 1026x256x4x4; deconv3.0 770x128x4x4;
deconv2.0 386x64x4x4; predict_flow6 2x1024x3x3; predict_flow5 2x1026x3x3; predict_flow4 2x770x3x3;
predict_flow3 2x386x3x3; predict_flow2 2x194x3x3; upsampled_flow6_to_5 2x2x4x4 nobias;
upsampled_flow5_to_4 2x2x4x4 nobias; upsampled_flow4_to_3 2x2x4x4 nobias;
upsampled_flow3_to_2 2x2x4x4 nobias"""
_FLOWNET_SD = """conv0.0 64x6x3x3; conv1.0 64x64x3x3; conv1_1.0 128x64x3x3; conv2.0 128x128x3x3;
conv2_1.0 128x128x3x3; conv3.0 256x128x3x3; conv3_1.0 256x256x3x3; conv4.0 512x256x3x3; conv4_1.0 512x512x3x3;
conv5.0 512x512x3x3; conv5_1.0 512x512x3x3; conv6.0 1024x512x3x3; conv6_1.0 1024x1024x3x3;
deconv5.0 1024x512x4x4; deconv4.0 1026x256x4x4; deconv3.0 770x128x4x4; deconv2.0 386x64x4x4;
inter_conv5.0 512x1026x3x3; inter_conv4.0 256x770x3x3; inter_conv3.0 128x386x3x3; inter_conv2.0 64x194x3x3;
predict_flow6 2x1024x3x3; predict_flow5 2x512x3x3; predict_flow4 2x256x3x3; predict_flow3 2x128x3x3;
predict_flow2 2x64x3x3; upsampled_flow6_to_5 2x2x4x4; upsampled_flow5_to_4 2x2x4x4;
upsampled_flow4_to_3 2x2x4x4; upsampled_flow3_to_2 2x2x4x4"""
_FLOWNET_FUSION = """conv0.0 64x11x3x3; conv1.0 64x64x3x3; conv1_1.0 128x64x3x3; conv2.0 128x128x3x3;
conv2_1.0 128x128x3x3; deconv1.0 128x32x4x4; deconv0.0 162x16x4x4; inter_conv1.0 32x162x3x3;
inter_conv0.0 16x82x3x3; predict_flow2 2x128x3x3; predict_flow1 2x32x3x3; predict_flow0 2x16x3x3;
upsampled_flow2_to_1 2x2x4x4; upsampled_flow1_to_0 2x2x4x4"""
OFFICIAL_FLOWNET2_PARAMETERS = 162_518_834
OFFICIAL_FLOWNET2_KEYS = 220


def _official_shapes() -> dict[str, tuple[int, ...]]:
    tables = {
        "flownetc": _FLOWNET_C,
        "flownets_1": _FLOWNET_S,
        "flownets_2": _FLOWNET_S,
        "flownets_d": _FLOWNET_SD,
        "flownetfusion": _FLOWNET_FUSION,
    }
    shapes = {}
    for net, table in tables.items():
        for entry in table.replace("\n", " ").split(";"):
            module, weight, *flag = entry.split()
            shape = tuple(int(n) for n in weight.split("x"))
            shapes[f"{net}.{module}.weight"] = shape
            if flag != ["nobias"]:
                transposed = module.startswith(("deconv", "upsampled"))
                shapes[f"{net}.{module}.bias"] = (shape[1] if transposed else shape[0],)
    return shapes


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _texture(batch: int = 1, size: int = 80) -> torch.Tensor:
    """Smooth random RGB texture in [0, 1]."""
    return F.interpolate(torch.rand(batch, 3, size // 2, size // 2), size=(size, size), mode="bilinear")


def _shifted_pairs(shifts: list[tuple[int, int]], size: int = 64, margin: int = 8):
    """Pairs whose reference is the image moved by (dx, dy) pixels: flow image -> reference = (dx, dy)."""
    big = _texture(len(shifts), size + 2 * margin)
    moved = torch.cat([torch.roll(big[i : i + 1], (dy, dx), (2, 3)) for i, (dx, dy) in enumerate(shifts)])
    crop = (slice(None), slice(None), slice(margin, margin + size), slice(margin, margin + size))
    return big[crop], moved[crop]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared two-core machine spinning OpenMP workers slow a run many times."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def flownet2() -> FlowNet2:
    return FlowNet2()


# --- CompactFlowNet -------------------------------------------------------------------------------------


def test_compact_parameter_count():
    assert _count(CompactFlowNet()) == 990_162


def test_compact_predicts_zero_flow_at_init_on_odd_sizes():
    torch.manual_seed(0)
    net = CompactFlowNet(num_flow_updates=2)
    for height, width in ((37, 50), (64, 64), (129, 67)):
        flow = net(torch.rand(2, 3, height, width), torch.rand(2, 3, height, width))
        assert flow.shape == (2, 2, math.ceil(height / 4), math.ceil(width / 4))
        assert torch.equal(flow, torch.zeros_like(flow))


def test_compact_rejects_mismatched_frames():
    with pytest.raises(ValueError, match="must both be"):
        CompactFlowNet()(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 40))


def test_gradient_reaches_the_compact_net_through_the_feature_warp():
    torch.manual_seed(0)
    net = CompactFlowNet(num_flow_updates=2)
    image, reference = _shifted_pairs([(4, 0)])
    features, reference_features = (F.avg_pool2d(x, 4) for x in (image, reference))

    def step() -> None:
        net.zero_grad()
        flow = net(image, reference)
        (warp_by_flow(reference_features, flow) - features).abs().mean().backward()

    step()  # at init only the zeroed last conv is reached (every path runs through its zero weights) ...
    head = net.raft.update_block.flow_head.conv2
    assert head.weight.grad.abs().sum() > 0 and head.bias.grad.abs().sum() > 0
    with torch.no_grad():
        head.weight.normal_(std=1e-3)
    step()  # ... and, once it is not zero, every parameter
    silent = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert silent == []


def test_compact_net_learns_two_known_shifts():
    torch.manual_seed(0)
    shifts = [(8, 4), (-4, -8)]  # opposite motions: a constant flow cannot fit both
    image, reference = _shifted_pairs(shifts)
    target = torch.tensor(shifts, dtype=torch.float32).view(2, 2, 1, 1) / 4  # on the 1/4 grid
    net = CompactFlowNet(num_flow_updates=2)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def endpoint_error() -> torch.Tensor:
        return (net(image, reference) - target).norm(dim=1).mean()

    before = endpoint_error().item()
    for _ in range(30):
        optimizer.zero_grad()
        endpoint_error().backward()
        optimizer.step()
    with torch.no_grad():
        after = endpoint_error().item()
    assert before == pytest.approx(math.hypot(2, 1), rel=1e-5)
    assert after <= before / 2


# --- FlowNet2 -------------------------------------------------------------------------------------------


def test_flownet2_has_the_official_names_shapes_and_count(flownet2: FlowNet2):
    official = _official_shapes()
    assert len(official) == OFFICIAL_FLOWNET2_KEYS
    assert sum(math.prod(shape) for shape in official.values()) == OFFICIAL_FLOWNET2_PARAMETERS
    ours = {name: tuple(value.shape) for name, value in flownet2.state_dict().items()}
    assert sorted(set(ours) ^ set(official)) == []
    assert {name: shape for name, shape in ours.items() if shape != official[name]} == {}
    assert _count(flownet2) == OFFICIAL_FLOWNET2_PARAMETERS


def test_flownet2_is_frozen_in_eval_mode(flownet2: FlowNet2):
    assert not any(p.requires_grad for p in flownet2.parameters())
    flownet2.train()
    assert not flownet2.training and not any(m.training for m in flownet2.modules())


def test_flownet2_forward_smoke(flownet2: FlowNet2):
    torch.manual_seed(0)
    for height, width in ((64, 64), (37, 50)):
        image = torch.rand(1, 3, height, width, requires_grad=True)
        flow = flownet2(image, torch.rand(1, 3, height, width))
        assert flow.shape == (1, 2, math.ceil(height / 4), math.ceil(width / 4))
        assert torch.isfinite(flow).all() and not flow.requires_grad


def test_flownet2_correlation_is_the_stride_2_subset_of_the_dense_one():
    torch.manual_seed(0)
    x1, x2 = torch.randn(2, 8, 9, 11), torch.randn(2, 8, 9, 11)
    dense = correlation(x1, x2, max_displacement=20).view(2, 41, 41, 9, 11)
    assert torch.allclose(_strided_correlation(x1, x2), dense[:, ::2, ::2].flatten(1, 2), atol=1e-6)


def test_flownet2_resample_warps_like_the_feature_warp_and_repeats_the_border():
    torch.manual_seed(0)
    images, inside = torch.randn(1, 3, 8, 10), torch.zeros(1, 2, 8, 10)
    inside[:, :, 1:-1, 1:-1] = torch.rand(1, 2, 6, 8) * 2 - 1  # stays in the image: same as warp_by_flow
    assert torch.allclose(_resample2d(images, inside), warp_by_flow(images, inside), atol=1e-6)
    far = torch.zeros(1, 2, 8, 10)
    far[:, 0] = 100.0  # far to the right: the last column
    expected = images[:, :, :, -1:].expand(-1, -1, -1, 10)
    assert torch.allclose(_resample2d(images, far), expected, atol=1e-6)


def _write_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """An official-layout checkpoint of constant tensors (stride-0 views: a few bytes each on disk)."""
    state = {name: torch.full((), float(i)).expand(shape) for i, (name, shape) in enumerate(shapes.items())}
    torch.save({"state_dict": state, "epoch": 1, "best_EPE": 1.0}, path)


def test_load_flownet2_reads_an_official_layout_checkpoint(tmp_path: Path):
    official = _official_shapes()
    path = tmp_path / "FlowNet2_checkpoint.pth.tar"
    _write_checkpoint(path, official)
    model = load_flownet2(path)
    loaded = model.state_dict()
    for i, name in enumerate(official):
        assert torch.equal(loaded[name], torch.full(official[name], float(i))), name
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_load_flownet2_names_the_file_and_the_misfits(tmp_path: Path):
    shapes = _official_shapes()
    del shapes["flownetc.conv_redir.0.bias"]
    shapes["flownets_1.upsampled_flow6_to_5.bias"] = (2,)
    shapes["flownetfusion.conv0.0.weight"] = (64, 12, 3, 3)
    path = tmp_path / "not_flownet2.pth"
    _write_checkpoint(path, shapes)
    with pytest.raises(ValueError) as error:
        load_flownet2(path)
    message = str(error.value)
    assert str(path) in message and "not a FlowNet2 checkpoint" in message
    assert "1 missing: flownetc.conv_redir.0.bias" in message
    assert "1 unexpected: flownets_1.upsampled_flow6_to_5.bias" in message
    assert "flownetfusion.conv0.0.weight (64, 12, 3, 3) (ours (64, 11, 3, 3))" in message


def test_load_flownet2_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"absent\.pth"):
        load_flownet2(tmp_path / "absent.pth")
