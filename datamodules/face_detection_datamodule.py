"""WIDER FACE splits (either annotation layout, ``datamodules.wider_face``) as a LightningDataModule: the
training split goes through RetinaFace's augmentation to ``image_size`` (``datamodules.face_augmentation``),
validation and test items stay as stored (scored in each image's own pixels). The synthetic faces
(``zoo synthetic --formats faces``) are in the same layout."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from datamodules.errors import DatasetFormatError
from datamodules.face_detection import FaceDetectionDataset, FaceImageFolder
from datamodules.loaders import evaluation_loader, training_loader
from datamodules.metadata import DatasetMetadata
from datamodules.synthetic.faces import LANDMARK_NAMES
from metrics.wider_face_ap import read_official_subsets
from zoo.training.resumable_loader import ResumableDataLoader

LANDMARK_FLIP_PAIRS = ((0, 1), (3, 4))  # eyes, mouth corners


class FaceDetectionDataModule(LightningDataModule):
    """Args: the image folders and annotation files of train and val (test defaults to val); ``image_size``
    the square training input (RetinaFace's implementation: 640 for MobileNet-0.25, 840 for ResNet-50);
    batch sizes, workers, pinned memory; ``subsets_dir``: the folder of the official
    ``wider_{face,easy,medium,hard}_val.mat`` files for the easy / medium / hard AP of val and test (None:
    every face counts in all three, as on the synthetic faces); ``predict_images``: a folder of images for
    ``zoo predict`` (default: the test split)."""

    def __init__(
        self,
        train_images: str | Path,
        train_annotations: str | Path,
        val_images: str | Path,
        val_annotations: str | Path,
        image_size: int = 640,
        batch_size: int = 32,
        num_workers: int = 4,
        val_batch_size: int | None = None,
        pin_memory: bool = False,
        test_images: str | Path | None = None,
        test_annotations: str | Path | None = None,
        subsets_dir: str | Path | None = None,
        predict_images: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if (test_images is None) != (test_annotations is None):
            raise ValueError("give both test_images and test_annotations, or neither")
        self.train_images, self.train_annotations = Path(train_images), Path(train_annotations)
        self.val_images, self.val_annotations = Path(val_images), Path(val_annotations)
        self.test_images = Path(test_images) if test_images is not None else self.val_images
        self.test_annotations = (
            Path(test_annotations) if test_annotations is not None else self.val_annotations
        )
        self.image_size = image_size
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.subsets_dir = Path(subsets_dir) if subsets_dir is not None else None
        self.predict_images = Path(predict_images) if predict_images is not None else None
        self.train_dataset: FaceDetectionDataset | None = None
        self.val_dataset: FaceDetectionDataset | None = None
        self.test_dataset: FaceDetectionDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and self.train_dataset is None:
            self.train_dataset = FaceDetectionDataset(
                self.train_images, self.train_annotations, self.image_size
            )
            if self.train_dataset.num_faces == 0:
                raise DatasetFormatError(
                    f"{self.train_annotations}: nothing to train on -- {len(self.train_dataset)} images, "
                    "no face",
                    "empty_train_split",
                )
        build_val = stage in ("fit", "validate", None) and self.val_dataset is None
        build_test = (
            stage in ("test", "predict", None)
            and self.test_dataset is None
            and not (stage == "predict" and self.predict_images is not None)
        )
        # the .mat lists are read once per setup, and only when an evaluated split is built
        subsets = (
            read_official_subsets(self.subsets_dir)
            if self.subsets_dir is not None and (build_val or build_test)
            else None
        )
        if build_val:
            self.val_dataset = FaceDetectionDataset(self.val_images, self.val_annotations, subsets=subsets)
        if build_test:
            self.test_dataset = FaceDetectionDataset(self.test_images, self.test_annotations, subsets=subsets)

    @property
    def metadata(self) -> DatasetMetadata:
        """One class, "face" (label 1, category id 1), and the 5 landmarks with their flip pairs."""
        return DatasetMetadata(
            class_names=("face",),
            label_to_category_id={1: 1},
            keypoint_names=LANDMARK_NAMES,
            flip_pairs=LANDMARK_FLIP_PAIRS,
        )

    def train_dataloader(self) -> ResumableDataLoader:
        return training_loader(
            self.train_dataset, self.batch_size, self.num_workers, self.pin_memory, self.trainer
        )

    def val_dataloader(self) -> DataLoader:
        return evaluation_loader(self.val_dataset, self.val_batch_size, self.num_workers, self.pin_memory)

    def test_dataloader(self) -> DataLoader:
        return evaluation_loader(self.test_dataset, self.val_batch_size, self.num_workers, self.pin_memory)

    def predict_dataloader(self) -> DataLoader:
        if self.predict_images is None:
            return self.test_dataloader()
        dataset = FaceImageFolder(self.predict_images)
        return evaluation_loader(dataset, self.val_batch_size, self.num_workers, self.pin_memory)
