"""YolactEdge: parameter counts of the official configs, the keyframe / non-keyframe paths (what runs,
what the identity transform gives back, the keyframe schedule) and the feature-matching loss's
gradients, on YOLACT's small preset with FeatFlowNet and SPA added."""

from typing import Any

import pytest
import torch

from models.yolact_edge import YolactEdge
from models.yolact_edge_flow import FLOW_SCALE, warp
from models.yolact_edge_loss import feature_matching_loss, official_matching_convs
from tests.presets import YOLACT_SYNTHETIC, experiment_model_block

OFFICIAL_PRE_CONVS = 147_520  # flow_net_pre_convs
OFFICIAL_FLOW_NET = 2_003_856  # flow_net (FlowNetMini)
OFFICIAL_SPA = 2_359_808  # spa


def small_yolact_edge(**overrides: Any) -> YolactEdge:
    """``experiments/yolact/synthetic.yaml``'s YOLACT preset with YolactEdge's modules added."""
    return YolactEdge(**{**experiment_model_block(YOLACT_SYNTHETIC)["init_args"], **overrides})


def count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def test_full_size_parameter_counts_equal_the_official_configs():
    # Official numbers: haotian-liu/yolact_edge ``Yolact(training=True)`` instantiated on CPU under
    # ``yolact_edge_vid_resnet50_config`` and ``yolact_edge_vid_config`` (YouTube-VIS, 40 + 1 classes).
    r50 = YolactEdge(backbone_depth=50)
    assert count(r50.flow) == OFFICIAL_PRE_CONVS + OFFICIAL_FLOW_NET == 2_151_376
    assert count(r50.spa) == OFFICIAL_SPA
    assert sum(count(module) for module in r50.added_modules()) == 4_511_184
    assert count(r50) == 35_389_247
    finest_only = [r50.flow.predict1, r50.flow.upfeat2, r50.flow.upflow2]  # kept for checkpoint parity
    assert sum(count(module) for module in finest_only) == 218_056
    assert count(YolactEdge()) == 54_381_375  # R101, the official default


def _layer_calls(model: YolactEdge) -> dict[str, int]:
    calls = {"layer3": 0, "layer4": 0}
    for name in calls:

        def hook(*_, name=name):
            calls[name] += 1

        model.backbone[name].register_forward_hook(hook)
    return calls


def test_non_keyframe_runs_the_backbone_only_up_to_c3():
    torch.manual_seed(0)
    model = small_yolact_edge().eval()
    calls = _layer_calls(model)
    frames = [[torch.rand(3, 96, 128)], [torch.rand(3, 96, 128)]]
    with torch.no_grad():
        keyframe_outputs, keyframe = model.forward_keyframe(frames[0])
        assert calls == {"layer3": 1, "layer4": 1}
        outputs, features = model.forward_non_keyframe(frames[1], keyframe)
    assert calls == {"layer3": 1, "layer4": 1}  # never fired for the non-keyframe
    assert {name: value.shape for name, value in outputs.items()} == {
        name: value.shape for name, value in keyframe_outputs.items()
    }
    assert [level.shape for level in features.levels] == [level.shape for level in keyframe.levels]


def _identity_transform(model: YolactEdge) -> None:
    """Zero flow, scale 1 and bias 0 everywhere, SPA's residual 0."""
    with torch.no_grad():
        for prediction in (model.flow.predict1, model.flow.predict2, model.flow.predict3):
            prediction.flow.weight.zero_()
            prediction.scale.weight.zero_()
            prediction.scale.bias.fill_(1.0)
            prediction.bias.weight.zero_()
            prediction.bias.bias.zero_()
        for parameter in model.spa.parameters():
            parameter.zero_()


def test_zero_flow_and_identity_scale_bias_give_the_keyframe_back():
    torch.manual_seed(0)
    model = small_yolact_edge().eval()
    _identity_transform(model)
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 120)]
    with torch.no_grad():
        keyframe_outputs, keyframe = model.forward_keyframe(images)
        outputs, features = model.forward_non_keyframe(images, keyframe)
    for warped, cached in zip(features.levels, keyframe.levels, strict=True):
        assert torch.allclose(warped, cached, atol=1e-5)
    # P3 rebuilt from the same lateral and P4 is the keyframe's P3, so every output is the keyframe's
    for name, value in keyframe_outputs.items():
        assert torch.allclose(outputs[name], value, atol=1e-4), name


def test_warp_units_follow_the_official_deform_op():
    features = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    assert torch.allclose(warp(features, torch.zeros(2, 2, 5, 7)), features, atol=1e-5)
    one_pixel_right = torch.zeros(2, 2, 5, 7)
    one_pixel_right[:, 0] = FLOW_SCALE * 2 / (7 - 1)  # [-1, 1] spans W - 1 pixels (align_corners)
    shifted = warp(features, one_pixel_right)
    assert torch.allclose(shifted[..., :-1], features[..., 1:], atol=1e-4)
    assert (shifted[..., -1] == 0).all()  # sampled outside: zeros padding


def test_video_makes_a_keyframe_every_five_frames():
    torch.manual_seed(0)
    model = small_yolact_edge(score_threshold=0.0).eval()
    calls = _layer_calls(model)
    frames = [[torch.rand(3, 90, 120), torch.rand(3, 90, 120)] for _ in range(7)]
    results = model.video(frames)
    assert calls == {"layer3": 2, "layer4": 2}  # frames 0 and 5
    assert len(results) == 7 and all(len(per_frame) == 2 for per_frame in results)
    detection = results[3][1]
    assert detection["masks"].shape == (len(detection["scores"]), 1, 90, 120)
    assert detection["labels"].min() >= 1 and detection["labels"].max() <= 4


def test_feature_matching_loss_trains_the_flow_and_spa_only():
    torch.manual_seed(0)
    model = small_yolact_edge().train()
    images = [torch.rand(3, 96, 128)]
    _, keyframe = model.forward_keyframe(images)
    _, target = model.forward_keyframe([image.flip(-1) for image in images])  # the "next frame"
    _, features = model.forward_non_keyframe([image.flip(-1) for image in images], keyframe)
    convs = official_matching_convs(model.fpn)
    assert feature_matching_loss(target.levels, target.levels, convs).item() == pytest.approx(0, abs=1e-6)
    loss = feature_matching_loss(features.levels, target.levels, convs)
    assert 0 < loss.item() < 2  # 1 - cosine lies in [0, 2]
    loss.backward()
    trained = {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None}
    assert trained == {"flow", "spa"}
    no_grad = [name for name, p in model.flow.named_parameters() if p.grad is None]
    assert all(name.startswith(("predict1", "upfeat2", "upflow2")) for name in no_grad)  # P3's flow
    assert no_grad


def test_a_keyframe_of_another_size_is_refused():
    model = small_yolact_edge(image_size=128).eval()
    with torch.no_grad():
        _, keyframe = model.forward_keyframe([torch.rand(3, 64, 64)])
        with pytest.raises(ValueError, match="same batch size"):
            model.forward_non_keyframe([torch.rand(3, 64, 64)] * 2, keyframe)
