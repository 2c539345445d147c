"""The official-checkpoint converter: every official name maps, the full-size models load strictly, and
a converted yolact_resnet50 computes what the official network computed (fixture from the official
code: ``tests/yolact_official_layout.py``)."""

import pytest
import torch

from models.yolact import YOLACT_MEAN, YOLACT_STD, Yolact, YolactTransform
from models.yolact_official_weights import load_official_state_dict, load_official_weights
from tests.yolact_official_layout import (
    official_layout,
    official_reference,
    official_state_dict,
    reference_input,
)


@pytest.mark.parametrize(("config", "depth"), [("yolact_base", 101), ("yolact_resnet50", 50)])
def test_full_size_official_layout_loads_strictly(config, depth):
    model = Yolact(backbone_depth=depth)
    layout = official_layout(config)
    official = official_state_dict(layout)
    load_official_state_dict(model, official)
    assert sum(p.numel() for p in model.parameters()) == {101: 50_157_071, 50: 31_164_943}[depth]
    converted = model.state_dict()
    assert torch.equal(converted["semantic_head.weight"], official["semantic_seg_conv.weight"])
    assert torch.equal(converted["fpn.lateral.0.weight"], official["fpn.lat_layers.2.weight"])  # C3
    assert torch.equal(converted["protonet.9.weight"], official["proto_net.10.weight"])


def test_converted_model_computes_what_the_official_network_computed():
    model = Yolact(backbone_depth=50)
    load_official_state_dict(model, official_state_dict(official_layout("yolact_resnet50")))
    model.eval()
    with torch.no_grad():
        outputs = model.network(reference_input())
    ours = {**outputs, "mask": outputs["coef"]}  # the official name of the coefficients
    for key, reference in official_reference("yolact_resnet50").items():
        value = ours[key].double()
        assert list(value.shape) == reference["shape"], key
        flat = value.reshape(-1)
        sampled = flat[torch.tensor(reference["positions"])]
        scale = max(1.0, max(abs(v) for v in reference["values"]))
        assert torch.allclose(
            sampled, torch.tensor(reference["values"], dtype=torch.float64), atol=1e-4 * scale
        ), key
        assert abs(float(flat.abs().sum()) - reference["abs_sum"]) <= 1e-4 * reference["abs_sum"], key


def test_preprocessing_equals_the_official_bgr_pipeline():
    """Official FastBaseTransform: BGR 0-255 image, resize, (x - BGR mean) / BGR std, swap to RGB."""
    rgb = torch.rand(3, 97, 131)
    bgr_255 = rgb.flip(0)[None] * 255
    resized = torch.nn.functional.interpolate(bgr_255, (550, 550), mode="bilinear", align_corners=False)
    bgr_mean = torch.tensor(YOLACT_MEAN[::-1]).view(1, 3, 1, 1)
    bgr_std = torch.tensor(YOLACT_STD[::-1]).view(1, 3, 1, 1)
    official = ((resized - bgr_mean) / bgr_std)[:, (2, 1, 0)]
    assert torch.allclose(YolactTransform(550)([rgb]), official, atol=1e-4)


def test_errors_name_the_problem(tmp_path):
    model = Yolact(backbone_depth=50)
    official = official_state_dict(official_layout("yolact_base"))  # R101 keys into an R50 model
    with pytest.raises(ValueError, match="unexpected"):
        load_official_state_dict(model, official)
    with pytest.raises(KeyError, match="not a name of the official"):
        load_official_state_dict(model, {"maskiou_net.0.weight": torch.zeros(1)})
    with pytest.raises(FileNotFoundError, match="not found"):
        load_official_weights(model, tmp_path / "yolact_base_54_800000.pth")
    wrong_classes = Yolact(num_classes=20, backbone_depth=50)
    with pytest.raises(ValueError, match="shapes differ"):
        load_official_state_dict(wrong_classes, official_state_dict(official_layout("yolact_resnet50")))


def test_official_weights_file_loads_through_the_builder(tmp_path):
    path = tmp_path / "yolact_resnet50_54_800000.pth"
    official = official_state_dict(official_layout("yolact_resnet50"))
    official["backbone.layer1.0.conv1.weight"] = torch.zeros(1)  # a legacy key the official loader drops
    torch.save(official, path)
    model = Yolact(backbone_depth=50, official_weights=path)
    assert torch.equal(
        model.state_dict()["head.cls.weight"], official["prediction_layers.0.conf_layer.weight"]
    )
