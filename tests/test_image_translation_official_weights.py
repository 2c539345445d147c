"""models/image_translation_official_weights.py: the generators junyanz/pytorch-CycleGAN-and-pix2pix
released (``latest_net_G.pth`` of ``unet_256`` and ``resnet_9blocks``) load into ``UNetGenerator`` /
``ResNetGenerator``, every tensor where it belongs, and the loaded networks compute what the official
forward computes from the official names.

The official names, shapes and forward come from tests/image_translation_official_layout.py, written from
the official ``models/networks.py`` nesting rules (not from our classes).
"""

import pytest
import torch

from models.image_translation_official_weights import (
    convert_official_generator_state_dict,
    describe_official_generator,
    load_official_generator,
)
from models.resnet_generator import ResNetGenerator
from models.unet_generator import UNetGenerator
from tests.image_translation_official_layout import (
    official_resnet_forward,
    official_resnet_layout,
    official_unet_forward,
    official_unet_layout,
    random_state,
)


def shapes(state) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(value.shape)) for name, value in state.items()]


@pytest.mark.parametrize(
    ("model", "layout"),
    [
        (lambda: UNetGenerator(), lambda: official_unet_layout()),
        (lambda: UNetGenerator(num_downs=7), lambda: official_unet_layout(num_downs=7)),
        (
            lambda: UNetGenerator(norm="instance", dropout=False),
            lambda: official_unet_layout(norm="instance"),
        ),
        (lambda: ResNetGenerator(), lambda: official_resnet_layout()),
        (lambda: ResNetGenerator(num_blocks=6), lambda: official_resnet_layout(n_blocks=6)),
        (
            lambda: ResNetGenerator(norm="batch", padding="zero", dropout=True, num_blocks=2),
            lambda: official_resnet_layout(n_blocks=2, norm="batch", padding_type="zero", use_dropout=True),
        ),
    ],
    ids=[
        "unet_256",
        "unet_128",
        "unet_256_instance",
        "resnet_9blocks",
        "resnet_6blocks",
        "resnet_batch_zero",
    ],
)
def test_state_dict_names_and_shapes_are_the_official_ones(model, layout):
    assert shapes(model().state_dict()) == layout()


def test_released_unet_256_loads_tensor_for_tensor():
    official = random_state(official_unet_layout(), seed=1)
    model = UNetGenerator()
    load_official_generator(model, official)
    ours = model.state_dict()
    assert ours.keys() == official.keys()
    assert all(torch.equal(ours[name], value) for name, value in official.items())


def test_released_resnet_9blocks_loads_with_prefix_and_stale_instance_norm_statistics():
    """An old CycleGAN file: DataParallel ``module.`` names and InstanceNorm running statistics."""
    layout = official_resnet_layout(stale_instance_stats=True)
    official = {"module." + name: value for name, value in random_state(layout, seed=2).items()}
    model = ResNetGenerator()
    converted = convert_official_generator_state_dict(official, model)
    assert not any("running" in name or "num_batches" in name for name in converted)
    assert len(converted) == len(official_resnet_layout()) == 48
    load_official_generator(model, official)
    ours = model.state_dict()
    assert all(torch.equal(ours[name], official["module." + name]) for name in ours)


def test_pre_0_4_batch_norm_files_without_counters_load(tmp_path):
    official = {k: v for k, v in random_state(official_unet_layout(num_downs=5, ngf=4)).items()}
    official = {k: v for k, v in official.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "latest_net_G.pth"
    torch.save(official, path)
    model = UNetGenerator(num_downs=5, base_channels=4)
    load_official_generator(model, torch.load(path, weights_only=True))
    assert torch.equal(
        model.state_dict()["model.model.1.model.2.running_var"], official["model.model.1.model.2.running_var"]
    )


def test_loaded_unet_computes_the_official_forward():
    official = random_state(official_unet_layout(num_downs=5, ngf=8), seed=3)
    model = UNetGenerator(num_downs=5, base_channels=8).eval()
    load_official_generator(model, official)
    images = torch.rand(2, 3, 64, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        expected = official_unet_forward(official, images, num_downs=5, ngf=8)
        assert torch.allclose(model(images), expected, atol=1e-5)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_loaded_resnet_computes_the_official_forward(norm):
    official = random_state(official_resnet_layout(ngf=8, n_blocks=2, norm=norm), seed=5)
    model = ResNetGenerator(base_channels=8, num_blocks=2, norm=norm).eval()
    load_official_generator(model, official)
    images = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(6)) * 2 - 1
    with torch.no_grad():
        expected = official_resnet_forward(official, images, n_blocks=2, norm=norm)
        assert torch.allclose(model(images), expected, atol=1e-5)


def test_mismatches_name_the_keys_and_the_checkpoint():
    official = random_state(official_resnet_layout(ngf=8, n_blocks=3))
    with pytest.raises(
        ValueError, match=r"resnet with num_blocks=3, base_channels=8.*unexpected: model\.12\."
    ):
        load_official_generator(ResNetGenerator(base_channels=8, num_blocks=2), official)
    with pytest.raises(ValueError, match=r"missing: model\.1\.weight"):
        load_official_generator(
            ResNetGenerator(base_channels=8, num_blocks=3),
            {k: v for k, v in official.items() if k != "model.1.weight"},
        )
    with pytest.raises(
        ValueError, match=r"other shapes: model\.1\.weight \(8, 3, 7, 7\) \(ours \(16, 3, 7, 7\)\)"
    ):
        load_official_generator(ResNetGenerator(base_channels=16, num_blocks=3), official)
    unet = random_state(official_unet_layout(num_downs=6, ngf=4))
    assert describe_official_generator(unet) == "unet with num_downs=6, base_channels=4"
    with pytest.raises(ValueError, match="unet with num_downs=6"):
        load_official_generator(UNetGenerator(num_downs=5, base_channels=4), unet)
    with pytest.raises(
        ValueError, match=r"missing: model\.model\.0\.weight"
    ):  # a CycleGAN file in a pix2pix net
        load_official_generator(UNetGenerator(num_downs=5, base_channels=4), official)
    mixed = {"module.model.1.weight": official["model.1.weight"], "model.1.bias": official["model.1.bias"]}
    with pytest.raises(ValueError, match=r"mixes 'module\.'"):
        load_official_generator(ResNetGenerator(base_channels=8, num_blocks=3), mixed)


def test_generators_take_a_released_file_as_official_weights(tmp_path):
    """What an experiment YAML passes (``generator: {class_path: ..., init_args: {official_weights: ...}}``):
    a local ``latest_net_G.pth``, loaded by its official names; a missing file is named."""
    for model_class, layout, settings in (
        (UNetGenerator, official_unet_layout(num_downs=5, ngf=4), {"num_downs": 5, "base_channels": 4}),
        (ResNetGenerator, official_resnet_layout(n_blocks=2, ngf=4), {"num_blocks": 2, "base_channels": 4}),
    ):
        official = random_state(layout, seed=5)
        path = tmp_path / f"{model_class.__name__}_latest_net_G.pth"
        torch.save(official, path)
        loaded = model_class(**settings, official_weights=path).state_dict()
        for name, value in loaded.items():
            if name in official:
                assert torch.equal(value, official[name]), name
        with pytest.raises(FileNotFoundError, match=r"no-such_net_G\.pth not found.*latest_net_G"):
            model_class(**settings, official_weights=tmp_path / "no-such_net_G.pth")
