"""``metrics.id_switches.IdSwitches`` on hand-made videos of 2 x 4 frames (column c of a frame holds one
id): a swap of two objects' ids is 2 switches, a track lost for a frame and recovered under its id 0,
under a new id 1; stuff and crowd take no part; IoU exactly 0.5 is no match (the ground-truth void left
out of the union); merged DDP states equal one metric over all videos; ``PanopticQuality.matched_pairs``
matches as many segments as ``PanopticQuality`` counts true positives on random frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from metrics.id_switches import IdSwitches
from metrics.panoptic_quality import PanopticQuality, PanopticSegmentation, SegmentInfo

CAR, ROAD, PERSON = 1, 2, 3
CATEGORIES = {CAR: True, ROAD: False, PERSON: True}


def _frame(
    columns: Sequence[int], segments: dict[int, tuple[int, bool]], height: int = 2
) -> PanopticSegmentation:
    """A (height, len(columns)) frame whose column c holds id ``columns[c]``; ``segments``: id -> (category,
    iscrowd), only those present in the frame listed."""
    ids = torch.tensor(columns, dtype=torch.int64).repeat(height, 1)
    listed = {i: SegmentInfo(c, crowd) for i, (c, crowd) in segments.items() if i in set(columns)}
    return PanopticSegmentation(ids=ids, segments=listed)


GT = {10: (CAR, False), 11: (CAR, False), 12: (PERSON, False), 5: (ROAD, False), 9: (CAR, True)}
PRED = {i: (CAR, False) for i in range(100, 110)} | {i: (PERSON, False) for i in range(300, 303)}
PRED |= {200: (ROAD, False), 201: (ROAD, False)}


def _counts(predicted: Sequence[Sequence[int]], truth: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    metric = IdSwitches(CATEGORIES)
    metric.update([_frame(c, PRED) for c in predicted], [_frame(c, GT) for c in truth])
    result = metric.compute()
    return int(result["id_switches"]), int(result["matches"]), int(result["tracks"])


def test_swapping_two_objects_ids_is_two_switches() -> None:
    truth = [[10, 10, 11, 11]] * 3
    assert _counts([[100, 100, 101, 101], [101, 101, 100, 100], [101, 101, 100, 100]], truth) == (2, 6, 2)


def test_lost_and_recovered_under_the_same_id_is_no_switch() -> None:
    truth = [[10, 10, 0, 0]] * 3
    assert _counts([[100, 100, 0, 0], [0, 0, 0, 0], [100, 100, 0, 0]], truth) == (0, 2, 1)
    # a miss by a too small or wrong-category prediction is no match either
    assert _counts([[100, 100, 0, 0], [100, 0, 0, 0], [100, 100, 0, 0]], truth) == (0, 2, 1)
    assert _counts([[100, 100, 0, 0], [300, 300, 0, 0], [100, 100, 0, 0]], truth) == (0, 2, 1)


def test_recovered_under_a_new_id_is_one_switch() -> None:
    truth = [[10, 10, 0, 0]] * 3
    assert _counts([[100, 100, 0, 0], [0, 0, 0, 0], [102, 102, 0, 0]], truth) == (1, 2, 1)
    # and back to the old id: one more
    assert _counts([[100, 100, 0, 0], [102, 102, 0, 0], [100, 100, 0, 0]], truth) == (2, 3, 1)


def test_stuff_and_crowd_take_no_part() -> None:
    truth = [[5, 5, 9, 9]] * 2  # road and a crowd of cars
    assert _counts([[200, 200, 100, 100], [201, 201, 101, 101]], truth) == (0, 0, 0)


def test_iou_exactly_half_is_no_match_and_ground_truth_void_leaves_the_union() -> None:
    # the prediction covers car 10 and as much road: IoU 2/4
    assert _counts([[100, 100, 100, 100], [101, 101, 101, 101]], [[10, 10, 5, 5]] * 2) == (0, 0, 1)
    # the same prediction over car 10 and void: IoU 1
    assert _counts([[100, 100, 100, 100], [101, 101, 101, 101]], [[10, 10, 0, 0]] * 2) == (1, 2, 1)


def test_merged_states_equal_one_metric_over_all_videos() -> None:
    videos = [
        ([[100, 100, 101, 101], [101, 101, 100, 100]], [[10, 10, 11, 11]] * 2),
        ([[300, 300, 0, 0], [302, 302, 0, 0]], [[12, 12, 0, 0]] * 2),
        ([[100, 100, 300, 300], [100, 100, 300, 300]], [[10, 10, 12, 12]] * 2),
    ]
    single, ranks = IdSwitches(CATEGORIES), [IdSwitches(CATEGORIES) for _ in range(2)]
    for index, (predicted, truth) in enumerate(videos):
        frames = ([_frame(c, PRED) for c in predicted], [_frame(c, GT) for c in truth])
        ranks[index % 2].update(*frames)
        single.update(*frames)
    ranks[0].merge_state(ranks[1])
    merged, expected = ranks[0].compute(), single.compute()
    assert {k: int(v) for k, v in merged.items()} == {k: int(v) for k, v in expected.items()}
    assert {k: int(v) for k, v in expected.items()} == {"id_switches": 3, "matches": 10, "tracks": 5}


def test_matched_pairs_agree_with_panoptic_quality_true_positives() -> None:
    generator = np.random.default_rng(0)
    metric = PanopticQuality(CATEGORIES)
    for _ in range(20):
        gt_ids = torch.from_numpy(generator.integers(0, 5, size=(3, 4))).repeat_interleave(3, 0)
        gt_ids = gt_ids.repeat_interleave(3, 1)  # 9 x 12, blocks of 3 x 3
        noise = torch.from_numpy(generator.random(gt_ids.shape) < 0.3)
        pred_ids = torch.where(noise | (gt_ids == 0), 0, gt_ids + 50)
        categories = generator.choice(list(CATEGORIES), size=5)
        target = PanopticSegmentation(
            gt_ids, {i: SegmentInfo(int(categories[i]), bool(i == 4)) for i in range(1, 5)}
        )
        flipped = generator.random(5) < 0.2  # some predictions of another category
        prediction = PanopticSegmentation(
            pred_ids,
            {i + 50: SegmentInfo(CAR if flipped[i] else int(categories[i])) for i in range(1, 5)},
        )
        matched = metric.matched_pairs(prediction, target)
        true_positives = metric.batch_counts([prediction], [target], [-1])[0, 1].sum()
        assert len(matched) == int(true_positives)
        assert all(pred == gt + 50 for gt, pred in matched.items())


def test_rejects_bad_input() -> None:
    metric = IdSwitches(CATEGORIES)
    with pytest.raises(ValueError, match="neither void"):
        metric.update([_frame([100, 7], PRED)], [_frame([10, 10], GT)])
    with pytest.raises(ValueError, match="not in categories"):
        metric.update([_frame([100, 100], {100: (42, False)})], [_frame([10, 10], GT)])
    with pytest.raises(ValueError, match="share one"):
        metric.update(
            [_frame([100], PRED), _frame([100, 100], PRED)], [_frame([10], GT), _frame([10, 10], GT)]
        )
    with pytest.raises(ValueError, match="2 predicted frames for 1"):
        metric.update([_frame([100], PRED)] * 2, [_frame([10], GT)])
