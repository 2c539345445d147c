"""models/transformer_net.py: the pytorch/examples fast_neural_style TransformerNet -- parameter count,
shapes, and its released style models (state dicts saved by torch < 0.4) loading name for name.

The official layout below is read off pytorch/examples ``fast_neural_style/neural_style/transformer_net.py``
(names and shapes only; none of its code is here): ``ConvLayer``/``UpsampleConvLayer`` hold ``conv2d``,
norms are ``InstanceNorm2d(affine=True)`` named ``in<k>``, and the released ``.pth`` files also carry
``in*.running_mean`` / ``in*.running_var``, which the example's ``neural_style.py`` deletes before loading.
"""

import pytest
import torch

from models.transformer_net import (
    TransformerNet,
    convert_official_style_state_dict,
    load_official_style_model,
)

RESIDUAL_BLOCKS = [f"res{index}" for index in range(1, 6)]
# official conv name -> (out_channels, in_channels, kernel)
OFFICIAL_CONVS = {
    "conv1": (32, 3, 9),
    "conv2": (64, 32, 3),
    "conv3": (128, 64, 3),
    **{f"{block}.{conv}": (128, 128, 3) for block in RESIDUAL_BLOCKS for conv in ("conv1", "conv2")},
    "deconv1": (64, 128, 3),
    "deconv2": (32, 64, 3),
    "deconv3": (3, 32, 9),
}
# official instance norm name -> channels
OFFICIAL_NORMS = {
    "in1": 32,
    "in2": 64,
    "in3": 128,
    **{f"{block}.{norm}": 128 for block in RESIDUAL_BLOCKS for norm in ("in1", "in2")},
    "in4": 64,
    "in5": 32,
}


def official_style_state_dict(seed: int = 0, stale_statistics: bool = True) -> dict[str, torch.Tensor]:
    """Random tensors under every name (and shape) of a released pytorch/examples style model."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, (out_channels, in_channels, kernel) in OFFICIAL_CONVS.items():
        state[f"{name}.conv2d.weight"] = torch.randn(
            out_channels, in_channels, kernel, kernel, generator=generator
        )
        state[f"{name}.conv2d.bias"] = torch.randn(out_channels, generator=generator)
    for name, channels in OFFICIAL_NORMS.items():
        leaves = ("weight", "bias", "running_mean", "running_var") if stale_statistics else ("weight", "bias")
        for leaf in leaves:
            state[f"{name}.{leaf}"] = torch.randn(channels, generator=generator)
    return state


def test_full_size_parameter_count() -> None:
    """pytorch/examples' TransformerNet has 1,679,235 parameters (its conv and IN affine tensors)."""
    official = sum(o * i * k * k + o for o, i, k in OFFICIAL_CONVS.values()) + sum(
        2 * c for c in OFFICIAL_NORMS.values()
    )
    assert official == 1_679_235
    assert sum(p.numel() for p in TransformerNet().parameters()) == 1_679_235


def test_output_has_the_input_size_and_range_convention() -> None:
    model = TransformerNet().eval()
    images = torch.rand(2, 3, 32, 48) * 255
    with torch.no_grad():
        output = model(images)
    assert output.shape == images.shape
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\) RGB in 0..255"):
        model(torch.rand(3, 32, 32))


def test_official_style_model_loads_every_tensor() -> None:
    official = official_style_state_dict()
    model = TransformerNet()
    load_official_style_model(model, official)
    loaded = model.state_dict()
    stale = {name for name in official if name.endswith(("running_mean", "running_var"))}
    assert len(stale) == 2 * len(OFFICIAL_NORMS)
    assert set(loaded) == set(official) - stale
    for name, value in loaded.items():
        assert torch.equal(value, official[name]), name


def test_state_dict_without_stale_statistics_loads_too() -> None:
    """A model trained with today's example (no running statistics) loads as well, and round-trips."""
    official = official_style_state_dict(seed=1, stale_statistics=False)
    assert convert_official_style_state_dict(official) == official
    model = TransformerNet()
    load_official_style_model(model, official)
    assert all(torch.equal(value, official[name]) for name, value in model.state_dict().items())


def test_wrong_missing_or_mis_shaped_names_are_named() -> None:
    model = TransformerNet()
    renamed = official_style_state_dict()
    renamed["deconv1.conv.weight"] = renamed.pop("deconv1.conv2d.weight")
    with pytest.raises(
        ValueError, match=r"1 missing: deconv1\.conv2d\.weight; 1 unexpected: deconv1\.conv\.weight"
    ):
        load_official_style_model(model, renamed)
    reshaped = official_style_state_dict()
    reshaped["in4.weight"] = torch.zeros(32)
    with pytest.raises(ValueError, match=r"other shapes: in4\.weight \(32,\) \(ours \(64,\)\)"):
        load_official_style_model(model, reshaped)
    # a BatchNorm-era running statistic is dropped only under an instance-norm name
    extra = official_style_state_dict()
    extra["res1.conv1.conv2d.running_mean"] = torch.zeros(128)
    with pytest.raises(ValueError, match=r"unexpected: res1\.conv1\.conv2d\.running_mean"):
        load_official_style_model(model, extra)


def test_a_saved_style_model_file_loads_through_the_constructor(tmp_path) -> None:
    official = official_style_state_dict(seed=2)
    path = tmp_path / "candy.pth"
    torch.save(official, path)
    loaded = TransformerNet(official_weights=path).state_dict()
    for name, value in loaded.items():
        assert torch.equal(value, official[name]), name
    with pytest.raises(FileNotFoundError, match=r"mosaic\.pth not found.*pytorch/examples"):
        TransformerNet(official_weights=tmp_path / "mosaic.pth")
