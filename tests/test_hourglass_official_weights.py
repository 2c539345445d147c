"""models/hourglass_official_weights.py: official (princeton-vl/pytorch_stacked_hourglass) checkpoints load
into StackedHourglass name for name, mismatches are named, and the converted network computes what the
official one computed.

Fixtures (derived by instantiating the official code, princeton-vl/pytorch_stacked_hourglass @ ceedc14,
models/posenet.py + models/layers.py, with torch 2.14 on CPU; none of its code is in this repository):

- ``fixtures/hourglass_official_layout.json``: ``[name, shape, dtype]`` of every entry of
  ``PoseNet(nstack=2, inp_dim=256, oup_dim=16).state_dict()`` (num_batches_tracked included), in order,
  and its parameter count.
- ``fixtures/hourglass_official_tiny.pt``: ``{"state_dict", "input", "output"}`` of
  ``PoseNet(nstack=2, inp_dim=16, oup_dim=3)`` (bn=False, increase=0: the defaults) built after
  ``torch.manual_seed(0)``; then, from ``torch.Generator().manual_seed(1)``, every BatchNorm got weight
  U(0.5, 1.5), bias N(0, 0.1^2), running_mean N(0, 0.1^2), running_var U(0.5, 2) and a random
  num_batches_tracked, so eval mode is not the identity; every float tensor was rounded to float16 and the
  state dict is stored in float16 (views of one storage, to keep the file small -- the values are exact).
  ``input`` is a uint8 image batch ``(1, 64, 128, 3)`` from the same generator, channels-last as the
  official forward takes it; ``output`` is the official ``net.eval()(input.float() / 255)`` in float32,
  ``(1, 2, 3, 16, 32)``.
"""

import json
import pickle
from pathlib import Path

import pytest
import torch

from models.hourglass import StackedHourglass
from models.hourglass_official_weights import (
    convert_official_state_dict,
    load_official_state_dict,
    official_config,
    official_name_to_ours,
    our_name_to_official,
)

FIXTURES = Path(__file__).parent / "fixtures"
LAYOUT = json.loads((FIXTURES / "hourglass_official_layout.json").read_text())
OFFICIAL_SHAPES = {name: tuple(shape) for name, shape, _ in LAYOUT["state_dict"]}
TINY = FIXTURES / "hourglass_official_tiny.pt"


def random_official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under every official name of PoseNet(nstack=2, inp_dim=256, oup_dim=16)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape, dtype in LAYOUT["state_dict"]:
        if dtype == "int64":
            state[name] = torch.randint(0, 10_000, shape, generator=generator)
        else:
            state[name] = torch.randn(shape, generator=generator, dtype=getattr(torch, dtype))
    return state


def official_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """What the official train.py ``save()`` writes: the state dict of Trainer(DataParallel(PoseNet)),
    the Adam optimiser's state and the epoch."""
    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([parameter], lr=1e-3)
    parameter.sum().backward()
    optimizer.step()
    return {
        "state_dict": {"model.module." + name: value for name, value in state.items()},
        "optimizer": optimizer.state_dict(),
        "epoch": 7,
    }


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    return random_official_state_dict()


@pytest.fixture(scope="module")
def checkpoint_path(official_state, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("official") / "checkpoint.pt"
    torch.save(official_checkpoint(official_state), path)
    return path


def meta_model(**settings) -> StackedHourglass:
    with torch.device("meta"):
        return StackedHourglass(**settings)


def test_official_layout_maps_one_to_one_onto_our_state_dict():
    ours = {name: tuple(value.shape) for name, value in meta_model(num_stacks=2).state_dict().items()}
    converted = {official_name_to_ours(name): shape for name, shape in OFFICIAL_SHAPES.items()}
    assert converted == ours
    assert len(converted) == len(OFFICIAL_SHAPES) == 742
    assert all(our_name_to_official(official_name_to_ours(name)) == name for name in OFFICIAL_SHAPES)
    assert sum(p.numel() for p in meta_model(num_stacks=2).parameters()) == LAYOUT["num_parameters"]


@pytest.mark.parametrize(
    ("official", "ours"),
    [
        ("pre.0.conv.weight", "stem.conv.weight"),
        ("pre.4.skip_layer.conv.bias", "stem.residual3.skip.bias"),
        ("hgs.1.0.up1.conv2.conv.weight", "stacks.1.hourglass.upper.conv2.weight"),
        (
            "hgs.0.0.low2.low2.low3.bn1.running_var",
            "stacks.0.hourglass.inner.inner.lower_out.bn1.running_var",
        ),
        ("hgs.0.0.low2.low2.low2.low2.bn3.weight", "stacks.0.hourglass.inner.inner.inner.inner.bn3.weight"),
        ("features.1.1.bn.num_batches_tracked", "stacks.1.features.bn.num_batches_tracked"),
        ("outs.1.conv.weight", "stacks.1.predict.weight"),
        ("merge_preds.0.conv.conv.weight", "stacks.0.remap_predictions.weight"),
        ("merge_features.0.conv.conv.bias", "stacks.0.remap_features.bias"),
    ],
)
def test_official_names_translate_both_ways(official, ours):
    assert official in OFFICIAL_SHAPES
    assert official_name_to_ours(official) == ours
    assert our_name_to_official(ours) == official


def test_official_checkpoint_loads_every_tensor_at_its_mapped_name(official_state, checkpoint_path):
    model = StackedHourglass(num_stacks=2, official_weights=checkpoint_path)
    ours = model.state_dict()
    assert len(ours) == len(official_state)
    for name, value in official_state.items():
        assert torch.equal(ours[official_name_to_ours(name)], value), name


def test_official_config_reads_the_settings_off_the_state_dict(official_state):
    expected = {"num_stacks": 2, "features": 256, "num_keypoints": 16, "depth": 4}
    assert official_config(official_state) == expected
    assert official_config(official_checkpoint(official_state)["state_dict"]) == expected
    tiny = torch.load(TINY, weights_only=True)["state_dict"]
    assert official_config(tiny) == {"num_stacks": 2, "features": 16, "num_keypoints": 3, "depth": 4}


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"num_stacks": 8}, r"num_stacks=8.*looks like num_stacks=2.*missing: .*hgs\.2\.0\.up1\.bn1\.weight"),
        ({"num_stacks": 1}, r"looks like num_stacks=2.*unexpected: hgs\.1\.0\.up1"),
        (
            {"num_stacks": 2, "features": 128},
            r"features=128.*features=256.*other shapes: pre\.4\.conv1\.conv\.weight \(128, 128, 1, 1\)",
        ),
        (
            {"num_stacks": 2, "num_keypoints": 17},
            r"num_keypoints=17.*num_keypoints=16.*other shapes: outs\.0\.conv\.weight",
        ),
        (
            {"num_stacks": 2, "depth": 3},
            r"depth=3.*depth=4.*missing: hgs\.0\.0\.low2\.low2\.low2\.bn1\.weight"
            r".*unexpected: hgs\.0\.0\.low2\.low2\.low2\.up1",
        ),
    ],
    ids=["more stacks", "fewer stacks", "fewer features", "more keypoints", "shallower"],
)
def test_mismatched_model_settings_are_a_value_error_naming_the_problem(official_state, settings, problem):
    with pytest.raises(ValueError, match=problem):
        load_official_state_dict(meta_model(**settings), official_state)


