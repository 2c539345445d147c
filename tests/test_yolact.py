"""YOLACT's parts at the small preset: shapes, losses as the official multibox loss defines them,
detection outputs in the project's convention, and bad input (no objects, no positive anchor)."""

import pytest
import torch
from torchvision.ops import box_convert

from models.yolact import Yolact
from models.yolact_loss import SSD_BOX_CODER, YolactLoss, crop_weight, match_anchors
from tests.box_targets import box_mask_target
from tests.presets import small_yolact


def _target(boxes, labels, size=(96, 128)):
    return box_mask_target(*size, boxes, labels)


def test_full_size_structure_matches_the_paper():
    model = Yolact()
    with torch.no_grad():
        outputs = model.network(torch.zeros(1, 3, 550, 550))
    assert outputs["proto"].shape == (1, 138, 138, 32)  # 32 prototypes at 138x138 for 550x550
    assert outputs["priors"].shape == (19248, 4)  # 3 anchors on 69^2 + 35^2 + 18^2 + 9^2 + 5^2 cells
    assert outputs["conf"].shape == (1, 19248, 81)
    assert outputs["coef"].abs().max() <= 1  # tanh coefficients
    assert outputs["segm"].shape == (1, 80, 69, 69)
    assert sum(p.numel() for p in model.semantic_head.parameters()) == 20_560


def test_training_losses_are_finite_and_reach_every_parameter():
    model = small_yolact()
    model.train()
    images = [torch.rand(3, 96, 128), torch.rand(3, 128, 128)]
    targets = [
        _target([[10, 10, 60, 50], [70, 20, 120, 90]], [1, 3]),
        _target([[5, 5, 100, 120]], [2], (128, 128)),
    ]
    losses = model(images, targets)
    assert set(losses) == {"loss_class", "loss_box", "loss_mask", "loss_semantic"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []


def test_an_image_without_objects_trains_beside_others_and_alone_gives_nan():
    model = small_yolact()
    model.train()
    images = [torch.rand(3, 96, 128), torch.rand(3, 96, 128)]
    mixed = model(images, [_target([[10, 10, 60, 50]], [1]), _target([], [])])
    assert all(torch.isfinite(v) for v in mixed.values())
    alone = model(images[:1], [_target([], [])])
    assert torch.isnan(alone["loss_class"])  # 0 positives: 0 / 0, the step is skipped (DetectionModule)


def test_matching_thresholds_and_forced_best_anchor():
    priors = torch.tensor([[0.0, 0, 0.5, 0.5], [0.0, 0, 0.4, 0.5], [0.0, 0, 0.3, 0.5], [0.6, 0.6, 1, 1]])
    gt = torch.tensor([[0.0, 0, 0.5, 0.5], [0.9, 0.9, 0.95, 0.95]])
    classes, truth = match_anchors(priors, gt, torch.tensor([2, 5]), 0.5, 0.4)
    # IoU 1 -> positive; 0.8 -> positive; 0.6 -> positive; the tiny box claims its best anchor (IoU 0.016)
    assert classes.tolist() == [2, 2, 2, 5] and truth.tolist() == [0, 0, 0, 1]
    priors2 = torch.tensor([[0.0, 0, 0.5, 0.5], [0.0, 0, 0.225, 0.5], [0.0, 0, 0.1, 0.5]])
    classes2, _ = match_anchors(priors2, gt[:1], torch.tensor([1]), 0.5, 0.4)
    assert classes2.tolist() == [1, -1, 0]  # IoU 0.45 ignored, IoU 0.2 background


def test_ohem_takes_three_negatives_per_positive():
    loss = YolactLoss()
    conf = torch.zeros(1, 10, 3)
    conf[0, :, 1] = torch.arange(10.0)  # higher foreground logit = harder negative
    class_t = torch.zeros(1, 10, dtype=torch.long)
    class_t[0, 0] = 2
    positive = class_t > 0
    value = loss._ohem_class_loss(conf, class_t, positive)
    # hardest negatives are anchors 9, 8, 7; each CE = logsumexp - logit of background
    expected = torch.nn.functional.cross_entropy(
        conf[0, [0, 9, 8, 7]], torch.tensor([2, 0, 0, 0]), reduction="sum"
    )
    assert torch.allclose(value, expected)


def test_box_targets_are_ssd_encoded_with_variances():
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    gt = torch.tensor([[0.42, 0.44, 0.62, 0.64]])  # centre (0.52, 0.54), size 0.2
    encoded = SSD_BOX_CODER.encode_single(gt, box_convert(prior, "cxcywh", "xyxy"))
    assert torch.allclose(encoded, torch.tensor([[0.02 / 0.1 / 0.2, 0.04 / 0.1 / 0.2, 0.0, 0.0]]), atol=1e-5)


def test_mask_loss_is_bce_in_the_box_over_the_box_area():
    loss = YolactLoss(mask_weight=1.0)
    proto = torch.zeros(1, 8, 8, 1)  # logits 0 -> p = 0.5 everywhere, BCE log 2 per pixel
    outputs = {"proto": proto, "coef": torch.ones(1, 1, 1)}
    target = {
        "boxes": torch.tensor([[0.25, 0.25, 0.75, 0.75]]),
        "masks": torch.ones(1, 8, 8),
        "labels": torch.tensor([1]),
    }
    value = loss._mask_loss(outputs, [target], [(None, torch.tensor([0]))], torch.tensor([[True]]))
    crop_pixels = crop_weight(8, 8, target["boxes"]).sum()  # 4x4 box + 1 px of padding = 6x6
    assert crop_pixels == 36
    assert torch.allclose(value, torch.log(torch.tensor(2.0)) * 36 / 16)


def test_detections_follow_the_project_convention():
    model = small_yolact(score_threshold=0.0)
    model.eval()
    with torch.no_grad():
        (detection,) = model([torch.rand(3, 90, 120)])
    n = len(detection["scores"])
    assert 0 < n <= 100
    assert detection["masks"].shape == (n, 1, 90, 120)
    assert detection["labels"].min() >= 1 and detection["labels"].max() <= 4
    assert (detection["boxes"][:, 2] <= 120).all() and (detection["boxes"][:, 3] <= 90).all()
    assert (detection["scores"][:-1] >= detection["scores"][1:]).all()


def test_an_image_with_no_detection_above_the_threshold_gives_empty_results():
    model = small_yolact(score_threshold=1.0)  # softmax scores never reach 1: nothing survives
    model.eval()
    with torch.no_grad():
        (detection,) = model([torch.rand(3, 90, 120)])
    assert detection["boxes"].shape == (0, 4) and detection["scores"].shape == (0,)
    assert detection["masks"].shape == (0, 1, 90, 120) and detection["labels"].shape == (0,)


def test_bad_targets_are_refused_with_a_clear_message():
    model = small_yolact()
    model.train()
    target = _target([[10, 10, 60, 50]], [1])
    target["masks"] = target["masks"][:, :50]
    with pytest.raises(ValueError, match="one \\(H, W\\) mask per box"):
        model([torch.rand(3, 96, 128)], [target])


def test_bf16_autocast_losses_match_float32():
    torch.manual_seed(0)
    model = small_yolact()
    model.train()
    images, targets = [torch.rand(3, 96, 128)], [_target([[10, 10, 60, 50], [70, 20, 120, 90]], [1, 3])]
    reference = model(images, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(images, targets)
    for name, value in reference.items():
        assert torch.isclose(mixed[name], value, rtol=0.05), name
