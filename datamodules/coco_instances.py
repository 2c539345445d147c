"""COCO instances (detection + segmentation) reader, dataset and LightningDataModule.

Reads any COCO instances JSON (https://cocodataset.org/#format-data) with pycocotools: polygons,
uncompressed RLE (``counts`` a list) and compressed RLE (``counts`` a string). Items follow the
project's batch convention (torchvision detection style, see ``datamodules.collate``).

Bad input, decided once here (``zoo check-dataset`` reports the same things for a whole dataset):

- hard errors (``DatasetFormatError`` naming the file, the annotation or image id and the problem):
  unreadable or structurally wrong JSON, missing or mistyped ids, duplicate ids, an annotation for an
  unknown image id or category id, a malformed ``bbox`` or ``segmentation`` (polygon coordinates
  that are not finite numbers or reach more than an image size outside the image, an RLE whose size
  is not the image size or whose run lengths do not add up to it -- pycocotools would crash or read
  out of bounds on these), and, per item, a missing or unreadable image file or one whose size differs from the JSON;
- counted skips (the annotation stays in the JSON, so COCO evaluation still sees it, but is left out
  of the training/eval targets), counted in ``CocoInstancesDataset.skipped`` and logged once:
  ``crowd`` (``iscrowd=1``, handled by COCOeval as ignore regions), ``degenerate_box`` (box width or
  height <= 1 px after clipping to the image), ``invalid_polygon`` (a polygon with fewer than 3 points
  or an odd number of coordinates is dropped from its annotation -- detectron2 raises instead; a
  skip keeps real datasets with a few such polygons usable), ``empty_mask`` (no valid polygon left,
  an all-zero RLE, or a mask that rasterizes to no pixel), ``empty_after_transform`` (augmentation
  emptied the mask).

Checks that need only the JSON run at construction; image files are checked when an item is read.
"""

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from io import StringIO
from numbers import Real
from pathlib import Path
from typing import Any, NamedTuple

import albumentations as A
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import to_tensor

from datamodules.collate import collate_detection
from datamodules.errors import DatasetFormatError
from datamodules.instance_transforms import (
    InstanceSample,
    apply_instance_transforms,
    reseed_worker_transforms,
    train_transforms,
)

logger = logging.getLogger(__name__)

MIN_BOX_SIZE = 1.0
"""Boxes whose width or height (after clipping to the image) is at most this many pixels are skipped."""

MAX_IDS_LOGGED = 10


class FormatProblem(NamedTuple):
    """A hard error found in an annotation file: a short kind (for counting) and a full message."""

    kind: str
    message: str


class CocoInstance(NamedTuple):
    """One annotation that becomes a target instance."""

    annotation_id: int
    label: int
    box: tuple[float, float, float, float]  # XYXY pixels, clipped to the image
    segmentation: list | dict  # polygons with the invalid ones removed, or the RLE as given


@dataclass
class InstanceIndex:
    """Target instances per image id, plus what was skipped (counted, with ids) and the hard errors."""

    instances: dict[int, list[CocoInstance]] = field(default_factory=lambda: defaultdict(list))
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_ids: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    errors: list[FormatProblem] = field(default_factory=list)

    def skip(self, reason: str, annotation_id: int) -> None:
        self.skipped[reason] += 1
        self.skipped_ids[reason].append(annotation_id)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value)


def _short_list(values: Iterable[Any], limit: int = MAX_IDS_LOGGED) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def read_coco_json(annotation_file: str | Path) -> dict[str, Any]:
    """Read a COCO JSON file; a missing file, invalid JSON or missing ``images``/``categories`` lists raise."""
    annotation_file = Path(annotation_file)
    try:
        with annotation_file.open("rb") as f:
            data = json.load(f)
    except FileNotFoundError as e:
        raise DatasetFormatError(f"{annotation_file}: annotation file not found") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{annotation_file}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{annotation_file}: top level must be a JSON object, got {type(data).__name__}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetFormatError(f"{annotation_file}: needs a list '{key}' at the top level")
    if not isinstance(data.setdefault("annotations", []), list):
        raise DatasetFormatError(f"{annotation_file}: 'annotations' must be a list")
    return data


