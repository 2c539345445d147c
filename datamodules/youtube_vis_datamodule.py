"""LightningDataModule over YouTube-VIS splits (``datamodules.youtube_vis.YouTubeVISDataset``): clips."""

from pathlib import Path

import albumentations as A

from datamodules.coco_instances_datamodule import CocoInstancesDataModule
from datamodules.video_clips import collate_clips
from datamodules.youtube_vis import YouTubeVISDataset


class YouTubeVISDataModule(CocoInstancesDataModule):
    """YouTube-VIS train/val(/test) clips for video instance segmentation (YolactEdge and kin).

    Batches are ``video_clips.ClipBatch`` (``collate_clips``): per clip, its frames and one
    ``datamodules.batch`` target per frame with persistent ``instance_ids``. ``metadata`` tells the module
    the classes, category ids and the annotation files of the evaluated splits. The training loader resumes
    exactly mid-epoch (``zoo.training.resumable_loader``), each clip's augmentation -- the same on all of
    its frames -- included. As for ``CocoInstancesDataModule``, ``val_transforms`` may only change pixel
    values.

    Built on ``CocoInstancesDataModule`` (splits, category checks, metadata, loaders), with clips for items.

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
        val_clip_length: frames per validation, test and prediction clip; default: ``clip_length``
            (YolactEdge trains on pairs but evaluates a keyframe and its 4 non-keyframes).
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

    collate_fn = staticmethod(collate_clips)

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
        val_clip_length: int | None = None,
        batch_size: int = 2,
        num_workers: int = 2,
        train_transforms: A.Compose | None = None,
        val_transforms: A.Compose | None = None,
        val_batch_size: int | None = None,
        pin_memory: bool = False,
        test_images: str | Path | None = None,
        test_annotations: str | Path | None = None,
    ) -> None:
        super().__init__(
            train_images,
            train_annotations,
            val_images,
            val_annotations,
            batch_size=batch_size,
            num_workers=num_workers,
            train_transforms=train_transforms,
            val_transforms=val_transforms,
            val_batch_size=val_batch_size,
            pin_memory=pin_memory,
            test_images=test_images,
            test_annotations=test_annotations,
        )
        self.clip_length, self.frame_stride, self.clip_step = clip_length, frame_stride, clip_step
        self.val_clip_length = val_clip_length or clip_length
        self.val_clip_step = val_clip_step or (self.val_clip_length - 1) * frame_stride + 1

    def dataset(
        self, images: Path, annotations: Path, transforms: A.Compose | None, **options: bool
    ) -> YouTubeVISDataset:
        """One split's clips: training clips of ``clip_length`` frames start every ``clip_step`` frames, the
        others (``val_clip_length`` frames) every ``val_clip_step``."""
        training = transforms is self.train_transforms
        return YouTubeVISDataset(
            images,
            annotations,
            self.clip_length if training else self.val_clip_length,
            self.frame_stride,
            self.clip_step if training else self.val_clip_step,
            transforms,
            options.get("require_annotations", True),
        )
