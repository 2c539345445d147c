"""models/keypoint_hourglass.py, models/cornernet.py, models/keypoint_hourglass_official_weights.py: the
Hourglass-104 networks of CenterNet (ctdet) and CornerNet have the official parameter counts, the shapes
and stack outputs documented, and the official checkpoints' names map one to one onto ours.

The official layouts below (``official_*_layout``) are written from the official code's structure
(princeton-vl/CornerNet @ e5c39a3 ``models/py_utils/kp.py``, ``utils.py``, ``kp_utils.py``,
``models/CornerNet.py``; xingyizhou/CenterNet @ 4c50fd3 ``src/lib/models/networks/large_hourglass.py``),
none of its code being in this repository. At full size they were checked to equal, name for name and
shape for shape, the state dicts of the instantiated official ``HourglassNet({"hm": 80, "wh": 2, "reg":
2})`` and CornerNet ``model`` (whose parameter counts, 191,284,008 and 201,035,212, the tests assert); and
small official networks, their weights converted, computed exactly what ours compute, in training and
eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from models.cornernet_hourglass import CornerNetHourglass
from models.keypoint_heads import HEATMAP_BIAS
from models.keypoint_hourglass import (
    HOURGLASS_104_DIMS,
    HOURGLASS_104_MODULES,
    CenterNetHourglass,
    HourglassTrunk,
)
from models.keypoint_hourglass_official_weights import (
    centernet_name_to_ours,
    convert_centernet_state_dict,
    convert_cornernet_state_dict,
    cornernet_name_to_ours,
    load_centernet_state_dict,
    load_centernet_weights,
    load_cornernet_state_dict,
    load_cornernet_weights,
    our_name_to_centernet,
    our_name_to_cornernet,
)

CENTERNET_PARAMETERS = 191_284_008
CORNERNET_PARAMETERS = 201_035_212
CORNER_POOL_PARAMETERS = 1_542_144

SMALL = {"dims": (16, 16, 24, 24, 24, 32), "modules": (2, 2, 2, 2, 2, 4), "cnv_dim": 16, "stem_channels": 8}
SMALL_CLASSES = 5
FULL = {"dims": HOURGLASS_104_DIMS, "modules": HOURGLASS_104_MODULES, "cnv_dim": 256, "stem_channels": 128}

Layout = Iterator[tuple[str, tuple[int, ...]]]


# ---- the official layouts, from the official code's structure -------------------------------------------


def official_bn(prefix: str, channels: int) -> Layout:
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        yield f"{prefix}.{leaf}", (channels,)
    yield f"{prefix}.num_batches_tracked", ()


def official_convolution(prefix: str, kernel: int, cin: int, cout: int) -> Layout:
    """``convolution(k, cin, cout)``: conv (no bias) + bn."""
    yield f"{prefix}.conv.weight", (cout, cin, kernel, kernel)
    yield from official_bn(f"{prefix}.bn", cout)


def official_residual(prefix: str, cin: int, cout: int, stride: int = 1) -> Layout:
    yield f"{prefix}.conv1.weight", (cout, cin, 3, 3)
    yield from official_bn(f"{prefix}.bn1", cout)
    yield f"{prefix}.conv2.weight", (cout, cout, 3, 3)
    yield from official_bn(f"{prefix}.bn2", cout)
    if stride != 1 or cin != cout:
        yield f"{prefix}.skip.0.weight", (cout, cin, 1, 1)
        yield from official_bn(f"{prefix}.skip.1", cout)


def official_kp_module(prefix: str, dims: Sequence[int], modules: Sequence[int]) -> Layout:
    """``kp_module`` with CornerNet's/CenterNet's ``make_hg_layer`` (first residual of low1 strided) and
    ``make_pool_layer`` (empty)."""
    curr, nxt, mod = dims[0], dims[1], modules[0]
    for j in range(mod):  # up1 = make_layer
        yield from official_residual(f"{prefix}.up1.{j}", curr, curr)
    for j in range(mod):  # low1 = make_hg_layer
        yield from official_residual(f"{prefix}.low1.{j}", curr if j == 0 else nxt, nxt, 2 if j == 0 else 1)
    if len(dims) > 2:
        yield from official_kp_module(f"{prefix}.low2", dims[1:], modules[1:])
    else:  # make_low_layer = make_layer
        for j in range(modules[1]):
            yield from official_residual(f"{prefix}.low2.{j}", nxt, nxt)
    for j in range(mod):  # low3 = make_layer_revr
        yield from official_residual(f"{prefix}.low3.{j}", nxt, curr if j == mod - 1 else nxt)


def official_kp_layer(prefix: str, cnv_dim: int, curr_dim: int, out_dim: int) -> Layout:
    """``make_kp_layer``: ``convolution(3, cnv_dim, curr_dim, with_bn=False)`` (conv with bias), 1x1 conv."""
    yield f"{prefix}.0.conv.weight", (curr_dim, cnv_dim, 3, 3)
    yield f"{prefix}.0.conv.bias", (curr_dim,)
    yield f"{prefix}.1.weight", (out_dim, curr_dim, 1, 1)
    yield f"{prefix}.1.bias", (out_dim,)


def official_pool(prefix: str, dim: int) -> Layout:
    """CornerNet's ``pool`` (tl_pool / br_pool)."""
    yield from official_convolution(f"{prefix}.p1_conv1", 3, dim, 128)
    yield from official_convolution(f"{prefix}.p2_conv1", 3, dim, 128)
    yield f"{prefix}.p_conv1.weight", (dim, 128, 3, 3)
    yield from official_bn(f"{prefix}.p_bn1", dim)
    yield f"{prefix}.conv1.weight", (dim, dim, 1, 1)
    yield from official_bn(f"{prefix}.bn1", dim)
    yield from official_convolution(f"{prefix}.conv2", 3, dim, dim)


