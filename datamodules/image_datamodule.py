"""The plumbing every generative-family DataModule shares: which splits a stage builds, the loaders (a
resumable training loader, ordered evaluation loaders, torch's ``default_collate`` stacking items into a
``datamodules.batch.ImageBatch``), a predict split of plain input images, and class-free metadata; and
for the two image-translation layouts (pix2pix, CycleGAN) their common arguments.

A layout's DataModule (``PairedImagesDataModule``, ``UnpairedImagesDataModule``,
``SuperResolutionDataModule``, ``StyleTransferDataModule``, ``ClassImagesDataModule``) only says how to
build the dataset of a split: ``build_dataset("train" | "val" | "test")``, each a dataset whose
``seeded_item(index, seed)`` is the training item and ``__getitem__`` the deterministic evaluation item.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate

from datamodules.image_files import ImageFolderDataset
from datamodules.loaders import evaluation_loader, training_loader
from datamodules.metadata import DatasetMetadata
from datamodules.random_jitter import RandomJitter
from zoo.training.resumable_loader import ResumableDataLoader

Direction = Literal["AtoB", "BtoA"]
"""pix2pix/CycleGAN's ``--direction``: which domain is the generator's input ``a``."""

STAGE_SPLITS: dict[str | None, tuple[str, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
    None: ("train", "val"),
}
"""The splits ``setup(stage)`` builds."""


def split_folders(train: str | Path, val: str | Path, test: str | Path | None) -> dict[str, Path]:
    """The folder of each split; the test split defaults to the validation one."""
    return {"train": Path(train), "val": Path(val), "test": Path(test if test is not None else val)}


class ImageDataModule(LightningDataModule):
    """Base of the generative family's DataModules (see the module docstring).

    Args:
        batch_size: training items per batch (per device).
        val_batch_size: validation/test/predict items per batch; default: ``batch_size``.
        num_workers: DataLoader worker processes (persistent when > 0).
        pin_memory: pin batches in page-locked memory for faster host-to-GPU copies.
        predict_images: a folder of input images to predict from (each item only ``a``, transformed by
            ``predict_transform``); default: the test split.
    """

    def __init__(
        self,
        batch_size: int,
        val_batch_size: int | None,
        num_workers: int,
        pin_memory: bool,
        predict_images: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.predict_images = Path(predict_images) if predict_images is not None else None
        self.datasets: dict[str, Dataset] = {}

    def build_dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` ("train", "val" or "test")."""
        raise NotImplementedError

    def predict_transform(self) -> Callable[[Image.Image], Image.Image] | None:
        """What each ``predict_images`` input goes through (PIL to PIL); None: nothing."""
        return None

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (``STAGE_SPLITS``; ``None``: train and val)."""
        for split in STAGE_SPLITS[stage]:
            if split in self.datasets:
                continue
            if split == "predict" and self.predict_images is not None:
                self.datasets[split] = ImageFolderDataset(self.predict_images, self.predict_transform())
            elif split == "predict":
                self.setup("test")
                self.datasets[split] = self.datasets["test"]
            else:
                self.datasets[split] = self.build_dataset(split)

    @property
    def metadata(self) -> DatasetMetadata:
        """No classes (image translation, super-resolution); subclasses add what they have."""
        return DatasetMetadata.without_classes()

    def train_dataloader(self) -> ResumableDataLoader:
        return training_loader(
            self.datasets.get("train"),
            self.batch_size,
            self.num_workers,
            self.pin_memory,
            self.trainer,
            collate_fn=default_collate,
        )

    def _eval_loader(self, split: str) -> DataLoader:
        return evaluation_loader(
            self.datasets.get(split),
            self.val_batch_size,
            self.num_workers,
            self.pin_memory,
            collate_fn=default_collate,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict")


class ImageTranslationDataModule(ImageDataModule):
    """The arguments pix2pix's and CycleGAN's DataModules share (the official options of the same names).

    Args:
        root: the dataset folder (e.g. ``datasets/facades``, ``datasets/horse2zebra``).
        direction: "AtoB" (``a`` from domain A) or "BtoA" (``a`` from domain B).
        load_size: training images are resized to this square size before the random crop (286).
        crop_size: the random training crop and the evaluation size (256).
        flip: random horizontal flips in training (the official ``--no_flip`` turns them off).
        batch_size: training items per batch (the official default 1).
        val_batch_size: validation/test/predict items per batch; default: ``batch_size``.
        num_workers: DataLoader worker processes (the official ``--num_threads`` 4).
        pin_memory: pin batches in page-locked memory for faster host-to-GPU copies.
        train_split: the training split's folder name under ``root``.
        val_split: the validation split's; default: the layout's ``default_val_split``.
        test_split: the test split's.
        predict_images: a folder of ``a``-domain images alone, resized to ``crop_size``; default: the
            test split.
    """

    default_val_split = "val"

    def __init__(
        self,
        root: str | Path,
        direction: Direction = "AtoB",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        batch_size: int = 1,
        val_batch_size: int | None = None,
        num_workers: int = 4,
        pin_memory: bool = False,
        train_split: str = "train",
        val_split: str | None = None,
        test_split: str = "test",
        predict_images: str | Path | None = None,
    ) -> None:
        super().__init__(batch_size, val_batch_size, num_workers, pin_memory, predict_images)
        self.save_hyperparameters()
        self.root = Path(root)
        self.direction = direction
        self.jitter = RandomJitter(load_size, crop_size, flip)
        self.splits = {"train": train_split, "val": val_split or self.default_val_split, "test": test_split}

    def predict_transform(self) -> Callable[[Image.Image], Image.Image]:
        return self.jitter.evaluate
