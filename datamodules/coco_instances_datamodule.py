"""LightningDataModule over COCO instances splits (``datamodules.coco_instances.CocoInstancesDataset``)."""

from pathlib import Path

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from datamodules.coco_instances import CocoInstancesDataset
from datamodules.collate import collate_detection
from datamodules.errors import DatasetFormatError
from datamodules.instance_transforms import train_transforms
from zoo.training.resumable_loader import ResumableDataLoader, global_seed, resumable_train_loader


class CocoInstancesDataModule(LightningDataModule):
    """COCO instances train/val(/test) data for instance segmentation (Mask R-CNN and kin).

    Validation, test and prediction items are untransformed (original image coordinates, as COCO
    evaluation needs); training uses ``instance_transforms.train_transforms(flip_prob, color_jitter)``.
    Batches are ``(list of images, list of targets)`` (``collate_detection``). The training loader
    resumes exactly mid-epoch, order and augmentations included (``zoo.training.resumable_loader``).

    Args:
        train_images: folder the training JSON's ``file_name`` entries are relative to.
        train_annotations: training COCO instances JSON.
        val_images: folder of the validation images.
        val_annotations: validation COCO instances JSON (also used for COCO evaluation).
        batch_size: training images per batch (per device).
        num_workers: DataLoader worker processes (persistent when > 0).
        flip_prob: probability of a horizontal flip in training.
        color_jitter: strength of the training brightness/contrast/saturation jitter; 0 turns it off.
        contiguous_labels: labels 1..C in category-id order; False keeps label = category id
            (torchvision's 91-class COCO convention).
        val_batch_size: validation/test/predict images per batch; default: ``batch_size``.
        pin_memory: pin batches in page-locked memory for faster host-to-GPU copies.
        test_images: folder of the test images; default: the validation split.
        test_annotations: test COCO instances JSON; default: the validation split.
    """

    def __init__(
        self,
        train_images: str | Path,
        train_annotations: str | Path,
        val_images: str | Path,
        val_annotations: str | Path,
        batch_size: int = 2,
        num_workers: int = 2,
        flip_prob: float = 0.5,
        color_jitter: float = 0.2,
        contiguous_labels: bool = True,
        val_batch_size: int | None = None,
        pin_memory: bool = False,
        test_images: str | Path | None = None,
        test_annotations: str | Path | None = None,
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
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.flip_prob = flip_prob
        self.color_jitter = color_jitter
        self.contiguous_labels = contiguous_labels
        self.train_dataset: CocoInstancesDataset | None = None
        self.val_dataset: CocoInstancesDataset | None = None
        self.test_dataset: CocoInstancesDataset | None = None

    @property
    def val_annotation_file(self) -> Path:
        """The validation JSON, for COCO evaluation."""
        return self.val_annotations

    @property
    def test_annotation_file(self) -> Path:
        """The test JSON (the validation JSON when no test split is given), for COCO evaluation."""
        return self.test_annotations

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (``fit``: train and val; ``validate``: val; ``test`` and
        ``predict``: test). Train and validation must have the same categories."""
        if stage in ("fit", None) and self.train_dataset is None:
            self.train_dataset = CocoInstancesDataset(
                self.train_images,
                self.train_annotations,
                transforms=train_transforms(self.flip_prob, self.color_jitter),
                contiguous_labels=self.contiguous_labels,
            )
        if stage in ("fit", "validate", None) and self.val_dataset is None:
            self.val_dataset = CocoInstancesDataset(
                self.val_images, self.val_annotations, contiguous_labels=self.contiguous_labels
            )
        if stage in ("test", "predict", None) and self.test_dataset is None:
            self.test_dataset = CocoInstancesDataset(
                self.test_images, self.test_annotations, contiguous_labels=self.contiguous_labels
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

    def _categories(self) -> CocoInstancesDataset:
        """A built dataset to read the categories from (builds the validation set if none is)."""
        for dataset in (self.train_dataset, self.val_dataset, self.test_dataset):
            if dataset is not None:
                return dataset
        self.setup("validate")
        return self.val_dataset

    @property
    def class_names(self) -> list[str]:
        """Class names; index = label - 1."""
        return self._categories().class_names

    @property
    def num_classes(self) -> int:
        """Number of object classes C, without background."""
        return self._categories().num_classes

    @property
    def label_to_category_id(self) -> dict[int, int]:
        """Model label -> COCO category id (for writing COCO results)."""
        return self._categories().label_to_category_id

    def _eval_loader(self, dataset: CocoInstancesDataset | None, batch_size: int) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() with the matching stage before asking for its dataloader")
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_detection,
        )

    def train_dataloader(self) -> ResumableDataLoader:
        if self.train_dataset is None:
            raise RuntimeError("call setup('fit') before asking for the training dataloader")
        trainer = self.trainer
        return resumable_train_loader(
            self.train_dataset,
            self.batch_size,
            collate_detection,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            seed=global_seed(trainer),  # one seed on every rank, or the shards would overlap
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_dataset, self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset, self.val_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset, self.val_batch_size)
