"""models/hourglass.py: the official parameter counts, the output layout, input checks, and the frozen
identity-skip convolutions (every trainable parameter gets a gradient, so DDP needs no
find_unused_parameters)."""

import re

import pytest
import torch

from models.hourglass import Hourglass, Residual, StackedHourglass

# Counted on the official PyTorch port (princeton-vl/pytorch_stacked_hourglass, models/posenet.py):
# sum(p.numel() for p in PoseNet(nstack=8 or 2, inp_dim=256, oup_dim=16).parameters()).
OFFICIAL_PARAMETERS = {8: 32_819_328, 2: 8_429_088}

SMALL = {"num_stacks": 2, "features": 32, "num_keypoints": 5, "depth": 4}


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("num_stacks", [8, 2])
def test_full_size_model_has_the_official_parameter_count(num_stacks):
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = StackedHourglass() if num_stacks == 8 else StackedHourglass(num_stacks=num_stacks)
    assert (model.num_stacks, model.features, model.num_keypoints, model.depth) == (num_stacks, 256, 16, 4)
    assert count_parameters(model) == OFFICIAL_PARAMETERS[num_stacks]


def test_output_holds_every_stacks_heatmaps_at_a_quarter_of_the_input():
    torch.manual_seed(0)
    model = StackedHourglass(**SMALL).eval()
    with torch.no_grad():
        heatmaps = model(torch.rand(2, 3, 64, 128))
    assert heatmaps.shape == (2, 2, 5, 16, 32)
    assert torch.isfinite(heatmaps).all()
    assert not torch.equal(heatmaps[:, 0], heatmaps[:, 1])  # two different stacks, not a copy


def test_only_stacks_that_feed_the_next_have_remapping_convolutions():
    model = StackedHourglass(**SMALL)
    assert [stack.feeds_next for stack in model.stacks] == [True, False]
    assert hasattr(model.stacks[0], "remap_predictions") and hasattr(model.stacks[0], "remap_features")
    assert not hasattr(model.stacks[1], "remap_predictions")
    assert not hasattr(model.stacks[1], "remap_features")


def test_input_multiple_is_the_stem_stride_times_the_hourglass_poolings():
    assert StackedHourglass(**SMALL).input_multiple == 64
    shallow = StackedHourglass(num_stacks=1, features=16, num_keypoints=2, depth=2).eval()
    assert shallow.input_multiple == 16
    with torch.no_grad():
        assert shallow(torch.rand(1, 3, 16, 48)).shape == (1, 1, 2, 4, 12)


@pytest.mark.parametrize("size", [(96, 64), (64, 100), (32, 32)])
def test_input_size_not_a_multiple_of_64_is_a_clear_error(size):
    model = StackedHourglass(**SMALL)
    with pytest.raises(ValueError, match=rf"divisible by 64, got {size[0]} x {size[1]}"):
        model(torch.rand(1, 3, *size))


@pytest.mark.parametrize("shape", [(1, 1, 64, 64), (1, 4, 64, 64), (3, 64, 64), (1, 64, 64, 3)])
def test_wrong_channel_count_or_layout_is_a_clear_error(shape):
    model = StackedHourglass(**SMALL)
    with pytest.raises(ValueError, match=r"takes \(B, 3, H, W\) RGB images, got " + re.escape(str(shape))):
        model(torch.rand(*shape))


@pytest.mark.parametrize(
    "settings",
    [{"num_stacks": 0}, {"features": 1}, {"num_keypoints": 0}, {"depth": 0}],
)
def test_impossible_settings_are_rejected(settings):
    with pytest.raises(ValueError):
        StackedHourglass(**{**SMALL, **settings})


def test_identity_skip_convolutions_are_frozen_and_projecting_ones_train():
    torch.manual_seed(0)
    model = StackedHourglass(**SMALL)
    model(torch.rand(2, 3, 64, 64)).square().mean().backward()
    residuals = {name: module for name, module in model.named_modules() if isinstance(module, Residual)}
    projecting = sorted(name for name, residual in residuals.items() if residual.projects_skip)
    # 64 -> 128 and 128 -> 32 in the stem; every other residual module keeps its channel count
    assert projecting == ["stem.residual1", "stem.residual3"]
    for name, residual in residuals.items():
        for parameter in residual.skip.parameters():
            if residual.projects_skip:
                assert parameter.requires_grad, name
                assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
            else:
                assert not parameter.requires_grad, name
                assert parameter.grad is None, name


def test_identity_skip_convolution_does_not_enter_the_forward_pass():
    torch.manual_seed(0)
    residual = Residual(8, 8).eval()
    x = torch.rand(1, 8, 4, 4)
    before = residual(x)
    with torch.no_grad():
        residual.skip.weight.add_(1.0)
        residual.skip.bias.add_(1.0)
    assert torch.equal(residual(x), before)


def test_backward_leaves_no_trainable_parameter_without_gradient():
    torch.manual_seed(0)
    model = StackedHourglass(**SMALL)
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(".skip." in name for name in frozen)


def test_hourglass_keeps_resolution_and_channels():
    torch.manual_seed(0)
    hourglass = Hourglass(3, 8).eval()
    with torch.no_grad():
        assert hourglass(torch.rand(2, 8, 16, 24)).shape == (2, 8, 16, 24)
