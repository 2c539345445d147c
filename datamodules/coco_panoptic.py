"""COCO panoptic segmentation (also Cityscapes panoptic): the JSON checks and the dataset.

Reads a COCO panoptic JSON (https://cocodataset.org/#format-data: ``images``, ``annotations`` with the
PNG's ``file_name`` and ``segments_info`` [{id, category_id, iscrowd}], ``categories`` with ``isthing``)
and its RGB-encoded segment-id PNGs (``datamodules.coco_panoptic_png``), by default in the JSON's path
without ``.json`` (``annotations/panoptic_val2017.json`` + ``annotations/panoptic_val2017/``). Cityscapes
panoptic as ``cityscapesscripts``' ``createPanopticImgs`` writes it has string image ids and names images
``<id>_gtFine_leftImg8bit.png`` that are ``leftImg8bit/<split>/<city>/<id>_leftImg8bit.png`` (``image_path``
finds them). Items follow ``datamodules.batch``; the DataModule is ``coco_panoptic_datamodule``'s.

Bad input, decided once here:

- hard errors (``DatasetFormatError`` naming the file, the image id, the segment id and the problem):
  malformed JSON (``coco_json_checks.read_coco_json``; image entries need an integer or string ``id``,
  a ``file_name`` and positive ``height``/``width``), duplicate image or category ids, a category
  without ``isthing`` 0 or 1, an annotation for an unknown image id, two annotations or none for an
  image (none is allowed in a predict split without ``annotations``), a segment id that is not an
  integer in 1..256^3-1 or appears twice in an image, an unknown ``category_id``, ``iscrowd`` not 0 or
  1; per item, a missing or unreadable image or PNG, an image or PNG whose size differs from the JSON's
  (so also from each other), PNG ids not in the image's ``segments_info``, and a listed segment with no
  pixel in the PNG;
- counted skips (the segment stays in ``panoptic``, ``semantic`` and ``segments``, so PQ sees it, but
  has no instance target), in ``CocoPanopticDataset.skipped``, logged: ``crowd`` (a crowd thing
  segment; counted at construction), ``degenerate_box`` (its mask's tight box in the item's frame is at
  most ``MIN_BOX_SIZE`` px wide or high; once per segment), ``empty_after_transform`` (augmentation
  moved all its pixels out; per read, as the instance reader). A segment that augmentation removed
  entirely is left out of ``segments`` too: every listed segment has pixels in ``panoptic``.

Checks that need only the JSON run at construction; image and PNG files are checked when an item is read.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.functional import to_tensor

from datamodules.batch import IGNORE_INDEX, Target
from datamodules.coco_instances import MIN_BOX_SIZE, read_image
from datamodules.coco_json_checks import (
    AnnotationTally,
    FormatProblem,
    is_int,
    raise_first,
    read_coco_json,
    short_list,
    structure_problems,
)
from datamodules.coco_panoptic_png import MAX_SEGMENT_ID, read_coco_panoptic_png
from datamodules.errors import DatasetFormatError

logger = logging.getLogger(__name__)

MAX_SEGMENTS = int(np.iinfo(np.uint16).max)  # augmentation moves a uint16 map of segment positions

CITYSCAPES_JSON_SUFFIX, CITYSCAPES_IMAGE_SUFFIX = "_gtFine_leftImg8bit", "_leftImg8bit"


def train_transforms(flip_prob: float = 0.5) -> A.Compose:
    """Horizontal flip with probability ``flip_prob``: UPSNet's only training augmentation (its
    resizing to 800 px, at most 1333, happens inside the model)."""
    return A.Compose([A.HorizontalFlip(p=flip_prob)])


def _is_id(value: Any) -> bool:
    return is_int(value) or isinstance(value, str)  # Cityscapes' image ids are strings


class Segment(NamedTuple):
    id: int
    category_id: int
    iscrowd: int


class PanopticAnnotation(NamedTuple):
    """One image's panoptic annotation: its PNG's file name and its segments in the JSON's order."""

    file_name: str
    segments: tuple[Segment, ...]


