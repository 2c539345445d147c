"""VGGFeatures and the perceptual-loss functions (models.vgg_features): the layer names follow torchvision's
VGG structure, a torchvision state dict loads from a path and gives exactly the features of torchvision's own
``features`` run by hand, weights are never implicit, the network stays frozen; gram_matrix,
total_variation and vgg_content_loss against direct formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from models.vgg_features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG_WEIGHTS_URLS,
    VGGFeatures,
    gram_matrix,
    total_variation,
    vgg_content_loss,
    vgg_relu_indices,
)

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")  # Johnson et al. Sec. 3.3


@pytest.mark.parametrize(
    ("arch", "convs_per_block"), [("vgg16", (2, 2, 3, 3, 3)), ("vgg19", (2, 2, 4, 4, 4))]
)
def test_layer_names_follow_torchvision_structure(arch: str, convs_per_block: tuple[int, ...]) -> None:
    with torch.device("meta"):  # structure only
        features = getattr(torchvision.models, arch)(weights=None).features
    expected, block, conv = {}, 1, 0
    for index, module in enumerate(features):
        if isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
        elif isinstance(module, nn.Conv2d):
            conv += 1
        elif isinstance(module, nn.ReLU):
            assert isinstance(features[index - 1], nn.Conv2d)
            expected[f"relu{block}_{conv}"] = index
    assert vgg_relu_indices(arch) == expected
    assert list(expected) == [f"relu{b + 1}_{c + 1}" for b, n in enumerate(convs_per_block) for c in range(n)]


def test_layer_indices_of_the_reference_implementations() -> None:
    # pytorch/examples fast_neural_style Vgg16 slices (and torchmetrics' LPIPS Vgg16): 4, 9, 16, 23;
    # BasicSR's vgg19 names put relu5_4 at 35.
    assert {name: vgg_relu_indices("vgg16")[name] for name in STYLE_LAYERS} == {
        "relu1_2": 3,
        "relu2_2": 8,
        "relu3_3": 15,
        "relu4_3": 22,
    }
    assert vgg_relu_indices("vgg19")["relu5_4"] == 35


def test_torchvision_state_dict_gives_torchvision_features(tmp_path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.vgg16(weights=None).eval()
    # torchvision's names and shapes; the classifier (ignored) as stride-0 tensors to keep the file small
    state = {
        key: value if key.startswith("features.") else torch.zeros(()).expand(value.shape)
        for key, value in reference.state_dict().items()
    }
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(state, path)
    vgg = VGGFeatures("vgg16", layers=STYLE_LAYERS, weights_path=path)
    assert len(vgg.features) == 23  # cut after relu4_3

    images = torch.rand(2, 3, 40, 36, generator=torch.Generator().manual_seed(1))
    x = (images - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = {}
    with torch.no_grad():
        for index, module in enumerate(reference.features):
            x = module(x)
            for name in STYLE_LAYERS:
                if vgg_relu_indices("vgg16")[name] == index:
                    expected[name] = x.clone()
        outputs = vgg(images)
    assert list(outputs) == list(STYLE_LAYERS)
    for name in STYLE_LAYERS:
        torch.testing.assert_close(outputs[name], expected[name], rtol=0, atol=0)


def test_state_dict_without_torchvision_keys_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "not_vgg.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(KeyError, match=r"not_vgg\.pth is not a torchvision vgg16 state dict"):
        VGGFeatures("vgg16", weights_path=path)


def test_weights_are_never_implicit(tmp_path) -> None:
    missing = tmp_path / "vgg19-dcbb9e9d.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)) as error:
        VGGFeatures("vgg19", layers=("relu5_4",), weights_path=missing)
    assert VGG_WEIGHTS_URLS["vgg19"] in str(error.value)
    with pytest.raises(FileNotFoundError, match="random_weights_for_tests=True"):
        VGGFeatures("vgg16")
    with pytest.raises(ValueError, match="pass one"):
        VGGFeatures("vgg16", weights_path=missing, random_weights_for_tests=True)


def test_random_weights_warn_and_srgan_layer_shape() -> None:
    with pytest.warns(UserWarning, match="RANDOM weights.*meaningless"):
        vgg = VGGFeatures("vgg19", layers=("relu5_4",), random_weights_for_tests=True)
    assert len(vgg.features) == 36
    with torch.no_grad():
        features = vgg(torch.rand(1, 3, 32, 48))
    assert features["relu5_4"].shape == (1, 512, 2, 3)


def test_stays_frozen_and_in_eval_under_a_training_parent() -> None:
    with pytest.warns(UserWarning, match="meaningless"):
        vgg = VGGFeatures("vgg16", layers=("relu1_2", "relu2_2"), random_weights_for_tests=True)
    parent = nn.ModuleDict({"generator": nn.Conv2d(3, 3, 3, padding=1), "vgg": vgg})
    parent.train()
    assert parent["generator"].training
    assert not any(module.training for module in vgg.modules())
    assert not any(parameter.requires_grad for parameter in vgg.parameters())
    images = torch.rand(1, 3, 16, 16)
    loss = vgg(parent["generator"](images))["relu2_2"].square().mean()
    loss.backward()  # gradients reach the generator through the frozen network
    assert parent["generator"].weight.grad is not None
    assert all(parameter.grad is None for parameter in vgg.parameters())
    with pytest.raises(ValueError, match="relu5_4"):
        VGGFeatures("vgg16", layers=("relu5_4",), random_weights_for_tests=True)


def test_gram_matrix_equals_loop_formula() -> None:
    features = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    n, c, h, w = features.shape
    expected = torch.zeros(n, c, c, dtype=torch.float64)
    for b in range(n):
        for i in range(c):
            for j in range(c):
                expected[b, i, j] = sum(
                    features[b, i, y, x] * features[b, j, y, x] for y in range(h) for x in range(w)
                ) / (c * h * w)
    torch.testing.assert_close(gram_matrix(features), expected, rtol=1e-12, atol=1e-12)


def test_total_variation_gradient_is_the_official_lua_one() -> None:
    images = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    total_variation(images).backward()
    # fast-neural-style TotalVariation.lua updateGradInput, strength 1, ported to numpy
    x = images.detach().numpy()
    x_diff = x[:, :, :-1, :-1] - x[:, :, :-1, 1:]
    y_diff = x[:, :, :-1, :-1] - x[:, :, 1:, :-1]
    grad = np.zeros_like(x)
    grad[:, :, :-1, :-1] += x_diff + y_diff
    grad[:, :, :-1, 1:] -= x_diff
    grad[:, :, 1:, :-1] -= y_diff
    np.testing.assert_allclose(images.grad.numpy(), grad, rtol=0, atol=1e-12)
    value = 0.5 * (x_diff**2 + y_diff**2).reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(total_variation(images, "none").detach().numpy(), value, atol=1e-12)
    assert total_variation(images, "mean").item() == pytest.approx(value.mean(), abs=1e-12)


def test_vgg_content_loss_is_scaled_mse_summed_over_layers() -> None:
    predicted = {"relu2_2": torch.randn(2, 8, 4, 4), "relu5_4": torch.randn(2, 16, 2, 2)}
    target = {name: torch.randn_like(value) for name, value in predicted.items()}
    expected = sum(((predicted[k] - target[k]) / 12.75).square().mean() for k in predicted)
    assert vgg_content_loss(predicted, target, feature_scale=1 / 12.75).item() == pytest.approx(
        expected.item(), rel=1e-6
    )
    with pytest.raises(KeyError, match="relu5_4"):
        vgg_content_loss(predicted, {"relu2_2": target["relu2_2"]})
