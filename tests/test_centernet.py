"""CenterNet's targets against a transcription of the official ``ctdet.py``, its decode, a perfect-prediction
round trip through the letterbox transform, flip test, and losses that stay finite on the awkward
batches (no object left, a box smaller than one output cell, classes without instances)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from models.centernet import CenterNet, center_targets, decode_centers
from models.keypoint_heads import KeypointHeads
from tests.test_object_heatmaps import official_bump, official_radius


class PooledHeadsNetwork(nn.Module):
    """A stand-in network for the model tests: 1x1 convs and a 4x4 average pool (stride 4), so a mirrored
    input gives exactly mirrored outputs; heads as the real networks'."""

    output_stride = 4

    def __init__(self, num_classes: int, channels: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, channels, 1), nn.ReLU(), nn.AvgPool2d(4))
        self.heads = KeypointHeads(channels, 8, {"hm": num_classes, "wh": 2, "reg": 2})
        for branch in self.heads.values():  # 1x1 instead of 3x3 convs: mirror-exact
            branch[0] = nn.Conv2d(channels, 8, 1)

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        return [self.heads(self.body(x))]


def official_targets(boxes: list[list[float]], classes: list[int], num_classes: int, size: tuple[int, int]):
    """The official ``ctdet.py`` target loop for boxes already in output cells, transcribed."""
    width, height = size
    hm = np.zeros((num_classes, height, width), dtype=np.float64)
    wh, reg, ind, mask = [], [], [], []
    for box, cls in zip(boxes, classes, strict=True):
        box = np.array(box, dtype=np.float32)
        box[[0, 2]] = np.clip(box[[0, 2]], 0, width - 1)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, height - 1)
        h, w = box[3] - box[1], box[2] - box[0]
        if h > 0 and w > 0:
            radius = max(0, int(official_radius(math.ceil(h), math.ceil(w))))
            ct = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float32)
            ct_int = ct.astype(np.int32)
            official_bump(hm[cls], (int(ct_int[0]), int(ct_int[1])), radius)
            wh.append((w, h))
            ind.append(ct_int[1] * width + ct_int[0])
            reg.append(ct - ct_int)
            mask.append(True)
        else:
            wh.append((0, 0))
            ind.append(0)
            reg.append((0, 0))
            mask.append(False)
    return hm, np.array(wh), np.array(ind), np.array(reg), np.array(mask)


def test_targets_equal_the_official_loop() -> None:
    size = (32, 24)
    boxes = [
        [3.2, 4.1, 11.7, 15.3],
        [6.0, 6.5, 14.2, 12.9],  # overlaps the first, same class: max-merged
        [20.4, 2.2, 20.9, 2.6],  # smaller than one cell: radius 0, one positive cell
        [29.0, 10.0, 45.0, 30.0],  # leaves the map: clipped
        [40.0, 5.0, 50.0, 9.0],  # entirely right of the map: zero width after clipping, skipped
    ]
    classes = [0, 0, 2, 1, 1]
    ours = center_targets([torch.tensor(boxes)], [torch.tensor(classes) + 1], 3, size)
    hm, wh, ind, reg, mask = official_targets(boxes, classes, 3, size)
    assert torch.allclose(ours.heatmaps[0].double(), torch.from_numpy(hm), atol=1e-6)
    assert ours.mask[0].tolist() == mask.tolist() and ours.skipped == 1
    assert ours.indices[0][ours.mask[0]].tolist() == ind[mask].tolist()
    assert torch.allclose(
        ours.sizes[0][ours.mask[0]].double(), torch.from_numpy(wh[mask]).double(), atol=1e-5
    )
    assert torch.allclose(
        ours.offsets[0][ours.mask[0]].double(), torch.from_numpy(reg[mask]).double(), atol=1e-5
    )
    assert int((ours.heatmaps == 1).sum()) == 4


