"""Mask branch: torchvision-compatible module names and shapes, mask targets and L_mask."""

from __future__ import annotations

import torch
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_inference, maskrcnn_loss

from models.mask_head import (
    MaskHead,
    MaskPredictor,
    mask_probabilities,
    mask_rcnn_loss,
    project_masks_on_boxes,
)


def test_modules_have_torchvision_state_dict_keys_and_28x28_outputs() -> None:
    head, predictor = MaskHead(32, 16), MaskPredictor(16, num_classes=5, channels=8)
    reference_head = MaskRCNNHeads(32, [16] * 4, 1)
    reference_predictor = MaskRCNNPredictor(16, 8, 5)
    assert head.state_dict().keys() == reference_head.state_dict().keys()
    assert predictor.state_dict().keys() == reference_predictor.state_dict().keys()
    head.load_state_dict(reference_head.state_dict())
    predictor.load_state_dict(reference_predictor.state_dict())
    x = torch.rand(3, 32, 14, 14)
    logits = predictor(head(x))
    assert logits.shape == (3, 5, 28, 28)
    assert torch.equal(logits, reference_predictor(reference_head(x)))


def test_loss_and_probabilities_match_torchvision() -> None:
    generator = torch.Generator().manual_seed(0)
    gt_masks = [(torch.rand(3, 40, 50, generator=generator) > 0.5).to(torch.uint8), torch.zeros(0, 30, 30)]
    gt_labels = [torch.tensor([2, 1, 4]), torch.zeros(0, dtype=torch.int64)]
    boxes = [torch.tensor([[1.0, 2.0, 30.0, 35.0], [5.0, 5.0, 45.0, 38.0]]), torch.zeros(0, 4)]
    matched = [torch.tensor([2, 0]), torch.zeros(0, dtype=torch.int64)]
    logits = torch.randn(2, 5, 28, 28, generator=generator)
    targets = torch.cat(
        [project_masks_on_boxes(m, b, i, 28) for m, b, i in zip(gt_masks, boxes, matched, strict=True)]
    )
    labels = torch.cat([lab[i] for lab, i in zip(gt_labels, matched, strict=True)])
    expected = maskrcnn_loss(logits, boxes, gt_masks, gt_labels, matched)
    torch.testing.assert_close(mask_rcnn_loss(logits, labels, targets), expected, rtol=0, atol=0)
    assert torch.equal(mask_probabilities(logits, labels), maskrcnn_inference(logits, [labels])[0])
    aligned = project_masks_on_boxes(gt_masks[0], boxes[0], matched[0], 28, aligned=True)
    assert not torch.allclose(aligned, targets)


def test_loss_without_foreground_is_zero_with_gradient() -> None:
    logits = torch.randn(0, 5, 28, 28, requires_grad=True)
    loss = mask_rcnn_loss(logits, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 28, 28))
    loss.backward()
    assert loss == 0 and logits.grad is not None
