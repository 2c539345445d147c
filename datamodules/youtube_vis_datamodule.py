"""LightningDataModule over YouTube-VIS splits (``datamodules.youtube_vis.YouTubeVISDataset``): clips."""

from pathlib import Path

import albumentations as A
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from datamodules.errors import DatasetFormatError
from datamodules.instance_transforms import require_pixel_level
from datamodules.instance_transforms import train_transforms as train_transforms_default
from datamodules.loaders import evaluation_loader, training_loader
from datamodules.metadata import DatasetMetadata
from datamodules.video_clips import collate_clips
from datamodules.youtube_vis import YouTubeVISDataset
from zoo.training.resumable_loader import ResumableDataLoader


class YouTubeVISDataModule(LightningDataModule):
    """YouTube-VIS train/val(/test) clips for video instance segmentation (YolactEdge and kin).

    Batches are ``video_clips.ClipBatch`` (``collate_clips``): per clip, its frames and one
    ``datamodules.batch`` target per frame with persistent ``instance_ids``. ``metadata`` tells the module
    the classes, category ids and the annotation files of the evaluated splits. The training loader resumes
    exactly mid-epoch (``zoo.training.resumable_loader``), each clip's augmentation -- the same on all of
    its frames -- included. As for ``CocoInstancesDataModule``, ``val_transforms`` may only change pixel
    values.

    Args:
        train_images: folder the training JSON's ``file_names`` are relative to (``train/JPEGImages``).
        train_annotations: training YouTube-VIS JSON.
        val_images: folder of the validation frames.
        val_annotations: validation YouTube-VIS JSON (with annotations).
        clip_length: frames per clip (a keyframe and the ones after it).
        frame_stride: frames between consecutive frames of a clip.
        clip_step: frames between the keyframes of consecutive training clips of a video.
        val_clip_step: the same for validation, test and prediction; default: the clip's span (clips of a
            video do not overlap).
        batch_size: training clips per batch (per device).
        num_workers: DataLoader worker processes (persistent when > 0).
        train_transforms: the training pipeline; default ``instance_transforms.train_transforms()``.
        val_transforms: a pixel-value pipeline for validation, test and prediction; default none.
        val_batch_size: validation/test/predict clips per batch; default: ``batch_size``.
        pin_memory: pin batches in page-locked memory.
        test_images: folder of the test frames; default: the validation split.
        test_annotations: test YouTube-VIS JSON; default: the validation split (may lack annotations for
            prediction).
    """

    def __init__(
        self,
        train_images: str | Path,
        train_annotations: str | Path,
        val_images: str | Path,
        val_annotations: str | Path,
        clip_length: int = 2,
        frame_stride: int = 1,
        clip_step: int = 1,
        val_clip_step: int | None = None,
        batch_size: int = 2,
        num_workers: int = 2,
        train_transforms: A.Compose | None = None,
        val_transforms: A.Compose | None = None,
        val_batch_size: int | None = None,
        pin_memory: bool = False,
        test_images: str | Path | None = None,
        test_annotations: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["train_transforms", "val_transforms"])
        if (test_images is None) != (test_annotations is None):
            raise ValueError("give both test_images and test_annotations, or neither")
        self.train_images, self.train_annotations = Path(train_images), Path(train_annotations)
        self.val_images, self.val_annotations = Path(val_images), Path(val_annotations)
        self.test_images = Path(test_images) if test_images is not None else self.val_images
        self.test_annotations = (
            Path(test_annotations) if test_annotations is not None else self.val_annotations
        )
        self.clip_length, self.frame_stride, self.clip_step = clip_length, frame_stride, clip_step
        self.val_clip_step = val_clip_step or (clip_length - 1) * frame_stride + 1
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
        self.train_dataset: YouTubeVISDataset | None = None
        self.val_dataset: YouTubeVISDataset | None = None
        self.test_dataset: YouTubeVISDataset | None = None

    def _dataset(
        self, images: Path, annotations: Path, training: bool, require_annotations: bool = True
    ) -> YouTubeVISDataset:
        return YouTubeVISDataset(
            images,
            annotations,
            self.clip_length,
            self.frame_stride,
            self.clip_step if training else self.val_clip_step,
            self.train_transforms if training else self.val_transforms,
            require_annotations,
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (``fit``: train and val; ``validate``: val; ``test`` and
        ``predict``: test); all must have the same categories, and a training split needs at least one
        target instance."""
        if stage in ("fit", None) and self.train_dataset is None:
            self.train_dataset = self._dataset(self.train_images, self.train_annotations, training=True)
            if self.train_dataset.num_targets == 0:
                raise DatasetFormatError(
                    f"{self.train_annotations}: nothing to train on -- "
                    f"{len(self.train_dataset.videos)} videos and no annotated frame that becomes a target "
                    "instance (see the skips logged above)",
                    "empty_train_split",
                )
        if stage in ("fit", "validate", None) and self.val_dataset is None:
            self.val_dataset = self._dataset(self.val_images, self.val_annotations, training=False)
        if stage in ("test", "predict", None) and self.test_dataset is None:
            self.test_dataset = self._dataset(
                self.test_images,
                self.test_annotations,
                training=False,
                require_annotations=stage != "predict",
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

    def _categories(self) -> YouTubeVISDataset:
        for dataset in (self.train_dataset, self.val_dataset, self.test_dataset):
            if dataset is not None:
                return dataset
        self.setup("validate")
        assert self.val_dataset is not None
        return self.val_dataset

    @property
    def metadata(self) -> DatasetMetadata:
        """Classes, category ids and the annotation files of the evaluated splits (readable before
        ``setup``)."""
        categories = self._categories()
        return DatasetMetadata(
            class_names=tuple(categories.class_names),
            label_to_category_id=dict(categories.label_to_category_id),
            annotation_files={"val": self.val_annotations, "test": self.test_annotations},
        )

    def train_dataloader(self) -> ResumableDataLoader:
        return training_loader(
            self.train_dataset,
            self.batch_size,
            self.num_workers,
            self.pin_memory,
            self.trainer,
            collate_clips,
        )

    def _eval_loader(self, dataset: YouTubeVISDataset | None) -> DataLoader:
        return evaluation_loader(
            dataset, self.val_batch_size, self.num_workers, self.pin_memory, collate_clips
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset)