def _image_problems(images: list[Any], annotation_file: Path) -> Iterator[FormatProblem]:
    seen: set[int | str] = set()
    for position, image in enumerate(images):
        image_id = image.get("id") if isinstance(image, dict) else None
        what = f"{annotation_file}: image #{position} (id {image_id!r})"
        if not _is_id(image_id):
            yield FormatProblem("bad_image_entry", f"{what} needs an integer or string 'id'")
            continue
        if image_id in seen:
            yield FormatProblem("duplicate_id", f"{what}: image id {image_id!r} appears twice")
        seen.add(image_id)
        if not isinstance(image.get("file_name"), str):
            yield FormatProblem("bad_image_entry", f"{what} needs a string 'file_name'")
        if not all(is_int(image.get(k)) and image[k] > 0 for k in ("height", "width")):
            yield FormatProblem("bad_image_entry", f"{what} needs positive integer 'height' and 'width'")
    if len({type(image_id) for image_id in seen}) > 1:
        yield FormatProblem("bad_image_entry", f"{annotation_file}: image ids mix integers and strings")


def _category_problems(categories: list[Any], annotation_file: Path) -> Iterator[FormatProblem]:
    yield from structure_problems(
        {"images": [], "categories": categories, "annotations": []}, annotation_file
    )
    if len(categories) >= IGNORE_INDEX:
        yield FormatProblem(
            "too_many_categories", f"{annotation_file}: semantic classes must be < {IGNORE_INDEX}"
        )
    for category in categories:
        if isinstance(category, dict) and category.get("isthing") not in (0, 1):
            what = f"{annotation_file}: category id {category.get('id')!r} ({category.get('name')!r})"
            yield FormatProblem("missing_isthing", f"{what} needs 'isthing' 0 or 1 (is it a thing or stuff?)")


def _segment_problems(segments: Any, what: str, category_ids: set[int]) -> Iterator[FormatProblem]:
    if not isinstance(segments, list) or len(segments) > MAX_SEGMENTS:
        yield FormatProblem(
            "bad_annotation_entry", f"{what} needs a list 'segments_info' (<= {MAX_SEGMENTS})"
        )
        return
    seen: set[int] = set()
    for segment in segments:
        segment_id = segment.get("id") if isinstance(segment, dict) else None
        where = f"{what} segment id {segment_id!r}"
        if not (is_int(segment_id) and 0 < segment_id <= MAX_SEGMENT_ID):
            yield FormatProblem("bad_segment", f"{where}: needs an integer 'id' in 1..{MAX_SEGMENT_ID}")
            continue
        if segment_id in seen:
            yield FormatProblem("duplicate_segment_id", f"{where} appears twice in 'segments_info'")
        seen.add(segment_id)
        category_id = segment.get("category_id")
        if not is_int(category_id) or category_id not in category_ids:
            known = short_list(sorted(category_ids))
            yield FormatProblem(
                "unknown_category_id", f"{where} has category id {category_id!r}, not in {known}"
            )
        if segment.get("iscrowd", 0) not in (0, 1):
            yield FormatProblem("bad_segment", f"{where} needs 'iscrowd' 0 or 1")


def panoptic_problems(
    data: dict[str, Any], annotation_file: Path, require_annotations: bool = True
) -> list[FormatProblem]:
    """Every hard error the JSON alone shows (module docstring), each naming the file, image and segment."""
    problems = [*_image_problems(data["images"], annotation_file)]
    problems += _category_problems(data["categories"], annotation_file)
    if problems:
        return problems
    image_ids = {image["id"] for image in data["images"]}
    category_ids = {category["id"] for category in data["categories"]}
    annotated: set[int | str] = set()
    for position, ann in enumerate(data["annotations"]):
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        what = f"{annotation_file}: annotation #{position} (image id {image_id!r})"
        if not _is_id(image_id) or image_id not in image_ids:
            problems.append(
                FormatProblem("unknown_image_id", f"{what} refers to an image id not in 'images'")
            )
            continue
        if image_id in annotated:
            problems.append(FormatProblem("duplicate_id", f"{what}: a second annotation for this image"))
        annotated.add(image_id)
        if not isinstance(ann.get("file_name"), str):
            problems.append(FormatProblem("bad_annotation_entry", f"{what} needs a string 'file_name'"))
        problems += _segment_problems(ann.get("segments_info"), what, category_ids)
    missing = short_list(image_id for image_id in sorted(image_ids) if image_id not in annotated)
    if missing and require_annotations:
        message = f"{annotation_file}: image ids {missing} have no panoptic annotation"
        problems.append(FormatProblem("missing_annotation", message))
    return problems


