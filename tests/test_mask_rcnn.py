"""Mask R-CNN: weight compatibility with torchvision's ``maskrcnn_resnet50_fpn`` (same parameter
count, strict state-dict loading, identical eval outputs and training losses) and the small CPU
preset's training and inference paths."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn

from models.mask_rcnn import MaskRCNN
from models.roi_align import FPNRoIAlign
from tests.box_targets import box_mask_target
from tests.presets import small_mask_rcnn

# Small images and fewer RoIs on both sides keep the full-size R50 models fast on a CPU.
SIZES = {
    "min_size": 160,
    "max_size": 200,
    "rpn_post_nms_top_n_train": 300,
    "rpn_post_nms_top_n_test": 300,
    "box_batch_size_per_image": 128,
    "box_detections_per_img": 20,
}
LOSS_NAMES = {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}


def _images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, 200, 240, generator=generator), torch.rand(3, 180, 260, generator=generator)]


_target = box_mask_target


@pytest.fixture(scope="module")
def torchvision_state() -> dict[str, torch.Tensor]:
    """A randomly initialised torchvision Mask R-CNN whose class biases are spread out, so that some
    detections clear the 0.05 score threshold."""
    torch.manual_seed(0)
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    torch.nn.init.normal_(reference.roi_heads.box_predictor.cls_score.bias, std=2.0)
    return reference.state_dict()


def test_full_size_parameter_count() -> None:
    assert sum(p.numel() for p in MaskRCNN().parameters()) == 44_401_393


def test_torchvision_weights_give_identical_eval_outputs(torchvision_state: dict[str, torch.Tensor]) -> None:
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **SIZES)
    reference.load_state_dict(torchvision_state)
    ours = MaskRCNN(90, **SIZES)  # full size: R50-FPN, labels 1..90 + background, frozen BN
    ours.load_state_dict(torchvision_state, strict=True)
    images = _images()
    with torch.no_grad():
        expected, actual = reference.eval()(images), ours.eval()(images)
    assert sum(len(e["boxes"]) for e in expected) > 0
    for exp, act, image in zip(expected, actual, images, strict=True):
        assert set(act) == {"boxes", "labels", "scores", "masks"}
        assert act["masks"].shape[-2:] == image.shape[-2:]
        torch.testing.assert_close(act["labels"], exp["labels"], rtol=0, atol=0)
        for key in ("boxes", "scores", "masks"):
            torch.testing.assert_close(act[key], exp[key], rtol=0, atol=1e-6)


def test_training_losses_equal_torchvision_including_an_image_without_objects(
    torchvision_state: dict[str, torch.Tensor],
) -> None:
    # torchvision builds random-init models with trainable BatchNorm and all stages trainable.
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **SIZES)
    reference.load_state_dict(torchvision_state)
    ours = MaskRCNN(90, frozen_bn=False, trainable_backbone_layers=5, **SIZES)
    ours.load_state_dict(torchvision_state, strict=True)
    images = _images()
    targets = [_target(200, 240, [[20, 10, 90, 70], [120, 90, 230, 190]], [3, 7]), _target(180, 260, [], [])]
    torch.manual_seed(1)
    expected = reference.train()(images, targets)
    torch.manual_seed(1)
    actual = ours.train()(images, targets)
    assert set(actual) == LOSS_NAMES
    for name in LOSS_NAMES:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6)


def test_small_preset_trains_and_predicts_in_input_pixels() -> None:
    torch.manual_seed(0)
    model = small_mask_rcnn(num_classes=3)
    images = [torch.rand(3, 128, 128), torch.rand(3, 96, 140)]
    targets = [
        _target(128, 128, [[10, 12, 50, 60], [70, 60, 110, 100]], [1, 3]),
        _target(96, 140, [[5, 5, 40, 30]], [2]),
    ]
    losses = model.train()(images, targets)
    assert set(losses) == LOSS_NAMES
    assert all(torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    for name in (
        "backbone.body.conv1.weight",
        "rpn.head.cls_logits.weight",
        "roi_heads.mask_predictor.mask_fcn_logits.weight",
    ):
        gradient = dict(model.named_parameters())[name].grad
        assert gradient is not None and gradient.abs().sum() > 0, name
    model.roi_heads.score_thresh = 0.0
    with torch.no_grad():
        detections = model.eval()(images)
    for detection, image in zip(detections, images, strict=True):
        count = len(detection["boxes"])
        assert count > 0
        assert detection["masks"].shape == (count, 1, *image.shape[-2:])
        assert (
            detection["boxes"][:, 2].max() <= image.shape[-1]
            and detection["boxes"][:, 3].max() <= image.shape[-2]
        )


def test_batch_without_any_objects_trains() -> None:
    torch.manual_seed(0)
    model = small_mask_rcnn(num_classes=2).train()
    losses = model([torch.rand(3, 128, 128)] * 2, [_target(128, 128, [], [])] * 2)
    assert set(losses) == LOSS_NAMES
    assert losses["loss_mask"] == 0 and losses["loss_box_reg"] == 0 and losses["loss_rpn_box_reg"] == 0
    sum(losses.values()).backward()
    assert model.roi_heads.box_predictor.cls_score.weight.grad is not None


def test_aligned_option_reaches_every_roi_align() -> None:
    model = small_mask_rcnn(num_classes=2, aligned=True)
    pools = [m for m in model.modules() if isinstance(m, FPNRoIAlign)]
    assert len(pools) == 2 and all(p.aligned for p in pools)
    losses = model.train()([torch.rand(3, 128, 128)], [_target(128, 128, [[10, 10, 60, 50]], [2])])
    assert all(torch.isfinite(loss) for loss in losses.values())


def test_rejects_degenerate_boxes() -> None:
    model = small_mask_rcnn(num_classes=2).train()
    with pytest.raises(ValueError, match="positive width"):
        model([torch.rand(3, 64, 64)], [_target(64, 64, [[10, 10, 10, 30]], [1])])


def test_small_preset_parameter_count() -> None:
    """experiments/mask_rcnn/synthetic.yaml's model: R18-FPN-64, 4 classes (+ background)."""
    assert sum(p.numel() for p in small_mask_rcnn().parameters()) == 12_463_597


