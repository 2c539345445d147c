"""The frame-by-frame video panoptic baseline's id linking: an image panoptic model (UPSNet) run on every
frame, its thing segments given ids that persist over the video by mask IoU between consecutive frames --
the issue's baseline "UPSNet frame by frame with ids matched by mask IoU between consecutive frames", the
image-panoptic-plus-mask-IoU-tracking baseline Kim et al. compare VPSNet with ("Video Panoptic
Segmentation", CVPR 2020, Sec. 5, Table 3; a simple form of the IoU tracker of Bochinski et al., "High-Speed
Tracking-by-Detection Without Using Image Information", AVSS 2017, on masks instead of boxes).

Input per frame, as an image panoptic model returns it: ``ids`` (H, W) int64 segment ids 1..M (0 = void)
and ``segment_classes`` (M,) int64, segment id m + 1 having class ``segment_classes[m]`` (the project's
layout: stuff classes 0..S-1, thing label l as class S + l - 1). Output per frame, the video model's
contract: ``(ids, segment_ids, segment_classes)`` with ids that persist over the frames of the video:

- a stuff segment (class < S) gets id ``stuff_segment_id(class) = class + 1`` in every frame (two stuff
  segments of one class in a frame become one segment);
- a thing segment (class >= S) is linked to the previous frame's thing segments of the same class whose
  mask IoU with it exceeds ``min_iou`` and inherits the id of the one it is assigned to; otherwise it opens
  a new track, id ``THING_ID_OFFSET + n`` for the n-th track of the video (n = 0, 1, ...). Only consecutive
  frames are compared: an object missing from one frame comes back under a new id. The assignment is
  greedy, highest IoU first (ties: the earlier previous track, then the earlier current segment), each
  previous track and current segment used at most once; with ``min_iou >= 0.5`` (the default) it is the
  unique matching: masks with IoU > 0.5 cover more than half of each other, and the disjoint segments of
  one frame cannot both cover more than half of one mask;
- segments without pixels are left out (they have no mask to link); ``segment_ids`` lists the frame's
  segments in the order of the input segments, ``segment_classes`` their classes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

THING_ID_OFFSET = 1000
"""Thing tracks have ids >= THING_ID_OFFSET; stuff segments ``class + 1`` < THING_ID_OFFSET."""

VideoFrame = tuple[Tensor, Tensor, Tensor]  # ids (H, W), segment_ids (K,), segment_classes (K,)


def stuff_segment_id(semantic_class: int) -> int:
    """The video id of the stuff segment of ``semantic_class`` (< S): ``class + 1`` (0 is void)."""
    return int(semantic_class) + 1


class MaskIoULinker:
    """Links one video's frames as they come (module docstring): ``link(ids, segment_classes)`` per frame in
    order returns the frame in the video contract; ``reset()`` before the next video."""

    def __init__(self, num_stuff_classes: int, min_iou: float = 0.5) -> None:
        if not 0 <= num_stuff_classes < THING_ID_OFFSET:
            raise ValueError(
                f"num_stuff_classes must lie in [0, {THING_ID_OFFSET}) so that stuff ids stay below the "
                f"thing ids, got {num_stuff_classes}"
            )
        if not 0.0 <= min_iou < 1.0:
            raise ValueError(f"min_iou must lie in [0, 1), got {min_iou}")
        self.num_stuff_classes = int(num_stuff_classes)
        self.min_iou = float(min_iou)
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame and restart the track count (a new video)."""
        self._previous: Tensor | None = None  # the previous frame's video ids (H, W)
        self._previous_classes: dict[int, int] = {}  # its thing track ids -> class
        self._tracks = 0

    def link(self, ids: Tensor, segment_classes: Tensor) -> VideoFrame:
        """The next frame of the video: ``ids`` (H, W) ids 1..M, ``segment_classes`` (M,)."""
        if ids.ndim != 2:
            raise ValueError(f"segment ids must be (H, W), got {tuple(ids.shape)}")
        if self._previous is not None and self._previous.shape != ids.shape:
            raise ValueError(
                f"the frames of a video must share one (H, W): {tuple(self._previous.shape)} then "
                f"{tuple(ids.shape)}"
            )
        ids, classes = ids.long(), segment_classes.reshape(-1).long().to(ids.device)
        count = len(classes)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > count):
            raise ValueError(
                f"segment ids must lie in 0..{count} (one class per segment), got "
                f"{int(ids.min())}..{int(ids.max())}"
            )
        if count and int(classes.min()) < 0:
            raise ValueError(f"segment classes must be >= 0, got {int(classes.min())}")
        areas = torch.bincount(ids.reshape(-1), minlength=count + 1)[1:]
        class_list, area_list = classes.tolist(), areas.tolist()
        present = [m for m in range(count) if area_list[m] > 0]
        things = {m for m in present if class_list[m] >= self.num_stuff_classes}
        inherited = self._assign(ids, classes, things, areas)

        video_ids = torch.zeros(count + 1, dtype=torch.int64, device=ids.device)  # input id -> video id
        listed: dict[int, int] = {}  # video id -> class, in input order
        for m in present:
            cls = class_list[m]
            if cls < self.num_stuff_classes:
                video_id = stuff_segment_id(cls)
            elif m in inherited:
                video_id = inherited[m]
            else:
                video_id = THING_ID_OFFSET + self._tracks
                self._tracks += 1
            video_ids[m + 1] = video_id
            listed.setdefault(video_id, cls)
        linked = video_ids[ids]
        self._previous = linked
        self._previous_classes = {i: c for i, c in listed.items() if i >= THING_ID_OFFSET}
        segment_ids = torch.tensor(list(listed), dtype=torch.int64, device=ids.device)
        return linked, segment_ids, torch.tensor(list(listed.values()), dtype=torch.int64, device=ids.device)

    def _assign(self, ids: Tensor, classes: Tensor, things: set[int], areas: Tensor) -> dict[int, int]:
        """Current thing segment index m -> the previous frame's track id it inherits (greedy by IoU)."""
        if self._previous is None or not things or not self._previous_classes:
            return {}
        previous = self._previous.reshape(-1)
        tracks = sorted(self._previous_classes)
        track_index = torch.full((int(previous.max()) + 1,), -1, dtype=torch.int64, device=ids.device)
        track_index[torch.tensor(tracks, device=ids.device)] = torch.arange(len(tracks), device=ids.device)
        track_of_pixel = track_index[previous]
        track_areas = torch.bincount(track_of_pixel[track_of_pixel >= 0], minlength=len(tracks))
        current = ids.reshape(-1)
        both = (track_of_pixel >= 0) & (current > 0)
        base = len(classes) + 1
        pairs, overlaps = torch.unique(track_of_pixel[both] * base + current[both], return_counts=True)
        candidates = []
        for pair, overlap in zip(pairs.tolist(), overlaps.tolist(), strict=True):
            track, m = divmod(pair, base)
            m -= 1
            track_id = tracks[track]
            if m not in things or int(classes[m]) != self._previous_classes[track_id]:
                continue
            iou = overlap / (int(track_areas[track]) + int(areas[m]) - overlap)
            if iou > self.min_iou:
                candidates.append((-iou, track_id, m))
        inherited: dict[int, int] = {}
        taken: set[int] = set()
        for _, track_id, m in sorted(candidates):
            if m not in inherited and track_id not in taken:
                inherited[m] = track_id
                taken.add(track_id)
        return inherited


def link_by_mask_iou(
    frames: Iterable[tuple[Tensor, Tensor]], num_stuff_classes: int, min_iou: float = 0.5
) -> list[VideoFrame]:
    """One video's frames ``(ids, segment_classes)`` from an image panoptic model, in order, as
    ``(ids, segment_ids, segment_classes)`` with persistent ids (module docstring)."""
    linker = MaskIoULinker(num_stuff_classes, min_iou)
    return [linker.link(ids, segment_classes) for ids, segment_classes in frames]
