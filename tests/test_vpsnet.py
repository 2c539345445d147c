"""VPSNet (``models/vpsnet.py``, ``models/vps_tracking.py``): the official full-size parameter count, the
training losses on (reference, target) pairs, the track head's labels, the official test-time id
assignment, and ids that persist over a video."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from datamodules.batch import IGNORE_INDEX
from models.mask_iou_tracking import THING_ID_OFFSET
from models.vps_track_head import TrackHead
from models.vps_tracking import TrackMemory, assign_ids
from models.vpsnet import VPSNet, reference_column, video_segments
from tests.presets import small_vpsnet


def official_count(module: nn.Module) -> int:
    """Parameters as the official code counts them (its ResNet's frozen batch-norm affines are parameters;
    torchvision's ``FrozenBatchNorm2d`` keeps them as buffers)."""
    frozen = sum(
        m.weight.numel() + m.bias.numel() for m in module.modules() if isinstance(m, FrozenBatchNorm2d)
    )
    return sum(p.numel() for p in module.parameters()) + frozen


def test_full_size_count_without_the_flow_network_equals_the_official_fusetrack() -> None:
    model = VPSNet()
    flow = sum(p.numel() for p in model.flow_net.parameters())
    assert official_count(model) - flow == 62_782_832
    assert official_count(model.upsnet) == 45_159_886
    assert not model.upsnet.with_unknown and not model.upsnet.with_semantic_roi_loss
    assert (model.num_classes, model.num_stuff_classes) == (8, 11)


def _frame(shift: int, size: int = 128) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A frame with two objects (ids 7 and 9) moved ``shift`` pixels right."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, size, size, generator=generator)
    masks = torch.zeros(2, size, size, dtype=torch.uint8)
    masks[0, 10:40, 10 + shift : 50 + shift] = 1
    masks[1, 60:100, 60 + shift : 100 + shift] = 1
    semantic = torch.randint(0, 4, (size, size), generator=generator)
    semantic[masks[0].bool()] = 4
    semantic[masks[1].bool()] = 6
    semantic[:3] = IGNORE_INDEX
    boxes = torch.tensor([[10.0 + shift, 10, 50 + shift, 40], [60 + shift, 60, 100 + shift, 100]])
    target = {
        "boxes": boxes,
        "labels": torch.tensor([1, 3]),
        "masks": masks,
        "semantic": semantic,
        "instance_ids": torch.tensor([7, 9]),
    }
    return image, target


def test_training_returns_upsnet_and_track_losses_and_trains_the_video_parts() -> None:
    torch.manual_seed(0)
    model = small_vpsnet().train()
    image, target = _frame(4)
    reference, reference_target = _frame(0)
    # the reference misses object 9: its RoIs must learn "new object"
    reference_target = {k: v[:1] if k != "semantic" else v for k, v in reference_target.items()}
    losses = model([image], [reference], [target], [reference_target])
    assert {"loss_semantic", "loss_panoptic", "loss_track", "loss_mask", "loss_classifier"} <= set(losses)
    assert ("loss_semantic_roi" in losses) == model.upsnet.with_semantic_roi_loss  # the preset has it
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for part in (model.fuse, model.track_head, model.upsnet.semantic_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), part


def test_training_refuses_targets_without_instance_ids_and_pairs_of_two_sizes() -> None:
    model = small_vpsnet().train()
    image, target = _frame(0)
    no_ids = {k: v for k, v in target.items() if k != "instance_ids"}
    with pytest.raises(ValueError, match="instance id per box"):
        model([image], [image], [no_ids], [target])
    with pytest.raises(ValueError, match="reference frames"):
        model([image], [], [target], [])
    model.eval()
    with pytest.raises(ValueError, match="must have one size"), torch.no_grad():
        model([image], [torch.rand(3, 96, 128)])


def test_a_roi_is_labelled_with_its_reference_object_or_new() -> None:
    labels = reference_column(torch.tensor([9, 7, 5, 9]), torch.tensor([7, 9, 3]))
    assert labels.tolist() == [2, 1, 0, 2]
    assert reference_column(torch.tensor([4]), torch.zeros(0, dtype=torch.int64)).tolist() == [0]


class _FixedAffinity(TrackHead):
    """A track head whose affinities are given (rows: detections, columns: 'new' then memory objects)."""

    def __init__(self, affinity: torch.Tensor) -> None:
        super().__init__(in_channels=1, roi_feat_size=1, fc_channels=2)
        self.affinity = affinity

    def forward(self, *args, **kwargs) -> list[torch.Tensor]:
        return [self.affinity]


def test_ids_follow_the_official_assignment() -> None:
    """Two detections prefer object 0: the higher score keeps it and the other becomes a new object after
    the loop; a detection preferring 'new' is added at once; a matched object's box is replaced."""
    memory = TrackMemory()
    first = assign_ids(
        TrackHead(1, 1, 2),
        memory,
        torch.zeros(2, 1, 1, 1),
        torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]),
        torch.tensor([1, 2]),
        torch.tensor([0.9, 0.9]),
    )
    assert first.tolist() == [0, 1] and len(memory) == 2
    boxes = torch.tensor([[1.0, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60]])
    # 'new' logit high for detection 2 only; detections 0 and 1 both take object 0, detection 0 more
    affinity = torch.tensor([[-5.0, 5.0, -5.0], [-5.0, 4.0, -5.0], [20.0, -5.0, -5.0]])
    ids = assign_ids(
        _FixedAffinity(affinity),
        memory,
        torch.ones(3, 1, 1, 1),
        boxes,
        torch.tensor([1, 1, 2]),
        torch.tensor([0.9, 0.9, 0.9]),
    )
    assert ids.tolist() == [0, 3, 2]
    assert len(memory) == 4 and memory.boxes[0].tolist() == boxes[0].tolist()
    assert assign_ids(TrackHead(1, 1, 2), memory, *[torch.zeros(0, *s) for s in ((1, 1, 1), (4,))],
                      torch.zeros(0, dtype=torch.int64), torch.zeros(0)).tolist() == []  # fmt: skip


