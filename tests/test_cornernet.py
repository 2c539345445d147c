"""CornerNet's targets and embedding loss against transcriptions of the official ``kp_detection`` and
``_ae_loss``, its pair decoding rules, a perfect-prediction round trip (with and without flip test), and
losses that stay finite on the awkward batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from models.cornernet import (
    CornerNet,
    CornerNetDecoding,
    corner_targets,
    decode_corners,
    embedding_losses,
)
from models.keypoint_heads import KeypointHeads
from tests.test_object_heatmaps import official_bump, official_radius

CORNER_OUTPUTS = {"tl_heat": 3, "br_heat": 3, "tl_tag": 1, "br_tag": 1, "tl_regr": 2, "br_regr": 2}


class PooledCornerNetwork(nn.Module):
    """A stand-in network for the model tests: a 1x1 conv and a 4x4 average pool, then the heads."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.AvgPool2d(4))
        self.heads = KeypointHeads(8, 8, CORNER_OUTPUTS)

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        return [self.heads(self.body(x))]


def official_corner_targets(boxes, classes, num_classes, input_size, output_size, iou=0.3):
    """The official ``kp_detection`` target loop (after the crop), transcribed; sizes are (w, h)."""
    (in_w, in_h), (out_w, out_h) = input_size, output_size
    dets = np.array(boxes, dtype=np.float64)
    dets[:, 0:4:2] = np.clip(dets[:, 0:4:2], 0, in_w - 1)
    dets[:, 1:4:2] = np.clip(dets[:, 1:4:2], 0, in_h - 1)
    keep = ((dets[:, 2] - dets[:, 0]) > 0) & ((dets[:, 3] - dets[:, 1]) > 0)
    width_ratio, height_ratio = out_w / in_w, out_h / in_h
    tl = np.zeros((num_classes, out_h, out_w))
    br = np.zeros((num_classes, out_h, out_w))
    tl_regr, br_regr, tl_tags, br_tags = [], [], [], []
    for det, category in zip(dets[keep], np.array(classes)[keep], strict=True):
        fxtl, fytl, fxbr, fybr = (
            det[0] * width_ratio,
            det[1] * height_ratio,
            det[2] * width_ratio,
            det[3] * height_ratio,
        )
        xtl, ytl, xbr, ybr = int(fxtl), int(fytl), int(fxbr), int(fybr)
        width = math.ceil((det[2] - det[0]) * width_ratio)
        height = math.ceil((det[3] - det[1]) * height_ratio)
        radius = max(0, int(official_radius(height, width, iou)))
        official_bump(tl[category], (xtl, ytl), radius)
        official_bump(br[category], (xbr, ybr), radius)
        tl_regr.append([fxtl - xtl, fytl - ytl])
        br_regr.append([fxbr - xbr, fybr - ybr])
        tl_tags.append(ytl * out_w + xtl)
        br_tags.append(ybr * out_w + xbr)
    return tl, br, np.array(tl_regr), np.array(br_regr), tl_tags, br_tags, keep


def test_targets_equal_the_official_loop() -> None:
    boxes = [[5.3, 7.9, 40.2, 30.0], [20.0, 10.0, 70.0, 61.5], [2.0, 3.0, 2.5, 3.2], [80.0, 5.0, 90.0, 9.0]]
    classes = [0, 0, 2, 1]
    input_size, output_size = (63, 63), (16, 16)
    ours = corner_targets([torch.tensor(boxes)], [torch.tensor(classes) + 1], 3, input_size, output_size)
    tl, br, tl_regr, br_regr, tl_tags, br_tags, keep = official_corner_targets(
        boxes, classes, 3, input_size, output_size
    )
    assert ours.mask[0].tolist() == keep.tolist() and ours.skipped == 1
    assert torch.allclose(ours.top_left[0].double(), torch.from_numpy(tl), atol=1e-6)
    assert torch.allclose(ours.bottom_right[0].double(), torch.from_numpy(br), atol=1e-6)
    mask = ours.mask[0]
    assert ours.top_left_indices[0][mask].tolist() == tl_tags
    assert ours.bottom_right_indices[0][mask].tolist() == br_tags
    assert torch.allclose(ours.top_left_offsets[0][mask].double(), torch.from_numpy(tl_regr), atol=1e-5)
    assert torch.allclose(ours.bottom_right_offsets[0][mask].double(), torch.from_numpy(br_regr), atol=1e-5)


