"""The keypoint detectors' input transform: letterboxing in training (and by default in eval), and the
official test-time padding at each image's own resolution."""

from __future__ import annotations

import torch

from models.letterbox import LetterboxTransform


def test_letterbox_scales_the_longest_side_and_pads_bottom_right() -> None:
    transform = LetterboxTransform(64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    wide, tall = torch.ones(3, 40, 80), torch.ones(3, 96, 48)
    batch = transform([wide, tall])
    assert batch.shape == (2, 3, 64, 64)
    assert transform.scales([wide, tall]) == [0.8, 64 / 96]
    assert batch[0, :, :32].eq(1).all() and batch[0, :, 32:].eq(0).all()
    assert batch[1, :, :, :32].eq(1).all() and batch[1, :, :, 32:].eq(0).all()


def test_official_test_padding_keeps_the_resolution() -> None:
    """CenterNet ``(side | 31) + 1`` and CornerNet ``side | 127``; in training the letterbox applies."""
    images = [torch.ones(3, 480, 640), torch.ones(3, 500, 333)]
    centernet = LetterboxTransform(512, test_padding=(32, 0)).eval()
    assert centernet(images).shape == (2, 3, (500 | 31) + 1, (640 | 31) + 1)
    assert centernet.scales(images) == [1.0, 1.0]
    cornernet = LetterboxTransform(511, test_padding=(128, 1)).eval()
    assert cornernet(images).shape == (2, 3, 500 | 127, 640 | 127)
    assert cornernet.train()(images).shape == (2, 3, 511, 511)