def structure_problems(data: dict[str, Any], annotation_file: str | Path) -> list[FormatProblem]:
    """Id-level checks that must pass before pycocotools can index the file: required keys and types,
    unique ids, and annotations that refer to known images and categories."""
    problems: list[FormatProblem] = []
    image_ids: set[int] = set()
    for position, image in enumerate(data["images"]):
        image_id = image.get("id") if isinstance(image, dict) else None
        what = f"{annotation_file}: image #{position} (id {image_id})"
        if not _is_int(image_id):
            problems.append(FormatProblem("bad_image_entry", f"{what} needs an integer 'id'"))
            continue
        if image_id in image_ids:
            problems.append(FormatProblem("duplicate_id", f"{what}: image id {image_id} appears twice"))
        image_ids.add(image_id)
        if not isinstance(image.get("file_name"), str):
            problems.append(FormatProblem("bad_image_entry", f"{what} needs a string 'file_name'"))
        if not all(_is_int(image.get(k)) and image[k] > 0 for k in ("height", "width")):
            problems.append(FormatProblem("bad_image_entry", f"{what} needs positive integer 'height' and 'width'"))
    category_ids: set[int] = set()
    for position, category in enumerate(data["categories"]):
        category_id = category.get("id") if isinstance(category, dict) else None
        what = f"{annotation_file}: category #{position} (id {category_id})"
        if not _is_int(category_id) or not isinstance(category.get("name"), str):
            problems.append(FormatProblem("bad_category_entry", f"{what} needs an integer 'id' and a string 'name'"))
            continue
        if category_id in category_ids:
            problems.append(FormatProblem("duplicate_id", f"{what}: category id {category_id} appears twice"))
        category_ids.add(category_id)
    annotation_ids: set[int] = set()
    for position, ann in enumerate(data["annotations"]):
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        what = f"{annotation_file}: annotation id {ann_id}"
        if not _is_int(ann_id):
            problems.append(FormatProblem("bad_annotation_entry", f"{what} (#{position}) needs an integer 'id'"))
            continue
        if ann_id in annotation_ids:
            problems.append(FormatProblem("duplicate_id", f"{what} appears twice"))
        annotation_ids.add(ann_id)
        image_id, category_id = ann.get("image_id"), ann.get("category_id")
        if not _is_int(image_id) or image_id not in image_ids:
            problems.append(FormatProblem("unknown_image_id", f"{what} refers to image id {image_id!r}, not in 'images'"))
        if not _is_int(category_id) or category_id not in category_ids:
            problems.append(
                FormatProblem(
                    "unknown_category_id",
                    f"{what} has category id {category_id!r}, not in 'categories' "
                    f"(known: {_short_list(sorted(category_ids))})",
                )
            )
    return problems


def index_coco(data: dict[str, Any]) -> COCO:
    """A pycocotools ``COCO`` index over already-checked JSON data (its progress prints are silenced)."""
    coco = COCO()
    coco.dataset = data
    with redirect_stdout(StringIO()):
        coco.createIndex()
    return coco


def category_labels(coco: COCO, annotation_file: str | Path, contiguous_labels: bool = True) -> dict[int, int]:
    """Category id -> label: 1..C in category-id order, or the category id itself (torchvision's
    91-class COCO convention) when ``contiguous_labels`` is False. Label 0 is background."""
    category_ids = sorted(coco.cats)
    if contiguous_labels:
        return {category_id: label for label, category_id in enumerate(category_ids, start=1)}
    if category_ids and category_ids[0] < 1:
        raise DatasetFormatError(
            f"{annotation_file}: category id {category_ids[0]} cannot be a label with contiguous_labels=False "
            "(label 0 is background); use contiguous_labels=True"
        )
    return {category_id: category_id for category_id in category_ids}


def compressed_rle_counts(counts: str) -> list[int] | None:
    """Run lengths of a compressed COCO RLE string, or None if it is malformed.

    A port of pycocotools' ``rleFrString`` (maskApi.c) that checks as it goes: pycocotools itself reads
    and writes past its buffers on a malformed string, so strings are checked here before it sees them.
    """
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                return None
            chunk = ord(counts[position]) - 48
            if not 0 <= chunk < 64:
                return None
            value |= (chunk & 0x1F) << shift
            more = bool(chunk & 0x20)
            position, shift = position + 1, shift + 5
            if not more and chunk & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            return None
        runs.append(value)
    return runs


def _polygon_problem(polygons: list, height: int, width: int) -> str | None:
    """What is wrong with polygon coordinates (None when fine). pycocotools crashes the process on NaN
    or None and allocates memory in proportion to the polygon's extent, so both are checked first."""
    for polygon in polygons:
        try:
            xy = np.asarray(polygon, dtype=np.float64)
        except (TypeError, ValueError):
            return f"has a polygon whose coordinates are not all numbers: {polygon!r:.80}"
        if xy.ndim != 1 or not np.isfinite(xy).all():
            return f"has a polygon that is not a flat list of finite numbers: {polygon!r:.80}"
        x, y = xy[0::2], xy[1::2]
        outside_x = x.min(initial=0) < -width or x.max(initial=0) > 2 * width
        if outside_x or y.min(initial=0) < -height or y.max(initial=0) > 2 * height:
            return f"has a polygon reaching more than an image size outside the {width}x{height} image"
    return None


