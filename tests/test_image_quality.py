"""PSNR and SSIM (metrics.image_quality) against a plain numpy/scipy reference written here: Matlab's
rgb2ycbcr Y, the border crop, PSNR with data range 255 averaged over images, and SSIM as Wang et al. 2004
(ssim_index.m: 11 x 11 Gaussian window, sigma 1.5, K = (0.01, 0.03), L = 255, mean over the valid positions).
Both sides compute in float64. Tolerances: SSIM 1e-9 (measured 6e-15); PSNR 2e-6 dB (measured 1.2e-6 dB:
torchmetrics takes log(255) and log(10) in float32, ~3e-8 relative)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

from metrics.image_quality import PSNR, SSIM, evaluation_images, psnr_per_image, rgb_to_y, ssim_per_image

TOLERANCE = 1e-9
PSNR_TOLERANCE_DB = 2e-6  # torchmetrics takes log(255) and log(10) in float32: ~3e-8 relative


def _reference_images(images: np.ndarray, crop_border: int, y_channel: bool, quantize: bool) -> np.ndarray:
    """(N, 3, H, W) RGB in [0, 1] -> (N, C, H', W') float64 in [0, 255], as BasicSR's to_y_channel."""
    images = images.astype(np.float64)
    if quantize:
        images = np.round(np.clip(images, 0.0, 1.0) * 255.0) / 255.0
    if y_channel:
        hwc = images.transpose(0, 2, 3, 1)
        images = (16.0 + hwc @ np.array([65.481, 128.553, 24.966]))[:, None]
    else:
        images = images * 255.0
    if crop_border:
        images = images[..., crop_border:-crop_border, crop_border:-crop_border]
    return images


def _reference_psnr(preds: np.ndarray, target: np.ndarray) -> np.ndarray:
    mse = ((preds - target) ** 2).reshape(len(preds), -1).mean(axis=1)
    return 10.0 * np.log10(255.0**2 / mse)