def image_path(image_dir: Path, file_name: str, image_id: int | str) -> Path:
    """The image file of an ``images`` entry: ``image_dir / file_name`` (COCO) or, when that is missing,
    the Cityscapes image ``createPanopticImgs`` names ``<id>_gtFine_leftImg8bit.png``: the same name or
    ``<id>_leftImg8bit.png``, in the folder or its city sub-folder (``leftImg8bit/<split>/<city>/``)."""
    file = Path(file_name)
    names = [file.name]
    if CITYSCAPES_JSON_SUFFIX in file.name:
        names.append(file.name.replace(CITYSCAPES_JSON_SUFFIX, CITYSCAPES_IMAGE_SUFFIX))
    folders = [image_dir / file.parent]
    if "_" in file.name:
        folders.append(image_dir / file.parent / file.name.split("_")[0])
    candidates = [folder / name for folder in folders for name in names]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        also = f" (nor {short_list(candidates[1:])})" if len(candidates) > 1 else ""
        raise DatasetFormatError(
            f"{candidates[0]}: image file for image id {image_id!r} not found{also}", "missing_image"
        )
    return found


def read_segment_ids(path: Path, image_id: int | str, height: int, width: int) -> np.ndarray:
    """The (H, W) int64 segment ids of a panoptic PNG; a missing, unreadable or wrongly sized one raises."""
    try:
        ids = read_coco_panoptic_png(path).numpy()
    except (OSError, SyntaxError, ValueError) as e:
        missing = isinstance(e, FileNotFoundError)
        problem, kind = ("not found", "missing_png") if missing else (f"unreadable ({e})", "unreadable_png")
        raise DatasetFormatError(f"{path}: panoptic PNG of image id {image_id!r} {problem}", kind) from e
    if ids.shape != (height, width):
        raise DatasetFormatError(
            f"{path}: the panoptic PNG of image id {image_id!r} is {ids.shape[1]}x{ids.shape[0]} pixels, "
            f"the image and the JSON say {width}x{height}",
            "png_size_mismatch",
        )
    return ids


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight XYXY boxes (N, 4) float32 of non-empty (N, H, W) masks, pixel edges (columns 3..7: x 3 to 8)."""
    height, width = masks.shape[1:]
    columns, rows = masks.any(axis=1), masks.any(axis=2)
    x1, x2 = columns.argmax(axis=1), width - columns[:, ::-1].argmax(axis=1)
    y1, y2 = rows.argmax(axis=1), height - rows[:, ::-1].argmax(axis=1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32).reshape(-1, 4)


class CocoPanopticDataset(Dataset):
    """Images of a COCO (or Cityscapes) panoptic JSON with their panoptic, semantic and instance targets.

    Items are ``(image, target)``: image float32 (3, H, W) in [0, 1]; target keys (``datamodules.batch``)
    ``image_id`` (string ids, as Cityscapes': the item index into ``image_ids``), ``panoptic``,
    ``segments`` (those with pixels in the item, in the JSON's order), ``semantic``, and the non-crowd
    thing segments as ``boxes`` (their masks' tight boxes), ``labels``, ``masks`` and ``annotation_ids``
    (their segment ids). ``transforms`` (albumentations; None: none; pipelines built with
    ``instance_bbox_params()`` work too) moves the image and the map of segments together (the map as a
    mask, nearest neighbour) and every target is derived from the moved map: all stay in sync. A predict
    split may be a JSON without ``annotations`` (``require_annotations=False``): targets are ``image_id``.
    ``skipped`` counts thing segments left out of the instances (module docstring); counts found while
    reading items stay in the process that reads them (a DataLoader worker).
    """

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        panoptic_dir: str | Path | None = None,
        transforms: A.Compose | None = None,
        require_annotations: bool = True,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        self.panoptic_dir = Path(panoptic_dir) if panoptic_dir else self.annotation_file.with_suffix("")
        self.transforms = transforms
        data = read_coco_json(self.annotation_file, require_annotations)
        raise_first(panoptic_problems(data, self.annotation_file, require_annotations))
        ordered = sorted(data["categories"], key=lambda c: c["id"])
        things, stuff = [c for c in ordered if c["isthing"]], [c for c in ordered if not c["isthing"]]
        self.class_names = [c["name"] for c in things]
        self.label_to_category_id = {label: c["id"] for label, c in enumerate(things, start=1)}
        self.stuff_names = [c["name"] for c in stuff]
        self.stuff_category_ids = [c["id"] for c in stuff]
        self._label = {c["id"]: label for label, c in enumerate(things, start=1)}
        self._semantic = {c["id"]: semantic for semantic, c in enumerate(stuff + things)}
        self._images = {image["id"]: image for image in data["images"]}
        self.image_ids = sorted(self._images)
        tally = AnnotationTally()
        self.num_targets = 0  # non-crowd thing segments: the instance targets
        self._annotations: dict[int | str, PanopticAnnotation] = {}
        for ann in data["annotations"]:
            segments = tuple(
                Segment(s["id"], s["category_id"], int(s.get("iscrowd", 0))) for s in ann["segments_info"]
            )
            for segment in segments:
                if segment.iscrowd and segment.category_id in self._label:
                    tally.skip("crowd", segment.id)
                elif segment.category_id in self._label:
                    self.num_targets += 1
            self._annotations[ann["image_id"]] = PanopticAnnotation(ann["file_name"], segments)
        self.skipped: Counter[str] = tally.skipped
        self._reported: set[tuple[int | str, int]] = set()  # (image id, segment id) of degenerate boxes
        tally.log(logger, self.annotation_file, "left out of the instance targets (segment ids)")

    def __len__(self) -> int:
        return len(self.image_ids)

    def listed_segments(self, image_id: int | str) -> tuple[Segment, ...]:
        """The segments the JSON lists for ``image_id``, in its order (none without an annotation)."""
        annotation = self._annotations.get(image_id)
        return annotation.segments if annotation is not None else ()

    def seeded_item(self, item: int, seed: int) -> tuple[torch.Tensor, Target]:
        """Item ``item`` with its augmentation drawn from ``seed`` (the resumable loader's contract)."""
        if self.transforms is not None:
            self.transforms.set_random_seed(seed)
        return self[item]

    def __getitem__(self, item: int) -> tuple[torch.Tensor, Target]:
        image_id = self.image_ids[item]
        info = self._images[image_id]
        height, width = info["height"], info["width"]
        image = read_image(image_path(self.image_dir, info["file_name"], image_id), image_id, height, width)
        annotation = self._annotations.get(image_id)
        target: Target = {"image_id": torch.tensor(image_id if is_int(image_id) else item)}
        if annotation is None:  # a predict split
            return to_tensor(self._augment(image, None)[0]), target
        positions = self._segment_positions(annotation, image_id, height, width)
        image, positions = self._augment(image, positions)
        return to_tensor(image), {**target, **self._targets(annotation, image_id, positions)}

    def _segment_positions(
        self, annotation: PanopticAnnotation, image_id: int | str, height: int, width: int
    ) -> np.ndarray:
        """The PNG as a (H, W) uint16 map of each pixel's segment position in ``annotation.segments``
        (1..M; 0 void), after checking that its ids and the JSON's segments agree."""
        png = self.panoptic_dir / annotation.file_name
        ids = read_segment_ids(png, image_id, height, width)
        values, inverse = np.unique(ids.ravel(), return_inverse=True)
        position = {segment.id: k for k, segment in enumerate(annotation.segments, start=1)}
        unknown = [v for v in values.tolist() if v and v not in position]
        if unknown:
            raise DatasetFormatError(
                f"{png}: image id {image_id!r}: segment ids {short_list(unknown)} are in the PNG but not in "
                f"the image's 'segments_info' of {self.annotation_file}",
                "unknown_segment_id",
            )
        present = set(values.tolist())
        empty = [s.id for s in annotation.segments if s.id not in present]
        if empty:
            raise DatasetFormatError(
                f"{png}: image id {image_id!r}: segment ids {short_list(empty)} (in {self.annotation_file}) "
                "have no pixel in the PNG",
                "empty_segment",
            )
        table = np.array([position.get(v, 0) for v in values.tolist()], dtype=np.uint16)
        return table[inverse].reshape(height, width)

    def _augment(
        self, image: np.ndarray, positions: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if self.transforms is None:
            return image, positions
        extra: dict[str, np.ndarray] = {}
        if "bboxes" in self.transforms.processors:  # a pipeline built with instance_bbox_params()
            fields = self.transforms.processors["bboxes"].params.label_fields or []
            extra = {"bboxes": np.zeros((0, 4), np.float32), **{f: np.zeros(0, np.int64) for f in fields}}
        if positions is None:
            return self.transforms(image=image, **extra)["image"], None
        out = self.transforms(image=image, mask=positions, **extra)
        return out["image"], np.asarray(out["mask"]).astype(np.intp)

    def _targets(
        self, annotation: PanopticAnnotation, image_id: int | str, positions: np.ndarray
    ) -> dict[str, torch.Tensor]:
        """Every target key but ``image_id``, from the (possibly augmented) map of segment positions."""
        segments = annotation.segments
        height, width = positions.shape
        pixels = np.bincount(positions.ravel(), minlength=len(segments) + 1)
        ids = np.array([0, *(s.id for s in segments)], dtype=np.int64)
        semantic = np.array(
            [IGNORE_INDEX, *(self._semantic[s.category_id] for s in segments)], dtype=np.int64
        )
        listed = [(k, s) for k, s in enumerate(segments, start=1) if pixels[k]]
        things = [(k, s) for k, s in listed if s.category_id in self._label and not s.iscrowd]
        emptied = sum(1 for s in segments if s.category_id in self._label and not s.iscrowd) - len(things)
        if emptied:
            self.skipped["empty_after_transform"] += emptied
        masks = positions[None] == np.array([k for k, _ in things], dtype=np.intp).reshape(-1, 1, 1)
        boxes = mask_boxes(masks)
        keep = (boxes[:, 2:] - boxes[:, :2] > MIN_BOX_SIZE).all(axis=1)
        for (_, segment), box, good in zip(things, boxes, keep, strict=True):
            if not good and (image_id, segment.id) not in self._reported:
                self._reported.add((image_id, segment.id))
                self.skipped["degenerate_box"] += 1
                logger.warning(
                    "%s: image id %r segment id %d left out of the instance targets: its mask's box %s is "
                    "at most %g px wide or high",
                    *(self.annotation_file, image_id, segment.id, box.tolist(), MIN_BOX_SIZE),
                )
        kept = [segment for (_, segment), k in zip(things, keep, strict=True) if k]
        return {
            "panoptic": torch.from_numpy(ids[positions]),
            "semantic": torch.from_numpy(semantic[positions]),
            "segments": torch.tensor([list(s) for _, s in listed], dtype=torch.int64).reshape(-1, 3),
            "boxes": torch.from_numpy(boxes[keep]),
            "labels": torch.tensor([self._label[s.category_id] for s in kept], dtype=torch.int64),
            "masks": torch.from_numpy(masks[keep].astype(np.uint8)).reshape(-1, height, width),
            "annotation_ids": torch.tensor([s.id for s in kept], dtype=torch.int64),
        }
