"""LightningDataModule over COCO keypoint splits as top-down crops
(``datamodules.coco_keypoints.CocoKeypointsDataset``)."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from datamodules.coco_keypoints import CocoKeypointsDataset, TopDownAugmentation
from datamodules.errors import DatasetFormatError
from datamodules.keypoint_layouts import KeypointLayout
from datamodules.loaders import evaluation_loader, training_loader
from datamodules.metadata import DatasetMetadata
from datamodules.top_down_crop import PADDING
from zoo.training.resumable_loader import ResumableDataLoader


class CocoKeypointsDataModule(LightningDataModule):
    """Top-down keypoint data (SimpleBaseline, Stacked Hourglass, face landmarks): one item per
    instance, its box's crop warped to ``input_size``.

    Batches follow ``datamodules.batch`` (``collate_detection``); every crop is ``input_size``, so a
    model may ``torch.stack`` the images. ``metadata`` gives the module the category, the annotation
    files to evaluate against and the layout's keypoint names, flip pairs, skeleton, OKS sigmas and NME
    normaliser. The training loader resumes exactly mid-epoch, augmentations included
    (``zoo.training.resumable_loader``). In YAML the layout is a preset:
    ``layout: {class_path: datamodules.keypoint_layouts.face_300w}``.

    Top-down items need boxes, so every split (prediction too) is a keypoint JSON with annotations
    (their ground-truth boxes are the crops).

    Args:
        train_images: folder the training JSON's ``file_name`` entries are relative to.
        train_annotations: training COCO keypoint JSON.
        val_images: folder of the validation images.
        val_annotations: validation COCO keypoint JSON (also scored against).
        layout: the dataset's keypoints (``datamodules.keypoint_layouts``); K must match the JSON.
        input_size: network input (width, height) every crop is warped to.
        batch_size: training crops per batch (per device).
        num_workers: DataLoader worker processes (persistent when > 0).
        category_id: the keypoint category; default: the files' only category.
        augmentation: training scale, rotation and flip; default ``TopDownAugmentation()`` (scale
            0.75-1.25, rotation +-30 degrees for 60% of the crops, flip 0.5).
        photometric: a pixel-value albumentations pipeline for training crops (e.g. ``A.ColorJitter``);
            default none.
        padding: the box is enlarged by this factor around its centre (SimpleBaseline: 1.25).
        val_batch_size: validation/test/predict crops per batch; default: ``batch_size``.
        pin_memory: pin batches in page-locked memory for faster host-to-GPU copies.
        test_images: folder of the test images; default: the validation split.
        test_annotations: test COCO keypoint JSON; default: the validation split.
        clip_boxes: crop by the annotated box clipped to the image (True, COCO as mmpose) or as it is
            (False: MPII, whose person boxes come from centre and scale and may reach outside the image).
    """

    def __init__(
        self,
        train_images: str | Path,
        train_annotations: str | Path,
        val_images: str | Path,
        val_annotations: str | Path,
        layout: KeypointLayout,
        input_size: tuple[int, int] = (256, 256),
        batch_size: int = 32,
        num_workers: int = 2,
        category_id: int | None = None,
        augmentation: TopDownAugmentation | None = None,
        photometric: A.Compose | None = None,
        padding: float = PADDING,
        val_batch_size: int | None = None,
        pin_memory: bool = False,
        test_images: str | Path | None = None,
        test_annotations: str | Path | None = None,
        clip_boxes: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["layout", "photometric"])
        if (test_images is None) != (test_annotations is None):
            raise ValueError("give both test_images and test_annotations, or neither")
        self.train_images, self.train_annotations = Path(train_images), Path(train_annotations)
        self.val_images, self.val_annotations = Path(val_images), Path(val_annotations)
        self.test_images = Path(test_images) if test_images is not None else self.val_images
        self.test_annotations = (
            Path(test_annotations) if test_annotations is not None else self.val_annotations
        )
        self.layout = layout
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.category_id = category_id
        self.augmentation = augmentation if augmentation is not None else TopDownAugmentation()
        self.photometric = photometric
        self.padding = padding
        self.clip_boxes = clip_boxes
        self.train_dataset: CocoKeypointsDataset | None = None
        self.val_dataset: CocoKeypointsDataset | None = None
        self.test_dataset: CocoKeypointsDataset | None = None

    def _dataset(self, images: Path, annotations: Path, train: bool) -> CocoKeypointsDataset:
        return CocoKeypointsDataset(
            images,
            annotations,
            self.layout,
            self.input_size,
            category_id=self.category_id,
            train=train,
            augmentation=self.augmentation,
            photometric=self.photometric,
            padding=self.padding,
            for_evaluation=not train,
            clip_boxes=self.clip_boxes,
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (``fit``: train and val; ``validate``: val; ``test`` and
        ``predict``: test). The evaluated files must pass COCOeval's checks now, not after training; a
        training split without a single item is refused; all splits must share the category."""
        if stage in ("fit", None) and self.train_dataset is None:
            self.train_dataset = self._dataset(self.train_images, self.train_annotations, train=True)
            if len(self.train_dataset) == 0:
                raise DatasetFormatError(
                    f"{self.train_annotations}: nothing to train on -- no annotation of category id "
                    f"{self.train_dataset.category_id} becomes an item (see the skips logged above)",
                    "empty_train_split",
                )
        if stage in ("fit", "validate", None) and self.val_dataset is None:
            self.val_dataset = self._dataset(self.val_images, self.val_annotations, train=False)
        if stage in ("test", "predict", None) and self.test_dataset is None:
            self.test_dataset = self._dataset(self.test_images, self.test_annotations, train=False)
        built = [d for d in (self.train_dataset, self.val_dataset, self.test_dataset) if d is not None]
        for dataset in built[1:]:
            if (dataset.category_id, dataset.category_name) != (built[0].category_id, built[0].category_name):
                raise DatasetFormatError(
                    f"{dataset.annotation_file} and {built[0].annotation_file} have different keypoint "
                    f"categories (id {dataset.category_id} {dataset.category_name!r} vs id "
                    f"{built[0].category_id} {built[0].category_name!r})"
                )

    def _category(self) -> CocoKeypointsDataset:
        """A built dataset to read the category from (builds the validation set if none is)."""
        for dataset in (self.train_dataset, self.val_dataset, self.test_dataset):
            if dataset is not None:
                return dataset
        self.setup("validate")
        return self.val_dataset

    @property
    def metadata(self) -> DatasetMetadata:
        """The category (label 1), the files val and test are scored against and the layout (readable
        before ``setup``: the CLI hands it to the module when both are built)."""
        dataset = self._category()
        layout = self.layout
        return DatasetMetadata(
            class_names=(dataset.category_name,),
            label_to_category_id={1: dataset.category_id},
            annotation_files={"val": self.val_annotations, "test": self.test_annotations},
            keypoint_names=layout.names,
            flip_pairs=layout.flip_pairs,
            skeleton=layout.skeleton,
            oks_sigmas=layout.oks_sigmas,
            normalizing_keypoints=layout.normalizing_keypoints,
        )

    def train_dataloader(self) -> ResumableDataLoader:
        trainer = self.trainer
        return training_loader(
            self.train_dataset, self.batch_size, self.num_workers, self.pin_memory, trainer
        )

    def _eval_loader(self, dataset: CocoKeypointsDataset | None) -> DataLoader:
        return evaluation_loader(dataset, self.val_batch_size, self.num_workers, self.pin_memory)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset)
