"""The keypoint detectors' W&B overlay: the predicted heatmap drawn as a mask layer of 0.1 levels under the
boxes, resized to the image."""

from __future__ import annotations

import torch

from lightning_modules.wandb_overlays import HEATMAP_LEVELS, detection_overlay, heatmap_levels


def test_heatmap_levels_resize_and_bin() -> None:
    heat = torch.tensor([[0.0, 0.25], [0.55, 1.0]])
    levels = heatmap_levels(heat, (4, 6))
    assert levels.shape == (4, 6)
    assert (
        levels[0, 0] == 0 and levels[0, 5] == 2 and levels[3, 0] == 5 and levels[3, 5] == HEATMAP_LEVELS - 1
    )


def test_detection_overlay_has_a_heatmap_layer_for_keypoint_detectors() -> None:
    image = torch.rand(3, 32, 48)
    prediction = {
        "boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]),
        "labels": torch.tensor([1]),
        "scores": torch.tensor([0.9]),
        "heatmap": torch.rand(8, 12),
    }
    target = {"boxes": torch.tensor([[5.0, 5.0, 21.0, 19.0]]), "labels": torch.tensor([1])}
    overlay = detection_overlay(image, prediction, target, {1: "circle"}, 0.5)
    assert set(overlay._masks) == {"heatmap"}
    without = detection_overlay(
        image, {k: v for k, v in prediction.items() if k != "heatmap"}, target, {1: "circle"}, 0.5
    )
    assert not without._masks
