"""LightningDataModule over COCO (or Cityscapes) panoptic splits (``datamodules.coco_panoptic``)."""

from __future__ import annotations

from pathlib import Path

import albumentations as A

from datamodules.coco_instances_datamodule import CocoInstancesDataModule
from datamodules.coco_panoptic import CocoPanopticDataset
from datamodules.coco_panoptic import train_transforms as train_transforms_default
from datamodules.errors import DatasetFormatError
from datamodules.metadata import DatasetMetadata


class CocoPanopticDataModule(CocoInstancesDataModule):
    """COCO panoptic train/val(/test) data for panoptic segmentation (UPSNet): each item has the
    panoptic, semantic and instance targets of ``datamodules.batch``.

    The splits, batch sizes, loaders (an exactly resumable training loader, ordered evaluation loaders)
    and the pixel-level-only rule for ``val_transforms`` are those of ``CocoInstancesDataModule``, which
    this extends with the panoptic PNG folders and the stuff classes. ``metadata`` gives the thing
    classes (labels 1..C), the stuff classes (semantic classes 0..S-1) and the panoptic JSONs that val
    and test are scored against; train, val and test must have the same categories.

    Args:
        train_images: folder the training JSON's image ``file_name`` entries are relative to (Cityscapes:
            ``leftImg8bit/train``).
        train_annotations: training panoptic JSON (COCO ``annotations/panoptic_train2017.json``,
            Cityscapes ``gtFine/cityscapes_panoptic_train.json``).
        val_images: folder of the validation images.
        val_annotations: validation panoptic JSON (also the PQ ground truth).
        train_panoptic: folder of the training PNGs; default: ``train_annotations`` without ``.json``.
        val_panoptic: folder of the validation PNGs; default: ``val_annotations`` without ``.json``.
        batch_size: training images per batch (per device).
        num_workers: DataLoader worker processes (persistent when > 0).
        train_transforms: the training pipeline (albumentations; the segment map moves as a mask); default
            ``coco_panoptic.train_transforms()``: horizontal flip 0.5, UPSNet's training augmentation.
        val_transforms: a pixel-value pipeline for validation, test and prediction; default none.
        val_batch_size: validation/test/predict images per batch; default: ``batch_size``.
        pin_memory: pin batches in page-locked memory for faster host-to-GPU copies.
        test_images: folder of the test images; default: the validation split.
        test_annotations: test panoptic JSON; default: the validation split.
        test_panoptic: folder of the test PNGs; default: ``test_annotations`` without ``.json``.
    """

    def __init__(
        self,
        train_images: str | Path,
        train_annotations: str | Path,
        val_images: str | Path,
        val_annotations: str | Path,
        train_panoptic: str | Path | None = None,
        val_panoptic: str | Path | None = None,
        batch_size: int = 2,
        num_workers: int = 2,
        train_transforms: A.Compose | None = None,
        val_transforms: A.Compose | None = None,
        val_batch_size: int | None = None,
        pin_memory: bool = False,
        test_images: str | Path | None = None,
        test_annotations: str | Path | None = None,
        test_panoptic: str | Path | None = None,
    ) -> None:
        super().__init__(
            train_images,
            train_annotations,
            val_images,
            val_annotations,
            batch_size=batch_size,
            num_workers=num_workers,
            train_transforms=train_transforms if train_transforms is not None else train_transforms_default(),
            val_transforms=val_transforms,
            val_batch_size=val_batch_size,
            pin_memory=pin_memory,
            test_images=test_images,
            test_annotations=test_annotations,
        )
        # this signature only: the parent also saved its own contiguous_labels, which is not an argument here
        self.save_hyperparameters(ignore=["train_transforms", "val_transforms", "contiguous_labels"])
        if test_panoptic is not None and test_annotations is None:
            raise ValueError("test_panoptic needs test_images and test_annotations")
        self.train_panoptic = Path(train_panoptic) if train_panoptic is not None else None
        self.val_panoptic = Path(val_panoptic) if val_panoptic is not None else None
        self.test_panoptic = Path(test_panoptic) if test_panoptic is not None else None
        if test_annotations is None:  # the validation split
            self.test_panoptic = self.val_panoptic

    def panoptic_dir(self, annotations: Path) -> Path | None:
        """The PNG folder given for the split of ``annotations`` (None: the dataset's default)."""
        folders = {
            self.test_annotations: self.test_panoptic,
            self.val_annotations: self.val_panoptic,
            self.train_annotations: self.train_panoptic,
        }
        return folders[annotations]

    def dataset(
        self, images: Path, annotations: Path, transforms: A.Compose | None, **options: bool
    ) -> CocoPanopticDataset:
        """One split's dataset (``CocoInstancesDataModule.setup`` builds the splits through it); a predict
        split may be a JSON without ``annotations``."""
        return CocoPanopticDataset(
            images,
            annotations,
            self.panoptic_dir(annotations),
            transforms,
            require_annotations=options.get("require_annotations", True),
        )

    def setup(self, stage: str | None = None) -> None:
        """``CocoInstancesDataModule.setup`` (the splits the stage needs, the same thing categories, a
        training split with targets); all built splits must also have the same stuff categories."""
        super().setup(stage)
        built = [d for d in (self.train_dataset, self.val_dataset, self.test_dataset) if d is not None]
        for dataset in built[1:]:
            if (dataset.stuff_names, dataset.stuff_category_ids) != (
                built[0].stuff_names,
                built[0].stuff_category_ids,
            ):
                raise DatasetFormatError(
                    f"{dataset.annotation_file} and {built[0].annotation_file} have different stuff "
                    f"categories ({dataset.stuff_names} vs {built[0].stuff_names})",
                    "category_mismatch",
                )

    @property
    def metadata(self) -> DatasetMetadata:
        """Thing and stuff classes with their category ids and the panoptic JSONs that val and test are
        scored against (readable before ``setup``: the CLI hands it to the module when both are built)."""
        dataset = self._categories()
        return DatasetMetadata(
            class_names=tuple(dataset.class_names),
            label_to_category_id=dict(dataset.label_to_category_id),
            annotation_files={"val": self.val_annotations, "test": self.test_annotations},
            stuff_names=tuple(dataset.stuff_names),
            stuff_category_ids=tuple(dataset.stuff_category_ids),
        )
