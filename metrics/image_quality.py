"""Full-reference image quality as torchmetrics Metrics over DDP ranks: PSNR and SSIM in the convention of the
super-resolution papers, or on RGB for image-to-image translation (pix2pix, CycleGAN).

The super-resolution convention (SRGAN, Ledig et al. CVPR 2017 Sec. 3.1: "calculated on the y-channel of
center-cropped, removal of a 4-pixel wide strip from each border"; the Matlab-derived evaluation that
BasicSR's ``calculate_psnr`` / ``calculate_ssim`` with ``test_y_channel=True`` reproduce):

- images are 8-bit: float RGB in [0, 1] is clamped and rounded to the 256 levels a saved PNG has
  (``quantize=True``, as ``torchvision.utils.save_image`` and BasicSR's ``tensor2img`` do);
- Y of ITU-R BT.601 as Matlab's ``rgb2ycbcr``: Y = 16 + 65.481 R + 128.553 G + 24.966 B in [16, 235] (R, G, B
  in [0, 1]), not rounded (BasicSR's ``to_y_channel``; Matlab on uint8 rounds Y, a difference of ~0.01 dB);
- ``crop_border`` pixels (the scale factor) removed from each side;
- PSNR with data range 255, SSIM (Wang et al., IEEE TIP 2004) with an 11 x 11 Gaussian window of sigma 1.5,
  K1 = 0.01, K2 = 0.03, data range 255, averaged over the "valid" positions (where the window lies inside the
  image, as Wang's ``ssim_index.m`` and BasicSR) -- torchmetrics >= 1.5 averages over the whole image with
  reflect padding instead, so its SSIM map is cropped here;
- each metric is the mean over images of the per-image value (not the PSNR of the pooled MSE).

With ``y_channel=False`` the metrics use all channels (per-image PSNR over every pixel of every channel, SSIM
averaged over channels), still in [0, 255].

The per-image values come from torchmetrics' functional ``peak_signal_noise_ratio`` and
``structural_similarity_index_measure``; each Metric keeps their float64 sum and the image count as "sum"
states, so DDP ranks combine exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

# Matlab rgb2ycbcr (ITU-R BT.601, "studio swing"): Y = 16 + 65.481 R + 128.553 G + 24.966 B, RGB in [0, 1].
Y_OFFSET = 16.0
Y_FROM_RGB = (65.481, 128.553, 24.966)
DATA_RANGE = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def rgb_to_y(images: Tensor) -> Tensor:
    """Y channel (N, 1, H, W) in [16, 235] of RGB images (N, 3, H, W) in [0, 1], as Matlab's ``rgb2ycbcr``
    (ITU-R BT.601). Written by hand: a weighted sum, which torchvision has only for [0, 1] grayscale."""
    weights = torch.tensor(Y_FROM_RGB, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return Y_OFFSET + (images * weights).sum(dim=1, keepdim=True)


def evaluation_images(
    images: Tensor, *, crop_border: int = 0, y_channel: bool = True, quantize: bool = True
) -> Tensor:
    """The float64 images the metrics compare, in [0, 255]: `images` (N, 3, H, W) RGB in [0, 1], rounded to
    8 bits (`quantize`), converted to Y (`y_channel`), `crop_border` pixels removed from each side."""
    if images.ndim != 4 or (y_channel and images.shape[1] != 3):
        raise ValueError(
            f"expected RGB images (N, 3, H, W) in [0, 1]{'' if y_channel else ' or (N, C, H, W)'}, "
            f"got {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got {images.dtype}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    images = images.double()
    if quantize:
        images = torch.round(images.clamp(0.0, 1.0) * DATA_RANGE) / DATA_RANGE
    images = rgb_to_y(images) if y_channel else images * DATA_RANGE
    if crop_border:
        images = images[..., crop_border:-crop_border, crop_border:-crop_border]
    return images


def psnr_per_image(
    preds: Tensor, target: Tensor, *, crop_border: int = 0, y_channel: bool = True, quantize: bool = True
) -> Tensor:
    """PSNR (N,) in dB of each image, data range 255, after ``evaluation_images``; +inf where identical."""
    preds, target = _checked_pair(preds, target, crop_border, y_channel, quantize, min_size=1)
    return peak_signal_noise_ratio(preds, target, data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3))


def ssim_per_image(
    preds: Tensor, target: Tensor, *, crop_border: int = 0, y_channel: bool = True, quantize: bool = True
) -> Tensor:
    """SSIM (N,) of each image (Wang et al. 2004: 11 x 11 Gaussian window, sigma 1.5, data range 255, mean
    over the valid window positions and the channels), after ``evaluation_images``."""
    preds, target = _checked_pair(preds, target, crop_border, y_channel, quantize, min_size=SSIM_WINDOW)
    _, ssim_map = structural_similarity_index_measure(
        preds,
        target,
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        kernel_size=SSIM_WINDOW,
        reduction="none",
        data_range=DATA_RANGE,
        return_full_image=True,
    )
    half = SSIM_WINDOW // 2  # the map has the input's size (reflect padding): keep the valid positions
    return ssim_map[..., half:-half, half:-half].mean(dim=(1, 2, 3))


def _checked_pair(
    preds: Tensor, target: Tensor, crop_border: int, y_channel: bool, quantize: bool, min_size: int
) -> tuple[Tensor, Tensor]:
    if preds.shape != target.shape:
        raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ in shape")
    height, width = preds.shape[-2] - 2 * crop_border, preds.shape[-1] - 2 * crop_border
    if min(height, width) < min_size:
        raise ValueError(
            f"images of {tuple(preds.shape[-2:])} pixels leave {height} x {width} after removing "
            f"crop_border={crop_border} from each side; need at least {min_size} x {min_size}"
        )
    kwargs = {"crop_border": crop_border, "y_channel": y_channel, "quantize": quantize}
    return evaluation_images(preds, **kwargs), evaluation_images(target, **kwargs)


class _MeanOverImages(Metric):
    """Mean over images of a per-image value, kept as a float64 sum and a count ("sum" states)."""

    is_differentiable = False
    full_state_update = False

    def __init__(
        self, crop_border: int = 0, y_channel: bool = True, quantize: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {crop_border}")
        self.crop_border = int(crop_border)
        self.y_channel = bool(y_channel)
        self.quantize = bool(quantize)
        self.add_state("value_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def _per_image(self, preds: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor) -> None:
        """`preds` and `target` (N, 3, H, W) float RGB in [0, 1] (any C with ``y_channel=False``)."""
        values = self._per_image(preds, target)
        self.value_sum += values.sum()
        self.num_images += values.numel()

    def compute(self) -> Tensor:
        return self.value_sum / self.num_images


class PSNR(_MeanOverImages):
    """Mean over images of the per-image PSNR (dB, data range 255) on the Y channel with `crop_border`
    pixels removed from each side -- the super-resolution papers' convention (module docstring); with
    ``y_channel=False`` on all channels (pix2pix, CycleGAN). An image identical to its target has an infinite
    PSNR, which makes the mean infinite (as BasicSR's ``calculate_psnr``)."""

    higher_is_better = True

    def _per_image(self, preds: Tensor, target: Tensor) -> Tensor:
        return psnr_per_image(
            preds, target, crop_border=self.crop_border, y_channel=self.y_channel, quantize=self.quantize
        )


class SSIM(_MeanOverImages):
    """Mean over images of the per-image SSIM (Wang et al. 2004; 11 x 11 Gaussian window, sigma 1.5, data
    range 255, valid window positions) on the Y channel with `crop_border` pixels removed from each side --
    the super-resolution papers' convention (module docstring); with ``y_channel=False`` averaged over the RGB
    channels."""

    higher_is_better = True

    def _per_image(self, preds: Tensor, target: Tensor) -> Tensor:
        return ssim_per_image(
            preds, target, crop_border=self.crop_border, y_channel=self.y_channel, quantize=self.quantize
        )
