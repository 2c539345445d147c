"""Box branch: torchvision-compatible module names and the Fast R-CNN loss."""

from __future__ import annotations

import torch
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor as TorchvisionPredictor
from torchvision.models.detection.faster_rcnn import TwoMLPHead as TorchvisionTwoMLPHead
from torchvision.models.detection.roi_heads import fastrcnn_loss

from models.box_head import FastRCNNPredictor, TwoMLPHead, fast_rcnn_loss


def test_modules_match_torchvision() -> None:
    head, predictor = TwoMLPHead(8 * 7 * 7, 32), FastRCNNPredictor(32, 6)
    reference_head, reference_predictor = TorchvisionTwoMLPHead(8 * 7 * 7, 32), TorchvisionPredictor(32, 6)
    head.load_state_dict(reference_head.state_dict(), strict=True)
    predictor.load_state_dict(reference_predictor.state_dict(), strict=True)
    x = torch.rand(4, 8, 7, 7)
    for actual, expected in zip(predictor(head(x)), reference_predictor(reference_head(x)), strict=True):
        assert torch.equal(actual, expected)


def test_loss_matches_torchvision() -> None:
    generator = torch.Generator().manual_seed(0)
    logits, deltas = torch.randn(10, 6, generator=generator), torch.randn(10, 24, generator=generator)
    labels = [torch.tensor([0, 3, 5, 0, 1]), torch.tensor([0, 0, 2, 0, 0])]
    targets = [torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)]
    expected = fastrcnn_loss(logits, deltas, labels, targets)
    actual = fast_rcnn_loss(logits, deltas, torch.cat(labels), torch.cat(targets))
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=0, atol=0)
    assert fast_rcnn_loss(logits[:2], deltas[:2], torch.zeros(2, dtype=torch.int64), targets[0][:2])[1] == 0