def test_mismatched_checkpoint_file_names_the_file(checkpoint_path):
    with pytest.raises(ValueError, match=rf"{checkpoint_path.name} does not fit the model"):
        StackedHourglass(num_stacks=1, features=16, official_weights=checkpoint_path)


def test_unknown_names_are_a_value_error_naming_them(official_state):
    state = {**official_state, "hgs.0.0.up1.bn4.weight": torch.ones(3), "classifier.weight": torch.ones(3)}
    with pytest.raises(ValueError, match=r"2 names are not in the official PoseNet layout") as error:
        convert_official_state_dict(state)
    assert "hgs.0.0.up1.bn4.weight" in str(error.value) and "classifier.weight" in str(error.value)
    with pytest.raises(ValueError, match=r"classifier\.weight"):
        load_official_state_dict(meta_model(num_stacks=2), state)


def test_checkpoint_mixing_prefixed_and_bare_names_is_rejected(official_state):
    state = {
        ("module." + name if index % 2 else name): v for index, (name, v) in enumerate(official_state.items())
    }
    with pytest.raises(ValueError, match=r"mixes 'module\.' names"):
        convert_official_state_dict(state)


@pytest.mark.parametrize("prefix", ["", "module.", "model.module."])
def test_bare_dataparallel_and_trainer_state_dicts_all_load(official_state, prefix, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({prefix + name: value for name, value in official_state.items()}, path)  # no wrapping dict
    model = StackedHourglass(num_stacks=2, official_weights=path)
    name = "hgs.1.0.low2.low2.low2.low2.conv2.conv.weight"
    assert torch.equal(model.state_dict()[official_name_to_ours(name)], official_state[name])


def test_state_dict_without_num_batches_tracked_loads_but_one_without_a_weight_does_not(official_state):
    model = StackedHourglass(num_stacks=2)
    state = {n: v for n, v in official_state.items() if not n.endswith("num_batches_tracked")}
    load_official_state_dict(model, state)
    assert torch.equal(model.stem.bn.running_var, official_state["pre.0.bn.running_var"])
    del state["hgs.0.0.up1.bn2.running_mean"]
    with pytest.raises(ValueError, match=r"1 missing: hgs\.0\.0\.up1\.bn2\.running_mean"):
        load_official_state_dict(model, state)


class NotATensor:
    pass


def test_checkpoint_with_arbitrary_objects_is_refused_without_unpickling_them(official_state, tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({**official_checkpoint(official_state), "extra": NotATensor()}, path)
    with pytest.raises(ValueError, match="holds objects other than tensors") as error:
        StackedHourglass(num_stacks=2, official_weights=path)
    assert isinstance(error.value.__cause__, pickle.UnpicklingError)


def test_missing_checkpoint_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        StackedHourglass(num_stacks=1, features=16, official_weights=tmp_path / "missing.pt")


def test_converted_model_computes_the_official_output():
    fixture = torch.load(TINY, weights_only=True)
    model = StackedHourglass(num_stacks=2, features=16, num_keypoints=3, official_weights=TINY).eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())  # float16 fixture, float32 model
    images = fixture["input"].permute(0, 3, 1, 2).float() / 255  # official (B, H, W, 3) -> ours (B, 3, H, W)
    with torch.no_grad():
        output = model(images)
    assert output.shape == fixture["output"].shape == (1, 2, 3, 16, 32)
    torch.testing.assert_close(output, fixture["output"], rtol=0, atol=1e-5)
