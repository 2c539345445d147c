"""UPSNet (``models/upsnet.py``) and its parts: the official full-size parameter count, the deformable
semantic head, the panoptic head's logits, targets and inference steps, the heuristic merge, and the
model's training losses and eval output on the small preset."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from datamodules.batch import IGNORE_INDEX
from models.backbones import resnet_fpn_backbone
from models.deformable_semantic_head import (
    DeformableConvBlock,
    DeformableSemanticHead,
    semantic_roi_targets,
    subnet_channels,
)
from models.heuristic_panoptic_merge import HeuristicMerge
from models.panoptic_head import (
    drop_small_stuff,
    logits_in_boxes,
    panoptic_logits,
    panoptic_targets,
    paste_logits_in_boxes,
    remove_overlapping_masks,
    unify,
)
from models.panoptic_segments import segments_from_maps, segments_with_instances
from models.upsnet import UPSNet, padded_semantic
from tests.presets import small_upsnet


def official_count(module: nn.Module) -> int:
    """Parameters as the official code counts them: its ResNet's frozen batch-norm affines are parameters,
    torchvision's ``FrozenBatchNorm2d`` keeps them as buffers."""
    frozen = sum(
        m.weight.numel() + m.bias.numel() for m in module.modules() if isinstance(m, FrozenBatchNorm2d)
    )
    return sum(p.numel() for p in module.parameters()) + frozen


def test_full_size_parameter_count_equals_the_official_r50_coco_model() -> None:
    model = UPSNet()
    detector = model.detector
    assert (model.num_classes, model.num_stuff_classes, model.num_semantic_classes) == (80, 53, 133)
    assert official_count(detector.backbone.body) == 23_508_032
    assert official_count(detector.backbone.fpn) == 3_868_928
    assert official_count(detector.rpn) == 593_935
    assert (
        official_count(detector.roi_heads.box_head) + official_count(detector.roi_heads.box_predictor)
        == 14_310_805
    )
    assert (
        official_count(detector.roi_heads.mask_head) + official_count(detector.roi_heads.mask_predictor)
        == 2_643_537
    )
    assert official_count(model.semantic_head) == 1_204_667
    assert official_count(model) == 46_129_904
    assert official_count(model) - sum(p.numel() for p in model.parameters()) == 53_120


def test_semantic_subnet_widths_follow_the_official_fcn_subnet() -> None:
    assert subnet_channels(256, 128, 3) == [(256, 256), (256, 128), (128, 128)]  # COCO
    assert subnet_channels(256, 128, 2) == [(256, 128), (128, 128)]  # Cityscapes
    with pytest.raises(ValueError, match="at least 2"):
        subnet_channels(256, 128, 1)


def test_deformable_block_starts_as_a_plain_convolution() -> None:
    """Zero-initialised offsets: torchvision's DeformConv2d samples the regular grid, so the block equals
    a 3x3 convolution with the same weights -- and moving the offsets changes it."""
    torch.manual_seed(0)
    block = DeformableConvBlock(8, 4)
    x = torch.randn(2, 8, 10, 12)
    plain = F.relu(F.conv2d(x, block.conv.weight, block.conv.bias, padding=1))
    torch.testing.assert_close(block(x), plain, rtol=1e-5, atol=1e-5)
    nn.init.constant_(block.offset.bias, 0.5)
    assert not torch.allclose(block(x), plain, atol=1e-3)


def test_vpsnet_semantic_head_is_group_normed_and_bias_free_with_the_official_count() -> None:
    """VPSNet's UPSNetFPN (mcahny/vps): 3 bias-free deformable layers, each followed by GroupNorm(32);
    with 19 Cityscapes classes 1,146,697 parameters (the official module's count)."""
    head = DeformableSemanticHead(19, 256, 128, 3, group_norm=True)
    assert sum(p.numel() for p in head.parameters()) == 1_146_697
    block = head.subnet[0]
    assert block.conv.bias is None and isinstance(block.norm, nn.GroupNorm) and block.norm.num_groups == 32
    assert isinstance(DeformableSemanticHead(19).subnet[0].norm, nn.Identity)


