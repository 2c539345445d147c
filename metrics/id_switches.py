"""Identity switches of video panoptic predictions (the IDSW of CLEAR MOT: Bernardin & Stiefelhagen,
"Evaluating Multiple Object Tracking Performance: The CLEAR MOT Metrics", EURASIP JIVP 2008, Sec. 2.1.3) as a
torchmetrics Metric over DDP ranks -- how often the predicted id of a ground-truth object changes, which VPQ
only shows indirectly (a switch breaks the tubes of the windows across it):

- a track is a non-crowd ground-truth thing segment id of one video (Cityscapes-VPS ground-truth ids persist
  over the frames of a video); stuff and crowd segments take no part;
- in each frame a track is matched to the predicted segment of the same category whose IoU with it exceeds
  0.5, the union leaving out the predicted pixels that are void in the ground truth -- the matching of
  panopticapi's ``pq_compute`` (Kirillov et al., CVPR 2019, Sec. 4.1) that ``PanopticQuality`` and
  ``VideoPanopticQuality`` use per image; IoU > 0.5 makes the match unique. ``PanopticQuality.matched_pairs``
  gives this metric the pairs of each frame;
- an id switch is counted when a track is matched to a predicted id other than the one it was last matched
  to; a frame where it is unmatched (a miss) or absent changes nothing, so a track lost and recovered
  under its old id counts no switch, recovered under a new id one (CLEAR MOT's "last correspondence");
- ``matches`` counts matched (track, frame) pairs, ``tracks`` the tracks with pixels in some frame (a
  segment id crowd in one frame and not in another is a track in the frames where it is not crowd).

``compute()`` returns int64 tensors ``id_switches``, ``matches``, ``tracks``. States are sums
(``dist_reduce_fx="sum"``) for videos given without an id, one row per video given with its ``video_id``
(a video given twice -- DDP sampler padding -- counts once; ``metrics.video_rows``). Inputs are checked as
``VideoPanopticQuality`` checks them (every pixel id listed in its frame's segments, frames of one (H, W),
categories known).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from metrics.panoptic_quality import PanopticQuality, PanopticSegmentation
from metrics.video_panoptic_quality import check_video
from metrics.video_rows import add_video_row, add_video_row_states, first_rows_sum


class IdSwitches(Metric):
    """Identity switches, matches and tracks of ground-truth thing objects (see the module docstring).

    ``categories``: category id -> isthing, as ``PanopticQuality`` takes them."""

    higher_is_better = False
    full_state_update = False
    is_differentiable = False

    def __init__(self, categories: Mapping[int, bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not categories:
            raise ValueError("IdSwitches needs at least one category")
        self.isthing = {int(c): bool(t) for c, t in categories.items()}
        self._image_metric = PanopticQuality(self.isthing, sync_on_compute=False)  # its matching, per frame
        for name in ("id_switches", "matches", "tracks"):
            self.add_state(name, torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        add_video_row_states(self)

    def update(
        self,
        predictions: Sequence[PanopticSegmentation],
        targets: Sequence[PanopticSegmentation],
        video_id: int | None = None,
    ) -> None:
        """One whole video: its predicted and ground-truth frames in order, all of one (H, W), with segment
        ids that persist across frames. With a ``video_id`` a video given twice (on two DDP ranks) counts
        once (``metrics.video_rows``)."""
        check_video(predictions, targets)
        for which, frames in (("predicted", predictions), ("ground truth", targets)):
            for index, frame in enumerate(frames):
                unknown = {i.category_id for i in frame.segments.values()} - self.isthing.keys()
                if unknown:
                    raise ValueError(f"{which} frame {index} has category ids not in categories: {unknown}")
        last_match: dict[int, int] = {}  # track -> the predicted id it was last matched to
        tracks: set[int] = set()
        switches = matches = 0
        for prediction, target in zip(predictions, targets, strict=True):
            present = set(torch.unique(target.ids).tolist())
            tracks |= {
                i
                for i, info in target.segments.items()
                if i in present and self.isthing[info.category_id] and not info.iscrowd
            }
            for gt, pred in self._image_metric.matched_pairs(prediction, target).items():
                if not self.isthing[target.segments[gt].category_id]:
                    continue
                matches += 1
                switches += int(gt in last_match and last_match[gt] != pred)
                last_match[gt] = pred
        if video_id is not None:
            row = torch.tensor([switches, matches, len(tracks)], dtype=torch.float64, device=self.device)
            add_video_row(self, video_id, row)
            return
        self.id_switches += switches
        self.matches += matches
        self.tracks += len(tracks)

    def compute(self) -> dict[str, Tensor]:
        rows = first_rows_sum(self, 3).round().to(torch.int64)
        sums = (self.id_switches + rows[0], self.matches + rows[1], self.tracks + rows[2])
        return dict(zip(("id_switches", "matches", "tracks"), sums, strict=True))
