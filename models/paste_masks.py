"""Pasting fixed-size RoI mask predictions back into the image (Mask R-CNN paper Sec. 3
"Inference": "The m x m floating-number mask output is then resized to the RoI size"; Sec. 4.1
evaluates the pasted masks). Numerically identical to torchvision's ``paste_masks_in_image``:
masks are zero-padded by ``padding`` pixels, boxes grown by the same ratio and truncated to
integers, each mask bilinearly resized to its integer box (+1 pixel) and copied in."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    """Scale XYXY boxes about their centres by ``scale``."""
    half_sizes = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    centres = (boxes[:, 2:] + boxes[:, :2]) * 0.5
    return torch.cat([centres - half_sizes, centres + half_sizes], dim=1)


def paste_masks_in_image(
    masks: Tensor, boxes: Tensor, image_shape: tuple[int, int], padding: int = 1
) -> Tensor:
    """``masks`` (N, 1, M, M) probabilities for ``boxes`` (N, 4) XYXY in image pixels ->
    (N, 1, H, W) masks on an image of ``image_shape`` (H, W), zero outside the boxes."""
    size = masks.shape[-1]
    masks = F.pad(masks, (padding,) * 4)
    boxes = expand_boxes(boxes, (size + 2 * padding) / size)
    return paste_in_integer_boxes(masks[:, 0], boxes, image_shape)[:, None]


def clipped_integer_box(box: list[int], image_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) slice bounds of an integer XYXY box (x0..x1 inclusive) inside an image of
    ``image_shape`` (H, W); empty (top >= bottom or left >= right) when the box lies outside."""
    x0, y0, x1, y1 = box
    height, width = image_shape
    return max(y0, 0), min(y1 + 1, height), max(x0, 0), min(x1 + 1, width)


def paste_in_integer_boxes(values: Tensor, boxes: Tensor, image_shape: tuple[int, int]) -> Tensor:
    """(N, M, M) maps -> (N, H, W): each resized bilinearly to its box with corners truncated to integers
    (x0..x1 inclusive) and zero outside it; differentiable (UPSNet trains through its pasted mask logits)."""
    height, width = image_shape
    pasted = []
    for value, box in zip(values, boxes.to(torch.int64).tolist(), strict=True):
        x0, y0, x1, y1 = box
        box_w, box_h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        top, bottom, left, right = clipped_integer_box(box, image_shape)
        if top >= bottom or left >= right:
            pasted.append(values.new_zeros((height, width)))
            continue
        resized = F.interpolate(value[None, None], size=(box_h, box_w), mode="bilinear", align_corners=False)
        crop = resized[0, 0, top - y0 : bottom - y0, left - x0 : right - x0]
        pasted.append(F.pad(crop, (left, width - right, top, height - bottom)))
    return torch.stack(pasted) if pasted else values.new_zeros((0, height, width))
