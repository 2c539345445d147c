"""RoI heads: proposal sampling and detection post-processing equal torchvision's RoIHeads."""

from __future__ import annotations

import torch
from torchvision.models.detection.roi_heads import RoIHeads

from models.box_head import FastRCNNPredictor, TwoMLPHead
from models.roi_align import FPNRoIAlign
from models.roi_heads import BoxRoIHeads

SETTINGS = {
    "fg_iou_thresh": 0.5,
    "bg_iou_thresh": 0.5,
    "batch_size_per_image": 32,
    "positive_fraction": 0.25,
    "bbox_reg_weights": (10.0, 10.0, 5.0, 5.0),
    "score_thresh": 0.05,
    "nms_thresh": 0.5,
    "detections_per_img": 20,
}


def _heads() -> tuple[BoxRoIHeads, RoIHeads]:
    ours = BoxRoIHeads(FPNRoIAlign(7), TwoMLPHead(4 * 49, 16), FastRCNNPredictor(16, 5), **SETTINGS)
    reference = RoIHeads(None, None, None, *SETTINGS.values())
    return ours, reference


def _proposals(generator: torch.Generator, count: int) -> torch.Tensor:
    corners = torch.rand(count, 2, generator=generator) * 80
    return torch.cat([corners, corners + 4 + torch.rand(count, 2, generator=generator) * 40], dim=1)


def test_sampling_matches_torchvision() -> None:
    generator = torch.Generator().manual_seed(0)
    proposals = [_proposals(generator, 60), _proposals(generator, 50)]
    targets = [
        {"boxes": proposals[0][:3] + 2, "labels": torch.tensor([1, 4, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    ours, reference = _heads()
    torch.manual_seed(3)
    expected = reference.select_training_samples([p.clone() for p in proposals], targets)
    torch.manual_seed(3)
    sampled = ours.sample_rois(proposals, targets)
    expected_proposals, expected_matched, expected_labels, _ = expected
    for actual, wanted in zip(sampled, (expected_proposals, expected_labels, expected_matched), strict=True):
        for a, w in zip(actual, wanted, strict=True):
            assert torch.equal(a, w)
    assert (sampled.labels[0] > 0).any() and (sampled.labels[1] == 0).all()
    fg_boxes, fg_labels, fg_matched = sampled.foreground()
    assert len(fg_boxes[1]) == 0 and torch.equal(fg_labels[0], targets[0]["labels"][fg_matched[0]])


def test_postprocess_matches_torchvision() -> None:
    generator = torch.Generator().manual_seed(0)
    proposals = [_proposals(generator, 40), _proposals(generator, 30)]
    logits = torch.randn(70, 5, generator=generator) * 3
    deltas = torch.randn(70, 20, generator=generator)
    ours, reference = _heads()
    shapes = [(100, 90), (70, 120)]
    expected = reference.postprocess_detections(logits, deltas, proposals, shapes)
    actual = ours.postprocess_detections(logits, deltas, proposals, shapes)
    for i, detection in enumerate(actual):
        assert len(detection["boxes"]) > 0
        for key, wanted in zip(("boxes", "scores", "labels"), expected, strict=True):
            assert torch.equal(detection[key], wanted[i])
