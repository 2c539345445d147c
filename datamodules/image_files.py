"""Image folders of the generative family's layouts (pix2pix, CycleGAN, super-resolution, style transfer,
class folders): listing, reading and the item dicts their datasets yield.

Folders are listed recursively and sorted by path, as the pix2pix/CycleGAN code's ``make_dataset`` walks
them; images are read with PIL and converted to RGB, as every official loader of these layouts does. A
missing or empty folder, or a file PIL cannot read (also a truncated one), raises ``DatasetFormatError``
naming the folder or file. Items are dicts with the keys of ``datamodules.batch.ImageBatch``: float32
(3, H, W) tensors in [0, 1], ``labels`` an int64 scalar, ``names`` the file stem; torch's
``default_collate`` stacks them into an ``ImageBatch`` (``names`` becomes a list of str).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.functional import to_tensor

from datamodules.errors import DatasetFormatError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
"""File endings read as images, in any case (the pix2pix/CycleGAN code's ``IMG_EXTENSIONS`` and WebP)."""

ImageItem = dict[str, Tensor | str]
"""One item: the keys of ``datamodules.batch.ImageBatch`` that its layout has, unstacked."""


def list_images(folder: Path, what: str) -> list[Path]:
    """The image files under ``folder`` (recursively), sorted by path; ``what`` says in the error what
    the folder should hold."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetFormatError(f"{folder}: no such folder (expected {what})", "missing_folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise DatasetFormatError(
            f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in it (expected {what})",
            "empty_folder",
        )
    return paths


def read_rgb(path: Path) -> Image.Image:
    """The image at ``path``, decoded and converted to RGB; a missing, unreadable or truncated file
    raises, naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # decodes the whole file: a truncated one fails here
    except FileNotFoundError as e:
        raise DatasetFormatError(f"{path}: image file not found", "missing_image") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetFormatError(f"{path}: cannot read the image file ({e})", "unreadable_image") from e


def resize_and_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bilinear, antialiased by PIL when shrinking) and crop the
    centre ``size`` x ``size``: torchvision's ``Resize(size)`` + ``CenterCrop(size)`` on PIL images, pixel
    for pixel, which PyTorch's fast-neural-style and DCGAN examples use (a square image is simply
    resized)."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_short, new_long = size, int(size * long / short)  # torchvision's rounding of the longer side
    new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
    image = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    left, top = round((new_width - size) / 2), round((new_height - size) / 2)  # CenterCrop's rounding
    return image.crop((left, top, left + size, top + size))


def image_item(names: str, **images: Image.Image) -> ImageItem:
    """An item of the named images (``a=``, ``b=``) as float32 (3, H, W) tensors in [0, 1]."""
    return {**{key: to_tensor(image) for key, image in images.items()}, "names": names}


class ImageFolderDataset(Dataset):
    """The images of one folder as ``a`` (inputs without targets: a predict split, style transfer's
    content images), each passed through ``transform`` (PIL to PIL; None: as they are). Deterministic, so
    ``seeded_item`` ignores the seed; ``what`` names the images in errors."""

    def __init__(
        self,
        folder: str | Path,
        transform: Callable[[Image.Image], Image.Image] | None = None,
        what: str = "input images",
    ) -> None:
        self.paths = list_images(Path(folder), what)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> ImageItem:
        path = self.paths[index]
        image = read_rgb(path)
        return image_item(path.stem, a=self.transform(image) if self.transform else image)

    def seeded_item(self, index: int, seed: int) -> ImageItem:
        """Image ``index``: nothing random, so nothing to draw from ``seed``."""
        return self[index]
