"""CenterNet's ResNet and DLA-34 networks (models/centernet_resnet.py, models/dla.py) and the official
checkpoint converter (models/centernet_official_weights.py).

The parameter counts are those of the official networks (github.com/xingyizhou/CenterNet @ master,
``msra_resnet.py`` / ``resnet_dcn.py`` ``PoseResNet``, ``pose_dla_dcn.py`` ``DLASeg``), instantiated with
heads hm 80, wh 2, reg 2, head_conv 64 (ResNets) / 256 (DLA), torch 2.14, DCNv2's ``DCN`` parameters
(weight, bias, conv_offset_mask).

``official_*_layout`` below write the official state-dict names and shapes down from reading that code
(no official code is here); they were checked, name for name, shape for shape and in order, against the
``state_dict()`` of the instantiated official networks. ``official_*_forward`` compute the official
forward passes on those names with torch.nn.functional (DCN as ``deform_conv2d`` with the official
offset/mask split), following the official ``forward`` methods, so the converter test checks that every
tensor lands where the official network used it.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models import resnet18
from torchvision.ops import deform_conv2d

from models.centernet_official_weights import (
    convert_official_state_dict,
    load_official_state_dict,
    load_official_weights,
    model_arch,
    official_name_to_ours,
    our_name_to_official,
)
from models.centernet_resnet import CENTERNET_RESNET_PRESETS, CenterNetResNet
from models.dla import CENTERNET_DLA_PRESETS, CenterNetDLA
from models.keypoint_heads import HEATMAP_BIAS
from models.state_dict_fit import state_dict_problems

Layout = list[tuple[str, tuple[int, ...]]]
HEADS = {"hm": 80, "wh": 2, "reg": 2}
OFFICIAL_PARAMETERS = {
    "res_18": 15_820_372,
    "resdcn_18": 14_437_349,
    "res_101": 53_435_476,
    "resdcn_101": 49_673_189,
    "dla_34": 19_675_892,  # without the unused ImageNet classifier base.fc
}
DLA_CLASSIFIER_PARAMETERS = 512 * 1000 + 1000


def build(arch: str, **kwargs) -> torch.nn.Module:
    if arch in CENTERNET_DLA_PRESETS:
        return CenterNetDLA(**{**CENTERNET_DLA_PRESETS[arch], **kwargs})
    return CenterNetResNet(**{**CENTERNET_RESNET_PRESETS[arch], **kwargs})


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- the official layouts, read off the official code ---------------------------------------------------


def conv(name: str, out_ch: int, in_ch: int, k: int, bias: bool = False) -> Layout:
    return [(f"{name}.weight", (out_ch, in_ch, k, k))] + ([(f"{name}.bias", (out_ch,))] if bias else [])


def bn(name: str, channels: int) -> Layout:
    stats = ("weight", "bias", "running_mean", "running_var")
    return [(f"{name}.{s}", (channels,)) for s in stats] + [(f"{name}.num_batches_tracked", ())]


def dcn(name: str, in_ch: int, out_ch: int) -> Layout:
    """DCNv2 ``DCN(in, out, 3, stride 1, padding 1)``: weight, bias, ``conv_offset_mask`` (27 = 3 x 9)."""
    return conv(name, out_ch, in_ch, 3, bias=True) + conv(f"{name}.conv_offset_mask", 27, in_ch, 3, bias=True)


def heads(in_ch: int, head_ch: int, sort: bool = False) -> Layout:
    """The head branches, in the order of ``heads`` (msra_resnet.py builds them in ``sorted`` order)."""
    return [
        entry
        for head, out_ch in (sorted(HEADS.items()) if sort else HEADS.items())
        for entry in conv(f"{head}.0", head_ch, in_ch, 3, bias=True)
        + conv(f"{head}.2", out_ch, head_ch, 1, True)
    ]


def official_resnet_layout(depth: int, deformable: bool) -> Layout:
    """``PoseResNet``: conv1, bn1, layer1-4 (torchvision's names), deconv_layers (flat Sequential), heads."""
    bottleneck, blocks = {18: (False, (2, 2, 2, 2)), 101: (True, (3, 4, 23, 3))}[depth]
    expansion = 4 if bottleneck else 1
    layout, in_ch = conv("conv1", 64, 3, 7) + bn("bn1", 64), 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), start=1):
        for index in range(count):
            name = f"layer{stage}.{index}"
            if bottleneck:
                widths = ((planes, in_ch, 1), (planes, planes, 3), (planes * 4, planes, 1))
            else:
                widths = ((planes, in_ch, 3), (planes, planes, 3))
            for i, (out_ch, c, k) in enumerate(widths, start=1):
                layout += conv(f"{name}.conv{i}", out_ch, c, k) + bn(f"{name}.bn{i}", out_ch)
            if index == 0 and (stage > 1 or in_ch != planes * expansion):
                layout += conv(f"{name}.downsample.0", planes * expansion, in_ch, 1)
                layout += bn(f"{name}.downsample.1", planes * expansion)
            in_ch = planes * expansion
    for stage, out_ch in enumerate((256, 128, 64) if deformable else (256, 256, 256)):
        if deformable:  # DCN, BN, ReLU, ConvTranspose2d(out, out), BN, ReLU
            layout += dcn(f"deconv_layers.{6 * stage}", in_ch, out_ch) + bn(
                f"deconv_layers.{6 * stage + 1}", out_ch
            )
            layout += [(f"deconv_layers.{6 * stage + 3}.weight", (out_ch, out_ch, 4, 4))]
            layout += bn(f"deconv_layers.{6 * stage + 4}", out_ch)
        else:  # ConvTranspose2d(in, out), BN, ReLU
            layout += [(f"deconv_layers.{3 * stage}.weight", (in_ch, out_ch, 4, 4))]
            layout += bn(f"deconv_layers.{3 * stage + 1}", out_ch)
        in_ch = out_ch
    return layout + heads(in_ch, 64, sort=not deformable)