def test_decode_reads_peaks_offsets_and_sizes() -> None:
    heat = torch.zeros(1, 2, 8, 10)
    heat[0, 1, 3, 4], heat[0, 0, 6, 1] = 0.9, 0.6
    sizes, offsets = torch.zeros(1, 2, 8, 10), torch.zeros(1, 2, 8, 10)
    sizes[0, :, 3, 4], offsets[0, :, 3, 4] = torch.tensor([4.0, 2.0]), torch.tensor([0.25, 0.5])
    boxes, scores, labels = decode_centers(heat, sizes, offsets, max_detections=2)
    assert labels[0].tolist() == [2, 1]
    assert scores[0].tolist() == pytest.approx([0.9, 0.6])
    assert boxes[0, 0].tolist() == pytest.approx([2.25, 2.5, 6.25, 4.5])


def perfect_outputs(model: CenterNet, images: list[Tensor], targets: list[dict[str, Tensor]]) -> dict:
    """The maps a perfect network would predict for ``targets``."""
    scales = model.transform.scales(images)
    side = model.transform.input_size // model.output_stride
    goal = center_targets(
        [t["boxes"] * s / model.output_stride for t, s in zip(targets, scales, strict=True)],
        [t["labels"] for t in targets],
        model.num_classes,
        (side, side),
    )
    heat = goal.heatmaps.clamp(1e-6, 1 - 1e-6)
    wh, reg = torch.zeros(len(images), 2, side * side), torch.zeros(len(images), 2, side * side)
    for i in range(len(images)):
        keep = goal.mask[i]
        wh[i][:, goal.indices[i][keep]] = goal.sizes[i][keep].T
        reg[i][:, goal.indices[i][keep]] = goal.offsets[i][keep].T
    return {
        "hm": torch.log(heat / (1 - heat)),
        "wh": wh.view(len(images), 2, side, side),
        "reg": reg.view(len(images), 2, side, side),
    }


def test_perfect_predictions_give_back_the_boxes() -> None:
    """Targets encoded at the output stride and decoded (peaks, offsets, sizes) give back the boxes in each
    image's own pixels, through the letterbox of a wide and a tall image."""
    model = CenterNet(PooledHeadsNetwork(3), num_classes=3, input_size=64).eval()
    images = [torch.rand(3, 48, 96), torch.rand(3, 128, 40)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 8.0, 40.0, 30.0], [50.0, 12.0, 90.0, 44.0]]),
            "labels": torch.tensor([1, 3]),
        },
        {"boxes": torch.tensor([[4.0, 20.0, 36.0, 100.0]]), "labels": torch.tensor([2])},
    ]
    outputs = perfect_outputs(model, images, targets)
    model.network.forward = lambda x: [outputs]
    detections = model(images)
    for detection, target in zip(detections, targets, strict=True):
        found = detection["scores"] > 0.99
        order = torch.argsort(detection["boxes"][found][:, 0])
        expected = torch.argsort(target["boxes"][:, 0])
        assert torch.allclose(detection["boxes"][found][order], target["boxes"][expected], atol=1e-3)
        assert detection["labels"][found][order].tolist() == target["labels"][expected].tolist()


def test_flip_test_of_a_mirror_exact_network_changes_nothing() -> None:
    torch.manual_seed(0)
    model = CenterNet(PooledHeadsNetwork(2), num_classes=2, input_size=64, max_detections=10).eval()
    images = [torch.rand(3, 64, 64)]
    plain = model(images)[0]
    model.flip_test = True
    flipped = model(images)[0]
    assert torch.allclose(plain["scores"], flipped["scores"], atol=1e-6)
    assert torch.allclose(
        plain["boxes"][:, 2:] - plain["boxes"][:, :2],
        flipped["boxes"][:, 2:] - flipped["boxes"][:, :2],
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "targets",
    [
        [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2,  # no object left
        [{"boxes": torch.tensor([[10.0, 10.0, 11.0, 11.5]]), "labels": torch.tensor([2])}] * 2,  # < 1 cell
        [
            {"boxes": torch.tensor([[4.0, 4.0, 30.0, 20.0]]), "labels": torch.tensor([1])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
        ],  # classes 2 and 3 have no instance in the batch
    ],
    ids=["no_objects", "box_below_one_cell", "classes_without_instances"],
)
def test_losses_stay_finite(targets: list[dict[str, Tensor]]) -> None:
    torch.manual_seed(0)
    model = CenterNet(PooledHeadsNetwork(3), num_classes=3, input_size=64).train()
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 48, 64)], targets)
    assert set(losses) == {"loss_heatmap", "loss_size", "loss_offset"}
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
