"""COCO instances (detection + segmentation): the per-image target index and the dataset.

Reads any COCO instances JSON (https://cocodataset.org/#format-data) with pycocotools: polygons,
uncompressed RLE (``counts`` a list) and compressed RLE (``counts`` a string). Items follow the
project's batch convention (torchvision detection style, see ``datamodules.collate``); the
LightningDataModule is ``datamodules.coco_instances_datamodule.CocoInstancesDataModule``.

Bad input, decided once here (``zoo check-dataset`` reports the same things for a whole dataset):

- hard errors (``DatasetFormatError`` naming the file, the annotation or image id and the problem;
  the JSON checks are in ``datamodules.coco_json_checks``):
  unreadable or structurally wrong JSON, missing or mistyped ids, duplicate ids, an annotation for an
  unknown image id or category id, a malformed ``bbox`` or ``segmentation`` (polygon coordinates
  that are not finite numbers or reach more than an image size outside the image, an RLE whose size
  is not the image size or whose run lengths do not add up to it -- pycocotools would crash or read
  out of bounds on these), and, per item, a missing or unreadable (also truncated or corrupt) image
  file, one whose size differs from the JSON, or a 32-bit integer or float image (no known value
  range; 16-bit images are read, keeping their top 8 bits);
- counted skips (the annotation stays in the JSON, so COCO evaluation still sees it, but is left out
  of the training/eval targets), counted in ``CocoInstancesDataset.skipped`` and logged once:
  ``crowd`` (``iscrowd=1``, handled by COCOeval as ignore regions), ``degenerate_box`` (box width or
  height <= 1 px after clipping to the image), ``no_valid_polygon`` (every polygon has fewer than 3
  points or an odd number of coordinates -- detectron2 raises instead; a skip keeps real datasets with
  a few such polygons usable), ``empty_mask`` (an all-zero RLE, or a mask that rasterizes to no
  pixel), ``empty_after_transform`` (augmentation emptied the mask). Each left-out annotation counts
  under exactly one reason, the first that applies in this order;
- counted notes (the annotation is kept, repaired or as it is), in ``CocoInstancesDataset.noted``:
  ``invalid_polygon_dropped`` (some of its polygons were invalid and dropped), ``box_clipped`` (its
  box reached outside the image and was clipped), ``box_mask_mismatch`` (its box and its mask's tight
  box overlap with IoU < 0.5; kept as given, since COCO's own boxes are not always tight, but worth a
  look: found when its mask is rasterized, by ``zoo check-dataset`` or when the item is read).
Skips and notes are logged in one WARNING line per file, crowd regions included.

Checks that need only the JSON run at construction; image files are checked when an item is read.
"""

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any, NamedTuple

import albumentations as A
import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision.transforms.functional import to_tensor

from datamodules.coco_json_checks import (
    AnnotationTally,
    annotation_problem,
    compressed_rle_counts,
    evaluation_problems,
    raise_first,
    read_coco_json,
    structure_problems,
)
from datamodules.errors import DatasetFormatError
from datamodules.instance_transforms import InstanceSample, apply_instance_transforms

logger = logging.getLogger(__name__)

MIN_BOX_SIZE = 1.0
"""Boxes whose width or height (after clipping to the image) is at most this many pixels are skipped."""


def clipped_box(bbox: list[float], width: int, height: int) -> tuple[float, float, float, float] | None:
    """A COCO ``bbox`` (XYWH) as XYXY clipped to the image; None when it is degenerate there (width or
    height at most ``MIN_BOX_SIZE``), which the readers skip as ``degenerate_box``."""
    x, y, w, h = bbox
    box = (max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h))
    if box[2] - box[0] <= MIN_BOX_SIZE or box[3] - box[1] <= MIN_BOX_SIZE:
        return None
    return box


MIN_BOX_MASK_IOU = 0.5
"""A box whose IoU with its mask's tight box is lower than this is noted as ``box_mask_mismatch``."""


def box_mask_iou(box: Sequence[float], mask_box: Sequence[float]) -> float:
    """IoU of two XYXY boxes: an annotation's box and the tight box of its mask."""
    width = min(box[2], mask_box[2]) - max(box[0], mask_box[0])
    height = min(box[3], mask_box[3]) - max(box[1], mask_box[1])
    intersection = max(width, 0.0) * max(height, 0.0)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (mask_box[2] - mask_box[0]) * (mask_box[3] - mask_box[1])
    return intersection / (union - intersection) if union > intersection else 0.0


class CocoInstance(NamedTuple):
    """One annotation that becomes a target instance."""

    annotation_id: int
    label: int
    box: tuple[float, float, float, float]  # XYXY pixels, clipped to the image
    segmentation: list | dict  # polygons with the invalid ones removed, or the RLE as given