def test_parts_are_reachable_for_methods_built_on_mask_rcnn() -> None:
    model = small_mask_rcnn(num_classes=2).eval()
    image_list, _, features = model.features([torch.rand(3, 100, 120)])
    assert image_list.image_sizes == [(106, 128)]  # longer side to max_size 128
    assert image_list.tensors.shape[-2:] == (128, 128)  # padded to a multiple of 32
    assert list(features) == ["0", "1", "2", "3", "pool"]
    assert model.num_classes == 2 and model.roi_heads.box_predictor.cls_score.out_features == 3


def test_settings_that_cannot_build_a_model_are_refused() -> None:
    with pytest.raises(ValueError, match="no background"):
        MaskRCNN(0)
    with pytest.raises(ValueError, match="one size per level"):
        MaskRCNN(2, backbone_levels=(3, 4, 5))


def test_bf16_autocast_losses_equal_float32_within_two_percent() -> None:
    """bf16 keeps 8 bits of mantissa (relative rounding 2^-9, about 0.2% per operation); measured on
    this batch the five losses differ from float32 by at most 0.4%. 2% leaves room for other CPUs'
    kernels while catching a loss computed in the wrong precision (e.g. box decoding in bf16)."""
    torch.manual_seed(0)
    model = small_mask_rcnn(num_classes=3).train()
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 128)]
    targets = [
        _target(128, 128, [[10, 12, 50, 60], [70, 60, 110, 100]], [1, 3]),
        _target(128, 128, [[5, 5, 40, 30]], [2]),
    ]
    torch.manual_seed(1)
    full = model(images, targets)
    torch.manual_seed(1)  # the same RPN and RoI samples
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(images, targets)
    for name in LOSS_NAMES:
        assert mixed[name].dtype == torch.float32, name
        torch.testing.assert_close(mixed[name], full[name], rtol=0.02, atol=1e-4, msg=name)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        [detections] = model.eval()(images[:1])
    assert detections["boxes"].dtype == torch.float32  # boxes are decoded in float32 under autocast
