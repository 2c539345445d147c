"""RetinaFace's network (models/retinaface.py) and the loader of the released weights
(models/retinaface_official_weights.py).

The parameter counts are those of the implementation's networks (github.com/biubug6/Pytorch_Retinaface @
b984b4b, ``models/retinaface.py`` ``RetinaFace(cfg_mnet)`` / ``RetinaFace(cfg_re50)`` with
``pretrain=False``, torch 2.14 / torchvision 0.29). ``official_layout`` below writes the implementation's
state-dict names and shapes down from reading its code (``models/net.py``, ``models/retinaface.py``,
torchvision's ``IntermediateLayerGetter`` and ``resnet50``); it was checked, name for name, shape for shape
and in order, against the ``state_dict()`` of the instantiated implementation, and with the same weights the
implementation's and our outputs were equal to the bit (MobileNet at 640x640, ResNet-50 at 333x250; outside
this repository: no implementation code is here). ``official_mobilenet_forward`` computes the
implementation's forward pass on those names with torch.nn.functional, following its ``forward`` methods.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from models.retinaface_network import RETINAFACE_PRESETS, RetinaFaceNetwork, anchor_count
from models.retinaface_official_weights import describe_checkpoint, load_official_state_dict

Layout = list[tuple[str, tuple[int, ...]]]
OFFICIAL_PARAMETERS = {"mobilenet0.25": 426_608, "resnet50": 27_293_600}
# (in, out, stride) of the implementation's MobileNetV1 blocks after stage1's first conv_bn(3, 8, 2)
MOBILENET_BLOCKS = {
    "stage1": [(8, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1)],
    "stage2": [(64, 128, 2)] + [(128, 128, 1)] * 5,
    "stage3": [(128, 256, 2), (256, 256, 1)],
}


@functools.cache
def model(backbone: str) -> RetinaFaceNetwork:
    torch.manual_seed(0)
    return RetinaFaceNetwork(backbone).eval()


def batch_norm(prefix: str, channels: int) -> Layout:
    return [
        (f"{prefix}.{leaf}", (channels,)) for leaf in ("weight", "bias", "running_mean", "running_var")
    ] + [(f"{prefix}.num_batches_tracked", ())]


def conv_bn(prefix: str, c_in: int, c_out: int, kernel: int, groups: int = 1) -> Layout:
    """``conv_bn`` / ``conv_bn1X1`` / ``conv_bn_no_relu``: Sequential(Conv2d (no bias), BN[, LeakyReLU])."""
    return [
        (f"{prefix}.0.weight", (c_out, c_in // groups, kernel, kernel)),
        *batch_norm(f"{prefix}.1", c_out),
    ]


def mobilenet_layout() -> Layout:
    layout = conv_bn("body.stage1.0", 3, 8, 3)
    for stage, blocks in MOBILENET_BLOCKS.items():
        first = 1 if stage == "stage1" else 0
        for index, (c_in, c_out, _) in enumerate(blocks, start=first):
            prefix = f"body.{stage}.{index}"  # conv_dw: 0 depthwise, 1 BN, 2 act, 3 pointwise, 4 BN, 5 act
            layout += [(f"{prefix}.0.weight", (c_in, 1, 3, 3)), *batch_norm(f"{prefix}.1", c_in)]
            layout += [(f"{prefix}.3.weight", (c_out, c_in, 1, 1)), *batch_norm(f"{prefix}.4", c_out)]
    return layout


def resnet50_layout() -> Layout:
    layout = [("body.conv1.weight", (64, 3, 7, 7)), *batch_norm("body.bn1", 64)]
    c_in = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True), start=1):
        for block in range(blocks):
            prefix = f"body.layer{stage}.{block}"
            layout += [(f"{prefix}.conv1.weight", (width, c_in, 1, 1)), *batch_norm(f"{prefix}.bn1", width)]
            layout += [(f"{prefix}.conv2.weight", (width, width, 3, 3)), *batch_norm(f"{prefix}.bn2", width)]
            layout += [
                (f"{prefix}.conv3.weight", (4 * width, width, 1, 1)),
                *batch_norm(f"{prefix}.bn3", 4 * width),
            ]
            if block == 0:
                layout += [(f"{prefix}.downsample.0.weight", (4 * width, c_in, 1, 1))]
                layout += batch_norm(f"{prefix}.downsample.1", 4 * width)
            c_in = 4 * width
    return layout


def official_layout(backbone: str) -> Layout:
    """The implementation's ``RetinaFace(cfg).state_dict()`` names and shapes, in order."""
    in_channel, out = {"mobilenet0.25": (32, 64), "resnet50": (256, 256)}[backbone]  # cfg_mnet, cfg_re50
    layout = mobilenet_layout() if backbone == "mobilenet0.25" else resnet50_layout()
    for level in (1, 2, 3):
        layout += conv_bn(f"fpn.output{level}", in_channel * 2**level, out, 1)
    layout += conv_bn("fpn.merge1", out, out, 3) + conv_bn("fpn.merge2", out, out, 3)
    for level in (1, 2, 3):
        layout += conv_bn(f"ssh{level}.conv3X3", out, out // 2, 3)
        layout += conv_bn(f"ssh{level}.conv5X5_1", out, out // 4, 3)
        for name in ("conv5X5_2", "conv7X7_2", "conv7x7_3"):
            layout += conv_bn(f"ssh{level}.{name}", out // 4, out // 4, 3)
    for head, values in (("ClassHead", 2), ("BboxHead", 4), ("LandmarkHead", 10)):
        for level in range(3):
            layout += [(f"{head}.{level}.conv1x1.weight", (2 * values, out, 1, 1))]
            layout += [(f"{head}.{level}.conv1x1.bias", (2 * values,))]
    return layout


def official_state_dict(backbone: str, seed: int = 1, prefix: str = "") -> dict[str, Tensor]:
    """Random weights in the implementation's layout, BN statistics kept plausible (variance > 0)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in official_layout(backbone):
        if name.endswith("num_batches_tracked"):
            value = torch.tensor(100)
        elif name.endswith("running_var"):
            value = torch.rand(shape, generator=generator) + 0.5
        else:
            scale = 0.1 if len(shape) == 4 else 0.3
            gamma = len(shape) == 1 and name.endswith(".weight")  # a BN weight
            value = torch.randn(shape, generator=generator) * scale + (1.0 if gamma else 0.0)
        state[prefix + name] = value
    return state


def official_mobilenet_forward(state: dict[str, Tensor], images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The implementation's eval-mode forward (``phase='train'``: raw logits) with functional ops."""

    def conv_bn_act(
        prefix: str, x: Tensor, stride: int = 1, slope: float | None = 0.1, index: int = 0
    ) -> Tensor:
        weight = state[f"{prefix}.{index}.weight"]
        x = F.conv2d(
            x, weight, stride=stride, padding=weight.shape[-1] // 2, groups=x.shape[1] // weight.shape[1]
        )
        bn = f"{prefix}.{index + 1}"
        x = F.batch_norm(
            x,
            state[f"{bn}.running_mean"],
            state[f"{bn}.running_var"],
            state[f"{bn}.weight"],
            state[f"{bn}.bias"],
        )
        return x if slope is None else F.leaky_relu(x, slope)

    x, levels = conv_bn_act("body.stage1.0", images, stride=2), []
    for stage, blocks in MOBILENET_BLOCKS.items():
        for index, (_, _, stride) in enumerate(blocks, start=1 if stage == "stage1" else 0):
            x = conv_bn_act(f"body.{stage}.{index}", x, stride=stride)
            x = conv_bn_act(f"body.{stage}.{index}", x, index=3)
        levels.append(x)
    out1, out2, out3 = (conv_bn_act(f"fpn.output{i + 1}", level) for i, level in enumerate(levels))
    out2 = conv_bn_act("fpn.merge2", out2 + F.interpolate(out3, size=out2.shape[-2:], mode="nearest"))
    out1 = conv_bn_act("fpn.merge1", out1 + F.interpolate(out2, size=out1.shape[-2:], mode="nearest"))
    features = []
    for level, x in enumerate((out1, out2, out3), start=1):
        shared = conv_bn_act(f"ssh{level}.conv5X5_1", x)
        conv3 = conv_bn_act(f"ssh{level}.conv3X3", x, slope=None)
        conv5 = conv_bn_act(f"ssh{level}.conv5X5_2", shared, slope=None)
        conv7 = conv_bn_act(f"ssh{level}.conv7x7_3", conv_bn_act(f"ssh{level}.conv7X7_2", shared), slope=None)
        features.append(F.relu(torch.cat([conv3, conv5, conv7], dim=1)))

    def heads(name: str, values: int) -> Tensor:
        outputs = []
        for level, x in enumerate(features):
            y = F.conv2d(x, state[f"{name}.{level}.conv1x1.weight"], state[f"{name}.{level}.conv1x1.bias"])
            outputs.append(y.permute(0, 2, 3, 1).reshape(x.shape[0], -1, values))
        return torch.cat(outputs, dim=1)

    return heads("BboxHead", 4), heads("ClassHead", 2), heads("LandmarkHead", 10)


@pytest.mark.parametrize("backbone", sorted(OFFICIAL_PARAMETERS))
def test_parameter_count_and_layout_equal_the_implementation(backbone: str) -> None:
    net = model(backbone)
    assert sum(p.numel() for p in net.parameters()) == OFFICIAL_PARAMETERS[backbone]
    ours = [(name, tuple(value.shape)) for name, value in net.state_dict().items()]
    assert ours == official_layout(backbone)
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    layout_parameters = sum(
        torch.Size(shape).numel() for name, shape in official_layout(backbone) if not name.endswith(buffers)
    )
    assert layout_parameters == OFFICIAL_PARAMETERS[backbone]


@pytest.mark.parametrize(
    ("backbone", "size"),
    [("mobilenet0.25", (640, 640)), ("resnet50", (320, 320)), ("mobilenet0.25", (333, 250))],
)
def test_output_shapes_and_anchor_counts(backbone: str, size: tuple[int, int]) -> None:
    net = model(backbone)
    with torch.no_grad():
        boxes, logits, landmarks = net(torch.randn(1, 3, *size))
    anchors = anchor_count(*size)
    if size == (640, 640):
        assert anchors == (80 * 80 + 40 * 40 + 20 * 20) * 2 == 16_800
    elif size == (320, 320):  # ResNet-50 smaller than 640 to keep the test fast; same formula
        assert anchors == (40 * 40 + 20 * 20 + 10 * 10) * 2
    else:  # the implementation's PriorBox: ceil(side / stride) cells per level
        assert anchors == 2 * (42 * 32 + 21 * 16 + 11 * 8)
    assert (boxes.shape, logits.shape, landmarks.shape) == (
        (1, anchors, 4),
        (1, anchors, 2),
        (1, anchors, 10),
    )
    assert RetinaFaceNetwork.strides == (8, 16, 32)


def test_anchor_order_is_level_by_level_row_major_two_per_cell() -> None:
    """Level l's cell (y, x) anchor a is at offset_l + 2 * (y * W_l + x) + a, as the implementation's."""
    net = RetinaFaceNetwork("mobilenet0.25").eval()
    height, width = 64, 96
    sizes = [(height // s, width // s) for s in RetinaFaceNetwork.strides]

    def position_map(level: int):
        def hook(module, inputs, output: Tensor) -> Tensor:
            h, w = output.shape[-2:]
            fake = torch.zeros_like(output)
            fake[:, 0] = torch.arange(h * w, dtype=output.dtype).reshape(h, w) + 1000 * level
            return fake

        return hook

    handles = [getattr(net, f"ssh{level}").register_forward_hook(position_map(level)) for level in (1, 2, 3)]
    with torch.no_grad():
        for head in net.ClassHead:
            head.conv1x1.weight.zero_()
            head.conv1x1.weight[:, 0] = 1.0
            head.conv1x1.bias.copy_(torch.tensor([0.0, 0.0, 0.5, 0.5]))  # anchor 0: +0, anchor 1: +0.5
        logits = net(torch.randn(1, 3, height, width))[1][0, :, 0]
    for handle in handles:
        handle.remove()
    expected = [
        1000 * level + cell + 0.5 * anchor
        for level, (h, w) in enumerate(sizes, start=1)
        for cell in range(h * w)
        for anchor in (0, 1)
    ]
    assert logits.tolist() == expected


def test_class_output_is_raw_logits_in_eval_and_train() -> None:
    """The implementation softmaxes in ``phase='test'``; ours never does (the decoder does)."""
    net = RetinaFaceNetwork("mobilenet0.25")
    with torch.no_grad():
        for head in net.ClassHead:
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.fill_(5.0)
    for mode in (True, False):
        net.train(mode)
        logits = net(torch.randn(2, 3, 64, 64))[1]
        assert torch.equal(logits, torch.full_like(logits, 5.0))


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_state_dict_loads_strictly_and_computes_the_implementation_forward(prefix: str) -> None:
    state = official_state_dict("mobilenet0.25")
    net = RetinaFaceNetwork("mobilenet0.25")
    load_official_state_dict(net, {prefix + name: value for name, value in state.items()})
    loaded = net.state_dict()
    assert all(torch.equal(loaded[name], value) for name, value in state.items())
    net.load_state_dict(state, strict=True)  # plain names are ours already
    images = torch.randn(2, 3, 96, 128) * 50
    with torch.no_grad():
        ours = net.eval()(images)
        official = official_mobilenet_forward(state, images)
    for mine, theirs in zip(ours, official, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)


def test_official_weights_file_loads_into_resnet50(tmp_path) -> None:
    prefix = "module."  # a DataParallel file, as released
    state = official_state_dict("resnet50", prefix=prefix)
    path = tmp_path / "Resnet50_Final.pth"
    torch.save(state, path)
    net = RetinaFaceNetwork("resnet50", official_weights=path)
    name = "LandmarkHead.2.conv1x1.weight"
    assert torch.equal(net.state_dict()[name], state[prefix + name])
    assert net.config == RETINAFACE_PRESETS["resnet50"]


def test_wrapped_checkpoint_and_missing_file(tmp_path) -> None:
    path = tmp_path / "mobilenet0.25_Final.pth"
    state = official_state_dict("mobilenet0.25", prefix="module.")
    torch.save({"state_dict": state}, path)
    net = RetinaFaceNetwork("mobilenet0.25", official_weights=path)
    assert torch.equal(net.state_dict()["ssh3.conv7x7_3.0.weight"], state["module.ssh3.conv7x7_3.0.weight"])
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth"):
        RetinaFaceNetwork("mobilenet0.25", official_weights=tmp_path / "nowhere.pth")


def test_missing_unexpected_and_misshaped_keys_are_named() -> None:
    net = RetinaFaceNetwork("mobilenet0.25")
    before = net.state_dict()["fpn.merge1.0.weight"].clone()
    state = official_state_dict("mobilenet0.25", prefix="module.")
    del state["module.ssh2.conv5X5_2.1.running_var"]
    with pytest.raises(ValueError, match=r"1 missing: ssh2\.conv5X5_2\.1\.running_var"):
        load_official_state_dict(net, state)
    state = official_state_dict("mobilenet0.25")
    state["LandmarkHead.1.conv1x1.weight"] = torch.zeros(30, 64, 1, 1)  # three anchors per cell
    with pytest.raises(
        ValueError, match=r"with other shapes: LandmarkHead\.1\.conv1x1\.weight \(30, 64, 1, 1\)"
    ):
        load_official_state_dict(net, state)
    state = official_state_dict("mobilenet0.25")
    state["body.fc.weight"] = torch.zeros(1000, 256)  # MobileNetV1's classifier is not part of the detector
    with pytest.raises(ValueError, match=r"1 unexpected: body\.fc\.weight"):
        load_official_state_dict(net, state)
    assert torch.equal(net.state_dict()["fpn.merge1.0.weight"], before)  # nothing loaded on errors


def test_other_backbone_is_an_error_that_says_so() -> None:
    resnet_state = official_state_dict("resnet50")
    assert describe_checkpoint(resnet_state) == "resnet50, out_channel 256"
    with pytest.raises(
        ValueError, match=r"mobilenet0\.25, out_channel 64; the checkpoint looks like resnet50"
    ):
        load_official_state_dict(model("mobilenet0.25"), resnet_state)


def test_unknown_backbone() -> None:
    with pytest.raises(ValueError, match=r"mobilenet0\.25"):
        RetinaFaceNetwork("resnet18")