def tree_layout(
    name: str, levels: int, in_ch: int, out_ch: int, level_root: bool, root_dim: int = 0
) -> Layout:
    """The official ``Tree``: tree1, tree2 (BasicBlocks or subtrees), root (depth 1), project."""
    root_dim = (root_dim or 2 * out_ch) + (in_ch if level_root else 0)
    if levels == 1:
        layout = []
        for child, c in (("tree1", in_ch), ("tree2", out_ch)):
            layout += conv(f"{name}.{child}.conv1", out_ch, c, 3) + bn(f"{name}.{child}.bn1", out_ch)
            layout += conv(f"{name}.{child}.conv2", out_ch, out_ch, 3) + bn(f"{name}.{child}.bn2", out_ch)
        layout += conv(f"{name}.root.conv", out_ch, root_dim, 1) + bn(f"{name}.root.bn", out_ch)
    else:
        layout = tree_layout(f"{name}.tree1", levels - 1, in_ch, out_ch, False)
        layout += tree_layout(f"{name}.tree2", levels - 1, out_ch, out_ch, False, root_dim + out_ch)
    if in_ch != out_ch:
        layout += conv(f"{name}.project.0", out_ch, in_ch, 1) + bn(f"{name}.project.1", out_ch)
    return layout


# The IDAUp modules of DLASeg (down_ratio 4, last_level 5), worked out by hand from DLAUp.__init__ (whose
# in_channels list is updated in place) and DLASeg.__init__: width o, then (in channels, up factor) of
# proj_j / up_j / node_j for j = 1, 2, ...
OFFICIAL_IDA = {
    "dla_up.ida_0": (256, ((512, 2),)),
    "dla_up.ida_1": (128, ((256, 2), (256, 2))),
    "dla_up.ida_2": (64, ((128, 2), (128, 2), (128, 2))),
    "ida_up": (64, ((128, 2), (256, 4))),
}


def official_dla_layout(classifier: bool = True) -> Layout:
    """``DLASeg('dla34', ...)``: base (with the fc ``load_pretrained_model`` adds), dla_up, ida_up, heads;
    each ``DeformConv`` registers its ``actf`` (BN, ReLU) before its ``conv``."""
    layout = conv("base.base_layer.0", 16, 3, 7) + bn("base.base_layer.1", 16)
    layout += conv("base.level0.0", 16, 16, 3) + bn("base.level0.1", 16)
    layout += conv("base.level1.0", 32, 16, 3) + bn("base.level1.1", 32)
    trees = ((2, 1, 32, 64, False), (3, 2, 64, 128, True), (4, 2, 128, 256, True), (5, 1, 256, 512, True))
    for level, levels, in_ch, out_ch, level_root in trees:
        layout += tree_layout(f"base.level{level}", levels, in_ch, out_ch, level_root)
    if classifier:
        layout += conv("base.fc", 1000, 512, 1, bias=True)
    for name, (width, inputs) in OFFICIAL_IDA.items():
        for j, (in_ch, factor) in enumerate(inputs, start=1):
            layout += bn(f"{name}.proj_{j}.actf.0", width) + dcn(f"{name}.proj_{j}.conv", in_ch, width)
            layout += [(f"{name}.up_{j}.weight", (width, 1, 2 * factor, 2 * factor))]
            layout += bn(f"{name}.node_{j}.actf.0", width) + dcn(f"{name}.node_{j}.conv", width, width)
    return layout + heads(64, 256)


