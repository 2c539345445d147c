"""LightningDataModule over COCO instances splits (``datamodules.coco_instances.CocoInstancesDataset``)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import albumentations as A
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from datamodules.coco_instances import CocoInstancesDataset
from datamodules.collate import collate_detection
from datamodules.errors import DatasetFormatError
from datamodules.instance_transforms import require_pixel_level
from datamodules.instance_transforms import train_transforms as train_transforms_default
from datamodules.loaders import evaluation_loader, training_loader
from datamodules.metadata import DatasetMetadata
from zoo.training.resumable_loader import ResumableDataLoader


class CocoInstancesDataModule(LightningDataModule):
    """COCO instances train/val(/test) data for instance segmentation (Mask R-CNN and kin).

    Batches follow ``datamodules.batch`` (``collate_detection``); ``metadata`` tells the module the
    classes, category ids and the annotation files to evaluate against. The training loader resumes
    exactly mid-epoch, order and augmentations included (``zoo.training.resumable_loader``).

    The pipelines are injectable per experiment, e.g. in YAML ``train_transforms: {class_path:
    datamodules.instance_transforms.train_transforms, init_args: {flip_prob: 0.5, color_jitter: 0}}``
    (a function returning an ``A.Compose`` built with ``instance_bbox_params()``). Evaluation items must
    stay in the original image coordinates that COCO evaluation scores, so ``val_transforms`` may only
    change pixel values (albumentations' pixel-level transforms; a geometric one raises).

    Args:
        train_images: folder the training JSON's ``file_name`` entries are relative to.
        train_annotations: training COCO instances JSON.
        val_images: folder of the validation images.
        val_annotations: validation COCO instances JSON (also used for COCO evaluation).
        batch_size: training images per batch (per device).
        num_workers: DataLoader worker processes (persistent when > 0).
        train_transforms: the training pipeline; default ``instance_transforms.train_transforms()``
            (horizontal flip 0.5, colour jitter 0.2).
        val_transforms: a pixel-value pipeline for validation, test and prediction; default none.
        contiguous_labels: labels 1..C in category-id order; False keeps label = category id
            (torchvision's 91-class COCO convention).
        val_batch_size: validation/test/predict images per batch; default: ``batch_size``.
        pin_memory: pin batches in page-locked memory for faster host-to-GPU copies.
        test_images: folder of the test images; default: the validation split.
        test_annotations: test COCO instances JSON; default: the validation split.
    """

    unsaved_arguments: tuple[str, ...] = ("train_transforms", "val_transforms")
    """Objects rather than settings: left out of the saved hyperparameters."""
    collate_fn: Callable[[list], Any] = staticmethod(collate_detection)
    """How items become batches (a family with other items, e.g. video clips, brings its own)."""

    def __init__(
        self,
        train_images: str | Path,
        train_annotations: str | Path,
        val_images: str | Path,
        val_annotations: str | Path,
        batch_size: int = 2,
        num_workers: int = 2,
        train_transforms: A.Compose | None = None,
        val_transforms: A.Compose | None = None,
        contiguous_labels: bool = True,
        val_batch_size: int | None = None,
        pin_memory: bool = False,
        test_images: str | Path | None = None,
        test_annotations: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(self.unsaved_arguments))
        if (test_images is None) != (test_annotations is None):
            raise ValueError("give both test_images and test_annotations, or neither")
        self.train_images, self.train_annotations = Path(train_images), Path(train_annotations)
        self.val_images, self.val_annotations = Path(val_images), Path(val_annotations)
        self.test_images = Path(test_images) if test_images is not None else self.val_images
        self.test_annotations = (
            Path(test_annotations) if test_annotations is not None else self.val_annotations
        )
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.train_transforms = (
            train_transforms if train_transforms is not None else train_transforms_default()
        )
        if val_transforms is not None:
            require_pixel_level(val_transforms, "val_transforms")
        self.val_transforms = val_transforms
        self.contiguous_labels = contiguous_labels
        self.train_dataset: CocoInstancesDataset | None = None
        self.val_dataset: CocoInstancesDataset | None = None
        self.test_dataset: CocoInstancesDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (``fit``: train and val; ``validate``: val; ``test`` and
        ``predict``: test). Train and validation must have the same categories; the files COCO
        evaluation scores against must pass its checks (``evaluation_problems``) now, not after
        training; a training split without a single target instance is refused. A predict split may
        be an image-info file without annotations (COCO test-dev)."""
        if stage in ("fit", None) and self.train_dataset is None:
            self.train_dataset = self.dataset(
                self.train_images, self.train_annotations, self.train_transforms
            )
            if self.train_dataset.num_targets == 0:
                raise DatasetFormatError(
                    f"{self.train_annotations}: nothing to train on -- {len(self.train_dataset)} images "
                    "and no "
                    "annotation that becomes a target instance (see the skips logged above)",
                    "empty_train_split",
                )
        if stage in ("fit", "validate", None) and self.val_dataset is None:
            self.val_dataset = self.dataset(
                self.val_images, self.val_annotations, self.val_transforms, for_evaluation=True
            )
        if stage in ("test", "predict", None) and self.test_dataset is None:
            self.test_dataset = self.dataset(
                self.test_images,
                self.test_annotations,
                self.val_transforms,
                require_annotations=stage != "predict",
                for_evaluation=stage != "predict",
            )
        built = [d for d in (self.train_dataset, self.val_dataset, self.test_dataset) if d is not None]
        for dataset in built[1:]:
            if (
                dataset.label_to_category_id != built[0].label_to_category_id
                or dataset.class_names != built[0].class_names
            ):
                raise DatasetFormatError(
                    f"{dataset.annotation_file} and {built[0].annotation_file} have different categories "
                    f"({dataset.class_names} vs {built[0].class_names})"
                )

    def dataset(
        self, images: Path, annotations: Path, transforms: A.Compose | None, **options: bool
    ) -> CocoInstancesDataset:
        """One split's dataset (a family with further annotations returns its own subclass)."""
        return CocoInstancesDataset(
            images, annotations, transforms, contiguous_labels=self.contiguous_labels, **options
        )

    def _categories(self) -> CocoInstancesDataset:
        """A built dataset to read the categories from (builds the validation set if none is)."""
        for dataset in (self.train_dataset, self.val_dataset, self.test_dataset):
            if dataset is not None:
                return dataset
        self.setup("validate")
        return self.val_dataset

    @property
    def metadata(self) -> DatasetMetadata:
        """Classes, category ids and the files COCO evaluation scores val and test against (readable
        before ``setup``: the CLI hands it to the module when both are built)."""
        categories = self._categories()
        return DatasetMetadata(
            class_names=tuple(categories.class_names),
            label_to_category_id=dict(categories.label_to_category_id),
            annotation_files={"val": self.val_annotations, "test": self.test_annotations},
        )

    def train_dataloader(self) -> ResumableDataLoader:
        trainer = self.trainer
        return training_loader(
            self.train_dataset, self.batch_size, self.num_workers, self.pin_memory, trainer, self.collate_fn
        )

    def _eval_loader(self, dataset: CocoInstancesDataset | None) -> DataLoader:
        return evaluation_loader(
            dataset, self.val_batch_size, self.num_workers, self.pin_memory, self.collate_fn
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset)