def official_trunk(dims, modules, cnv_dim, stem_channels, stacks=2) -> Layout:
    yield from official_convolution("pre.0", 7, 3, stem_channels)
    yield from official_residual("pre.1", stem_channels, dims[0], 2)
    for i in range(stacks):
        yield from official_kp_module(f"kps.{i}", dims, modules)
    for i in range(stacks):
        yield from official_convolution(f"cnvs.{i}", 3, dims[0], cnv_dim)
    for i in range(stacks - 1):
        yield from official_residual(f"inters.{i}", dims[0], dims[0])
        yield f"inters_.{i}.0.weight", (dims[0], dims[0], 1, 1)
        yield from official_bn(f"inters_.{i}.1", dims[0])
        yield f"cnvs_.{i}.0.weight", (dims[0], cnv_dim, 1, 1)
        yield from official_bn(f"cnvs_.{i}.1", dims[0])


def official_centernet_layout(num_classes, dims, modules, cnv_dim, stem_channels) -> dict[str, tuple]:
    """``exkp`` (``HourglassNet``) with the ctdet heads."""
    layout = dict(official_trunk(dims, modules, cnv_dim, stem_channels))
    for head, channels in (("hm", num_classes), ("wh", 2), ("reg", 2)):
        for i in range(2):
            layout.update(official_kp_layer(f"{head}.{i}", cnv_dim, dims[0], channels))
    return layout


def official_cornernet_layout(num_classes, dims, modules, cnv_dim, stem_channels) -> dict[str, tuple]:
    """``kp`` with CornerNet's tl/br pools."""
    layout = dict(official_trunk(dims, modules, cnv_dim, stem_channels))
    for corner in ("tl", "br"):
        for i in range(2):
            layout.update(official_pool(f"{corner}_cnvs.{i}", cnv_dim))
    for kind, channels in (("heats", num_classes), ("tags", 1), ("regrs", 2)):
        for corner in ("tl", "br"):
            for i in range(2):
                layout.update(official_kp_layer(f"{corner}_{kind}.{i}", cnv_dim, dims[0], channels))
    return layout


