import numpy as np
import pytest
import torch

from metrics.colour_statistics import ColourStatisticsDistance


def test_distance_equals_the_numpy_moments_over_all_batches():
    generator = torch.Generator().manual_seed(0)
    generated = [torch.rand(2, 3, 8, 8, generator=generator) * 0.5 for _ in range(3)]
    real = [torch.rand(4, 3, 6, 6, generator=generator) for _ in range(3)]
    metric = ColourStatisticsDistance()
    for fake, true in zip(generated, real, strict=True):
        metric.update(fake, true)
    fake_pixels = np.concatenate([image.permute(1, 0, 2, 3).reshape(3, -1).numpy() for image in generated], 1)
    real_pixels = np.concatenate([image.permute(1, 0, 2, 3).reshape(3, -1).numpy() for image in real], 1)
    expected = np.linalg.norm(fake_pixels.mean(1) - real_pixels.mean(1)) + np.linalg.norm(
        fake_pixels.std(1) - real_pixels.std(1)
    )
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-5)


def test_identical_colour_distributions_give_zero_and_a_colour_shift_its_size():
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.5
    metric = ColourStatisticsDistance()
    metric.update(images.flip(0), images)
    assert float(metric.compute()) == pytest.approx(0.0, abs=1e-6)
    metric.reset()
    metric.update(images + torch.tensor([0.3, 0.0, 0.4]).view(1, 3, 1, 1), images)
    assert float(metric.compute()) == pytest.approx(0.5, abs=1e-5)


def test_images_that_are_not_rgb_batches_are_refused():
    with pytest.raises(ValueError, match=r"generated images must be \(B, 3, H, W\)"):
        ColourStatisticsDistance().update(torch.rand(3, 8, 8), torch.rand(1, 3, 8, 8))


def test_per_class_distance_averages_the_classes_own_distances():
    generator = torch.Generator().manual_seed(2)
    real = torch.rand(6, 3, 4, 4, generator=generator)
    generated = torch.rand(6, 3, 4, 4, generator=generator)
    labels = torch.tensor([1, 2, 1, 2, 1, 2])
    metric = ColourStatisticsDistance(num_classes=3)  # class 3 never seen: left out of the mean
    metric.update(generated, real, labels, labels)
    per_class = []
    for label in (1, 2):
        single = ColourStatisticsDistance()
        single.update(generated[labels == label], real[labels == label])
        per_class.append(float(single.compute()))
    assert float(metric.compute()) == pytest.approx(np.mean(per_class), rel=1e-5)
