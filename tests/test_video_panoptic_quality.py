"""``metrics.video_panoptic_quality.VideoPanopticQuality``: with one-frame windows it is PanopticQuality on
the real COCO panoptic sample; on tubes it equals a direct count written here from the official
``tools/eval_vpq.py`` semantics (mcahny/vps), on random videos and on real frames; hand-made 3-frame videos
(4 x 6 id maps) pin an id switch, void and crowd to the formula's numbers."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from metrics.panoptic_quality import PanopticQuality, PanopticSegmentation, SegmentInfo
from metrics.video_panoptic_quality import VideoPanopticQuality, tube_window
from tests.test_panoptic_quality import (
    _sample,
    crowd_regions,
    drop_one_add_spurious,
    everything,
    identity,
    shift_every_thing,
)

THING, STUFF, OTHER_THING = 1, 2, 3
CATEGORIES = {THING: True, STUFF: False, OTHER_THING: True}
TOLERANCE = 1e-12
Video = tuple[list[PanopticSegmentation], list[PanopticSegmentation]]  # predicted and ground-truth frames


def _frame(
    columns: Sequence[int], segments: dict[int, tuple[int, bool]], height: int = 4
) -> PanopticSegmentation:
    """A (height, len(columns)) frame whose column c holds id ``columns[c]``; segments: id -> (category,
    iscrowd), only those present in the frame."""
    ids = torch.tensor(columns, dtype=torch.int64).repeat(height, 1)
    present = set(columns)
    listed = {i: SegmentInfo(c, crowd) for i, (c, crowd) in segments.items() if i in present}
    return PanopticSegmentation(ids=ids, segments=listed)


def _value(results: dict[str, Tensor], key: str) -> float:
    return float(results[key])


def _assert_same_results(ours: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    assert ours.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.allclose(ours[key].double(), value.double(), rtol=0, atol=TOLERANCE, equal_nan=True), key


def _vpq(video: Video, window_sizes: Sequence[int], frame_step: int = 1) -> dict[str, Tensor]:
    metric = VideoPanopticQuality(CATEGORIES, window_sizes=window_sizes, frame_step=frame_step)
    metric.update(*video)
    return metric.compute()


# ---- (a) one-frame windows are images: PanopticQuality on the real sample


def _real_frames(shared_data: Path) -> tuple[dict[int, bool], list[tuple[Tensor, list[dict]]]]:
    """The two sample images cropped to their common top-left size, as two frames of one video (they share
    a few COCO ids -- colours -- so those segments become two-frame tubes)."""
    gt_json, isthing, gt_ids = _sample(shared_data)
    frames = [(gt_ids[a["file_name"]], a["segments_info"]) for a in gt_json["annotations"]]
    height = min(ids.shape[0] for ids, _ in frames)
    width = min(ids.shape[1] for ids, _ in frames)
    cropped = []
    for ids, segments in frames:
        crop = ids[:height, :width].contiguous()
        present = set(torch.unique(crop).tolist())
        cropped.append((crop, [s for s in segments if s["id"] in present]))
    return isthing, cropped


def _real_video(shared_data: Path, perturb: Callable[..., tuple[Tensor, list[dict]]]) -> tuple[dict, Video]:
    isthing, frames = _real_frames(shared_data)
    targets = [PanopticSegmentation.from_coco(ids, segments) for ids, segments in frames]
    predictions = [
        PanopticSegmentation.from_coco(*perturb(ids, segments, isthing)) for ids, segments in frames
    ]
    return isthing, (predictions, targets)


REAL_PERTURBATIONS = [identity, shift_every_thing, drop_one_add_spurious, crowd_regions, everything]


@pytest.mark.parametrize("perturb", REAL_PERTURBATIONS, ids=lambda f: f.__name__)
def test_one_frame_windows_equal_panoptic_quality(shared_data: Path, perturb: Callable) -> None:
    isthing, (predictions, targets) = _real_video(shared_data, perturb)
    video = VideoPanopticQuality(isthing, window_sizes=(0,))
    video.update(predictions, targets)
    ours = video.compute()
    images = PanopticQuality(isthing)
    images.update(predictions, targets)
    expected = images.compute()
    _assert_same_results({key: ours[f"k0/{key}"] for key in expected}, expected)
    for suffix in ("", "_things", "_stuff"):
        assert abs(_value(ours, f"VPQ{suffix}") - _value(expected, f"PQ{suffix}")) < TOLERANCE
    assert int(ours["k0/windows"]) == 2
    assert (_value(ours, "VPQ") == 1.0) == (perturb is identity)


# ---- tubes against a direct count of eval_vpq's rules, written here independently of PanopticQuality


def _direct_window_counts(
    predictions: Sequence[PanopticSegmentation],
    targets: Sequence[PanopticSegmentation],
    category_ids: list[int],
) -> np.ndarray:
    """(4, C) IoU sum, TP, FP, FN of one window, eval_vpq's way: frames stacked, pixel pairs counted, each
    tube's category and crowd flag from the first frame listing it, crowd of a category = the last crowd tube
    in order of first appearance."""
    gt = np.stack([t.ids.numpy() for t in targets])
    pred = np.stack([p.ids.numpy() for p in predictions])
    pairs = Counter(zip(gt.ravel().tolist(), pred.ravel().tolist(), strict=True))
    gt_info: dict[int, SegmentInfo] = {}
    pred_info: dict[int, SegmentInfo] = {}
    for frame in targets:
        for i, info in frame.segments.items():
            gt_info.setdefault(i, info)
    for frame in predictions:
        for i, info in frame.segments.items():
            pred_info.setdefault(i, info)
    gt_area, pred_area = Counter(), Counter()
    for (g, p), count in pairs.items():
        gt_area[g] += count
        pred_area[p] += count
    counts = np.zeros((4, len(category_ids)))
    column = {c: i for i, c in enumerate(category_ids)}
    gt_matched, pred_matched = set(), set()
    for (g, p), overlap in pairs.items():
        if g == 0 or p == 0 or gt_info[g].iscrowd or gt_info[g].category_id != pred_info[p].category_id:
            continue
        iou = overlap / (gt_area[g] + pred_area[p] - overlap - pairs.get((0, p), 0))
        if iou > 0.5:
            counts[0, column[gt_info[g].category_id]] += iou
            counts[1, column[gt_info[g].category_id]] += 1
            gt_matched.add(g)
            pred_matched.add(p)
    crowd_of = {info.category_id: g for g, info in gt_info.items() if info.iscrowd}
    for g, info in gt_info.items():
        if g not in gt_matched and not info.iscrowd:
            counts[3, column[info.category_id]] += 1
    for p, info in pred_info.items():
        if p in pred_matched:
            continue
        excused = pairs.get((0, p), 0) + pairs.get((crowd_of.get(info.category_id, -1), p), 0)
        if excused / pred_area[p] <= 0.5:
            counts[2, column[info.category_id]] += 1
    return counts


def _direct_totals(videos: Sequence[Video], frames_per_window: int, category_ids: list[int]) -> np.ndarray:
    totals = np.zeros((4, len(category_ids)))
    for predictions, targets in videos:
        for start in range(len(targets) - frames_per_window + 1):
            window = slice(start, start + frames_per_window)
            totals += _direct_window_counts(predictions[window], targets[window], category_ids)
    return totals


def _random_video(generator: np.random.Generator, num_frames: int) -> Video:
    """Ground truth: blocks of ids 1-3 (things), 4 (a thing crowd), 5-6 (stuff) and void drifting between
    frames; prediction: the ground truth with noise, ids switched in some frames (+10) and some categories
    changed (a tube's category is its first frame's)."""
    gt_segments = {1: (THING, False), 2: (THING, False), 3: (OTHER_THING, False), 4: (THING, True)}
    gt_segments |= {5: (STUFF, False), 6: (STUFF, False)}
    blocks = generator.integers(0, 7, size=(3, 4))
    predictions, targets = [], []
    for _ in range(num_frames):
        changed = generator.random(blocks.shape) < 0.25
        blocks = np.where(changed, generator.integers(0, 7, size=blocks.shape), blocks)
        gt = np.kron(blocks, np.ones((2, 2), dtype=np.int64))
        noisy = generator.random(gt.shape) < 0.15
        pred = np.where(noisy, generator.integers(0, 7, size=gt.shape), gt)
        switched = generator.random(7) < 0.3
        pred = np.where(switched[pred] & (pred > 0), pred + 10, pred)
        pred_segments = {}
        for i in np.unique(pred).tolist():
            if i:
                category = gt_segments[i % 10][0]
                if generator.random() < 0.2:
                    category = OTHER_THING if category != OTHER_THING else THING
                pred_segments[i] = SegmentInfo(category)
        gt_present = set(np.unique(gt).tolist())
        targets.append(
            PanopticSegmentation(
                torch.from_numpy(gt),
                {i: SegmentInfo(c, crowd) for i, (c, crowd) in gt_segments.items() if i in gt_present},
            )
        )
        predictions.append(PanopticSegmentation(torch.from_numpy(pred), pred_segments))
    return predictions, targets


def test_tubes_equal_direct_count_on_random_videos() -> None:
    """Per window size, the summed counts over videos of 2, 4 and 5 frames (the 2-frame one has no window
    of 3 or 4 frames) equal the direct count of every window."""
    generator = np.random.default_rng(0)
    videos = [_random_video(generator, num_frames) for num_frames in (5, 2, 4)]
    window_sizes = (0, 1, 2, 3)
    metric = VideoPanopticQuality(CATEGORIES, window_sizes=window_sizes, frame_step=1)
    for video in videos:
        metric.update(*video)
    for index, window_size in enumerate(window_sizes):
        expected = _direct_totals(videos, window_size + 1, metric.category_ids)
        assert np.allclose(metric.totals[index].numpy(), expected, rtol=0, atol=TOLERANCE), window_size
        assert int(metric.windows[index]) == sum(max(len(t) - window_size, 0) for _, t in videos)
    results = metric.compute()
    assert 0.0 < _value(results, "VPQ") < 1.0
    assert _value(results, "k3/PQ") < _value(results, "k0/PQ")  # switches and drift cost more on long tubes


@pytest.mark.parametrize("perturb", [shift_every_thing, everything], ids=lambda f: f.__name__)
def test_tubes_equal_direct_count_on_real_frames(shared_data: Path, perturb: Callable) -> None:
    """The two real frames as one window (k = 5 with Cityscapes-VPS's frame step of 5): shared ids are
    tubes, matched and excused over both frames as eval_vpq does."""
    isthing, (predictions, targets) = _real_video(shared_data, perturb)
    metric = VideoPanopticQuality(isthing, window_sizes=(0, 5))
    metric.update(predictions, targets)
    for index, frames_per_window in enumerate((1, 2)):
        expected = _direct_totals([(predictions, targets)], frames_per_window, metric.category_ids)
        assert np.allclose(metric.totals[index].numpy(), expected, rtol=0, atol=1e-9)
    shared_ids = set(targets[0].segments) & set(targets[1].segments)
    assert shared_ids  # the test needs tubes spanning both frames


# ---- (b) an id switch in the middle frame, by hand


def _switch_video(switch: bool) -> Video:
    """3 frames of 4 x 6: a thing (id 1) in columns 0-2 and stuff (id 2) in columns 3-5 of every frame; the
    prediction gets both right but calls the thing 6 instead of 5 in the middle frame when ``switch``."""
    gt = _frame([1, 1, 1, 2, 2, 2], {1: (THING, False), 2: (STUFF, False)})
    pred_segments = {5: (THING, False), 6: (THING, False), 7: (STUFF, False)}
    middle = 6 if switch else 5
    predictions = [_frame([thing] * 3 + [7] * 3, pred_segments) for thing in (5, middle, 5)]
    return predictions, [gt, gt, gt]


def test_id_switch_costs_what_the_formula_says() -> None:
    results = _vpq(_switch_video(switch=True), window_sizes=(0, 1, 2))
    # k = 0, windows {0}, {1}, {2}: every frame right -> things 3 TP of IoU 1, stuff 3 TP of IoU 1 -> PQ 1.
    # k = 1, windows {0,1}, {1,2}: thing tube 24 px; 5 covers 12 of it: IoU 12/24 = 0.5, not > 0.5, and 6
    #   likewise -> per window 1 FN and 2 FP (5, 6); 2 windows -> TP 0, FP 4, FN 2 -> PQ_things 0;
    #   stuff 2 TP of IoU 1 -> PQ_stuff 1; PQ = (0 + 1) / 2 = 1/2.
    # k = 2, window {0,1,2}: thing tube 36 px; 5 covers 24: IoU 24/36 = 2/3 -> TP; 6 (12 px) -> FP;
    #   PQ_things = (2/3) / (1 + 1/2 * 1) = 4/9, SQ 2/3, RQ 1 / (3/2) = 2/3; PQ = (4/9 + 1) / 2 = 13/18.
    # VPQ = (1 + 1/2 + 13/18) / 3 = 20/27; VPQ_things = (1 + 0 + 4/9) / 3 = 13/27; VPQ_stuff = 1.
    expected = {
        "k0/PQ": Fraction(1),
        "k1/PQ": Fraction(1, 2),
        "k1/PQ_things": Fraction(0),
        "k1/SQ_things": Fraction(0),
        "k2/PQ": Fraction(13, 18),
        "k2/PQ_things": Fraction(4, 9),
        "k2/SQ_things": Fraction(2, 3),
        "k2/RQ_things": Fraction(2, 3),
        "VPQ": Fraction(20, 27),
        "VPQ_things": Fraction(13, 27),
        "VPQ_stuff": Fraction(1),
    }
    for key, value in expected.items():
        assert abs(_value(results, key) - float(value)) < TOLERANCE, key
    assert [int(results[f"k{k}/windows"]) for k in (0, 1, 2)] == [3, 2, 1]
    assert int(results["k1/N_things"]) == 1  # the thing category is averaged, at PQ 0
    assert _value(_vpq(_switch_video(switch=False), window_sizes=(0, 1, 2)), "VPQ") == 1.0


# ---- (c) void and crowd in a tube, by hand


def test_void_pixels_of_a_tube_leave_its_union() -> None:
    """Ground truth: stuff (2) in columns 0-2; columns 3-5 void in frame 0, a thing (1) in frames 1-2. The
    prediction puts thing 5 on columns 3-5 in all three frames."""
    void_then_thing = [[2, 2, 2, 0, 0, 0], [2, 2, 2, 1, 1, 1], [2, 2, 2, 1, 1, 1]]
    gt_segments = {1: (THING, False), 2: (STUFF, False)}
    targets = [_frame(columns, gt_segments) for columns in void_then_thing]
    predictions = [_frame([7, 7, 7, 5, 5, 5], {5: (THING, False), 7: (STUFF, False)})] * 3
    results = _vpq((predictions, targets), window_sizes=(0, 1, 2))
    # k = 0: frame 0's 5 lies all on void -> ignored, no FP; frames 1, 2 exact -> PQ 1.
    # k = 1, window {0,1}: tube 1 has 12 px, tube 5 has 24 of which 12 on void:
    #   union = 24 + 12 - 12 - 12 = 12, IoU 1 (0.5, unmatched, if the void stayed in the union);
    #   window {1,2} exact -> PQ 1.
    # k = 2: union = 36 + 24 - 24 - 12 = 24, IoU 24 / 24 = 1 -> PQ 1.
    for key in ("k0/PQ", "k1/PQ", "k1/SQ_things", "k2/PQ", "k2/SQ_things", "VPQ", "VPQ_things"):
        assert abs(_value(results, key) - 1.0) < TOLERANCE, key


def test_crowd_excuses_a_tube_mostly_on_it() -> None:
    """Ground truth in every frame: a thing crowd (9) in columns 0-1, stuff (2) in columns 2-5. The prediction
    has stuff 7 and a thing 5 that covers the crowd in frame 0 (8 px), column 2 in frame 1 (4 px, on the
    stuff) and nothing in frame 2."""
    gt_segments = {9: (THING, True), 2: (STUFF, False)}
    gt = _frame([9, 9, 2, 2, 2, 2], gt_segments)
    pred_segments = {5: (THING, False), 7: (STUFF, False)}
    pred_columns = [[5, 5, 7, 7, 7, 7], [0, 0, 5, 7, 7, 7], [0, 0, 7, 7, 7, 7]]
    predictions = [_frame(columns, pred_segments) for columns in pred_columns]
    results = _vpq((predictions, [gt, gt, gt]), window_sizes=(0, 1, 2))
    # k = 0: frame 0: 5 all on the crowd -> ignored; stuff IoU 16/16. Frame 1: 5 is an FP (nothing of it on
    #   void or crowd); stuff 12/16 = 3/4. Frame 2: stuff 16/16. Crowd never an FN.
    #   PQ_things = 0 / (0 + 1/2) = 0; PQ_stuff = (1 + 3/4 + 1) / 3 = 11/12; PQ = 11/24.
    # k = 1, window {0,1}: tube 5 = 8 px on crowd + 4 on stuff: 8/12 > 1/2 -> ignored; stuff 28/32 = 7/8.
    #   Window {1,2}: 5 (4 px) -> FP; stuff 28/32 = 7/8. PQ_things 0, PQ_stuff 7/8, PQ = 7/16.
    # k = 2: tube 5 = 8 on crowd of 12 -> ignored; no thing seen: PQ_things NaN (N_things 0);
    #   stuff 44/48 = 11/12 = PQ.
    # VPQ = (11/24 + 7/16 + 11/12) / 3 = 29/48; VPQ_things = mean(0, 0, NaN) = NaN.
    expected = {
        "k0/PQ": Fraction(11, 24),
        "k0/PQ_things": Fraction(0),
        "k0/PQ_stuff": Fraction(11, 12),
        "k1/PQ": Fraction(7, 16),
        "k1/PQ_stuff": Fraction(7, 8),
        "k2/PQ": Fraction(11, 12),
        "VPQ": Fraction(29, 48),
        "VPQ_stuff": (Fraction(11, 12) + Fraction(7, 8) + Fraction(11, 12)) / 3,
    }
    for key, value in expected.items():
        assert abs(_value(results, key) - float(value)) < TOLERANCE, key
    assert int(results["k2/N_things"]) == 0
    assert torch.isnan(results["k2/PQ_things"]) and torch.isnan(results["VPQ_things"])
    assert [int(results[f"k{k}/N_things"]) for k in (0, 1)] == [1, 1]  # the false positives are seen


# ---- (d) videos shorter than a window


def test_video_shorter_than_a_window_adds_no_window() -> None:
    """With Cityscapes-VPS's frame step of 5, k = 10 takes 3 frames: a 2-frame video adds none, so k = 10
    is the 3-frame video's alone, while k = 0 and 5 count both."""
    short, long = _switch_video(switch=True), _switch_video(switch=False)
    short = (short[0][:2], short[1][:2])
    both = VideoPanopticQuality(CATEGORIES, window_sizes=(0, 5, 10))
    both.update(*short)
    both.update(*long)
    long_only = VideoPanopticQuality(CATEGORIES, window_sizes=(0, 5, 10))
    long_only.update(*long)
    together, alone = both.compute(), long_only.compute()
    assert [int(together[f"k{k}/windows"]) for k in (0, 5, 10)] == [5, 3, 1]
    assert _value(together, "k10/PQ") == _value(alone, "k10/PQ") == 1.0
    assert _value(together, "k5/PQ") < 1.0  # the short video's switch counts at k = 5
    short_only = _vpq(short, window_sizes=(0, 5, 10), frame_step=5)
    assert int(short_only["k10/windows"]) == 0 and int(short_only["k10/N"]) == 0
    assert torch.isnan(short_only["k10/PQ"]) and torch.isnan(short_only["VPQ"])


def test_cityscapes_vps_windows_of_six_annotated_frames() -> None:
    """eval_vpq on a Cityscapes-VPS video (6 annotated frames, 5 apart): nframes 1, 2, 3, 4 for k = 0, 5, 10,
    15, so 6, 5, 4 and 3 windows."""
    gt = _frame([1, 1, 1, 2, 2, 2], {1: (THING, False), 2: (STUFF, False)})
    metric = VideoPanopticQuality(CATEGORIES)
    metric.update([gt] * 6, [gt] * 6)
    assert [metric.frames_per_window(k) for k in metric.window_sizes] == [1, 2, 3, 4]
    assert metric.windows.tolist() == [6, 5, 4, 3]
    assert _value(metric.compute(), "VPQ") == 1.0


# ---- (e) DDP: merged states


def test_merged_states_equal_one_metric() -> None:
    generator = np.random.default_rng(1)
    videos = [_switch_video(switch=True), _random_video(generator, 4), _random_video(generator, 3)]
    single = VideoPanopticQuality(CATEGORIES, window_sizes=(0, 1, 2), frame_step=1)
    ranks = [VideoPanopticQuality(CATEGORIES, window_sizes=(0, 1, 2), frame_step=1) for _ in range(2)]
    for index, video in enumerate(videos):
        ranks[index % 2].update(*video)
        single.update(*video)
    alone = copy.deepcopy(ranks[0]).compute()  # on a copy: merge_state keeps a cached compute() result
    ranks[0].merge_state(ranks[1])
    merged, expected = ranks[0].compute(), single.compute()
    _assert_same_results(merged, expected)
    assert abs(_value(alone, "VPQ") - _value(expected, "VPQ")) > 1e-6  # the second rank's video counts


# ---- inputs refused


def test_tube_window_lists_each_id_once_from_its_first_frame() -> None:
    first = _frame([1, 1, 0], {1: (THING, False)}, height=2)
    second = _frame([1, 3, 3], {1: (OTHER_THING, False), 3: (STUFF, False)}, height=2)
    window = tube_window([first, second])
    assert window.ids.tolist() == [[1, 1, 0, 1, 3, 3]] * 2
    assert window.segments == {1: SegmentInfo(THING), 3: SegmentInfo(STUFF)}


def test_rejects_bad_input() -> None:
    metric = VideoPanopticQuality(CATEGORIES, window_sizes=(0, 1), frame_step=1)
    good = _frame([1, 2], {1: (THING, False), 2: (STUFF, False)})
    unlisted = _frame([1, 2], {1: (THING, False)})
    with pytest.raises(ValueError, match=r"pixel ids \[2\] of frame 1"):
        metric.update([good, unlisted], [good, good])
    with pytest.raises(ValueError, match="share one"):
        metric.update([good, good], [good, _frame([1, 2], {1: (THING, False), 2: (STUFF, False)}, height=3)])
    with pytest.raises(ValueError, match="predicted frames for"):
        metric.update([good], [good, good])
    with pytest.raises(ValueError, match="multiple"):
        VideoPanopticQuality(CATEGORIES, window_sizes=(0, 3), frame_step=5)