def parameter_count(layout: dict[str, tuple]) -> int:
    """Parameters of a layout: everything but the BatchNorm buffers."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(torch.Size(shape).numel() for name, shape in layout.items() if not name.endswith(buffers))


def random_state(layout: dict[str, tuple], seed: int = 0) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in layout.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.randint(0, 1000, shape, generator=generator)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[name] = torch.randn(shape, generator=generator)
    return state


def count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


# ---- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Many tiny convolutions: one thread is several times faster than two on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def full_centernet() -> CenterNetHourglass:
    return CenterNetHourglass()


@pytest.fixture(scope="module")
def full_cornernet() -> CornerNetHourglass:
    return CornerNetHourglass()


def small_centernet(**overrides) -> CenterNetHourglass:
    return CenterNetHourglass(SMALL_CLASSES, **{**SMALL, **overrides})


def small_cornernet(**overrides) -> CornerNetHourglass:
    return CornerNetHourglass(SMALL_CLASSES, **{**SMALL, **overrides})


# ---- parameter counts -----------------------------------------------------------------------------------


def test_centernet_hourglass_104_has_the_official_parameter_count(full_centernet) -> None:
    assert count(full_centernet) == CENTERNET_PARAMETERS
    assert parameter_count(official_centernet_layout(80, **FULL)) == CENTERNET_PARAMETERS


def test_cornernet_has_the_official_parameter_count(full_cornernet) -> None:
    assert count(full_cornernet) == CORNERNET_PARAMETERS
    assert parameter_count(official_cornernet_layout(80, **FULL)) == CORNERNET_PARAMETERS
    pools = [branch.pool for branch in (*full_cornernet.top_left, *full_cornernet.bottom_right)]
    assert len(pools) == 4  # a top-left and a bottom-right pool per stack
    assert [count(pool) for pool in pools] == [CORNER_POOL_PARAMETERS] * 4


def test_the_two_networks_share_one_trunk(full_centernet, full_cornernet) -> None:
    assert type(full_centernet.trunk) is type(full_cornernet.trunk) is HourglassTrunk
    assert count(full_centernet.trunk) == count(full_cornernet.trunk)


# ---- shapes and stack outputs ---------------------------------------------------------------------------

CENTERNET_CHANNELS = {"hm": SMALL_CLASSES, "wh": 2, "reg": 2}
CORNERNET_CHANNELS = {
    "tl_heat": SMALL_CLASSES,
    "br_heat": SMALL_CLASSES,
    "tl_tag": 1,
    "br_tag": 1,
    "tl_regr": 2,
    "br_regr": 2,
}


@pytest.mark.parametrize(
    ("build", "channels"),
    [(small_centernet, CENTERNET_CHANNELS), (small_cornernet, CORNERNET_CHANNELS)],
    ids=["centernet", "cornernet"],
)
@pytest.mark.parametrize(
    ("size", "overrides"),
    [
        (128, {}),
        (127, {}),  # the official CornerNet sizes are 128k - 1 (511 -> 128)
        (64, {"dims": (16, 16, 24, 24, 32), "modules": (2, 2, 2, 2, 4)}),  # depth 4
    ],
)
def test_outputs_every_stack_in_training_and_the_last_in_eval(build, channels, size, overrides) -> None:
    torch.manual_seed(0)
    model = build(**overrides)
    images = torch.randn(2, 3, size, size)  # 2: the innermost maps are 1 x 1 (BN needs 2 values)
    out = (size + 3) // 4
    outputs = model.train()(images)
    assert len(outputs) == 2
    for stack in outputs:
        assert list(stack) == list(channels)  # the official order
        assert {name: tuple(map_.shape) for name, map_ in stack.items()} == {
            name: (2, c, out, out) for name, c in channels.items()
        }
    # eval = the last stack of the all-stacks output (BN on running statistics in both)
    with torch.no_grad():
        evaluated = model.eval()(images)
        model.train()
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        every_stack = model(images)
    assert len(evaluated) == 1
    assert evaluated[0].keys() == every_stack[-1].keys()
    for name, value in evaluated[0].items():
        torch.testing.assert_close(value, every_stack[-1][name], rtol=0, atol=0)
    assert not torch.equal(every_stack[0][next(iter(channels))], every_stack[1][next(iter(channels))])


def test_one_stack_configuration() -> None:
    model = small_centernet(num_stacks=1)
    assert len(model.trunk.merge_residuals) == 0
    assert len(model.train()(torch.randn(2, 3, 128, 128))) == 1


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (1, 3, 128, 120), (1, 1, 128, 128)])
def test_bad_input_sizes_are_errors(shape) -> None:
    with pytest.raises(ValueError, match=r"divisible by 32|takes \(B, 3, H, W\)"):
        small_centernet()(torch.randn(shape))


def test_heatmap_branches_start_at_the_official_bias(full_centernet, full_cornernet) -> None:
    for heads in full_centernet.heads:
        assert torch.all(heads["hm"][2].bias == HEATMAP_BIAS)
        assert not torch.any(heads["wh"][2].bias == HEATMAP_BIAS)
    for branch in (*full_cornernet.top_left, *full_cornernet.bottom_right):
        for name, head in branch.heads.items():
            assert torch.all(head[2].bias == HEATMAP_BIAS) == name.endswith("heat")
    assert HEATMAP_BIAS == -2.19


# ---- official names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("official", "ours", "to_ours"),
    [
        ("pre.0.conv.weight", "trunk.stem.conv.weight", centernet_name_to_ours),
        ("pre.1.skip.1.running_var", "trunk.stem.residual.skip.1.running_var", centernet_name_to_ours),
        (
            "kps.1.low2.low2.low2.low2.low2.3.conv2.weight",
            "trunk.hourglasses.1.inner.inner.inner.inner.inner.3.conv2.weight",
            centernet_name_to_ours,
        ),
        ("kps.0.low2.low3.1.skip.0.weight", "trunk.hourglasses.0.inner.lower_out.1.skip.0.weight", None),
        ("kps.0.up1.0.bn1.bias", "trunk.hourglasses.0.upper.0.bn1.bias", None),
        ("kps.0.low1.0.skip.1.weight", "trunk.hourglasses.0.lower_in.0.skip.1.weight", None),
        ("cnvs.1.bn.running_mean", "trunk.features.1.1.running_mean", None),
        ("inters_.0.0.weight", "trunk.merge_inputs.0.0.weight", None),
        ("cnvs_.0.1.bias", "trunk.merge_features.0.1.bias", None),
        ("inters.0.conv1.weight", "trunk.merge_residuals.0.conv1.weight", None),
        ("hm.1.0.conv.bias", "heads.1.hm.0.bias", centernet_name_to_ours),
        ("reg.0.1.weight", "heads.0.reg.2.weight", centernet_name_to_ours),
        (
            "tl_cnvs.0.p1_conv1.bn.running_var",
            "top_left.0.pool.vertical.1.running_var",
            cornernet_name_to_ours,
        ),
        ("br_cnvs.1.p2_conv1.conv.weight", "bottom_right.1.pool.horizontal.0.weight", cornernet_name_to_ours),
        ("tl_cnvs.1.p_conv1.weight", "top_left.1.pool.pooled_conv.weight", cornernet_name_to_ours),
        ("br_cnvs.0.bn1.bias", "bottom_right.0.pool.shortcut_bn.bias", cornernet_name_to_ours),
        ("br_cnvs.0.conv2.bn.weight", "bottom_right.0.pool.out.1.weight", cornernet_name_to_ours),
        ("tl_heats.1.1.bias", "top_left.1.heads.tl_heat.2.bias", cornernet_name_to_ours),
        ("br_tags.0.0.conv.weight", "bottom_right.0.heads.br_tag.0.weight", cornernet_name_to_ours),
        ("br_regrs.1.1.weight", "bottom_right.1.heads.br_regr.2.weight", cornernet_name_to_ours),
    ],
)
def test_official_names_map_to_ours(official, ours, to_ours) -> None:
    for convert in [to_ours] if to_ours else [centernet_name_to_ours, cornernet_name_to_ours]:
        assert convert(official) == ours
    back = our_name_to_cornernet if to_ours is cornernet_name_to_ours else our_name_to_centernet
    assert back(ours) == official


@pytest.mark.parametrize("network", ["centernet", "cornernet"])
def test_the_full_size_official_layout_maps_one_to_one(network, full_centernet, full_cornernet) -> None:
    if network == "centernet":
        model, layout = full_centernet, official_centernet_layout(80, **FULL)
        to_ours, to_official = centernet_name_to_ours, our_name_to_centernet
    else:
        model, layout = full_cornernet, official_cornernet_layout(80, **FULL)
        to_ours, to_official = cornernet_name_to_ours, our_name_to_cornernet
    ours = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    converted = {to_ours(name): shape for name, shape in layout.items()}
    assert len(converted) == len(layout)  # no two official names on one of ours
    assert converted == ours
    assert {to_official(name) for name in ours} == set(layout)


def test_a_centernet_checkpoint_loads_name_for_name(tmp_path: Path) -> None:
    official = random_state(official_centernet_layout(SMALL_CLASSES, **SMALL))
    model = small_centernet()
    checkpoint = {"epoch": 50, "state_dict": {"module." + name: value for name, value in official.items()}}
    load_centernet_state_dict(model, checkpoint)
    state = model.state_dict()
    for name, value in official.items():
        assert torch.equal(state[centernet_name_to_ours(name)], value), name
    path = tmp_path / "ctdet_coco_hg.pth"
    torch.save(checkpoint, path)
    reloaded = CenterNetHourglass(SMALL_CLASSES, **SMALL, official_weights=path)
    for name, value in reloaded.state_dict().items():
        assert torch.equal(value, state[name]), name


def test_a_cornernet_snapshot_loads_name_for_name(tmp_path: Path) -> None:
    """As ``save_params`` writes it: ``DummyModule(model).state_dict()``, from PyTorch 0.4.0 (no
    ``num_batches_tracked``)."""
    official = random_state(official_cornernet_layout(SMALL_CLASSES, **SMALL), seed=1)
    snapshot = {
        "module." + name: value
        for name, value in official.items()
        if not name.endswith("num_batches_tracked")
    }
    path = tmp_path / "CornerNet_500000.pkl"
    torch.save(snapshot, path)
    model = small_cornernet()
    load_cornernet_weights(model, path)
    state = model.state_dict()
    for name, value in snapshot.items():
        assert torch.equal(state[cornernet_name_to_ours(name.removeprefix("module."))], value), name
    assert (
        convert_cornernet_state_dict(snapshot).keys()
        == convert_cornernet_state_dict(
            {name.removeprefix("module."): value for name, value in snapshot.items()}
        ).keys()
    )


def test_a_missing_key_is_named() -> None:
    official = random_state(official_cornernet_layout(SMALL_CLASSES, **SMALL))
    del official["tl_heats.1.1.bias"]
    with pytest.raises(
        ValueError, match=r"1 missing: tl_heats\.1\.1\.bias \(ours top_left\.1\.heads\.tl_heat"
    ):
        load_cornernet_state_dict(small_cornernet(), official)


def test_a_mis_shaped_key_is_named() -> None:
    official = random_state(official_centernet_layout(SMALL_CLASSES, **SMALL))
    official["hm.0.1.weight"] = torch.zeros(20, 16, 1, 1)
    with pytest.raises(
        ValueError,
        match=r"1 with other shapes: hm\.0\.1\.weight \(20, 16, 1, 1\) \(ours heads\.0\.hm\.2\.weight "
        r"\(5, 16, 1, 1\)\)",
    ):
        load_centernet_state_dict(small_centernet(), official)


def test_an_unexpected_key_is_named() -> None:
    official = random_state(official_centernet_layout(SMALL_CLASSES, **SMALL))
    official["kps.0.up1.0.conv1.bias"] = torch.zeros(16)
    with pytest.raises(ValueError, match=r"1 unexpected: kps\.0\.up1\.0\.conv1\.bias \(ours trunk"):
        load_centernet_state_dict(small_centernet(), official)


def test_names_of_another_layout_are_named(tmp_path: Path) -> None:
    cornernet = random_state(official_cornernet_layout(SMALL_CLASSES, **SMALL))
    with pytest.raises(
        ValueError, match=r"not in the official CenterNet .*tl_cnvs\.0\.p1_conv1\.conv\.weight"
    ):
        convert_centernet_state_dict(cornernet)
    with pytest.raises(ValueError, match=r"mixes 'module\.' names"):
        convert_cornernet_state_dict(
            {"module.pre.0.conv.weight": torch.zeros(1), "pre.0.bn.weight": torch.zeros(1)}
        )
    with pytest.raises(FileNotFoundError, match=r"ctdet_coco_hg\.pth"):
        load_centernet_weights(small_centernet(), tmp_path / "absent.pth")
