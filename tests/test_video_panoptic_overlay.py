"""``lightning_modules.wandb_overlays.video_panoptic_overlay``: a clip's frames side by side, prediction
above ground truth; a tracked id keeps its colour from frame to frame, different ids differ, stuff is
painted fainter in its class's colour in both rows, outlines are drawn in the segment's colour, and tall
frames are shrunk."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import Tensor

from lightning_modules.wandb_overlays import (
    STUFF_ALPHA,
    TRACK_ALPHA,
    stuff_colour,
    track_colour,
    video_panoptic_overlay,
)

NAMES = ["road", "sky", "car", "person"]  # semantic classes: stuff 0-1, things 2-3
CATEGORY_IDS = [7, 23, 26, 24]
H, W = 6, 8


def _map(columns: list[int], height: int = H) -> Tensor:
    return torch.tensor(columns).repeat(height, 1)


def _clip(height: int = H) -> tuple[list[Tensor], list[dict], list[dict]]:
    """Two black frames: road (class 0, predicted id 1, ground-truth id 5) at the left, car track 1000
    (ground truth 26001) moving right, a person 1001 (ground truth 24001) in the second frame only."""
    frames = [torch.zeros(3, height, W), torch.zeros(3, height, W)]
    predicted = [[1, 1, 1000, 1000, 1000, 0, 0, 0], [1, 1, 0, 1000, 1000, 1000, 1001, 1001]]
    predictions = [
        {
            "panoptic": _map(columns, height),
            "segment_ids": torch.tensor(sorted(set(columns) - {0})),
            "segment_classes": torch.tensor(
                [{1: 0, 1000: 2, 1001: 3}[i] for i in sorted(set(columns) - {0})]
            ),
        }
        for columns in predicted
    ]
    truth = [[5, 5, 26001, 26001, 26001, 0, 0, 0], [5, 5, 0, 26001, 26001, 26001, 24001, 24001]]
    categories = {5: 7, 26001: 26, 24001: 24}
    targets = [
        {
            "panoptic": _map(columns, height),
            "segments": torch.tensor([[i, categories[i], 0] for i in sorted(set(columns) - {0})]),
        }
        for columns in truth
    ]
    return frames, predictions, targets


def _pixels(num_stuff_classes: int | None = None) -> np.ndarray:
    frames, predictions, targets = _clip()
    image = video_panoptic_overlay(frames, predictions, targets, NAMES, CATEGORY_IDS, num_stuff_classes)
    return np.asarray(image.image)


def _blend(colour: tuple[int, int, int], alpha: float) -> list[int]:
    return [round(alpha * c) for c in colour]  # over a black frame


def test_frames_side_by_side_prediction_above_ground_truth() -> None:
    pixels = _pixels()
    assert pixels.shape == (2 * H, 2 * W, 3)
    inside = H // 2  # a row away from the top and bottom edges
    # the car: column 3 of frame 0 and column 4 of frame 1 are inside it in both rows
    assert pixels[inside, 3].tolist() == _blend(track_colour(1000), TRACK_ALPHA)
    assert pixels[inside, W + 4].tolist() == pixels[inside, 3].tolist()  # same id, same colour
    assert pixels[H + inside, 3].tolist() == _blend(track_colour(26001), TRACK_ALPHA)
    assert pixels[H + inside, W + 4].tolist() == pixels[H + inside, 3].tolist()
    # the person: another id, another colour; void stays black
    assert pixels[inside, W + 7].tolist() == _blend(track_colour(1001), TRACK_ALPHA)
    assert pixels[inside, W + 6].tolist() == list(track_colour(1001))  # its outline (the car beside it)
    assert track_colour(1001) != track_colour(1000)
    assert pixels[inside, 7].tolist() == [0, 0, 0]


def test_outlines_take_the_segment_colour() -> None:
    pixels = _pixels()
    assert pixels[H // 2, 2].tolist() == list(track_colour(1000))  # the car's left edge, frame 0
    assert pixels[H // 2, 1].tolist() == list(stuff_colour(0))  # the road's right edge


def test_stuff_is_faint_in_its_class_colour_in_both_rows() -> None:
    for num_stuff_classes in (None, 2):  # inferred from the predicted ids below 1000, or given
        pixels = _pixels(num_stuff_classes)
        expected = _blend(stuff_colour(0), STUFF_ALPHA)
        assert pixels[H // 2, 0].tolist() == expected  # road, prediction (id 1)
        assert pixels[H + H // 2, 0].tolist() == expected  # road, ground truth (id 5)
    pixels = _pixels(num_stuff_classes=0)  # nothing is stuff: the road is coloured by its id
    assert pixels[H // 2, 0].tolist() == _blend(track_colour(1), TRACK_ALPHA)


def test_consecutive_ids_get_distinct_colours() -> None:
    colours = [track_colour(i) for i in range(1000, 1100)]
    assert len(set(colours)) == len(colours)
    distances = [np.abs(np.subtract(a, b)).sum() for a, b in itertools.pairwise(colours)]
    assert min(distances) > 60
    assert track_colour(1000) == track_colour(1000)


def test_tall_frames_are_shrunk() -> None:
    frames, predictions, targets = _clip(height=24)
    image = video_panoptic_overlay(frames, predictions, targets, NAMES, CATEGORY_IDS, max_frame_height=12)
    pixels = np.asarray(image.image)
    assert pixels.shape == (2 * 12, 2 * 4, 3)
    assert "road" in image._caption and "top: prediction" in image._caption


def test_refuses_mismatched_lengths() -> None:
    frames, predictions, targets = _clip()
    with pytest.raises(ValueError, match="one prediction and one target per frame"):
        video_panoptic_overlay(frames, predictions[:1], targets, NAMES, CATEGORY_IDS)
