"""COCO keypoint JSON as top-down items: one instance per item, cropped by its box and warped to the
network input (``datamodules.top_down_crop``).

Reads the COCO keypoint format (https://cocodataset.org/#format-data: ``keypoints`` [x1, y1, v1, ...]
per annotation, v 0 = not labelled, 1 = labelled but occluded, 2 = visible) for COCO persons, the face
landmark JSONs of 300W and WFLW (whose categories name no keypoints: the ``KeypointLayout`` gives K)
and MPII as ``zoo mpii-to-coco`` writes it (with a ``head_box`` per annotation). Keypoint coordinates
in these files are pixel indices (pixel i's centre at i, as detectron2 reads COCO); items hold them in
the batch convention's continuous frame, half a pixel further. The LightningDataModule
is ``datamodules.coco_keypoints_datamodule.CocoKeypointsDataModule``.

Which annotations become items, decided once here (each left-out annotation counted under exactly one
reason, the first that applies in this order):

- only annotations of the dataset's category (``category_id``; by default the file's only category);
- hard errors (``DatasetFormatError`` naming the file, the annotation id and the problem): everything
  ``coco_json_checks.structure_problems`` finds (ids, unknown images or categories), a malformed
  ``bbox``, a ``keypoints`` list that is not 3 K numbers, non-finite coordinates, a visibility outside
  {0, 1, 2}, a labelled keypoint (v > 0) more than an image size outside its image (a coordinate in the
  wrong units or frame, not an annotator's slip), a malformed ``head_box``; for evaluation files also what
  COCOeval needs (``evaluation_problems``, and an integer ``num_keypoints``, which its keypoint
  evaluation reads); a category whose ``keypoints`` names a different number of keypoints than the layout;
- counted skips, in ``CocoKeypointsDataset.skipped``: ``crowd`` (``iscrowd=1``: COCOeval's ignore
  regions), ``degenerate_box`` (width or height <= 1 px after clipping to the image: no scale to crop
  at), and, for training only, ``no_keypoints`` (no labelled keypoint: nothing to learn). Evaluation keeps
  such instances: COCOeval marks ground truth with ``num_keypoints == 0`` as ignored, and a prediction
  inside its box matches it and is ignored too, so they cost nothing and every non-crowd annotation has
  its prediction;
- counted notes (kept as they are), in ``CocoKeypointsDataset.noted``: ``box_clipped`` (the box reached
  outside the image), ``keypoint_outside_image`` (a labelled keypoint lies outside the image, but within
  an image size of it), ``num_keypoints_mismatch`` (``num_keypoints`` differs from the number of labelled
  keypoints; COCOeval trusts the field).
Skips and notes are logged in one WARNING line per file.

Items and augmentation: see ``CocoKeypointsDataset``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any, NamedTuple

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.functional import to_tensor

from datamodules.coco_instances import clipped_box, index_coco, read_image
from datamodules.coco_json_checks import (
    AnnotationTally,
    FormatProblem,
    evaluation_problems,
    raise_first,
    read_coco_json,
    short_list,
    structure_problems,
)
from datamodules.errors import DatasetFormatError
from datamodules.instance_transforms import require_pixel_level
from datamodules.keypoint_layouts import KeypointLayout
from datamodules.top_down_crop import (
    PADDING,
    box_center_size,
    invert_affine,
    top_down_affine,
    transform_boxes,
    transform_points,
    warp_image,
)
from metrics.coco_results import COCO_PIXEL_INDEX_OFFSET

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopDownAugmentation:
    """The random geometry of a training crop, drawn per item from its seed.

    Scale (the crop's source region times s, s uniform in ``scale_range``) and rotation (uniform in
    +-``rotation_degrees``) as Newell et al. 2016 ("Stacked Hourglass Networks", Sec. 5.1: rotation
    +-30 degrees, scaling 0.75-1.25); the rotation applied to a ``rotation_prob`` share of the items as in
    SimpleBaseline's and mmpose's COCO recipes (0.6); a horizontal flip with ``flip_prob``, swapping
    left and right keypoints by the layout's flip pairs.
    """

    scale_range: tuple[float, float] = (0.75, 1.25)
    rotation_degrees: float = 30.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5

    def __post_init__(self) -> None:
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {self.scale_range}")
        if self.rotation_degrees < 0:
            raise ValueError(f"rotation_degrees must be >= 0, got {self.rotation_degrees}")
        for name in ("rotation_prob", "flip_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


class KeypointInstance(NamedTuple):
    """One annotation that becomes an item."""

    annotation_id: int
    image_id: int
    box: tuple[float, float, float, float]  # XYXY source pixels, clipped to the image
    keypoints: np.ndarray  # (K, 3) float64: x, y source pixels and visibility, as in the JSON
    head_box: tuple[float, float, float, float] | None  # XYXY source pixels (MPII), if annotated


@dataclass
class KeypointIndex(AnnotationTally):
    """The items of a file, what was skipped and noted (counted, with ids), and the hard errors."""

    items: list[KeypointInstance] = field(default_factory=list)


def _numbers(values: Any, count: int) -> bool:
    """A list of ``count`` finite numbers (not booleans)?"""
    return (
        isinstance(values, list)
        and len(values) == count
        and all(isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v) for v in values)
    )


def select_category(
    data: dict[str, Any], annotation_file: Path, category_id: int | None, layout: KeypointLayout
) -> dict[str, Any]:
    """The category whose annotations are the items: ``category_id``, or the file's only category. Its
    ``keypoints`` (names, or a count; empty or 0 when unnamed, as in the face JSONs) must agree in
    number with the layout."""
    categories = data["categories"]
    if category_id is None:
        if len(categories) != 1:
            ids = short_list(c["id"] for c in categories)
            raise DatasetFormatError(
                f"{annotation_file}: has {len(categories)} categories (ids {ids}); "
                "pass category_id to say which one is the keypoint category"
            )
        category = categories[0]
    else:
        matching = [c for c in categories if c["id"] == category_id]
        if not matching:
            ids = short_list(c["id"] for c in categories)
            raise DatasetFormatError(f"{annotation_file}: no category id {category_id} (have {ids})")
        category = matching[0]
    names = category.get("keypoints")
    count = len(names) if isinstance(names, list) else names
    what = f"{annotation_file}: category id {category['id']} ({category['name']!r})"
    if not ((isinstance(count, int) and not isinstance(count, bool)) or names is None):
        raise DatasetFormatError(f"{what} has 'keypoints' {names!r:.80}: need a list of names")
    if count and count != layout.num_keypoints:
        raise DatasetFormatError(
            f"{what} names {count} keypoints, the layout has {layout.num_keypoints}: "
            "wrong layout for this file"
        )
    if isinstance(names, list) and names and tuple(names) != layout.names:
        logger.warning(
            "%s: category %r names its keypoints %s, the layout %s (same count: using the layout's order)",
            annotation_file,
            category["name"],
            short_list(names, 5),
            short_list(layout.names, 5),
        )
    return category


def keypoint_problem(
    ann: dict[str, Any], annotation_file: Path, num_keypoints: int, height: int, width: int, evaluation: bool
) -> FormatProblem | None:
    """What is wrong with an annotation's ``bbox``, ``keypoints``, ``head_box`` (and, for evaluation,
    ``num_keypoints``) on an image of ``height`` x ``width`` pixels; None when nothing is."""
    what = f"{annotation_file}: annotation id {ann['id']}"
    if not _numbers(ann.get("bbox"), 4):
        return FormatProblem(
            "bad_bbox", f"{what} has 'bbox' {ann.get('bbox')!r:.80}, need [x, y, width, height]"
        )
    values = ann.get("keypoints")
    if not isinstance(values, list) or len(values) != 3 * num_keypoints:
        length = len(values) if isinstance(values, list) else type(values).__name__
        return FormatProblem(
            "bad_keypoints",
            f"{what} has 'keypoints' of length {length}, need 3 x {num_keypoints} = {3 * num_keypoints} "
            "(x, y, v per keypoint of the layout)",
        )
    if not _numbers(values, len(values)):
        return FormatProblem("bad_keypoints", f"{what} has keypoint values that are not all finite numbers")
    keypoints = np.asarray(values, dtype=np.float64).reshape(-1, 3)
    visibility = keypoints[:, 2]
    bad = sorted(set(visibility[~np.isin(visibility, (0, 1, 2))].tolist()))
    if bad:
        return FormatProblem("bad_visibility", f"{what} has keypoint visibility {bad}, need 0, 1 or 2")
    x, y = keypoints[visibility > 0, 0], keypoints[visibility > 0, 1]
    if (x < -width).any() or (x > 2 * width).any() or (y < -height).any() or (y > 2 * height).any():
        return FormatProblem(
            "keypoint_far_outside",
            f"{what} has a labelled keypoint more than an image size outside the {width}x{height} image",
        )
    head_box = ann.get("head_box")
    if head_box is not None and not (
        _numbers(head_box, 4) and head_box[2] > head_box[0] and head_box[3] > head_box[1]
    ):
        return FormatProblem("bad_head_box", f"{what} has 'head_box' {head_box!r:.80}, need XYXY with area")
    count = ann.get("num_keypoints")
    if evaluation and not (isinstance(count, int) and not isinstance(count, bool)):
        return FormatProblem(
            "eval_missing_num_keypoints", f"{what} needs an integer 'num_keypoints' (COCOeval reads it)"
        )
    return None


def index_keypoints(
    data: dict[str, Any],
    annotation_file: Path,
    images: dict[int, dict[str, Any]],
    category_id: int,
    num_keypoints: int,
    train: bool,
    evaluation: bool,
    clip_boxes: bool = True,
) -> KeypointIndex:
    """Sort every annotation of ``category_id`` into an item, a counted skip or a hard error (module
    docstring). ``clip_boxes``: crop by the box clipped to the image (COCO, as mmpose), or by the box as
    annotated (MPII's person boxes, derived from centre and scale, reach outside the image by design)."""
    index = KeypointIndex()
    for ann in data["annotations"]:
        if ann["category_id"] != category_id:
            continue
        ann_id = ann["id"]
        image = images[ann["image_id"]]
        height, width = image["height"], image["width"]
        problem = keypoint_problem(ann, annotation_file, num_keypoints, height, width, evaluation)
        if problem is not None:
            index.errors.append(problem)
            continue
        if ann.get("iscrowd", 0):
            index.skip("crowd", ann_id)
            continue
        clipped = clipped_box(ann["bbox"], width, height)
        if clipped is None:
            index.skip("degenerate_box", ann_id)
            continue
        x, y, w, h = ann["bbox"]
        box = clipped if clip_boxes else (float(x), float(y), float(x + w), float(y + h))
        keypoints = np.asarray(ann["keypoints"], dtype=np.float64).reshape(num_keypoints, 3)
        # COCO keypoints are pixel indices (pixel i's centre at i; detectron2's load_coco_json adds 0.5
        # too); the batch convention's pixel i covers [i, i + 1). keypoint_results takes it off again.
        keypoints[:, :2] += COCO_PIXEL_INDEX_OFFSET
        labelled = keypoints[:, 2] > 0
        if train and not labelled.any():
            index.skip("no_keypoints", ann_id)
            continue
        if clip_boxes and box != (x, y, x + w, y + h):
            index.note("box_clipped", ann_id)
        kx, ky = keypoints[labelled, 0], keypoints[labelled, 1]
        if (kx < 0).any() or (kx > width).any() or (ky < 0).any() or (ky > height).any():
            index.note("keypoint_outside_image", ann_id)
        if "num_keypoints" in ann and ann["num_keypoints"] != int(labelled.sum()):
            index.note("num_keypoints_mismatch", ann_id)
        head_box = tuple(float(v) for v in ann["head_box"]) if ann.get("head_box") is not None else None
        index.items.append(KeypointInstance(ann_id, ann["image_id"], box, keypoints, head_box))
    return index


class CocoKeypointsDataset(Dataset):
    """The instances of one category of a COCO keypoint JSON, each item one instance's top-down crop.

    Items are ``(crop, target)``: crop float32 (3, h, w) in [0, 1], ``input_size`` = (w, h); the target
    (``datamodules.batch``, N = 1, in the crop's pixel frame): ``image_id`` int64 scalar, ``keypoints``
    float32 (1, K, 3) (x, y and the JSON's visibility; a keypoint that augmentation pushes out of the crop
    keeps its v and gets its out-of-crop coordinates, the heatmap encoder weighting it 0; unlabelled
    keypoints' coordinates, usually (0, 0), are moved like the others and mean nothing), ``boxes`` float32
    (1, 4) (the clipped instance box's moved corners' bounds, not clipped to the crop), ``labels`` int64
    (1,) = 1, ``annotation_ids`` int64 (1,), ``crop_to_image`` float64 (2, 3) (crop pixels -> source
    image pixels), and ``head_boxes`` float32 (1, 4) where the annotation has a ``head_box``.

    The crop is the box (clipped to the image unless ``clip_boxes`` is False) grown to the input aspect
    ratio and by ``padding`` (``top_down_crop``). With
    ``train``, each item draws a scale, a rotation and a flip (``TopDownAugmentation``) and the
    ``photometric`` pipeline's randomness from its seed (``seeded_item``: the exact-resume contract;
    ``dataset[i]`` draws from fresh entropy); without, items are the plain crop. ``photometric`` (applied
    to the crop in training only) may only change pixel values.

    ``skipped`` and ``noted`` count the annotations left out or noted by reason (module docstring).
    """

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        layout: KeypointLayout,
        input_size: tuple[int, int] = (256, 256),
        category_id: int | None = None,
        train: bool = False,
        augmentation: TopDownAugmentation | None = None,
        photometric: A.BaseCompose | None = None,
        padding: float = PADDING,
        for_evaluation: bool = False,
        clip_boxes: bool = True,
    ) -> None:
        if train and for_evaluation:
            raise ValueError(
                "an evaluation dataset is not augmented: train and for_evaluation exclude each other"
            )
        if photometric is not None:
            require_pixel_level(photometric, "photometric")
        width, height = input_size
        if not (width > 0 and height > 0):
            raise ValueError(f"input_size must be positive (width, height), got {input_size}")
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        self.layout = layout
        self.input_size = (int(width), int(height))
        self.train = train
        self.augmentation = augmentation if augmentation is not None else TopDownAugmentation()
        self.photometric = photometric
        self.padding = padding
        data = read_coco_json(self.annotation_file)
        raise_first(structure_problems(data, self.annotation_file))
        if for_evaluation:  # fail now, not at the first validation after hours of training
            raise_first(evaluation_problems(data, self.annotation_file))
        category = select_category(data, self.annotation_file, category_id, layout)
        self.category_id: int = category["id"]
        self.category_name: str = category["name"]
        self.coco = index_coco(data)
        index = index_keypoints(
            data,
            self.annotation_file,
            self.coco.imgs,
            self.category_id,
            layout.num_keypoints,
            train=train,
            evaluation=for_evaluation,
            clip_boxes=clip_boxes,
        )
        raise_first(index.errors)
        self.instances = index.items
        self.skipped = index.skipped
        self.noted = index.noted
        self._flip_permutation = np.array(layout.flip_permutation())
        index.log(logger, self.annotation_file, "left out of the items")

    def __len__(self) -> int:
        return len(self.instances)

    def seeded_item(self, index: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Item ``index`` with every random choice drawn from ``seed`` (the resumable loader's contract);
        evaluation items have no random choice, so they never vary."""
        return self._item(index, np.random.default_rng(seed) if self.train else None)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._item(index, np.random.default_rng() if self.train else None)

    def _geometry(self, rng: np.random.Generator | None) -> tuple[float, float, bool]:
        """(scale, rotation in degrees, flip): the same draws in the same order for every item."""
        if rng is None:
            return 1.0, 0.0, False
        augmentation = self.augmentation
        scale = rng.uniform(*augmentation.scale_range)
        angle = rng.uniform(-augmentation.rotation_degrees, augmentation.rotation_degrees)
        rotate = rng.random() < augmentation.rotation_prob
        flip = rng.random() < augmentation.flip_prob
        return float(scale), float(angle) if rotate else 0.0, bool(flip)

    def _item(
        self, index: int, rng: np.random.Generator | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        instance = self.instances[index]
        info = self.coco.imgs[instance.image_id]
        image = read_image(
            self.image_dir / info["file_name"], instance.image_id, info["height"], info["width"]
        )
        width, height = self.input_size
        center, size = box_center_size(instance.box, width / height, self.padding)
        scale, rotation, flip = self._geometry(rng)
        matrix = top_down_affine(center, size * scale, self.input_size, rotation, flip)
        crop = warp_image(image, matrix, self.input_size)
        if rng is not None and self.photometric is not None:
            self.photometric.set_random_seed(int(rng.integers(2**32)))
            crop = self.photometric(image=crop)["image"]
        keypoints = instance.keypoints.copy()
        keypoints[:, :2] = transform_points(keypoints[:, :2], matrix)
        if flip:  # the point that was left is now right: slot k holds what slot permutation[k] held
            keypoints = keypoints[self._flip_permutation]
        target = {
            "image_id": torch.tensor(instance.image_id, dtype=torch.int64),
            "keypoints": torch.from_numpy(keypoints.astype(np.float32))[None],
            "boxes": torch.from_numpy(transform_boxes(np.array([instance.box]), matrix).astype(np.float32)),
            "labels": torch.ones(1, dtype=torch.int64),
            "annotation_ids": torch.tensor([instance.annotation_id], dtype=torch.int64),
            "crop_to_image": torch.from_numpy(invert_affine(matrix)),
        }
        if instance.head_box is not None:
            head = transform_boxes(np.array([instance.head_box]), matrix)
            target["head_boxes"] = torch.from_numpy(head.astype(np.float32))
        return to_tensor(crop), target
