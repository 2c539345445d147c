"""``models.mask_iou_tracking``: the frame-by-frame baseline's id linking on hand-made 4 x 8 frames -- stuff
ids are class + 1, a thing that overlaps its previous mask by IoU > min_iou keeps its id, a new, moved
away, reclassified or briefly lost object gets a new one, IoU exactly min_iou does not link, and with a low
min_iou the greedy assignment takes the highest IoU first."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import Tensor

from models.mask_iou_tracking import THING_ID_OFFSET, MaskIoULinker, link_by_mask_iou, stuff_segment_id

STUFF = 2  # classes 0 (road), 1 (sky); things: 2 (car), 3 (person)
ROAD, SKY, CAR, PERSON = 0, 1, 2, 3


def frame(columns: Sequence[int], classes: Sequence[int], height: int = 4) -> tuple[Tensor, Tensor]:
    """A (height, len(columns)) frame whose column c holds image segment id ``columns[c]``."""
    return torch.tensor(columns).repeat(height, 1), torch.tensor(classes)


def column_ids(linked: Tensor) -> list[int]:
    return linked[0].tolist()


def test_stuff_ids_are_class_plus_one() -> None:
    assert stuff_segment_id(0) == 1 and stuff_segment_id(SKY) == 2
    [(ids, segment_ids, classes)] = link_by_mask_iou(
        [frame([1, 1, 2, 2, 0, 3, 3, 3], [SKY, ROAD, ROAD])], STUFF
    )
    assert column_ids(ids) == [2, 2, 1, 1, 0, 1, 1, 1]  # two road segments become one
    assert segment_ids.tolist() == [2, 1] and classes.tolist() == [SKY, ROAD]


def test_overlapping_thing_keeps_its_id_and_new_things_get_new_ids() -> None:
    frames = [
        frame([1, 2, 2, 2, 2, 1, 1, 1], [ROAD, CAR]),
        frame([1, 1, 2, 2, 2, 2, 3, 1], [ROAD, CAR, PERSON]),  # car moved by one: IoU 3/5
        frame([1, 1, 1, 1, 2, 2, 2, 2], [ROAD, CAR]),  # car IoU 2/6: lost; person gone
    ]
    linked = link_by_mask_iou(frames, STUFF)
    assert [column_ids(ids) for ids, _, _ in linked] == [
        [1, 1000, 1000, 1000, 1000, 1, 1, 1],
        [1, 1, 1000, 1000, 1000, 1000, 1001, 1],
        [1, 1, 1, 1, 1002, 1002, 1002, 1002],
    ]
    assert [s.tolist() for _, s, _ in linked] == [[1, 1000], [1, 1000, 1001], [1, 1002]]
    assert [c.tolist() for _, _, c in linked] == [[ROAD, CAR], [ROAD, CAR, PERSON], [ROAD, CAR]]
    assert THING_ID_OFFSET == 1000


def test_same_class_is_required() -> None:
    frames = [frame([1, 1, 1, 0], [CAR]), frame([1, 1, 1, 0], [PERSON])]
    assert [s.tolist() for _, s, _ in link_by_mask_iou(frames, STUFF)] == [[1000], [1001]]


def test_iou_exactly_min_iou_does_not_link() -> None:
    frames = [frame([1, 1, 0, 0], [CAR]), frame([0, 1, 1, 0], [CAR])]  # IoU 1/3
    assert [s.tolist() for _, s, _ in link_by_mask_iou(frames, STUFF, min_iou=1 / 3)] == [[1000], [1001]]
    assert [s.tolist() for _, s, _ in link_by_mask_iou(frames, STUFF, min_iou=0.3)] == [[1000], [1000]]
    half = [frame([1, 1, 1, 0], [CAR]), frame([0, 1, 1, 1], [CAR])]  # IoU 2/4 = 0.5
    assert [s.tolist() for _, s, _ in link_by_mask_iou(half, STUFF)] == [[1000], [1001]]


def test_lost_for_one_frame_gets_a_new_id() -> None:
    frames = [frame([1, 1, 0, 0], [CAR]), frame([0, 0, 0, 0], []), frame([1, 1, 0, 0], [CAR])]
    assert [s.tolist() for _, s, _ in link_by_mask_iou(frames, STUFF)] == [[1000], [], [1001]]


def test_greedy_assignment_with_low_min_iou_takes_the_highest_iou_first() -> None:
    # previous: cars A (cols 0-3) and B (cols 4-7); current: car 1 over cols 2-5 (IoU 2/6 with A and B),
    # car 2 over cols 6-7 (IoU 2/4 with B): B goes to car 2, then A to car 1
    frames = [frame([1, 1, 1, 1, 2, 2, 2, 2], [CAR, CAR]), frame([0, 0, 1, 1, 1, 1, 2, 2], [CAR, CAR])]
    linked = link_by_mask_iou(frames, STUFF, min_iou=0.2)
    assert column_ids(linked[1][0]) == [0, 0, 1000, 1000, 1000, 1000, 1001, 1001]
    # equal IoUs: the earlier previous track goes first (to the earlier current segment)
    frames = [frame([1, 1, 2, 2], [CAR, CAR]), frame([0, 1, 1, 0], [CAR])]
    assert link_by_mask_iou(frames, STUFF, min_iou=0.2)[1][1].tolist() == [1000]


def test_segments_without_pixels_are_left_out_and_the_linker_resets() -> None:
    linker = MaskIoULinker(STUFF)
    _, segment_ids, classes = linker.link(*frame([3, 3, 3, 0], [CAR, ROAD, PERSON]))
    assert segment_ids.tolist() == [1000] and classes.tolist() == [PERSON]  # only segment 3 has pixels
    linker.reset()
    assert linker.link(*frame([0, 1, 1, 1], [CAR]))[1].tolist() == [1000]  # the count restarts


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"0\.\.1 "):
        link_by_mask_iou([frame([0, 2], [CAR])], STUFF)
    with pytest.raises(ValueError, match="share one"):
        link_by_mask_iou([frame([1, 1], [CAR]), frame([1, 1, 1], [CAR])], STUFF)
    with pytest.raises(ValueError, match="min_iou"):
        MaskIoULinker(STUFF, min_iou=1.0)
    with pytest.raises(ValueError, match="num_stuff_classes"):
        MaskIoULinker(THING_ID_OFFSET)
