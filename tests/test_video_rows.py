"""Video metrics count a video once when it is given twice under one id (the DDP sampler's padding
repeats items on other ranks), as ``PanopticQuality`` does for images (``metrics/video_rows.py``)."""

from __future__ import annotations

import torch

from metrics.id_switches import IdSwitches
from metrics.panoptic_quality import PanopticSegmentation, SegmentInfo
from metrics.video_panoptic_quality import VideoPanopticQuality

THING, STUFF = 1, 2
CATEGORIES = {THING: True, STUFF: False}


def _video(swap: bool) -> tuple[list[PanopticSegmentation], list[PanopticSegmentation]]:
    """Three frames with two things (ids 10, 11) on stuff (id 1); the prediction swaps the things' ids in
    the last frame when ``swap``."""
    truth, predicted = [], []
    for t in range(3):
        ids = torch.ones(4, 8, dtype=torch.int64)
        ids[:, :3], ids[:, 5:] = 10, 11
        segments = {1: SegmentInfo(STUFF), 10: SegmentInfo(THING), 11: SegmentInfo(THING)}
        truth.append(PanopticSegmentation(ids, segments))
        swapped = ids.clone()
        if swap and t == 2:
            swapped[ids == 10], swapped[ids == 11] = 11, 10
        predicted.append(PanopticSegmentation(swapped, dict(segments)))
    return predicted, truth


def test_a_video_given_twice_under_one_id_counts_once_across_ranks() -> None:
    clean, swapped = _video(False), _video(True)
    for metric_class in (VideoPanopticQuality, IdSwitches):
        kwargs = {"window_sizes": (0, 1, 2), "frame_step": 1} if metric_class is VideoPanopticQuality else {}
        once, rank_a, rank_b, anonymous = (metric_class(CATEGORIES, **kwargs) for _ in range(4))
        once.update(*clean, video_id=1)
        once.update(*swapped, video_id=2)
        rank_a.update(*clean, video_id=1)
        rank_a.update(*swapped, video_id=2)
        rank_b.update(*swapped, video_id=2)  # the padding: video 2 again on the other rank
        for name in rank_a._defaults:  # what a DDP sync does: cat the rows, sum the sums
            a, b = getattr(rank_a, name), getattr(rank_b, name)
            setattr(rank_a, name, a + b)  # lists concatenate, tensors add
        anonymous.update(*clean)
        anonymous.update(*swapped)
        anonymous.update(*swapped)
        merged, expected, counted_twice = rank_a.compute(), once.compute(), anonymous.compute()
        for key, value in expected.items():
            assert torch.equal(merged[key], value), (metric_class.__name__, key)
        key = "VPQ_things" if metric_class is VideoPanopticQuality else "id_switches"
        assert not torch.equal(counted_twice[key], expected[key]), metric_class.__name__
