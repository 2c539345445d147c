"""ResNet-FPN backbones: pyramid shapes, frozen stages, BatchNorm choice and local weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from models.backbones import level_strides, resnet_fpn_backbone


def test_resnet18_fpn_pyramid() -> None:
    backbone = resnet_fpn_backbone(18, fpn_channels=32, frozen_bn=False, trainable_layers=5)
    features = backbone(torch.rand(1, 3, 64, 96))
    assert backbone.out_channels == 32
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "0": (1, 32, 16, 24),
        "1": (1, 32, 8, 12),
        "2": (1, 32, 4, 6),
        "3": (1, 32, 2, 3),
        "pool": (1, 32, 1, 2),
    }
    assert any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    assert all(p.requires_grad for p in backbone.parameters())


def test_frozen_bn_and_trainable_layers() -> None:
    backbone = resnet_fpn_backbone(18, frozen_bn=True, trainable_layers=2)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
    trainable = {
        name.split(".")[1] for name, p in backbone.body.named_parameters(prefix="body") if p.requires_grad
    }
    assert trainable == {"layer3", "layer4"}
    assert all(p.requires_grad for p in backbone.fpn.parameters())


def test_loads_local_weights(tmp_path: Path) -> None:
    reference = resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = resnet_fpn_backbone(18, frozen_bn=True, weights_path=path)
    torch.testing.assert_close(backbone.body.layer2[0].conv1.weight, reference.layer2[0].conv1.weight)
    torch.testing.assert_close(backbone.body.bn1.running_var, reference.bn1.running_var)


def test_rejects_unknown_depth() -> None:
    with pytest.raises(ValueError, match="depth"):
        resnet_fpn_backbone(42)


def test_c3_to_c5_with_p6_p7_by_strided_convs() -> None:
    """YOLACT's and RetinaFace's pyramid: P3-P5 from C3-C5, P6 and P7 by stride-2 3x3 convs on P5."""
    backbone = resnet_fpn_backbone(18, 32, False, 5, levels=(3, 4, 5), extra_blocks=LastLevelP6P7(32, 32))
    features = backbone(torch.rand(1, 3, 128, 128))
    assert {k: tuple(v.shape[-2:]) for k, v in features.items()} == {
        "0": (16, 16), "1": (8, 8), "2": (4, 4), "p6": (2, 2), "p7": (1, 1),
    }  # fmt: skip
    assert backbone.fpn.extra_blocks.use_P5  # same channels: P6 is computed from P5, not C5
    assert level_strides((3, 4, 5)) == (8, 16, 32)


@pytest.mark.parametrize("levels", [(), (1, 2), (3, 2), (2, 2, 3)])
def test_rejects_levels_that_are_not_increasing_stages(levels) -> None:
    with pytest.raises(ValueError, match="levels"):
        resnet_fpn_backbone(18, levels=levels)
