"""Class-conditional images in torchvision's ``ImageFolder`` layout: ``<root>/<split>/<class_name>/*.png``,
one folder per class, for class-conditional generation.

Labels run 1..C over the class folders in sorted name order (the label rule of ``datamodules.batch``:
``ImageFolder``'s 0-based index + 1). Items: ``b`` the real image, resized so the shorter side is
``image_size`` and centre-cropped (the DCGAN example's ``Resize`` + ``CenterCrop``), ``labels`` an int64
scalar, ``names`` ``<class_name>_<file stem>`` (stems repeat across class folders). Every split must have
the training split's classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.errors import DatasetFormatError
from datamodules.image_datamodule import ImageDataModule
from datamodules.image_files import ImageItem, image_item, list_images, read_rgb, resize_and_center_crop
from datamodules.metadata import DatasetMetadata


def class_folders(folder: Path) -> list[Path]:
    """The class folders of a split, sorted by name; none raises, naming the split folder."""
    if not folder.is_dir():
        raise DatasetFormatError(
            f"{folder}: no such folder (expected one folder per class)", "missing_folder"
        )
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DatasetFormatError(
            f"{folder}: no class folders in it (expected <class_name>/<image> files)", "empty_folder"
        )
    return classes


class ClassImagesDataset(Dataset):
    """The images of one split with their class labels; ``class_names``, when given, must be the split's
    class folders (so labels mean the same in every split). ``seeded_item`` flips horizontally with
    probability 0.5 when ``flip``; ``__getitem__`` never does."""

    def __init__(
        self,
        folder: str | Path,
        image_size: int,
        flip: bool = False,
        class_names: tuple[str, ...] | None = None,
    ) -> None:
        folder = Path(folder)
        classes = class_folders(folder)
        self.class_names = tuple(p.name for p in classes)
        if class_names is not None and self.class_names != tuple(class_names):
            raise DatasetFormatError(
                f"{folder}: class folders {list(self.class_names)} differ from the training split's "
                f"{list(class_names)}",
                "class_mismatch",
            )
        self.items = [
            (path, label)
            for label, class_folder in enumerate(classes, start=1)
            for path in list_images(class_folder, f"images of class {class_folder.name!r}")
        ]
        self.image_size = image_size
        self.flip = flip

    def __len__(self) -> int:
        return len(self.items)

    def _item(self, index: int, flip: bool) -> ImageItem:
        path, label = self.items[index]
        image = resize_and_center_crop(read_rgb(path), self.image_size)
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        name = f"{self.class_names[label - 1]}_{path.stem}"  # unique: stems repeat across class folders
        return {**image_item(name, b=image), "labels": torch.tensor(label, dtype=torch.int64)}

    def seeded_item(self, index: int, seed: int) -> ImageItem:
        """Image ``index``, flipped when ``flip`` and the seed's draw says so."""
        return self._item(index, self.flip and bool(np.random.default_rng(seed).random() < 0.5))

    def __getitem__(self, index: int) -> ImageItem:
        return self._item(index, flip=False)


class ClassImagesDataModule(ImageDataModule):
    """Class-conditional image data: ``<root>/{train,val}/<class_name>/*`` (``ImageFolder`` layout).

    Batches are ``datamodules.batch.ImageBatch`` with ``b`` (B, 3, image_size, image_size), ``labels``
    (B,) in 1..C and ``names``; ``metadata`` names the classes (label l is ``class_names[l - 1]``;
    readable before ``setup``, from the training split's folders). The training loader resumes exactly.

    Args:
        root: the dataset folder holding the split folders.
        image_size: images are resized and centre-cropped to this square size.
        flip: random horizontal flips in training.
        batch_size: training images per batch.
        val_batch_size: validation/test images per batch; default: ``batch_size``.
        num_workers: DataLoader worker processes (persistent when > 0).
        pin_memory: pin batches in page-locked memory for faster host-to-GPU copies.
        train_split: folder of the training classes under ``root``.
        val_split: folder of the validation classes.
        test_split: folder of the test classes; default: ``val_split``.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int,
        flip: bool = False,
        batch_size: int = 64,
        val_batch_size: int | None = None,
        num_workers: int = 4,
        pin_memory: bool = False,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
    ) -> None:
        super().__init__(batch_size, val_batch_size, num_workers, pin_memory)
        self.save_hyperparameters()
        self.root = Path(root)
        self.image_size = image_size
        self.flip = flip
        self.split_folders = {"train": train_split, "val": val_split, "test": test_split or val_split}

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in class_folders(self.root / self.split_folders["train"]))

    def build_dataset(self, split: str) -> ClassImagesDataset:
        return ClassImagesDataset(
            self.root / self.split_folders[split], self.image_size, self.flip, self.class_names
        )

    @property
    def metadata(self) -> DatasetMetadata:
        names = self.class_names
        return DatasetMetadata(
            class_names=names, label_to_category_id={label: label for label in range(1, len(names) + 1)}
        )