def test_semantic_head_outputs_quarter_resolution_logits_and_features() -> None:
    head = DeformableSemanticHead(num_semantic_classes=7, fpn_channels=16, channels=8, num_layers=3)
    levels = [torch.randn(2, 16, 32 // s, 48 // s) for s in (1, 2, 4, 8)]
    logits, features = head(levels)
    assert logits.shape == (2, 7, 32, 48) and features.shape == (2, 32, 32, 48)


def test_global_context_fpn_adds_a_linear_of_the_top_stage_average() -> None:
    torch.manual_seed(0)
    plain = resnet_fpn_backbone(18, 32, frozen_bn=False)
    context = resnet_fpn_backbone(18, 32, frozen_bn=False, global_context=True)
    missing, unexpected = context.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["fpn.global_context.weight", "fpn.global_context.bias"] and unexpected == []
    images = torch.rand(1, 3, 64, 64)
    nn.init.zeros_(context.fpn.global_context.weight)
    nn.init.zeros_(context.fpn.global_context.bias)
    with torch.no_grad():
        same = context(images)
        for name, value in plain(images).items():
            torch.testing.assert_close(same[name], value)
        nn.init.constant_(context.fpn.global_context.bias, 1.0)
        changed = context(images)
    assert not torch.allclose(changed["3"], same["3"])


def test_semantic_roi_targets_crop_the_box_and_resize_by_nearest() -> None:
    semantic = torch.zeros(20, 20, dtype=torch.int64)
    semantic[5:15, 5:10] = 3
    targets = semantic_roi_targets(semantic, torch.tensor([[5.0, 5.0, 15.0, 15.0]]), size=4)
    assert targets.tolist() == [[[3, 3, 0, 0]] * 4]


def test_panoptic_logits_stack_stuff_instances_and_unknown() -> None:
    """Two stuff classes, two thing classes; one instance of thing class 3 in a box."""
    semantic = torch.zeros(4, 6, 6)
    semantic[0] = 1.0
    semantic[3] = 2.0
    semantic[3, 0, 0] = 5.0  # a thing pixel outside the box
    boxes = torch.tensor([[1.0, 1.0, 3.0, 3.0]])  # rows/columns 1..3
    mask = torch.full((1, 6, 6), 0.0)
    mask[0, 1:4, 1:4] = 0.5
    logits = panoptic_logits(semantic, 2, torch.tensor([3]), boxes, mask)
    assert logits.shape == (4, 6, 6)  # 2 stuff, 1 instance, unknown
    assert logits[2, 2, 2] == 2.5 and logits[2, 0, 0] == 0.0
    assert logits[3, 0, 0] == 5.0  # the thing logit no instance explains
    assert logits[3, 2, 2] == 0.0  # explained by the instance
    assert logits_in_boxes(semantic, torch.tensor([3]), boxes)[0, 4, 4] == 0.0
    no_unknown = panoptic_logits(semantic, 2, torch.tensor([3]), boxes, mask, with_unknown=False)
    assert no_unknown.shape == (3, 6, 6)


def test_thing_logits_and_mask_logits_cover_the_same_box() -> None:
    """A box whose far corner has a fraction >= .5: the thing logit stops where the pasted mask logits
    stop (x0..int(x1)), so no strip of the box carries the thing logit without the mask logit."""
    semantic = torch.ones(3, 8, 8)
    boxes = torch.tensor([[1.0, 2.0, 4.6, 5.7]])
    cropped = logits_in_boxes(semantic, torch.tensor([2]), boxes)[0]
    pasted = paste_logits_in_boxes(torch.ones(1, 28, 28), boxes, (8, 8))[0]
    assert torch.equal(cropped != 0, pasted != 0)
    assert cropped[2:6, 1:5].eq(1).all() and cropped.sum() == 16


def test_panoptic_targets_send_unexplained_things_to_unknown() -> None:
    semantic = torch.tensor([[0, 1, 2, 2], [IGNORE_INDEX, 3, 3, 2]])
    kept = torch.tensor([[[0, 0, 1, 1], [0, 0, 0, 1]]])  # the thing-2 instance; the thing-3 one was dropped
    target = panoptic_targets(semantic, kept, num_stuff=2)
    assert target.tolist() == [[0, 1, 2, 2], [IGNORE_INDEX, 3, 3, 2]]  # 2 = instance 0, 3 = unknown
    assert panoptic_targets(semantic, kept, 2, with_unknown=False)[1].tolist() == [IGNORE_INDEX] * 3 + [2]


def test_overlapping_masks_of_the_same_class_are_removed() -> None:
    masks = torch.full((3, 8, 8), -1.0)
    masks[0, 0:4, 0:4] = 1.0  # best score
    masks[1, 1:5, 1:5] = 1.0  # 9 of 16 pixels on mask 0 (> 0.3): removed, same class
    masks[2, 1:5, 1:5] = 1.0  # same pixels, other class: kept
    keep = remove_overlapping_masks(masks, torch.tensor([1, 1, 2]), torch.tensor([0.9, 0.8, 0.7]))
    assert keep.tolist() == [0, 2]


def test_unify_turns_stuff_majority_instances_into_stuff_and_drops_small_stuff() -> None:
    num_stuff = 2
    # panoptic argmax: stuff 0 on the left, instance 0 (class 2) in the middle, instance 1 (class 3) right
    panoptic = torch.tensor([[0, 0, 2, 2, 3, 3], [0, 0, 2, 2, 3, 3], [1, 4, 2, 2, 3, 3]])
    semantic = torch.tensor([[0, 0, 2, 2, 1, 1], [0, 0, 2, 2, 1, 1], [1, 3, 2, 2, 1, 3]])
    class_map, instance_map = unify(panoptic, semantic, torch.tensor([2, 3]), num_stuff, stuff_area_limit=2)
    assert instance_map.tolist() == [[0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0]]
    assert class_map[:, 4:].tolist() == [[1, 1]] * 3  # instance 1 was mostly stuff 1 (5 of 6)
    assert class_map[2, 1] == IGNORE_INDEX  # unknown
    assert drop_small_stuff(class_map, instance_map, num_stuff, 7)[0, 0] == IGNORE_INDEX  # stuff 0: 4 px


def test_heuristic_merge_orders_by_score_and_voids_unexplained_things() -> None:
    semantic = torch.tensor([[0, 0, 2, 2], [0, 0, 2, 2], [1, 1, 3, 3]])
    masks = torch.zeros(3, 3, 4, dtype=torch.bool)
    masks[0, 0:2, 2:4] = True
    masks[1, 0:2, 1:4] = True  # 4 of its 6 pixels taken by the better mask 0 (< 0.7 left): dropped
    masks[2, 2, 3] = True  # below the score threshold
    merge = HeuristicMerge(score_thresh=0.5, overlap_fraction=0.7, stuff_area_limit=0)
    class_map, instance_map, kept = merge(
        semantic, masks, torch.tensor([2, 2, 3]), torch.tensor([0.9, 0.95, 0.1]), 2
    )
    assert kept.tolist() == [2] and instance_map.tolist() == [[0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]]
    assert class_map[2, 2:].tolist() == [IGNORE_INDEX, IGNORE_INDEX]  # thing 3 with no instance: void


def test_segments_from_maps_numbers_stuff_then_instances() -> None:
    class_map = torch.tensor([[0, 0, IGNORE_INDEX, 5], [3, 3, 5, 5]])
    instance_map = torch.tensor([[0, 0, 0, 1], [0, 2, 2, 0]])
    ids, classes = segments_from_maps(class_map, instance_map, torch.tensor([7, 8]))
    assert ids.tolist() == [[1, 1, 0, 4], [2, 5, 5, 3]] and classes.tolist() == [0, 3, 5, 7, 8]
    same_ids, same_classes, instances = segments_with_instances(class_map, instance_map, torch.tensor([7, 8]))
    assert torch.equal(same_ids, ids) and torch.equal(same_classes, classes)
    assert instances.tolist() == [-1, -1, -1, 0, 1]


def _batch(sizes=((128, 128), (96, 128))):
    images, targets = [], []
    for height, width in sizes:
        masks = torch.zeros(2, height, width, dtype=torch.uint8)
        masks[0, 10:40, 10:50] = 1
        masks[1, 50:90, 60:100] = 1
        semantic = torch.randint(0, 4, (height, width))
        semantic[masks[0].bool()] = 4
        semantic[masks[1].bool()] = 6
        semantic[:3] = IGNORE_INDEX
        boxes = torch.tensor([[10.0, 10, 50, 40], [60, 50, 100, 90]])
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 3]), "masks": masks, "semantic": semantic})
        images.append(torch.rand(3, height, width))
    return images, targets