@dataclass
class InstanceIndex(AnnotationTally):
    """Target instances per image id, plus what was skipped (counted, with ids) and the hard errors."""

    instances: dict[int, list[CocoInstance]] = field(default_factory=lambda: defaultdict(list))


def index_coco(data: dict[str, Any]) -> COCO:
    """A pycocotools ``COCO`` index over already-checked JSON data (its progress prints are silenced)."""
    coco = COCO()
    coco.dataset = data
    with redirect_stdout(StringIO()):
        coco.createIndex()
    return coco


def category_labels(
    coco: COCO, annotation_file: str | Path, contiguous_labels: bool = True
) -> dict[int, int]:
    """Category id -> label: 1..C in category-id order, or the category id itself (torchvision's
    91-class COCO convention) when ``contiguous_labels`` is False. Label 0 is background."""
    category_ids = sorted(coco.cats)
    if contiguous_labels:
        return {category_id: label for label, category_id in enumerate(category_ids, start=1)}
    if category_ids and category_ids[0] < 1:
        raise DatasetFormatError(
            f"{annotation_file}: category id {category_ids[0]} cannot be a label with "
            "contiguous_labels=False "
            "(label 0 is background); use contiguous_labels=True"
        )
    return {category_id: category_id for category_id in category_ids}


def _rle_is_empty(segmentation: dict) -> bool:
    counts = segmentation["counts"]
    runs = compressed_rle_counts(counts) if isinstance(counts, str) else counts
    return sum(runs[1::2]) == 0


def index_instances(
    coco: COCO, annotation_file: str | Path, label_of_category: dict[int, int]
) -> InstanceIndex:
    """Sort every annotation into a target instance, a counted skip or a hard error (see module docstring)."""
    index = InstanceIndex()
    for ann in coco.dataset["annotations"]:
        ann_id = ann["id"]
        image = coco.imgs[ann["image_id"]]
        height, width = image["height"], image["width"]
        problem = annotation_problem(ann, annotation_file, height, width)
        if problem is not None:
            index.errors.append(problem)
            continue
        segmentation = ann["segmentation"]
        if ann.get("iscrowd", 0):
            index.skip("crowd", ann_id)
            continue
        x, y, w, h = ann["bbox"]
        box = clipped_box(ann["bbox"], width, height)
        if box is None:
            index.skip("degenerate_box", ann_id)
            continue
        if isinstance(segmentation, list):
            valid = [polygon for polygon in segmentation if len(polygon) >= 6 and len(polygon) % 2 == 0]
            if not valid:
                index.skip("no_valid_polygon", ann_id)
                continue
            if len(valid) < len(segmentation):
                index.note("invalid_polygon_dropped", ann_id)
            segmentation = valid
        elif _rle_is_empty(segmentation):
            index.skip("empty_mask", ann_id)
            continue
        if box != (x, y, x + w, y + h):
            index.note("box_clipped", ann_id)
        label = label_of_category[ann["category_id"]]
        index.instances[ann["image_id"]].append(CocoInstance(ann_id, label, box, segmentation))
    return index


SIXTEEN_BIT_GRAY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
"""PIL modes of 16-bit grayscale images; PNGs open as "I;16" (or as "I" in older Pillow)."""


def _rgb_array(image: Image.Image, path: Path, image_id: int) -> np.ndarray:
    """The decoded image as RGB uint8. PIL's ``convert("RGB")`` clips 16-bit grayscale to 255 instead
    of scaling it (a silently constant image), so those keep their top 8 bits (``value >> 8``), as PIL
    already does for 16-bit RGB(A) PNGs; 32-bit integer or float images have no known range: refused."""
    if image.mode in SIXTEEN_BIT_GRAY_MODES or (image.mode == "I" and image.format == "PNG"):
        gray = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("I", "F"):
        raise DatasetFormatError(
            f"{path}: image id {image_id} is a 32-bit {'integer' if image.mode == 'I' else 'float'} "
            "image with no known value range; convert it to 8 or 16 bits per channel",
            "unsupported_image",
        )
    return np.array(image.convert("RGB"))