def _segmentation_problem(segmentation: Any, height: int, width: int) -> str | None:
    """What is wrong with a segmentation (None when it is fine); polygons with < 3 points are not wrong
    here, they are counted skips."""
    if isinstance(segmentation, list):
        if not all(isinstance(polygon, list) for polygon in segmentation):
            return "has a polygon 'segmentation' whose items are not lists of coordinates"
        return _polygon_problem(segmentation, height, width)
    if not isinstance(segmentation, dict):
        return f"has a 'segmentation' of type {type(segmentation).__name__} (need polygons or RLE)"
    counts, size = segmentation.get("counts"), segmentation.get("size")
    if not isinstance(counts, list | str):
        return "has an RLE 'segmentation' without a list or string 'counts'"
    if size != [height, width]:
        return f"has an RLE of size {size!r} for an image of size [{height}, {width}]"
    runs = compressed_rle_counts(counts) if isinstance(counts, str) else counts
    if runs is None or not all(_is_int(c) and c >= 0 for c in runs) or sum(runs) != height * width:
        kind = "compressed" if isinstance(counts, str) else "uncompressed"
        return f"has {kind} RLE counts that are not non-negative run lengths summing to {height}*{width}"
    return None


def _rle_is_empty(segmentation: dict) -> bool:
    counts = segmentation["counts"]
    runs = compressed_rle_counts(counts) if isinstance(counts, str) else counts
    return sum(runs[1::2]) == 0


def index_instances(coco: COCO, annotation_file: str | Path, label_of_category: dict[int, int]) -> InstanceIndex:
    """Sort every annotation into a target instance, a counted skip or a hard error (see module docstring)."""
    index = InstanceIndex()
    for ann in coco.dataset["annotations"]:
        ann_id = ann["id"]
        what = f"{annotation_file}: annotation id {ann_id}"
        image = coco.imgs[ann["image_id"]]
        height, width = image["height"], image["width"]
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            index.errors.append(FormatProblem("bad_bbox", f"{what} has 'bbox' {bbox!r}, need [x, y, width, height]"))
            continue
        segmentation = ann.get("segmentation")
        problem = _segmentation_problem(segmentation, height, width)
        if problem is not None:
            index.errors.append(FormatProblem("bad_segmentation", f"{what} {problem}"))
            continue
        if ann.get("iscrowd", 0):
            index.skip("crowd", ann_id)
            continue
        x, y, w, h = bbox
        box = (max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h))
        if box[2] - box[0] <= MIN_BOX_SIZE or box[3] - box[1] <= MIN_BOX_SIZE:
            index.skip("degenerate_box", ann_id)
            continue
        if isinstance(segmentation, list):
            valid = [polygon for polygon in segmentation if len(polygon) >= 6 and len(polygon) % 2 == 0]
            for _ in range(len(segmentation) - len(valid)):
                index.skip("invalid_polygon", ann_id)
            if not valid:
                index.skip("empty_mask", ann_id)
                continue
            segmentation = valid
        elif _rle_is_empty(segmentation):
            index.skip("empty_mask", ann_id)
            continue
        label = label_of_category[ann["category_id"]]
        index.instances[ann["image_id"]].append(CocoInstance(ann_id, label, box, segmentation))
    return index


def raise_first(problems: list[FormatProblem]) -> None:
    """Raise the first problem as a ``DatasetFormatError`` (saying how many more there are), if any."""
    if problems:
        more = f" (and {len(problems) - 1} more problems; `zoo check-dataset` lists them)" if len(problems) > 1 else ""
        raise DatasetFormatError(problems[0].message + more)


def read_image(path: Path, image_id: int, height: int, width: int) -> np.ndarray:
    """An RGB (H, W, 3) uint8 image; a missing, unreadable or wrongly sized file raises, naming it."""
    try:
        with Image.open(path) as image:
            rgb = np.array(image.convert("RGB"))
    except FileNotFoundError as e:
        raise DatasetFormatError(f"{path}: image file for image id {image_id} not found") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetFormatError(f"{path}: cannot read image file for image id {image_id} ({e})") from e
    if rgb.shape[:2] != (height, width):
        raise DatasetFormatError(
            f"{path}: image id {image_id} is {rgb.shape[1]}x{rgb.shape[0]} pixels, the annotations say {width}x{height}"
        )
    return rgb