def test_training_returns_the_paper_losses_and_trains_every_head() -> None:
    torch.manual_seed(0)
    model = small_upsnet()
    images, targets = _batch()
    losses = model(images, targets)
    assert {"loss_semantic", "loss_semantic_roi", "loss_panoptic", "loss_mask"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_panoptic"].backward()
    # the panoptic loss reaches the semantic head and the mask branch
    assert model.semantic_head.score.weight.grad.abs().sum() > 0
    assert model.detector.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0
    baseline = small_upsnet(panoptic_head=False, semantic_roi_loss=False)
    assert not {"loss_panoptic", "loss_semantic_roi"} & set(baseline(images, targets))


def test_semantic_targets_follow_the_network_resize() -> None:
    """The detector resizes the images (here 128 -> 256 px): the semantic targets follow, by nearest."""
    torch.manual_seed(0)
    model = small_upsnet()
    model.detector.transform.min_size, model.detector.transform.max_size = (256,), 256
    images, targets = _batch()
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    semantic = padded_semantic(targets, [(256, 256), (192, 256)], (256, 256))
    assert semantic.shape == (2, 256, 256) and bool((semantic[1, 192:] == IGNORE_INDEX).all())
    assert torch.equal(semantic[0, ::2, ::2], targets[0]["semantic"])


def test_training_needs_a_semantic_map_of_the_image_size() -> None:
    images, targets = _batch()
    targets[1]["semantic"] = targets[1]["semantic"][:50]
    with pytest.raises(ValueError, match="target 1: UPSNet trains on a"):
        small_upsnet()(images, targets)


def test_eval_returns_panoptic_segments_at_the_original_size() -> None:
    torch.manual_seed(0)
    model = small_upsnet(panoptic_score_thresh=0.0, heuristic_score_thresh=0.0).eval()
    images, _ = _batch()
    with torch.no_grad():
        outputs = model(images)
    for image, output in zip(images, outputs, strict=True):
        for key in ("panoptic", "heuristic_panoptic"):
            assert output[key].shape == image.shape[-2:]
        for ids_key, classes_key in (
            ("panoptic", "segment_classes"),
            ("heuristic_panoptic", "heuristic_segment_classes"),
        ):
            ids, classes = output[ids_key], output[classes_key]
            assert set(ids.unique().tolist()) - {0} == set(range(1, len(classes) + 1))
            assert bool(((classes >= 0) & (classes < model.num_semantic_classes)).all())
        assert output["masks"].shape[-2:] == image.shape[-2:]
        # each instance segment names its detection, of the segment's class
        detections, classes = output["segment_detections"], output["segment_classes"]
        things = detections >= 0
        assert bool((classes[~things] < model.num_stuff_classes).all())
        labels = output["labels"][detections[things]]
        assert torch.equal(classes[things], model.num_stuff_classes + labels - 1)
    baseline = small_upsnet(panoptic_head=False).eval()
    with torch.no_grad():
        output = baseline(images[:1])[0]
    assert "panoptic" in output and "heuristic_panoptic" not in output
