"""Video panoptic quality (Kim et al., "Video Panoptic Segmentation", CVPR 2020, Sec. 4) as a torchmetrics
Metric over DDP ranks, computed as the official ``tools/eval_vpq.py`` of mcahny/vps does:

- a video is the sequence of its evaluated frames (Cityscapes-VPS: the annotated ones, every 5th raw
  frame, so ``frame_step=5``); for a window size k (raw frames, ``window_sizes``: the paper's 0, 5, 10, 15)
  every run of ``k // frame_step + 1`` consecutive evaluated frames is one window -- eval_vpq's
  ``nframes`` = 1, 2, 3, 4 with ``k = (nframes - 1) * 5``; a video with fewer frames has no window for
  that k (eval_vpq's ``range(0, len(video) - nframes + 1)`` is empty);
- a window is scored as one image of panoptic quality whose segments are the tubes: the frames' id maps
  side by side and, per id, the segment of its first frame in the window (category, iscrowd; listed in
  order of first appearance, so the crowd rule below sees eval_vpq's dict order) -- the matching (same
  category, IoU > 0.5 with the ground-truth void left out of the union), the void and crowd rules
  (an unmatched prediction more than half on void or on its category's crowd region is no false
  positive; crowd ground truth never matches nor counts as a false negative) are those of panopticapi's
  ``pq_compute``, which ``metrics.panoptic_quality.PanopticQuality`` reproduces and this metric calls;
- per k, IoU sums, TP, FP and FN add up over all windows of all videos and give PQ, SQ, RQ per category,
  averaged over the categories with TP + FP + FN > 0 (overall, things, stuff) as ``pq_compute`` does;
- VPQ (and VPQ_things, VPQ_stuff) is the mean over k of the per-k PQ; values are fractions, not percent.

Written by hand: no library computes VPQ (torchmetrics, panopticapi and cityscapesscripts score images).
Differences from eval_vpq only where it refuses or crashes: a group of categories never seen under some k
reads NaN there and in its VPQ (eval_vpq divides by zero); ids and categories are checked per frame as
``PanopticQuality`` checks an image (eval_vpq skips ground-truth ids missing from the JSON, and raises on a
listed prediction without pixels in a frame, accepted here: a tube without pixels in a window is ignored);
ground-truth areas are pixel counts (eval_vpq sums the JSON's, equal when the JSON matches the PNGs).
States are per-k sums for videos given without an id (each call counts) and one row per video given with
its ``video_id`` (a video given twice -- the DDP sampler's padding -- counts once; ``metrics.video_rows``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from metrics.panoptic_quality import (
    NO_IMAGE_ID,
    VOID,
    PanopticQuality,
    PanopticSegmentation,
    SegmentInfo,
    quality_of_totals,
)
from metrics.video_rows import add_video_row, add_video_row_states, first_rows_sum

CITYSCAPES_VPS_WINDOW_SIZES = (0, 5, 10, 15)
CITYSCAPES_VPS_FRAME_STEP = 5  # Cityscapes-VPS annotates every 5th frame of its 30-frame snippets


def tube_window(frames: Sequence[PanopticSegmentation]) -> PanopticSegmentation:
    """Consecutive frames as one image whose segments are tubes: the id maps side by side (pixel counts
    per id pair are those of eval_vpq's stacked maps) and, per id, the segment of the first frame that
    lists it."""
    segments: dict[int, SegmentInfo] = {}
    for frame in frames:
        for segment_id, info in frame.segments.items():
            segments.setdefault(segment_id, info)
    return PanopticSegmentation(ids=torch.cat([frame.ids for frame in frames], dim=1), segments=segments)


def window_starts(num_frames: int, frames_per_window: int) -> range:
    """The first frame of every window of ``frames_per_window`` consecutive frames (none if too few)."""
    return range(max(num_frames - frames_per_window + 1, 0))


def _check_frame(frame: PanopticSegmentation, which: str, index: int) -> None:
    """Every pixel id of a frame is void or listed in that frame's own segments (the window's merged
    segments would otherwise let an id borrow another frame's entry)."""
    if frame.ids.ndim != 2:
        raise ValueError(f"{which} frame {index}: segment ids must be (H, W), got {tuple(frame.ids.shape)}")
    present = set(torch.unique(frame.ids).tolist()) - {VOID}
    missing = sorted(present - set(frame.segments))
    if missing:
        raise ValueError(
            f"{which} pixel ids {missing[:5]} of frame {index} are neither void (0) nor listed in its "
            "segments"
        )


def check_video(predictions: Sequence[PanopticSegmentation], targets: Sequence[PanopticSegmentation]) -> None:
    """One video's predicted and ground-truth frames: as many of each, each frame checked as
    ``PanopticQuality`` checks an image, all of one (H, W)."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predicted frames for {len(targets)} ground-truth frames")
    for which, frames in (("predicted", predictions), ("ground truth", targets)):
        for index, frame in enumerate(frames):
            _check_frame(frame, which, index)
    shapes = {tuple(frame.ids.shape) for frame in [*predictions, *targets]}
    if len(shapes) > 1:
        raise ValueError(f"the frames of a video must share one (H, W), got {sorted(shapes)}")


class VideoPanopticQuality(Metric):
    """VPQ overall, for things and for stuff, and PanopticQuality's values per window size (see the module
    docstring).

    ``categories``: category id -> isthing, as ``PanopticQuality`` takes them. ``window_sizes``: k in raw
    frames, each a multiple of ``frame_step``, the number of raw frames between two consecutive frames given
    to ``update`` (5 for Cityscapes-VPS's annotated frames; 1 when every frame is given).

    ``compute()`` returns float64 tensors ``VPQ``, ``VPQ_things``, ``VPQ_stuff`` and, per k, every key of
    ``PanopticQuality.compute()`` prefixed ``k{k}/`` (``k0/PQ``, ``k0/SQ``, ``k0/RQ``, ``k0/PQ_things``, ...,
    ``k0/N``, ``k0/PQ_per_class``, ...) and ``k{k}/windows``, the number of windows scored."""

    higher_is_better = True
    full_state_update = False
    is_differentiable = False

    def __init__(
        self,
        categories: Mapping[int, bool],
        window_sizes: Sequence[int] = CITYSCAPES_VPS_WINDOW_SIZES,
        frame_step: int = CITYSCAPES_VPS_FRAME_STEP,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.categories = {int(c): bool(t) for c, t in categories.items()}
        # the image metric scores the windows (its checks of the categories, its matching); never synced
        self._image_metric = PanopticQuality(self.categories, sync_on_compute=False)
        self.category_ids = self._image_metric.category_ids
        self.window_sizes = tuple(int(k) for k in window_sizes)
        self.frame_step = int(frame_step)
        self._check_window_sizes()
        count = len(self.window_sizes)
        # per window size: a (4, C) row of IoU sum, TP, FP, FN over all windows, and the number of windows
        self.add_state(
            "totals", torch.zeros(count, 4, len(self.category_ids), dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("windows", torch.zeros(count, dtype=torch.int64), dist_reduce_fx="sum")
        add_video_row_states(self)  # videos given with their id: (totals, windows) rows, each id once

    def _check_window_sizes(self) -> None:
        if self.frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {self.frame_step}")
        if not self.window_sizes or len(set(self.window_sizes)) != len(self.window_sizes):
            raise ValueError(f"need distinct window sizes, got {self.window_sizes}")
        for k in self.window_sizes:
            if k < 0 or k % self.frame_step:
                raise ValueError(f"window size {k} is not a multiple >= 0 of frame_step {self.frame_step}")

    def frames_per_window(self, window_size: int) -> int:
        """Frames given to ``update`` in a window of ``window_size`` raw frames (eval_vpq's ``nframes``)."""
        return window_size // self.frame_step + 1

    def update(
        self,
        predictions: Sequence[PanopticSegmentation],
        targets: Sequence[PanopticSegmentation],
        video_id: int | None = None,
    ) -> None:
        """One whole video: its predicted and ground-truth frames in order, all of the same (H, W), with
        segment ids that persist across frames. With a ``video_id`` a video given twice (on two DDP ranks,
        the sampler's padding) counts once (``metrics.video_rows``); without, every call counts."""
        check_video(predictions, targets)
        totals, windows = torch.zeros_like(self.totals), torch.zeros_like(self.windows)
        for index, window_size in enumerate(self.window_sizes):
            frames_per_window = self.frames_per_window(window_size)
            starts = window_starts(len(targets), frames_per_window)
            for chunk in self._chunks(starts):
                totals[index] += self._window_totals(predictions, targets, chunk, frames_per_window)
            windows[index] += len(starts)
        if video_id is None:
            self.totals += totals
            self.windows += windows
        else:
            add_video_row(self, video_id, torch.cat([totals.flatten(), windows.to(totals.dtype)]))

    def _all_sums(self) -> tuple[Tensor, Tensor]:
        """``totals`` and ``windows`` of the videos given without an id plus those given with one."""
        rows = first_rows_sum(self, self.totals.numel() + self.windows.numel())
        split = self.totals.numel()
        totals = self.totals + rows[:split].reshape(self.totals.shape).to(self.totals.device)
        windows = self.windows + rows[split:].round().to(self.windows)
        return totals, windows

    @staticmethod
    def _chunks(starts: range) -> Iterator[range]:
        """Window starts in groups of one PanopticQuality pass, so long videos never hold all windows."""
        size = PanopticQuality.IMAGES_PER_PASS
        for first in range(0, len(starts), size):
            yield starts[first : first + size]

    def _window_totals(
        self,
        predictions: Sequence[PanopticSegmentation],
        targets: Sequence[PanopticSegmentation],
        starts: range,
        frames_per_window: int,
    ) -> Tensor:
        """(4, C): IoU sum, TP, FP, FN per category, summed over the windows starting at ``starts``."""
        counts = self._image_metric.batch_counts(
            [tube_window(predictions[s : s + frames_per_window]) for s in starts],
            [tube_window(targets[s : s + frames_per_window]) for s in starts],
            [NO_IMAGE_ID] * len(starts),
        )
        return counts.sum(0)

    def compute(self) -> dict[str, Tensor]:
        results: dict[str, Tensor] = {}
        all_totals, all_windows = self._all_sums()
        for index, window_size in enumerate(self.window_sizes):
            prefix = f"k{window_size}/"
            for name, value in quality_of_totals(all_totals[index], self._image_metric.isthing).items():
                results[prefix + name] = value
            results[prefix + "windows"] = all_windows[index]
        for suffix in ("", "_things", "_stuff"):
            per_window_size = torch.stack([results[f"k{k}/PQ{suffix}"] for k in self.window_sizes])
            results[f"VPQ{suffix}"] = per_window_size.mean()
        return results
