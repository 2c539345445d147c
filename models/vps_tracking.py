"""VPSNet's test-time id assignment (Kim et al., "Video Panoptic Segmentation", CVPR 2020, Sec. 3.2
"track"): every object seen so far in a video is kept in a memory (its last RoI features, box and class);
each new detection takes the memory entry of highest association score
(``vps_track_head.association_scores``: appearance affinity, detection score, box IoU, class consistency)
or starts a new object.

Follows mcahny/vps ``mmdet/models/detectors/panoptic_fusetrack.py`` ``simple_test_bboxes``: the first frame
starts one object per detection; later, each detection takes the argmax column of its scores (0 = new
object, added to the memory at once); when several detections take the same object, the highest score
keeps it and the others become new objects after the loop; a matched object's features and box are
replaced by the detection's (its class is kept). Ids are 0-based memory indices, so they persist for the
whole video.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from models.vps_track_head import MATCH_COEFF, TrackHead, association_scores


@dataclass
class TrackMemory:
    """The objects of one video so far: RoI ``features`` (K, C, S, S), ``boxes`` (K, 4) and ``labels``
    (K,); an object's id is its row."""

    features: Tensor | None = None
    boxes: Tensor | None = None
    labels: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.features is None else len(self.features)

    def add(self, features: Tensor, boxes: Tensor, labels: Tensor) -> Tensor:
        """Appends objects; returns their ids."""
        first = len(self)
        if self.features is None:
            self.features, self.boxes, self.labels = features.clone(), boxes.clone(), labels.clone()
        else:
            assert self.boxes is not None and self.labels is not None
            self.features = torch.cat([self.features, features])
            self.boxes = torch.cat([self.boxes, boxes])
            self.labels = torch.cat([self.labels, labels])
        return torch.arange(first, first + len(features), device=features.device)


def assign_ids(
    track_head: TrackHead,
    memory: TrackMemory,
    features: Tensor,
    boxes: Tensor,
    labels: Tensor,
    scores: Tensor,
    match_coeff: Sequence[float] = MATCH_COEFF,
) -> Tensor:
    """The (n,) int64 object ids of one frame's detections (RoI ``features``, ``boxes`` in the frame the
    memory's boxes are in, ``labels``, ``scores``); updates ``memory``."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    if len(memory) == 0:
        return memory.add(features, boxes, labels)
    assert memory.features is not None and memory.boxes is not None and memory.labels is not None
    affinity = track_head(features, memory.features, [len(features)], [len(memory)])[0]
    scores_ = association_scores(affinity, scores, labels, boxes, memory.labels, memory.boxes, match_coeff)
    likelihood, columns = scores_.max(dim=1)
    ids = [-1] * len(boxes)
    best_score: dict[int, float] = {}
    best_detection: dict[int, int] = {}
    for index, (column, value) in enumerate(zip(columns.tolist(), likelihood.tolist(), strict=True)):
        if column == 0:
            ids[index] = _new_object(memory, features, boxes, labels, index)
            continue
        obj = column - 1
        if value > best_score.get(obj, -math.inf):
            if obj in best_detection:
                ids[best_detection[obj]] = -1
            best_score[obj], best_detection[obj], ids[index] = value, index, obj
            memory.features[obj] = features[index]
            memory.boxes[obj] = boxes[index]
    for index, obj in enumerate(ids):
        if obj < 0:
            ids[index] = _new_object(memory, features, boxes, labels, index)
    return torch.tensor(ids, dtype=torch.int64, device=boxes.device)


def _new_object(memory: TrackMemory, features: Tensor, boxes: Tensor, labels: Tensor, index: int) -> int:
    """Adds detection ``index`` to the memory as a new object; returns its id."""
    part = slice(index, index + 1)
    return int(memory.add(features[part], boxes[part], labels[part])[0])
