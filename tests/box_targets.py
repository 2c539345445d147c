"""Targets whose masks fill their boxes: the hand-made instances the detection model tests train on."""

import torch


def box_mask_target(
    height: int, width: int, boxes: list[list[float]], labels: list[int]
) -> dict[str, torch.Tensor]:
    masks = torch.zeros(len(boxes), height, width, dtype=torch.uint8)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes, strict=True):
        mask[int(y0) : int(y1), int(x0) : int(x1)] = 1
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": masks,
    }
