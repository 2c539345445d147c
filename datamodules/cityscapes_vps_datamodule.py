"""LightningDataModule over Cityscapes-VPS splits (``datamodules.cityscapes_vps``): training pairs of
reference and target frames, whole videos (or clips) for evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import albumentations as A

from datamodules.cityscapes_vps import (
    DEFAULT_REFERENCE_OFFSETS,
    CityscapesVPSClips,
    CityscapesVPSPairs,
    CityscapesVPSVideos,
)
from datamodules.coco_panoptic_datamodule import CocoPanopticDataModule
from datamodules.video_clips import collate_clips


def split_paths(root: str | Path, split: str) -> tuple[Path, Path, Path]:
    """``(images, annotations, panoptic)`` of a split of the official layout under ``root``:
    ``<split>/img``, ``panoptic_gt_<split>_city_vps.json`` and ``<split>/panoptic_video``."""
    root = Path(root)
    return root / split / "img", root / f"panoptic_gt_{split}_city_vps.json", root / split / "panoptic_video"


class CityscapesVPSDataModule(CocoPanopticDataModule):
    """Cityscapes-VPS train/val(/test) data for video panoptic segmentation (VPSNet).

    Batches are ``video_clips.ClipBatch`` (``collate_clips``): per item its frames and one target per frame
    (``datamodules.batch``: panoptic, semantic and instance targets with persistent ``instance_ids``).
    Training items are ``cityscapes_vps.CityscapesVPSPairs``: ``num_references`` reference frames, then the
    target frame, the references ``reference_offsets`` frames away; validation, test and prediction items
    are ``CityscapesVPSClips``: whole videos (``val_clip_length`` None) or clips of them. The splits,
    loaders (an exactly resumable training loader), the pixel-level-only rule for ``val_transforms`` and
    the thing and stuff category checks and ``metadata`` are ``CocoPanopticDataModule``'s.

    Args:
        train_images: folder of the training frames (``<root>/train/img``; ``split_paths``).
        train_annotations: training ``panoptic_gt_train_city_vps.json``.
        val_images: folder of the validation frames.
        val_annotations: validation ``panoptic_gt_val_city_vps.json`` (also the VPQ ground truth).
        train_panoptic: folder of the training PNGs; default: ``train_images``' sibling ``panoptic_video``.
        val_panoptic: the same for validation.
        reference_offsets: frame offsets a training target's references are drawn from (official: -1, +1).
        num_references: reference frames per training item.
        val_clip_length: frames per evaluation item; default: whole videos.
        batch_size: training items per batch (per device).
        num_workers: DataLoader worker processes (persistent when > 0).
        train_transforms: the training pipeline, the same on every frame of an item; default
            ``coco_panoptic.train_transforms()`` (horizontal flip 0.5).
        val_transforms: a pixel-value pipeline for validation, test and prediction; default none.
        val_batch_size: evaluation items per batch; default: ``batch_size``.
        pin_memory: pin batches in page-locked memory.
        test_images, test_annotations, test_panoptic: the test split; default: the validation split.
    """

    collate_fn = staticmethod(collate_clips)

    def __init__(
        self,
        train_images: str | Path,
        train_annotations: str | Path,
        val_images: str | Path,
        val_annotations: str | Path,
        train_panoptic: str | Path | None = None,
        val_panoptic: str | Path | None = None,
        reference_offsets: Sequence[int] = DEFAULT_REFERENCE_OFFSETS,
        num_references: int = 1,
        val_clip_length: int | None = None,
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
            train_panoptic,
            val_panoptic,
            batch_size=batch_size,
            num_workers=num_workers,
            train_transforms=train_transforms,
            val_transforms=val_transforms,
            val_batch_size=val_batch_size,
            pin_memory=pin_memory,
            test_images=test_images,
            test_annotations=test_annotations,
            test_panoptic=test_panoptic,
        )
        # this signature only: the parent also saved its own contiguous_labels, which is not an argument here
        self.save_hyperparameters(ignore=["train_transforms", "val_transforms", "contiguous_labels"])
        self.reference_offsets, self.num_references = tuple(reference_offsets), num_references
        self.val_clip_length = val_clip_length

    def dataset(
        self, images: Path, annotations: Path, transforms: A.Compose | None, **options: bool
    ) -> CityscapesVPSVideos:
        """Training pairs for the training pipeline, clips (whole videos by default) otherwise."""
        panoptic = self.panoptic_dir(annotations)
        if transforms is self.train_transforms:
            return CityscapesVPSPairs(
                images, annotations, panoptic, transforms, self.reference_offsets, self.num_references
            )
        return CityscapesVPSClips(
            images,
            annotations,
            panoptic,
            transforms,
            clip_length=self.val_clip_length,
            require_annotations=options.get("require_annotations", True),
        )
