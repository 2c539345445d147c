"""paste_masks_in_image reproduces torchvision's pasting exactly, for boxes inside and across the
image borders; boxes entirely outside (which torchvision's version cannot take) paste nothing."""

from __future__ import annotations

import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image as torchvision_paste

from models.paste_masks import paste_masks_in_image


def test_matches_torchvision_on_random_masks_and_boxes() -> None:
    generator = torch.Generator().manual_seed(0)
    height, width = 61, 83
    corners = torch.rand(40, 2, generator=generator) * torch.tensor([width + 5.0, height + 5.0]) - 10
    sizes = 12 + torch.rand(40, 2, generator=generator) * 40  # every box overlaps the image
    boxes = torch.cat([corners, corners + sizes], dim=1)
    boxes[0] = torch.tensor([10.0, 10.0, 10.2, 10.1])  # sub-pixel box
    boxes[1] = torch.tensor([20.0, 30.0, 20.0, 45.0])  # zero width
    boxes[2] = torch.tensor([-3.0, -2.0, width + 4.0, height + 2.0])  # covers the whole image
    masks = torch.rand(40, 1, 28, 28, generator=generator)
    expected = torchvision_paste(masks, boxes, (height, width))
    actual = paste_masks_in_image(masks, boxes, (height, width))
    assert actual.shape == (40, 1, height, width)
    assert torch.equal(actual, expected)
    assert actual[2].min() > 0


def test_boxes_outside_the_image_paste_nothing() -> None:
    boxes = torch.tensor([[200.0, 5.0, 230.0, 30.0], [5.0, 80.0, 20.0, 99.0], [-30.0, -20.0, -5.0, -4.0]])
    assert paste_masks_in_image(torch.ones(3, 1, 28, 28), boxes, (61, 83)).sum() == 0


def test_padding_and_empty_input() -> None:
    masks, boxes = torch.rand(3, 1, 14, 14), torch.tensor([[1.0, 2.0, 20.0, 30.0]] * 3)
    assert torch.equal(
        paste_masks_in_image(masks, boxes, (32, 24), 2), torchvision_paste(masks, boxes, (32, 24), 2)
    )
    assert paste_masks_in_image(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (5, 7)).shape == (0, 1, 5, 7)