def official_ae_loss(tag0: Tensor, tag1: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The official ``_ae_loss``, transcribed (tags (B, M), mask (B, M) uint8)."""
    num = mask.sum(dim=1, keepdim=True).float()
    tag_mean = (tag0 + tag1) / 2
    pull = (torch.pow(tag0 - tag_mean, 2) / (num + 1e-4))[mask.bool()].sum()
    pull = pull + (torch.pow(tag1 - tag_mean, 2) / (num + 1e-4))[mask.bool()].sum()
    pair_mask = (mask.unsqueeze(1) + mask.unsqueeze(2)).eq(2)
    num = num.unsqueeze(2)
    num2 = (num - 1) * num
    dist = 1 - torch.abs(tag_mean.unsqueeze(1) - tag_mean.unsqueeze(2))
    dist = nn.functional.relu(dist)
    dist = (dist - 1 / (num + 1e-4)) / (num2 + 1e-4)
    return pull, dist[pair_mask].sum()


def test_embedding_losses_equal_the_official_ae_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    tag0, tag1 = torch.randn(3, 5, generator=generator), torch.randn(3, 5, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.uint8)
    ours = embedding_losses(tag0, tag1, mask.bool())
    theirs = official_ae_loss(tag0, tag1, mask)
    assert float(ours[0]) == pytest.approx(float(theirs[0]), rel=1e-6)
    assert float(ours[1]) == pytest.approx(float(theirs[1]), rel=1e-6)


def test_decode_pairs_corners_by_class_embedding_and_position() -> None:
    tl_heat, br_heat = torch.zeros(1, 2, 10, 10), torch.zeros(1, 2, 10, 10)
    tl_tag, br_tag = torch.zeros(1, 1, 10, 10), torch.zeros(1, 1, 10, 10)
    tl_heat[0, 0, 1, 1], br_heat[0, 0, 6, 5] = 0.9, 0.7  # object A, class 1, tags 0.0 / 0.1
    tl_tag[0, 0, 1, 1], br_tag[0, 0, 6, 5] = 0.0, 0.1
    tl_heat[0, 1, 4, 7], br_heat[0, 1, 8, 9] = 0.8, 0.6  # object B, class 2, tags 3.0 / 3.2
    tl_tag[0, 0, 4, 7], br_tag[0, 0, 8, 9] = 3.0, 3.2
    regr = torch.zeros(1, 2, 10, 10)
    boxes, scores, labels = decode_corners(
        tl_heat, br_heat, tl_tag, br_tag, regr, regr, CornerNetDecoding(top_k=4, num_dets=16)
    )
    valid = scores[0] > 0.05  # pairs of zero-valued peaks (K exceeds the real peaks) score 0
    found = {
        (tuple(b.tolist()), int(c)): float(s)
        for b, c, s in zip(boxes[0][valid], labels[0][valid], scores[0][valid], strict=True)
    }
    # A with B's bottom-right: embeddings 3.2 apart; B's top-left with A's bottom-right: not below-right
    assert found == pytest.approx({((1.0, 1.0, 5.0, 6.0), 1): 0.8, ((7.0, 4.0, 9.0, 8.0), 2): 0.7})


def perfect_outputs(model: CornerNet, images: list[Tensor], targets: list[dict[str, Tensor]], mirrored: bool):
    """The maps a perfect network would predict (for the mirrored images when ``mirrored``); embeddings
    are each object's index."""
    scales = model.transform.scales(images)
    size = model.transform.input_size
    boxes = [t["boxes"] * s for t, s in zip(targets, scales, strict=True)]
    if mirrored:
        boxes = [torch.stack([size - b[:, 2], b[:, 1], size - b[:, 0], b[:, 3]], dim=1) for b in boxes]
    side = size // 4
    goal = corner_targets(
        boxes, [t["labels"] for t in targets], model.num_classes, (size, size), (side, side)
    )
    outputs = {}
    for corner, heat, indices, offsets in (
        ("tl", goal.top_left, goal.top_left_indices, goal.top_left_offsets),
        ("br", goal.bottom_right, goal.bottom_right_indices, goal.bottom_right_offsets),
    ):
        clamped = heat.clamp(1e-6, 1 - 1e-6)
        outputs[f"{corner}_heat"] = torch.log(clamped / (1 - clamped))
        tags, regr = torch.zeros(len(images), 1, side * side), torch.zeros(len(images), 2, side * side)
        for i in range(len(images)):
            keep = goal.mask[i]
            tags[i, 0, indices[i][keep]] = torch.arange(int(keep.sum()), dtype=torch.float32) * 5
            regr[i][:, indices[i][keep]] = offsets[i][keep].T
        outputs[f"{corner}_tag"] = tags.view(-1, 1, side, side)
        outputs[f"{corner}_regr"] = regr.view(-1, 2, side, side)
    return outputs


@pytest.mark.parametrize("flip_test", [False, True])
def test_perfect_predictions_give_back_the_boxes(flip_test: bool) -> None:
    model = CornerNet(PooledCornerNetwork(), num_classes=3, input_size=64).eval()
    model.decoding = CornerNetDecoding(flip_test=flip_test)
    images = [torch.rand(3, 48, 96)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 8.0, 40.0, 30.0], [50.0, 12.0, 90.0, 44.0]]),
            "labels": torch.tensor([1, 3]),
        }
    ]
    plain = perfect_outputs(model, images, targets, mirrored=False)
    if flip_test:
        flipped = perfect_outputs(model, images, targets, mirrored=True)
        both = {name: torch.cat([plain[name], flipped[name]]) for name in plain}
        model.network.forward = lambda x: [both]
    else:
        model.network.forward = lambda x: [plain]
    detection = model(images)[0]
    best = detection["scores"] > 0.9
    order = torch.argsort(detection["boxes"][best][:, 0])
    assert torch.allclose(detection["boxes"][best][order], targets[0]["boxes"], atol=1e-3)
    assert detection["labels"][best][order].tolist() == [1, 3]


@pytest.mark.parametrize(
    "targets",
    [
        [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2,
        [{"boxes": torch.tensor([[10.0, 10.0, 11.0, 11.5]]), "labels": torch.tensor([2])}] * 2,
        [
            {
                "boxes": torch.tensor([[4.0, 4.0, 30.0, 20.0], [30.0, 30.0, 60.0, 50.0]]),
                "labels": torch.tensor([1, 1]),
            },
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
        ],
    ],
    ids=["no_objects", "box_below_one_cell", "classes_without_instances"],
)
def test_losses_stay_finite(targets: list[dict[str, Tensor]]) -> None:
    torch.manual_seed(0)
    model = CornerNet(PooledCornerNetwork(), num_classes=3, input_size=64).train()
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 48, 64)], targets)
    assert set(losses) == {"loss_heatmap", "loss_pull", "loss_push", "loss_offset"}
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