def _reference_ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    g /= g.sum()
    window = np.outer(g, g)

    def filt(image: np.ndarray) -> np.ndarray:
        return correlate2d(image, window, mode="valid")

    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def _reference_ssim(preds: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.array(
        [
            np.mean([_reference_ssim_2d(p, t) for p, t in zip(pi, ti, strict=True)])
            for pi, ti in zip(preds, target, strict=True)
        ]
    )


def _image_pair(kind: str, n: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random: uniform noise vs an independent noisy copy. Structured: gradients, a sinusoid and squares vs a
    blurred, noisy, slightly brighter version (off the 8-bit grid, partly outside [0, 1])."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "random":
        target = torch.rand(n, 3, height, width, generator=generator, dtype=torch.float64)
        preds = target + 0.1 * torch.randn(target.shape, generator=generator, dtype=torch.float64)
        return preds.clamp(0, 1), target
    ys = torch.linspace(0, 1, height, dtype=torch.float64).view(height, 1)
    xs = torch.linspace(0, 1, width, dtype=torch.float64).view(1, width)
    target = torch.empty(n, 3, height, width, dtype=torch.float64)
    for i in range(n):
        target[i, 0] = 0.5 * ys + 0.5 * xs
        target[i, 1] = 0.5 + 0.4 * torch.sin(6.28 * (i + 1) * xs) * torch.cos(3.14 * ys)
        target[i, 2] = 0.2
        target[i, 2, height // 4 : height // 2, width // 3 : 2 * width // 3] = 0.9
    blurred = torch.nn.functional.avg_pool2d(target, 3, stride=1, padding=1, count_include_pad=False)
    preds = blurred + 0.02 + 0.03 * torch.randn(target.shape, generator=generator, dtype=torch.float64)
    return preds, target


CASES = [  # kind, n, height, width, crop_border
    ("random", 3, 32, 32, 0),
    ("random", 2, 48, 40, 2),
    ("structured", 3, 35, 53, 4),
    ("structured", 2, 64, 48, 3),
]


def test_y_channel_is_matlab_rgb2ycbcr() -> None:
    colours = torch.tensor([[0.0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    y = rgb_to_y(colours.view(5, 3, 1, 1)).flatten()
    expected = torch.tensor([16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], dtype=torch.float64)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("kind", "n", "height", "width", "crop_border"), CASES)
@pytest.mark.parametrize("quantize", [True, False])
def test_psnr_and_ssim_on_y_match_numpy_reference(kind, n, height, width, crop_border, quantize) -> None:
    preds, target = _image_pair(kind, n, height, width, seed=height + crop_border)
    reference_preds = _reference_images(preds.numpy(), crop_border, y_channel=True, quantize=quantize)
    reference_target = _reference_images(target.numpy(), crop_border, y_channel=True, quantize=quantize)
    np.testing.assert_allclose(
        evaluation_images(preds, crop_border=crop_border, quantize=quantize).numpy(),
        reference_preds,
        rtol=0,
        atol=1e-10,
    )
    expected_psnr = _reference_psnr(reference_preds, reference_target)
    expected_ssim = _reference_ssim(reference_preds, reference_target)

    kwargs = {"crop_border": crop_border, "quantize": quantize}
    per_image_psnr = psnr_per_image(preds, target, **kwargs)
    per_image_ssim = ssim_per_image(preds, target, **kwargs)
    np.testing.assert_allclose(per_image_psnr.numpy(), expected_psnr, rtol=0, atol=PSNR_TOLERANCE_DB)
    np.testing.assert_allclose(per_image_ssim.numpy(), expected_ssim, rtol=0, atol=TOLERANCE)

    psnr, ssim = PSNR(**kwargs), SSIM(**kwargs)
    for metric in (psnr, ssim):  # two updates: the mean is over all images
        metric.update(preds[:1], target[:1])
        metric.update(preds[1:], target[1:])
    assert psnr.compute().item() == pytest.approx(expected_psnr.mean(), abs=PSNR_TOLERANCE_DB)
    assert ssim.compute().item() == pytest.approx(expected_ssim.mean(), abs=TOLERANCE)


@pytest.mark.parametrize(("kind", "n", "height", "width", "crop_border"), CASES[1:3])
def test_rgb_option_matches_numpy_reference(kind, n, height, width, crop_border) -> None:
    preds, target = _image_pair(kind, n, height, width, seed=7)
    reference_preds = _reference_images(preds.numpy(), crop_border, y_channel=False, quantize=True)
    reference_target = _reference_images(target.numpy(), crop_border, y_channel=False, quantize=True)
    psnr = PSNR(crop_border=crop_border, y_channel=False)
    ssim = SSIM(crop_border=crop_border, y_channel=False)
    psnr.update(preds, target)
    ssim.update(preds, target)
    assert psnr.compute().item() == pytest.approx(
        _reference_psnr(reference_preds, reference_target).mean(), abs=PSNR_TOLERANCE_DB
    )
    assert ssim.compute().item() == pytest.approx(
        _reference_ssim(reference_preds, reference_target).mean(), abs=TOLERANCE
    )


def test_psnr_is_mean_of_per_image_values_not_pooled_mse() -> None:
    target = torch.full((2, 3, 16, 16), 0.5)
    preds = target.clone()
    preds[0] += 4 / 255  # two very different errors: ~40 dB and ~20 dB
    preds[1] += 40 / 255
    psnr = PSNR()
    psnr.update(preds, target)
    per_image = psnr_per_image(preds, target)
    assert psnr.compute().item() == pytest.approx(per_image.double().mean().item(), abs=TOLERANCE)
    y_preds, y_target = evaluation_images(preds), evaluation_images(target)
    pooled = 10 * torch.log10(255.0**2 / ((y_preds - y_target) ** 2).mean())
    assert abs(psnr.compute().item() - pooled.item()) > 1.0


def test_border_crop_removes_exactly_crop_border_pixels() -> None:
    target = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    preds = target.clone()
    preds[..., :4, :] = 1 - preds[..., :4, :]  # differ only in a 4-pixel strip at the top border
    cropped_psnr, cropped_ssim = PSNR(crop_border=4), SSIM(crop_border=4)
    cropped_psnr.update(preds, target)
    cropped_ssim.update(preds, target)
    assert cropped_psnr.compute().item() == float("inf")
    assert cropped_ssim.compute().item() == pytest.approx(1.0, abs=1e-12)
    assert psnr_per_image(preds, target, crop_border=3).isfinite().all()
    assert (ssim_per_image(preds, target, crop_border=3) < 1).all()


def test_split_updates_merge_like_ddp_ranks() -> None:
    preds, target = _image_pair("structured", 4, 32, 32, seed=3)
    for metric_class in (PSNR, SSIM):
        whole, rank0, rank1 = (metric_class(crop_border=2) for _ in range(3))
        assert set(whole._reductions) == {"value_sum", "num_images"}
        whole.update(preds, target)
        rank0.update(preds[:1], target[:1])
        rank1.update(preds[1:], target[1:])
        rank0.merge_state(rank1)  # what the "sum" reductions do across ranks
        assert rank0.compute().item() == pytest.approx(whole.compute().item(), abs=TOLERANCE)


def test_bad_inputs_are_clear_errors() -> None:
    images = torch.rand(1, 3, 20, 20)
    with pytest.raises(ValueError, match="crop_border=5"):
        SSIM(crop_border=5).update(images, images)  # 10 x 10 left < 11 x 11 window
    with pytest.raises(ValueError, match="differ in shape"):
        PSNR().update(images, images[..., :-1])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        PSNR().update(images[:, :1], images[:, :1])
    with pytest.raises(ValueError, match="crop_border must be >= 0"):
        PSNR(crop_border=-1)
