"""Albumentations pipelines for instance data that keep image, masks, boxes and labels in sync.

Sync works the way albumentations intends it: masks go in as a list, boxes as ``pascal_voc`` (XYXY
pixels) with an ``instance_index`` label field, and after the pipeline each surviving box's index
picks its mask and label. The family's default training pipeline is ``train_transforms``;
experiments may inject another (any function returning an ``A.Compose`` built with
``instance_bbox_params()``). Validation, test and
prediction default to no transform, so predictions stay in the original image coordinates that COCO
evaluation needs; a pipeline given for them may only change pixel values (``require_pixel_level``).
There is no resize here on purpose: Mask R-CNN resizes inside the model (He et al. 2017, "Mask R-CNN",
Sec. 3.1: shorter side 800 px; torchvision's ``GeneralizedRCNNTransform`` takes a tuple ``min_size``
for multi-scale training), so the pipeline's only geometric change is a horizontal flip.
"""

from typing import NamedTuple

import albumentations as A
import numpy as np


class InstanceSample(NamedTuple):
    """One image with its instances, as numpy arrays in the albumentations layout."""

    image: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # (N, 4) float32 XYXY absolute pixels
    labels: np.ndarray  # (N,) int64
    masks: list[np.ndarray]  # N masks, each (H, W) uint8 in {0, 1}
    flipped: bool = False  # did the pipeline mirror the image horizontally (an odd number of times)?


def instance_bbox_params(min_side: float = 0.0) -> A.BboxParams:
    """Box settings every instance pipeline needs: XYXY pixels, clipped, carrying the instance index;
    boxes narrower or lower than ``min_side`` pixels after the pipeline are dropped."""
    return A.BboxParams(
        format="pascal_voc",
        label_fields=["instance_index"],
        clip=True,
        filter_invalid_bboxes=True,
        min_width=min_side,
        min_height=min_side,
    )


def train_transforms(flip_prob: float = 0.5, color_jitter: float = 0.2) -> A.Compose:
    """Horizontal flip with probability ``flip_prob`` (Mask R-CNN's only training augmentation, Sec. 3.1)
    and, when ``color_jitter > 0``, mild brightness/contrast/saturation jitter of that strength, applied
    to half of the images."""
    steps: list[A.BasicTransform] = [A.HorizontalFlip(p=flip_prob)]
    if color_jitter > 0:
        steps.append(
            A.ColorJitter(
                brightness=color_jitter, contrast=color_jitter, saturation=color_jitter, hue=0.0, p=0.5
            )
        )
    return A.Compose(steps, bbox_params=instance_bbox_params(), save_applied_params=True)


def require_pixel_level(transforms: A.BaseCompose, name: str) -> None:
    """Raise unless every transform in ``transforms`` (nested composes included) only changes pixel
    values (albumentations' ``ImageOnlyTransform``): a flip, crop or resize would move the predictions
    out of the frame the ground truth is scored in."""
    for transform in transforms.transforms:
        if isinstance(transform, A.BaseCompose):
            require_pixel_level(transform, name)
        elif not isinstance(transform, A.ImageOnlyTransform):
            raise ValueError(
                f"{name}: {type(transform).__name__} changes the image geometry; evaluation items must stay "
                "in the original image coordinates (use pixel-level transforms only)"
            )


def apply_instance_transforms(
    transforms: A.Compose, sample: InstanceSample
) -> tuple[InstanceSample, np.ndarray]:
    """Run ``transforms`` (built with :func:`instance_bbox_params`) on one sample, keeping instances in sync.

    Boxes are the pipeline's transformed boxes (exact for flips and scalings). An instance is dropped
    when albumentations drops its box or when its mask has become empty. Returns the new sample and
    the indices (into the input instances) of the instances it keeps, so callers can count the drops.
    The sample's ``flipped`` says whether ``HorizontalFlip`` ran an odd number of times, read off the
    pipeline's applied parameters (a pipeline built with ``save_applied_params=True``; False otherwise):
    what annotations with a left and a right (DensePose charts) need to know.
    """
    out = transforms(
        image=sample.image,
        masks=list(sample.masks),
        bboxes=sample.boxes.reshape(-1, 4),
        instance_index=np.arange(len(sample.boxes)),
    )
    index = np.asarray(out["instance_index"], dtype=np.int64).reshape(-1)
    boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
    masks = [out["masks"][i] for i in index]
    nonempty = np.array([mask.any() for mask in masks], dtype=bool)
    kept = index[nonempty]
    flips = sum(name == "HorizontalFlip" for name, _ in out.get("applied_transforms", ()))
    result = InstanceSample(
        image=out["image"],
        boxes=boxes[nonempty],
        labels=sample.labels[kept],
        masks=[mask for mask, keep in zip(masks, nonempty, strict=True) if keep],
        flipped=flips % 2 == 1,
    )
    return result, kept