class CocoInstancesDataset(Dataset):
    """Images of a COCO instances JSON with their non-crowd instances as targets.

    Items are ``(image, target)``: image float32 (3, H, W) in [0, 1]; target ``boxes`` float32 (N, 4)
    XYXY pixels (the JSON boxes clipped to the image, moved by the transforms), ``labels`` int64 (N,),
    ``masks`` uint8 (N, H, W), ``image_id`` int64 scalar. Every image is an item, also those without
    annotations (N = 0). ``transforms`` is an albumentations pipeline built with
    ``instance_transforms.instance_bbox_params()`` (e.g. ``train_transforms()``), or None for none.

    ``skipped`` counts the annotations left out of the targets by reason (module docstring); counts
    found while reading items (masks that rasterize to nothing, masks emptied by augmentation) are
    added by the process that reads them, so with DataLoader workers they stay in the workers.
    """

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        transforms: A.Compose | None = None,
        contiguous_labels: bool = True,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        self.transforms = transforms
        data = read_coco_json(self.annotation_file)
        raise_first(structure_problems(data, self.annotation_file))
        self.coco = index_coco(data)
        self.category_id_to_label = category_labels(self.coco, self.annotation_file, contiguous_labels)
        index = index_instances(self.coco, self.annotation_file, self.category_id_to_label)
        raise_first(index.errors)
        self.label_to_category_id = {label: category_id for category_id, label in self.category_id_to_label.items()}
        names = {self.category_id_to_label[c]: category["name"] for c, category in self.coco.cats.items()}
        self.class_names = [names.get(label, "N/A") for label in range(1, max(names, default=0) + 1)]
        self.image_ids = sorted(self.coco.imgs)
        self._instances = index.instances
        self.skipped = index.skipped
        self._reported_empty: set[int] = set()
        self._log_skips(index)

    @property
    def num_classes(self) -> int:
        """Number of object classes C, without background (labels run 1..C)."""
        return len(self.class_names)

    def _log_skips(self, index: InstanceIndex) -> None:
        if not index.skipped:
            return
        reasons = "; ".join(
            f"{reason}: {count} (annotation ids {_short_list(index.skipped_ids[reason])})"
            for reason, count in sorted(index.skipped.items())
        )
        level = logging.INFO if set(index.skipped) == {"crowd"} else logging.WARNING
        logger.log(level, "%s: left out of the targets -- %s", self.annotation_file, reasons)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id = self.image_ids[item]
        info = self.coco.imgs[image_id]
        image = read_image(self.image_dir / info["file_name"], image_id, info["height"], info["width"])
        instances = []
        masks = []
        for instance in self._instances.get(image_id, []):
            mask = self.coco.annToMask({"image_id": image_id, "segmentation": instance.segmentation})
            if mask.any():
                instances.append(instance)
                masks.append(mask)
            elif instance.annotation_id not in self._reported_empty:
                self._reported_empty.add(instance.annotation_id)
                self.skipped["empty_mask"] += 1
                logger.warning("%s: annotation id %d skipped: its mask has no pixel",
                               self.annotation_file, instance.annotation_id)
        sample = InstanceSample(
            image=image,
            boxes=np.array([i.box for i in instances], dtype=np.float32).reshape(-1, 4),
            labels=np.array([i.label for i in instances], dtype=np.int64),
            masks=masks,
        )
        if self.transforms is not None:
            sample, kept = apply_instance_transforms(self.transforms, sample)
            dropped = len(instances) - len(kept)
            if dropped:
                self.skipped["empty_after_transform"] += dropped
                logger.debug("%s: image id %d: augmentation emptied %d instance(s)", self.annotation_file, image_id, dropped)
        height, width = sample.image.shape[:2]
        target = {
            "boxes": torch.from_numpy(sample.boxes),
            "labels": torch.from_numpy(sample.labels),
            "masks": torch.from_numpy(np.stack(sample.masks)) if sample.masks else torch.zeros((0, height, width), dtype=torch.uint8),
            "image_id": torch.tensor(image_id, dtype=torch.int64),
        }
        return to_tensor(sample.image), target


class CocoInstancesDataModule(LightningDataModule):
    """COCO instances train/val(/test) data for instance segmentation (Mask R-CNN and kin).

    Validation, test and prediction items are untransformed (original image coordinates, as COCO
    evaluation needs); training uses ``instance_transforms.train_transforms(flip_prob, color_jitter)``.
    Batches are ``(list of images, list of targets)`` (``collate_detection``).

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
        self.test_annotations = Path(test_annotations) if test_annotations is not None else self.val_annotations
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
            if dataset.label_to_category_id != built[0].label_to_category_id or dataset.class_names != built[0].class_names:
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

    def _loader(self, dataset: CocoInstancesDataset | None, batch_size: int, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() with the matching stage before asking for its dataloader")
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_detection,
            worker_init_fn=reseed_worker_transforms,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, self.val_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, self.val_batch_size, shuffle=False)
