"""DensePose-COCO: COCO instances whose annotations may carry DensePose fields (``dp_x``, ``dp_y``, ``dp_I``,
``dp_U``, ``dp_V``, ``dp_masks``; ``datamodules.densepose_annotations``), read on top of the COCO reader
(``datamodules.coco_instances``) for DensePose R-CNN (``models.densepose_rcnn``).

Items are the COCO reader's plus, per target instance, ``dense_points`` float32 (N, P, 5) -- the
instance's points (x, y in its box's 256 x 256 frame, part 1..24, u, v), NaN rows padding every instance to
the image's largest P (all NaN for an instance without DensePose, as most COCO persons are) -- and
``dense_segmentation`` uint8 (N, 256, 256), the coarse part labels on the box grid (zeros without DensePose).
Points are box-relative, so scaling the image leaves them as they are; a horizontal flip mirrors them with
the chart symmetry (``datamodules.densepose_symmetry``), which is why the training pipeline may only flip
horizontally, resize or change pixel values.

Malformed DensePose fields (point lists of different lengths, parts out of range, points outside the box
frame, broken ``dp_masks``) raise ``DatasetFormatError`` naming the file and the annotation id: the point
fields of every annotation when the dataset is built, the masks when an item is read.
"""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torchvision.transforms.functional import to_tensor

from datamodules.coco_instances import CocoInstancesDataset
from datamodules.coco_instances_datamodule import CocoInstancesDataModule
from datamodules.densepose_annotations import FRAME_SIZE, dense_points, has_densepose, parse_densepose
from datamodules.densepose_symmetry import ChartSymmetry

BOX_RELATIVE_GEOMETRY = ("HorizontalFlip", "Resize", "LongestMaxSize", "SmallestMaxSize")
"""Geometric albumentations transforms that keep box-relative DensePose points valid."""


def check_densepose_pipeline(transforms: A.BaseCompose, flip_symmetry: ChartSymmetry | None) -> None:
    """Raise unless every step of ``transforms`` keeps box-relative points valid (pixel-level, flip or
    resize), and unless a pipeline that flips records its steps (``save_applied_params=True``) and has the
    chart symmetry that mirrors the annotations."""
    flips = False
    stack: list[A.BaseCompose] = [transforms]
    while stack:
        for step in stack.pop().transforms:
            if isinstance(step, A.BaseCompose):
                stack.append(step)
            elif type(step).__name__ == "HorizontalFlip":
                flips = flips or step.p > 0
            elif (
                not isinstance(step, A.ImageOnlyTransform)
                and type(step).__name__ not in BOX_RELATIVE_GEOMETRY
            ):
                raise ValueError(
                    f"{type(step).__name__} moves DensePose points off their boxes' frame; a DensePose "
                    f"pipeline may only use pixel-level transforms and {', '.join(BOX_RELATIVE_GEOMETRY)}"
                )
    if flips and not getattr(transforms, "save_applied_params", False):
        raise ValueError(
            "a DensePose pipeline that flips must be built with A.Compose(..., save_applied_params=True), "
            "so that the dataset knows which items were mirrored"
        )
    if flips and flip_symmetry is None:
        raise ValueError(
            "horizontal flips of DensePose annotations need the chart symmetry (flip_symmetry: "
            "datamodules.densepose_symmetry.densepose_coco_symmetry with the official "
            "UV_symmetry_transforms.mat, or synthetic_symmetry for the synthetic world), or flip_prob 0"
        )


class DensePoseCocoDataset(CocoInstancesDataset):
    """``CocoInstancesDataset`` plus ``dense_points`` and ``dense_segmentation`` (module docstring).

    ``flip_symmetry`` mirrors the annotations of flipped items; required when ``transforms`` flips.
    ``num_densepose`` counts the annotations with DensePose fields.
    """

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        transforms: A.Compose | None = None,
        contiguous_labels: bool = True,
        require_annotations: bool = True,
        for_evaluation: bool = False,
        flip_symmetry: ChartSymmetry | None = None,
    ) -> None:
        if transforms is not None:
            check_densepose_pipeline(transforms, flip_symmetry)
        super().__init__(
            image_dir, annotation_file, transforms, contiguous_labels, require_annotations, for_evaluation
        )
        self.flip_symmetry = flip_symmetry
        annotated = [a for a in self.coco.dataset.get("annotations", []) if has_densepose(a)]
        for annotation in annotated:
            dense_points(annotation, self.annotation_file)  # fail now on malformed points
        self.num_densepose = len(annotated)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id, instances, sample = self.read_sample(item)
        target = self.instance_target(image_id, sample)
        points, segmentations = [], []
        for instance in instances:
            parsed = parse_densepose(self.coco.anns[instance.annotation_id], self.annotation_file)
            if parsed is None:
                points.append(np.zeros((0, 5), np.float32))
                segmentations.append(np.zeros((FRAME_SIZE, FRAME_SIZE), np.uint8))
                continue
            instance_points, segmentation = parsed
            if sample.flipped:
                assert self.flip_symmetry is not None  # check_densepose_pipeline made sure
                instance_points = self.flip_symmetry.flip_points(instance_points)
                segmentation = self.flip_symmetry.flip_segmentation(segmentation)
            points.append(instance_points)
            segmentations.append(segmentation)
        most = max((len(p) for p in points), default=0)
        padded = np.full((len(points), most, 5), np.nan, np.float32)
        for row, instance_points in zip(padded, points, strict=True):
            row[: len(instance_points)] = instance_points
        target["dense_points"] = torch.from_numpy(padded)
        target["dense_segmentation"] = torch.from_numpy(
            np.stack(segmentations) if segmentations else np.zeros((0, FRAME_SIZE, FRAME_SIZE), np.uint8)
        )
        return to_tensor(sample.image), target


class DensePoseCocoDataModule(CocoInstancesDataModule):
    """DensePose-COCO train/val(/test) splits (``CocoInstancesDataModule``'s arguments) whose items carry
    the DensePose targets.

    ``flip_symmetry`` mirrors the DensePose annotations of flipped training items; in YAML
    ``{class_path: datamodules.densepose_symmetry.densepose_coco_symmetry, init_args: {uv_symmetry_file:
    ...}}`` for DensePose-COCO or ``{class_path: datamodules.densepose_symmetry.synthetic_symmetry}``.
    Without it, give a training pipeline that does not flip (``flip_prob: 0``).
    """

    unsaved_arguments = (*CocoInstancesDataModule.unsaved_arguments, "flip_symmetry")

    def __init__(self, *args, flip_symmetry: ChartSymmetry | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.flip_symmetry = flip_symmetry

    def dataset(
        self, images: Path, annotations: Path, transforms: A.Compose | None, **options: bool
    ) -> CocoInstancesDataset:
        return DensePoseCocoDataset(
            images,
            annotations,
            transforms,
            contiguous_labels=self.contiguous_labels,
            flip_symmetry=self.flip_symmetry,
            **options,
        )