def test_video_segments_give_stuff_their_class_and_things_their_track() -> None:
    output = {
        "panoptic": torch.tensor([[1, 2], [3, 0]]),
        "segment_classes": torch.tensor([0, 5, 6]),
        "segment_detections": torch.tensor([-1, 2, 0]),
    }
    result = video_segments(dict(output), torch.tensor([4, -1, 11]))
    first, second = THING_ID_OFFSET * 12 + 5, THING_ID_OFFSET * 5 + 6  # (object + 1, class)
    assert result["segment_ids"].tolist() == [1, first, second]
    assert result["panoptic"].tolist() == [[1, first], [second, 0]]
    assert torch.equal(result["frame_panoptic"], output["panoptic"])
    with pytest.raises(ValueError, match="no object id"):
        video_segments(dict(output), torch.full((3,), -1))


def test_ids_persist_over_a_video_and_fusion_can_be_switched_off() -> None:
    """On a still video every frame repeats the first: each tracked detection keeps its object (same box,
    same class, IoU 1), so the thing segments keep their ids."""
    torch.manual_seed(0)
    model = small_vpsnet().eval()
    inference = model.upsnet.panoptic_inference
    # untrained scores; boxes that barely overlap, so each one's best IoU is with itself
    model.upsnet.panoptic_inference = dataclasses.replace(inference, score_thresh=0.0, nms_thresh=0.1)
    image, _ = _frame(0)
    outputs = model.track_video([image, image, image])
    assert len(outputs) == 3
    for output in outputs:
        assert output["panoptic"].shape == image.shape[-2:]
        assert set(output["panoptic"].unique().tolist()) - {0} == set(output["segment_ids"].tolist())
    things = [set(o["segment_ids"][o["segment_ids"] >= THING_ID_OFFSET].tolist()) for o in outputs]
    assert things[0] and things[0] == things[1] == things[2]
    tracked = outputs[0]["object_ids"] >= 0
    assert tracked.any() and torch.equal(outputs[0]["object_ids"], outputs[2]["object_ids"])

    class _NoFlow(nn.Module):
        def forward(self, *args):
            raise AssertionError("fusion=False must not run the flow network")

    model.flow_net, model.fusion = _NoFlow(), False
    assert len(model.track_video([image, image])) == 2
    model.tracking = False  # every detection a new object: no thing id repeats between frames
    first, second = model.track_video([image, image])
    ids = [set(o["segment_ids"][o["segment_ids"] >= THING_ID_OFFSET].tolist()) for o in (first, second)]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
