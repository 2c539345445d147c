"""Single-image super-resolution from folders of high-resolution images (DIV2K's ``DIV2K_train_HR/``,
Set5, Set14, BSD100, Urban100 HR images): the low-resolution input is made on the fly by bicubic
downscaling by ``scale``, as SRGAN (Ledig et al. 2017, Sec. 3.2: LR images obtained with a bicubic kernel,
factor r = 4; 16 random 96 x 96 HR sub-images per mini-batch).

Items: ``a`` the LR image, ``b`` the HR image, ``names`` the file stem. Training items crop
``hr_crop_size`` at a random position of the HR image (optionally flipped and rotated by 90 degrees, as
EDSR trains), then downscale the crop; evaluation items take the whole HR image cropped at the bottom and
right to a multiple of ``scale`` (the "mod crop" of the SR benchmarks), so each evaluation image keeps
its own size: evaluate with batch size 1, or with images of one size only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from datamodules.errors import DatasetFormatError
from datamodules.image_datamodule import ImageDataModule, split_folders
from datamodules.image_files import ImageItem, image_item, list_images, read_rgb


def bicubic_downscale(image: Image.Image, scale: int) -> Image.Image:
    """``image`` (width and height multiples of ``scale``) shrunk ``scale`` times with PIL's bicubic
    resampling.

    PIL's ``Image.BICUBIC`` is the Keys cubic kernel with a = -0.5, widened by ``scale`` when shrinking
    (antialiasing), and weights renormalised where the kernel leaves the image. Matlab's ``imresize``
    (bicubic, antialiasing on by default) has the same kernel, so the two agree inside the image up to
    rounding (one grey level at most: PIL rounds to 8 bits after each pass, with fixed-point weights); they
    differ in the outermost LR pixels, where Matlab mirrors the image instead (checked against a numpy
    re-implementation of ``imresize``: up to 8 grey levels on noise at x4). The SR literature's LR
    images (DIV2K's ``X4`` folders, the Set5/Set14 benchmarks of EDSR, ESRGAN and SwinIR) are Matlab's,
    so PSNR against them or against numbers computed with them can differ slightly; BasicSR's
    ``matlab_functions.imresize`` reproduces Matlab in Python where that matters.
    """
    width, height = image.size
    if width % scale or height % scale:
        raise ValueError(f"image size {width}x{height} is not a multiple of the scale {scale}")
    return image.resize((width // scale, height // scale), Image.Resampling.BICUBIC)


class SuperResolutionDataset(Dataset):
    """The HR images of one folder: ``a`` LR (3, h, w), ``b`` HR (3, scale * h, scale * w) in [0, 1].

    ``seeded_item``: a random ``hr_crop_size`` crop (with ``flip_and_rotate``: random horizontal flip,
    vertical flip and transposition, each with probability 0.5); ``__getitem__``: the whole image cropped
    to a multiple of ``scale``. An image smaller than the crop (in training) or than ``scale`` raises,
    naming it."""

    def __init__(
        self, folder: str | Path, scale: int = 4, hr_crop_size: int = 96, flip_and_rotate: bool = False
    ) -> None:
        if scale < 1 or hr_crop_size < scale or hr_crop_size % scale:
            raise ValueError(
                f"hr_crop_size must be a positive multiple of scale, got {hr_crop_size} and scale {scale}"
            )
        self.paths = list_images(Path(folder), "high-resolution images")
        self.scale = scale
        self.hr_crop_size = hr_crop_size
        self.flip_and_rotate = flip_and_rotate

    def __len__(self) -> int:
        return len(self.paths)

    def _item(self, path: Path, hr: Image.Image) -> ImageItem:
        return image_item(path.stem, a=bicubic_downscale(hr, self.scale), b=hr)

    def seeded_item(self, index: int, seed: int) -> ImageItem:
        """A random HR crop from ``seed`` (corner, then the flips) and its bicubic downscale."""
        path = self.paths[index]
        hr = read_rgb(path)
        width, height = hr.size
        size = self.hr_crop_size
        if width < size or height < size:
            raise DatasetFormatError(
                f"{path}: {width}x{height} pixels, smaller than the training crop of {size}x{size} pixels",
                "image_too_small",
            )
        rng = np.random.default_rng(seed)
        left, top = int(rng.integers(width - size + 1)), int(rng.integers(height - size + 1))
        hr = hr.crop((left, top, left + size, top + size))
        if self.flip_and_rotate:
            for flip, transpose in zip(
                rng.random(3) < 0.5,
                (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.TRANSPOSE),
                strict=True,
            ):
                hr = hr.transpose(transpose) if flip else hr
        return self._item(path, hr)

    def __getitem__(self, index: int) -> ImageItem:
        path = self.paths[index]
        hr = read_rgb(path)
        width, height = hr.size
        if width < self.scale or height < self.scale:
            raise DatasetFormatError(
                f"{path}: {width}x{height} pixels, smaller than the scale {self.scale}", "image_too_small"
            )
        return self._item(path, hr.crop((0, 0, width - width % self.scale, height - height % self.scale)))


class SuperResolutionDataModule(ImageDataModule):
    """Super-resolution from HR image folders; LR inputs made by bicubic downscaling
    (``bicubic_downscale``: PIL's, not Matlab's -- see there).

    Batches are ``datamodules.batch.ImageBatch`` with ``a`` LR (B, 3, h, w), ``b`` HR
    (B, 3, scale * h, scale * w) and ``names``; no classes. Training items are ``hr_crop_size`` crops;
    evaluation items are whole images of their own sizes, so ``val_batch_size`` is 1 unless every
    evaluation image has one size. The training loader resumes exactly mid-epoch.

    Args:
        train_images: folder of the training HR images (DIV2K: ``DIV2K_train_HR``).
        val_images: folder of the validation HR images (DIV2K: ``DIV2K_valid_HR``).
        test_images: folder of the test HR images (Set5, Set14, ...); default: ``val_images``.
        scale: the upscaling factor (SRGAN: 4).
        hr_crop_size: side of the random HR training crops (SRGAN: 96); a multiple of ``scale``.
        flip_and_rotate: random flips and 90-degree rotations of training crops (EDSR); SRGAN has none.
        batch_size: training crops per batch (SRGAN: 16).
        val_batch_size: validation/test/predict images per batch (1: they differ in size).
        num_workers: DataLoader worker processes (persistent when > 0).
        pin_memory: pin batches in page-locked memory for faster host-to-GPU copies.
        predict_images: a folder of LR images to upscale, as they are (each only ``a``); default: the
            test split.
    """

    def __init__(
        self,
        train_images: str | Path,
        val_images: str | Path,
        test_images: str | Path | None = None,
        scale: int = 4,
        hr_crop_size: int = 96,
        flip_and_rotate: bool = False,
        batch_size: int = 16,
        val_batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool = False,
        predict_images: str | Path | None = None,
    ) -> None:
        super().__init__(batch_size, val_batch_size, num_workers, pin_memory, predict_images)
        self.save_hyperparameters()
        self.folders = split_folders(train_images, val_images, test_images)
        self.scale = scale
        self.hr_crop_size = hr_crop_size
        self.flip_and_rotate = flip_and_rotate

    def build_dataset(self, split: str) -> SuperResolutionDataset:
        return SuperResolutionDataset(
            self.folders[split], self.scale, self.hr_crop_size, self.flip_and_rotate
        )
