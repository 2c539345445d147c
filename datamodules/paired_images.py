"""pix2pix's paired "A|B" layout (the official ``aligned_dataset.py``): one image per pair, A the left
half and B the right half, in ``<root>/{train,val,test}/`` (facades, cityscapes, maps, edges2shoes, ...).

Training items take one random jitter draw (``datamodules.random_jitter``) for both halves, so A and B
get the same crop and flip; evaluation items resize both halves to ``crop_size``. ``direction="BtoA"``
swaps the halves (the official ``--direction``), so ``a`` is always the generator's input. An image whose
width is odd (the halves would differ by a column) raises ``DatasetFormatError`` naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from datamodules.errors import DatasetFormatError
from datamodules.image_datamodule import Direction, ImageTranslationDataModule
from datamodules.image_files import ImageItem, image_item, list_images, read_rgb
from datamodules.random_jitter import RandomJitter


def split_pair(path: Path) -> tuple[Image.Image, Image.Image]:
    """The left (A) and right (B) halves of the A|B image at ``path``."""
    pair = read_rgb(path)
    width, height = pair.size
    if width % 2:
        raise DatasetFormatError(
            f"{path}: an A|B pair image must have an even width (A left half, B right half), "
            f"got {width}x{height} pixels",
            "odd_pair_width",
        )
    half = width // 2
    return pair.crop((0, 0, half, height)), pair.crop((half, 0, width, height))


class PairedImagesDataset(Dataset):
    """The A|B images of one folder: items ``a``, ``b`` (float32 (3, crop_size, crop_size) in [0, 1])
    and ``names`` (the file stem); ``seeded_item`` jitters, ``__getitem__`` only resizes."""

    def __init__(
        self, folder: str | Path, jitter: RandomJitter | None = None, direction: Direction = "AtoB"
    ) -> None:
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
        self.paths = list_images(Path(folder), "A|B pair images: A the left half, B the right half")
        self.jitter = jitter or RandomJitter()
        self.direction = direction

    def __len__(self) -> int:
        return len(self.paths)

    def _item(self, index: int, a: Image.Image, b: Image.Image) -> ImageItem:
        if self.direction == "BtoA":
            a, b = b, a
        return image_item(self.paths[index].stem, a=a, b=b)

    def seeded_item(self, index: int, seed: int) -> ImageItem:
        """Pair ``index`` with one jitter draw from ``seed`` applied to both halves."""
        a, b = split_pair(self.paths[index])
        draw = self.jitter.draw(np.random.default_rng(seed))
        return self._item(index, self.jitter.apply(a, draw), self.jitter.apply(b, draw))

    def __getitem__(self, index: int) -> ImageItem:
        a, b = split_pair(self.paths[index])
        return self._item(index, self.jitter.evaluate(a), self.jitter.evaluate(b))


class PairedImagesDataModule(ImageTranslationDataModule):
    """pix2pix paired data: ``<root>/{train,val,test}/*`` A|B images (the official datasets' layout;
    maps and edges2shoes have no test folder: set ``test_split: val``). Facades is trained BtoA (label
    map -> photo).

    Batches are ``datamodules.batch.ImageBatch`` with ``a``, ``b`` (B, 3, crop_size, crop_size) and
    ``names``; no classes (``DatasetMetadata.without_classes()``). The training loader resumes exactly
    mid-epoch (``zoo.training.resumable_loader``). Arguments: ``ImageTranslationDataModule``'s, the
    splits being folder names under ``root``.
    """

    def build_dataset(self, split: str) -> PairedImagesDataset:
        return PairedImagesDataset(self.root / self.splits[split], self.jitter, self.direction)