def read_image(path: Path, image_id: int, height: int, width: int, decode: bool = True) -> np.ndarray | None:
    """An RGB (H, W, 3) uint8 image (None with ``decode=False``: only the header is read, to check the
    file, so a truncated or corrupt file is found only with ``decode=True``); a missing, unreadable or
    wrongly sized file raises, naming it."""
    try:
        with Image.open(path) as image:
            file_width, file_height = image.size
            rgb = _rgb_array(image, path, image_id) if decode else None
    except DatasetFormatError:
        raise
    except FileNotFoundError as e:
        raise DatasetFormatError(
            f"{path}: image file for image id {image_id} not found", "missing_image"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetFormatError(
            f"{path}: cannot read image file for image id {image_id} ({e})", "unreadable_image"
        ) from e
    if (file_height, file_width) != (height, width):
        raise DatasetFormatError(
            f"{path}: image id {image_id} is {file_width}x{file_height} pixels, "
            f"the annotations say {width}x{height}",
            "image_size_mismatch",
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
        require_annotations: bool = True,
        for_evaluation: bool = False,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        self.transforms = transforms
        data = read_coco_json(self.annotation_file, require_annotations)
        raise_first(structure_problems(data, self.annotation_file))
        if for_evaluation:  # fail now, not at the first validation after hours of training
            raise_first(evaluation_problems(data, self.annotation_file))
        self.coco = index_coco(data)
        self.category_id_to_label = category_labels(self.coco, self.annotation_file, contiguous_labels)
        index = index_instances(self.coco, self.annotation_file, self.category_id_to_label)
        raise_first(index.errors)
        self.label_to_category_id = {
            label: category_id for category_id, label in self.category_id_to_label.items()
        }
        names = {self.category_id_to_label[c]: category["name"] for c, category in self.coco.cats.items()}
        self.class_names = [names.get(label, "N/A") for label in range(1, max(names, default=0) + 1)]
        self.image_ids = sorted(self.coco.imgs)
        self._instances = index.instances
        self.skipped = index.skipped
        self.noted = index.noted
        self._reported: set[tuple[str, int]] = set()  # (reason, annotation id) found while reading items
        index.log(logger, self.annotation_file, "left out of the targets")

    @property
    def num_classes(self) -> int:
        """Number of object classes C, without background (labels run 1..C)."""
        return len(self.class_names)

    @property
    def num_targets(self) -> int:
        """Annotations that became target instances (before rasterizing their masks)."""
        return sum(len(instances) for instances in self._instances.values())

    def _report_once(self, counter: Counter[str], reason: str, annotation_id: int, message: str) -> None:
        if (reason, annotation_id) not in self._reported:
            self._reported.add((reason, annotation_id))
            counter[reason] += 1
            logger.warning("%s: annotation id %d %s", self.annotation_file, annotation_id, message)

    def __len__(self) -> int:
        return len(self.image_ids)

    def seeded_item(self, item: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Item ``item`` with its augmentation drawn from ``seed`` (the resumable loader's contract)."""
        if self.transforms is not None:
            self.transforms.set_random_seed(seed)
        return self[item]

    def __getitem__(self, item: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id, _, sample = self.read_sample(item)
        return to_tensor(sample.image), self.instance_target(image_id, sample)

    def read_sample(self, item: int) -> tuple[int, list[CocoInstance], InstanceSample]:
        """Item ``item``'s image id, its instances that became targets (in the sample's order) and the
        (transformed) sample: what a dataset with further per-instance annotations builds on."""
        image_id = self.image_ids[item]
        info = self.coco.imgs[image_id]
        image = read_image(self.image_dir / info["file_name"], image_id, info["height"], info["width"])
        instances = []
        masks = []
        for instance in self._instances.get(image_id, []):
            mask = self.coco.annToMask({"image_id": image_id, "segmentation": instance.segmentation})
            if not mask.any():
                self._report_once(
                    self.skipped, "empty_mask", instance.annotation_id, "skipped: its mask has no pixel"
                )
                continue
            rows, columns = np.nonzero(mask)
            mask_box = (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1)
            if box_mask_iou(instance.box, mask_box) < MIN_BOX_MASK_IOU:
                box, tight = list(map(float, instance.box)), list(map(int, mask_box))
                message = f"kept: its box {box} disagrees with its mask's {tight}"
                self._report_once(self.noted, "box_mask_mismatch", instance.annotation_id, message)
            instances.append(instance)
            masks.append(mask)
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
                logger.debug(
                    "%s: image id %d: augmentation emptied %d instance(s)",
                    self.annotation_file,
                    image_id,
                    dropped,
                )
            instances = [instances[k] for k in kept]
        return image_id, instances, sample

    @staticmethod
    def instance_target(image_id: int, sample: InstanceSample) -> dict[str, torch.Tensor]:
        """The batch convention's ``boxes``, ``labels``, ``masks`` and ``image_id`` of a sample."""
        height, width = sample.image.shape[:2]
        return {
            "boxes": torch.from_numpy(sample.boxes),
            "labels": torch.from_numpy(sample.labels),
            "masks": torch.from_numpy(np.stack(sample.masks))
            if sample.masks
            else torch.zeros((0, height, width), dtype=torch.uint8),
            "image_id": torch.tensor(image_id, dtype=torch.int64),
        }