def official_layout(arch: str) -> Layout:
    if arch == "dla_34":
        return official_dla_layout()
    settings = CENTERNET_RESNET_PRESETS[arch]
    return official_resnet_layout(int(settings["depth"]), bool(settings["deformable"]))


def official_state_dict(layout: Layout, seed: int = 0) -> dict[str, Tensor]:
    """Values that keep activations in range and make every tensor matter: He-scaled conv weights (the
    offset/mask convs' smaller, so the sampling offsets are a fraction of a pixel to a few pixels),
    BatchNorm scales in [0.5, 1], variances in [0.5, 1.5], small biases and means."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in layout:
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(shape, generator=generator)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            scale = 0.3 if "conv_offset_mask" in name else 1.0
            state[name] = torch.randn(shape, generator=generator) * scale / fan_in**0.5
        elif name.endswith("weight"):
            state[name] = 0.5 + 0.5 * torch.rand(shape, generator=generator)
        else:
            state[name] = 0.05 * torch.randn(shape, generator=generator)
    return state


@functools.cache
def _cached_official_state_dict(arch: str, seed: int) -> dict[str, Tensor]:
    return official_state_dict(official_layout(arch), seed)


def random_official(arch: str, seed: int = 0) -> dict[str, Tensor]:
    """``official_state_dict`` of ``arch`` (a fresh dict of shared tensors; none of the tests writes them)."""
    return dict(_cached_official_state_dict(arch, seed))


# --- the official forward passes, on the official names ----------------------------------------------


def f_conv(s: dict[str, Tensor], x: Tensor, name: str, stride: int = 1, padding: int = 0) -> Tensor:
    return F.conv2d(x, s[f"{name}.weight"], s.get(f"{name}.bias"), stride, padding)


def f_bn(s: dict[str, Tensor], x: Tensor, name: str) -> Tensor:
    w, b, m, v = (s[f"{name}.{k}"] for k in ("weight", "bias", "running_mean", "running_var"))
    return F.batch_norm(x, m, v, w, b, False, 0.0, 1e-5)


def f_dcn(s: dict[str, Tensor], x: Tensor, name: str) -> Tensor:
    o1, o2, mask = f_conv(s, x, f"{name}.conv_offset_mask", padding=1).chunk(3, dim=1)
    offset = torch.cat((o1, o2), dim=1)
    return deform_conv2d(x, offset, s[f"{name}.weight"], s[f"{name}.bias"], padding=1, mask=mask.sigmoid())


def f_up(s: dict[str, Tensor], x: Tensor, name: str, stride: int, padding: int, groups: int = 1) -> Tensor:
    return F.conv_transpose2d(x, s[f"{name}.weight"], None, stride, padding, groups=groups)


def f_heads(s: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
    return {h: f_conv(s, F.relu(f_conv(s, x, f"{h}.0", padding=1)), f"{h}.2") for h in HEADS}


def official_resnet18_forward(s: dict[str, Tensor], x: Tensor, deformable: bool) -> dict[str, Tensor]:
    x = F.max_pool2d(F.relu(f_bn(s, f_conv(s, x, "conv1", 2, 3), "bn1")), 3, 2, 1)
    for stage in range(1, 5):
        for index in range(2):
            name, stride = f"layer{stage}.{index}", 2 if stage > 1 and index == 0 else 1
            out = F.relu(f_bn(s, f_conv(s, x, f"{name}.conv1", stride, 1), f"{name}.bn1"))
            out = f_bn(s, f_conv(s, out, f"{name}.conv2", 1, 1), f"{name}.bn2")
            if f"{name}.downsample.0.weight" in s:
                x = f_bn(s, f_conv(s, x, f"{name}.downsample.0", stride), f"{name}.downsample.1")
            x = F.relu(out + x)
    for stage in range(3):
        if deformable:
            i = 6 * stage
            x = F.relu(f_bn(s, f_dcn(s, x, f"deconv_layers.{i}"), f"deconv_layers.{i + 1}"))
            x = F.relu(f_bn(s, f_up(s, x, f"deconv_layers.{i + 3}", 2, 1), f"deconv_layers.{i + 4}"))
        else:
            i = 3 * stage
            x = F.relu(f_bn(s, f_up(s, x, f"deconv_layers.{i}", 2, 1), f"deconv_layers.{i + 1}"))
    return f_heads(s, x)


def f_basic(s: dict[str, Tensor], x: Tensor, name: str, stride: int, residual: Tensor) -> Tensor:
    out = F.relu(f_bn(s, f_conv(s, x, f"{name}.conv1", stride, 1), f"{name}.bn1"))
    return F.relu(f_bn(s, f_conv(s, out, f"{name}.conv2", 1, 1), f"{name}.bn2") + residual)


def f_tree(
    s: dict[str, Tensor], x: Tensor, name: str, levels: int, stride: int, level_root: bool, children=None
) -> Tensor:
    children = [] if children is None else children
    bottom = F.max_pool2d(x, stride, stride) if stride > 1 else x
    residual = bottom
    if f"{name}.project.0.weight" in s:
        residual = f_bn(s, f_conv(s, bottom, f"{name}.project.0"), f"{name}.project.1")
    if level_root:
        children.append(bottom)
    if levels == 1:
        x1 = f_basic(s, x, f"{name}.tree1", stride, residual)
        x2 = f_basic(s, x1, f"{name}.tree2", 1, x1)
        return F.relu(
            f_bn(s, f_conv(s, torch.cat([x2, x1, *children], 1), f"{name}.root.conv"), f"{name}.root.bn")
        )
    x1 = f_tree(s, x, f"{name}.tree1", levels - 1, stride, False)
    children.append(x1)
    return f_tree(s, x1, f"{name}.tree2", levels - 1, 1, False, children)


def f_ida(s: dict[str, Tensor], layers: list[Tensor], name: str, start: int, end: int) -> None:
    """The official ``IDAUp.forward(layers, startp, endp)``: updates ``layers`` in place."""
    for i in range(start + 1, end):
        j = i - start
        projected = F.relu(f_bn(s, f_dcn(s, layers[i], f"{name}.proj_{j}.conv"), f"{name}.proj_{j}.actf.0"))
        width, _, size, _ = s[f"{name}.up_{j}.weight"].shape
        up = f_up(s, projected, f"{name}.up_{j}", size // 2, size // 4, groups=width)
        layers[i] = F.relu(
            f_bn(s, f_dcn(s, up + layers[i - 1], f"{name}.node_{j}.conv"), f"{name}.node_{j}.actf.0")
        )


def official_dla_forward(s: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
    x = F.relu(f_bn(s, f_conv(s, x, "base.base_layer.0", 1, 3), "base.base_layer.1"))
    x = F.relu(f_bn(s, f_conv(s, x, "base.level0.0", 1, 1), "base.level0.1"))
    x = F.relu(f_bn(s, f_conv(s, x, "base.level1.0", 2, 1), "base.level1.1"))
    layers = [x, x]  # levels 0 and 1 (unused by DLAUp beyond their count)
    for level, levels, level_root in ((2, 1, False), (3, 2, True), (4, 2, True), (5, 1, True)):
        layers.append(f_tree(s, layers[-1], f"base.level{level}", levels, 2, level_root))
    out = [layers[-1]]
    for i in range(3):  # DLAUp.forward, startp 2
        f_ida(s, layers, f"dla_up.ida_{i}", len(layers) - i - 2, len(layers))
        out.insert(0, layers[-1])
    y = [out[i].clone() for i in range(3)]  # DLASeg.forward, last_level 5
    f_ida(s, y, "ida_up", 0, len(y))
    return f_heads(s, y[-1])


# --- tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(OFFICIAL_PARAMETERS))
def test_parameter_counts_equal_the_official_networks(arch: str) -> None:
    model = build(arch)
    assert parameter_count(model) == OFFICIAL_PARAMETERS[arch]
    layout = official_layout(arch)
    official_count = sum(
        torch.Size(shape).numel()
        for name, shape in layout
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    classifier = DLA_CLASSIFIER_PARAMETERS if arch == "dla_34" else 0
    assert official_count == OFFICIAL_PARAMETERS[arch] + classifier


def test_dla_with_the_official_classifier() -> None:
    model = CenterNetDLA(classifier=True)
    assert parameter_count(model) == 20_188_892 == OFFICIAL_PARAMETERS["dla_34"] + DLA_CLASSIFIER_PARAMETERS


@pytest.mark.parametrize("arch", ["res_18", "resdcn_18", "dla_34"])
def test_outputs_at_stride_4_and_initial_heatmap_bias(arch: str) -> None:
    torch.manual_seed(0)
    model = build(arch).eval()
    assert model.output_stride == 4
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 64))
    assert isinstance(outputs, list) and len(outputs) == 1
    assert {k: tuple(v.shape) for k, v in outputs[0].items()} == {
        "hm": (1, 80, 16, 16),
        "wh": (1, 2, 16, 16),
        "reg": (1, 2, 16, 16),
    }
    assert torch.equal(model.heads["hm"][2].bias, torch.full((80,), HEATMAP_BIAS))
    for head in ("wh", "reg"):  # zero biases; msra_resnet.py (res) re-initialises only the last conv
        assert not model.heads[head][2].bias.any()
        assert not model.heads[head][0].bias.any() or arch == "res_18"


def test_constructor_settings() -> None:
    model = CenterNetResNet(depth=18, deformable=True, num_classes=20, head_channels=32)
    with torch.no_grad():
        outputs = model.eval()(torch.randn(2, 3, 96, 64))[0]
    assert tuple(outputs["hm"].shape) == (2, 20, 24, 16)
    assert model.heads["wh"][0].out_channels == 32
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(1, 3, 60, 64))
    with pytest.raises(ValueError, match="depth"):
        CenterNetResNet(depth=50)


def test_deformable_convs_start_as_plain_convs() -> None:
    """DCNv2 ``init_offset``: zero offsets, mask sigmoid(0) = 0.5 -> half a plain 3x3 conv."""
    conv = CenterNetResNet(18, deformable=True).upsample[0].conv
    assert not conv.conv_offset_mask.weight.any() and not conv.conv_offset_mask.bias.any()
    x = torch.randn(1, 512, 4, 4)
    expected = 0.5 * F.conv2d(x, conv.weight, None, padding=1) + conv.bias[:, None, None]
    torch.testing.assert_close(conv(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", sorted(OFFICIAL_PARAMETERS))
def test_official_layout_converts_to_exactly_our_names_and_shapes(arch: str) -> None:
    model = build(arch)
    a = model_arch(model)
    official = {name: torch.empty(shape, device="meta") for name, shape in official_layout(arch)}
    converted = convert_official_state_dict(official, a)
    assert state_dict_problems(model, converted) == []
    assert set(converted) == set(model.state_dict())
    for name in official:
        if not name.startswith("base.fc."):
            assert our_name_to_official(official_name_to_ours(name, a), a) == name


@pytest.mark.parametrize("arch", ["res_18", "resdcn_18", "dla_34"])
def test_official_weights_land_where_the_official_network_used_them(arch: str) -> None:
    official = random_official(arch)
    model = build(arch).eval()
    load_official_state_dict(model, {"module." + name: value for name, value in official.items()})
    ours = model.state_dict()
    for name, value in official.items():
        if not name.startswith("base.fc."):
            assert torch.equal(ours[official_name_to_ours(name, model_arch(model))], value), name
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        if arch == "dla_34":
            expected = official_dla_forward(official, images)
        else:
            expected = official_resnet18_forward(official, images, deformable=arch == "resdcn_18")
        outputs = model(images)[0]
    assert expected["hm"].std() > 0.01  # the random weights give non-trivial outputs
    for head in HEADS:
        torch.testing.assert_close(outputs[head], expected[head], rtol=1e-4, atol=1e-5)


def test_spot_checks_of_the_name_mapping() -> None:
    resdcn, dla = CenterNetResNet(18, deformable=True), CenterNetDLA()
    resnet = CenterNetResNet(18, deformable=False)
    pairs = [
        (resdcn, "deconv_layers.6.conv_offset_mask.weight", resdcn.upsample[1].conv.conv_offset_mask.weight),
        (resdcn, "deconv_layers.9.weight", resdcn.upsample[1].deconv.weight),
        (resdcn, "deconv_layers.16.running_var", resdcn.upsample[2].deconv_bn.running_var),
        (resdcn, "layer3.1.bn2.bias", resdcn.body.layer3[1].bn2.bias),
        (resnet, "deconv_layers.6.weight", resnet.upsample[2].deconv.weight),
        (resnet, "deconv_layers.4.bias", resnet.upsample[1].deconv_bn.bias),
        (dla, "dla_up.ida_2.proj_3.actf.0.running_mean", dla.dla_up.stages[2].project[2].bn.running_mean),
        (dla, "dla_up.ida_1.up_2.weight", dla.dla_up.stages[1].upsample[1].weight),
        (dla, "ida_up.node_2.conv.conv_offset_mask.bias", dla.ida_up.node[1].conv.conv_offset_mask.bias),
        (dla, "base.level4.tree2.root.conv.weight", dla.base.level4.tree2.root.conv.weight),
        (dla, "reg.2.bias", dla.heads["reg"][2].bias),
    ]
    for model, official, tensor in pairs:
        ours = official_name_to_ours(official, model_arch(model))
        assert model.state_dict()[ours].data_ptr() == tensor.data_ptr(), official


def test_checkpoint_file_with_module_prefix_and_classifier(tmp_path) -> None:
    official = random_official("dla_34")
    path = tmp_path / "ctdet_coco_dla_2x.pth"
    torch.save({"epoch": 230, "state_dict": {"module." + k: v for k, v in official.items()}}, path)
    model = CenterNetDLA()
    load_official_weights(model, path)  # base.fc.* dropped
    assert torch.equal(model.heads["hm"][2].weight, official["hm.2.weight"])
    with_classifier = CenterNetDLA(classifier=True)
    load_official_weights(with_classifier, path)
    assert torch.equal(with_classifier.base.fc.weight, official["base.fc.weight"])


def test_missing_and_mis_shaped_names_are_named() -> None:
    official = random_official("resdcn_18")
    missing = {k: v for k, v in official.items() if k != "deconv_layers.3.weight"}
    with pytest.raises(
        ValueError, match=r"1 missing: deconv_layers\.3\.weight \(ours upsample\.0\.deconv\.weight\)"
    ):
        load_official_state_dict(CenterNetResNet(18, deformable=True), missing)
    twenty_classes = {**official, "hm.2.weight": torch.zeros(20, 64, 1, 1), "hm.2.bias": torch.zeros(20)}
    with pytest.raises(
        ValueError, match=r"hm\.2\.weight \(20, 64, 1, 1\) \(ours heads\.hm\.2\.weight \(80, 64, 1, 1\)\)"
    ) as error:
        load_official_state_dict(CenterNetResNet(18, deformable=True), twenty_classes)
    assert "the checkpoint looks like resdcn_18 with heads hm 20, wh 2, reg 2" in str(error.value)
    dla = random_official("dla_34")
    del dla["dla_up.ida_1.proj_2.conv.conv_offset_mask.weight"]
    with pytest.raises(ValueError, match=r"dla_up\.ida_1\.proj_2\.conv\.conv_offset_mask\.weight"):
        load_official_state_dict(CenterNetDLA(), dla)


def test_another_architecture_is_named() -> None:
    official = {name: torch.empty(shape, device="meta") for name, shape in official_layout("dla_34")}
    with pytest.raises(ValueError, match="looks like dla_34"):
        load_official_state_dict(CenterNetResNet(18, deformable=True), official)
    plain = {name: torch.zeros(shape) for name, shape in official_layout("res_18")}
    with pytest.raises(ValueError, match="looks like res_18"):
        load_official_state_dict(CenterNetResNet(18, deformable=True), plain)


def test_imagenet_bodies_load(tmp_path) -> None:
    imagenet = resnet18(weights=None).state_dict()
    torch.save(imagenet, tmp_path / "resnet18.pth")
    model = CenterNetResNet(18, deformable=True)
    model.load_imagenet_weights(tmp_path / "resnet18.pth")
    assert torch.equal(model.body.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])
    official = random_official("dla_34")
    dla34 = {k.removeprefix("base."): v for k, v in official.items() if k.startswith("base.")}
    torch.save(dla34, tmp_path / "dla34-ba72cf86.pth")
    dla = CenterNetDLA()
    dla.load_imagenet_weights(tmp_path / "dla34-ba72cf86.pth")
    assert torch.equal(dla.base.level5.root.conv.weight, dla34["level5.root.conv.weight"])
    with pytest.raises(FileNotFoundError, match=r"dl\.yf\.io"):
        dla.load_imagenet_weights(tmp_path / "absent.pth")
