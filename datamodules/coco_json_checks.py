"""Hard-error checks of a COCO instances JSON, shared by ``CocoInstancesDataset`` and ``zoo check-dataset``.

Every problem names the file and the image, category or annotation id. Which problems are hard errors
and which are counted skips is decided in ``datamodules.coco_instances`` (see its module docstring).
Polygons and RLEs are checked here before pycocotools sees them: it crashes, reads out of bounds or
allocates without limit on malformed ones.
"""

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from datamodules.errors import DatasetFormatError

MAX_IDS_LOGGED = 10


class FormatProblem(NamedTuple):
    """A hard error found in an annotation file: a short kind (for counting) and a full message."""

    kind: str
    message: str


def is_int(value: Any) -> bool:
    """A JSON integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite JSON number (not a bool)."""
    return isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value)


def short_list(values: Iterable[Any], limit: int = MAX_IDS_LOGGED) -> str:
    """The first ``limit`` values, comma-separated, saying how many there are when some are left off."""
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


@dataclass
class AnnotationTally:
    """What a reader left out of its items (``skip``) or kept with a note (``note``), counted by reason
    with the annotation ids, and the hard errors it found."""

    skipped: Counter[str] = field(default_factory=Counter)
    skipped_ids: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    noted: Counter[str] = field(default_factory=Counter)
    noted_ids: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    errors: list[FormatProblem] = field(default_factory=list)

    def skip(self, reason: str, annotation_id: int) -> None:
        """An annotation left out, counted under exactly one reason."""
        self.skipped[reason] += 1
        self.skipped_ids[reason].append(annotation_id)

    def note(self, reason: str, annotation_id: int) -> None:
        """An annotation kept, possibly repaired (its box clipped), counted once per reason."""
        self.noted[reason] += 1
        self.noted_ids[reason].append(annotation_id)

    def log(self, log: logging.Logger, annotation_file: str | Path, left_out: str) -> None:
        """One WARNING line per file: the annotations ``left_out`` (e.g. "left out of the targets") and
        those kept with a note, counted by reason with their first ids."""
        parts = []
        for what, counts, ids in (
            (left_out, self.skipped, self.skipped_ids),
            ("kept with a note", self.noted, self.noted_ids),
        ):
            if counts:
                reasons = "; ".join(
                    f"{reason}: {count} (annotation ids {short_list(ids[reason])})"
                    for reason, count in sorted(counts.items())
                )
                parts.append(f"{what} -- {reasons}")
        if parts:
            log.warning("%s: %s", annotation_file, " | ".join(parts))


def read_coco_json(annotation_file: str | Path, require_annotations: bool = True) -> dict[str, Any]:
    """Read a COCO JSON file; a missing file, invalid JSON or missing ``images``/``categories`` lists
    raise."""
    return read_annotation_json(
        annotation_file,
        ("images", "categories"),
        require_annotations,
        "an image-info file, like COCO's test-dev one,",
    )


def read_annotation_json(
    annotation_file: str | Path,
    list_keys: tuple[str, ...],
    require_annotations: bool,
    without_annotations: str,
) -> dict[str, Any]:
    """A JSON object whose ``list_keys`` are lists and whose ``categories`` is not empty; a null or missing
    ``annotations`` is an empty list when not ``require_annotations`` (``without_annotations`` names
    the files that lack it, for the error), any other ``annotations`` must be a list."""
    annotation_file = Path(annotation_file)
    try:
        with annotation_file.open("rb") as f:
            data = json.load(f)
    except FileNotFoundError as e:
        raise DatasetFormatError(f"{annotation_file}: annotation file not found") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{annotation_file}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise DatasetFormatError(
            f"{annotation_file}: top level must be a JSON object, got {type(data).__name__}"
        )
    for key in list_keys:
        if not isinstance(data.get(key), list):
            raise DatasetFormatError(f"{annotation_file}: needs a list '{key}' at the top level")
    if data.get("annotations") is None:
        if require_annotations:  # a typo'd or truncated file must not read as "no objects anywhere"
            raise DatasetFormatError(
                f"{annotation_file}: has no 'annotations' list ({without_annotations} can only be a "
                "predict split)",
                "no_annotations_key",
            )
        data["annotations"] = []
    if not isinstance(data["annotations"], list):
        raise DatasetFormatError(f"{annotation_file}: 'annotations' must be a list")
    if not data["categories"]:
        raise DatasetFormatError(
            f"{annotation_file}: 'categories' is empty: no class to learn", "no_categories"
        )
    return data


def evaluation_problems(data: dict[str, Any], annotation_file: str | Path) -> list[FormatProblem]:
    """What makes pycocotools' COCOeval fail on a ground-truth file, checked before a run trains for
    hours and then crashes at its first validation: every annotation needs a number ``area`` and an
    ``iscrowd`` of 0 or 1 (COCOeval reads both: KeyError), and every polygon at least 3 points
    (``frPyObjects`` raises on shorter ones)."""
    problems: list[FormatProblem] = []
    for ann in data["annotations"]:
        what = f"{annotation_file}: annotation id {ann.get('id')}"
        if not is_number(ann.get("area")):
            problems.append(
                FormatProblem("eval_missing_area", f"{what} has no number 'area' (COCOeval needs it)")
            )
        if ann.get("iscrowd") not in (0, 1):
            problems.append(
                FormatProblem("eval_missing_iscrowd", f"{what} needs 'iscrowd' 0 or 1 (COCOeval reads it)")
            )
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, list) and any(
            not isinstance(polygon, list) or len(polygon) < 6 for polygon in segmentation
        ):
            problems.append(
                FormatProblem(
                    "eval_short_polygon", f"{what} has a polygon of fewer than 3 points (COCOeval crashes)"
                )
            )
    return problems


def structure_problems(data: dict[str, Any], annotation_file: str | Path) -> list[FormatProblem]:
    """Id-level checks that must pass before pycocotools can index the file: required keys and types,
    unique ids, and annotations that refer to known images and categories."""
    problems: list[FormatProblem] = []
    image_ids: set[int] = set()
    for position, image in enumerate(data["images"]):
        image_id = image.get("id") if isinstance(image, dict) else None
        what = f"{annotation_file}: image #{position} (id {image_id})"
        if not is_int(image_id):
            problems.append(FormatProblem("bad_image_entry", f"{what} needs an integer 'id'"))
            continue
        if image_id in image_ids:
            problems.append(FormatProblem("duplicate_id", f"{what}: image id {image_id} appears twice"))
        image_ids.add(image_id)
        if not isinstance(image.get("file_name"), str):
            problems.append(FormatProblem("bad_image_entry", f"{what} needs a string 'file_name'"))
        if not all(is_int(image.get(k)) and image[k] > 0 for k in ("height", "width")):
            problems.append(
                FormatProblem("bad_image_entry", f"{what} needs positive integer 'height' and 'width'")
            )
    category_ids: set[int] = set()
    for position, category in enumerate(data["categories"]):
        category_id = category.get("id") if isinstance(category, dict) else None
        what = f"{annotation_file}: category #{position} (id {category_id})"
        if not is_int(category_id) or not isinstance(category.get("name"), str):
            problems.append(
                FormatProblem("bad_category_entry", f"{what} needs an integer 'id' and a string 'name'")
            )
            continue
        if category_id in category_ids:
            problems.append(FormatProblem("duplicate_id", f"{what}: category id {category_id} appears twice"))
        category_ids.add(category_id)
    annotation_ids: set[int] = set()
    for position, ann in enumerate(data["annotations"]):
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        what = f"{annotation_file}: annotation id {ann_id}"
        if not is_int(ann_id):
            problems.append(
                FormatProblem("bad_annotation_entry", f"{what} (#{position}) needs an integer 'id'")
            )
            continue
        if ann_id in annotation_ids:
            problems.append(FormatProblem("duplicate_id", f"{what} appears twice"))
        annotation_ids.add(ann_id)
        image_id, category_id = ann.get("image_id"), ann.get("category_id")
        if not is_int(image_id) or image_id not in image_ids:
            problems.append(
                FormatProblem("unknown_image_id", f"{what} refers to image id {image_id!r}, not in 'images'")
            )
        if not is_int(category_id) or category_id not in category_ids:
            problems.append(
                FormatProblem(
                    "unknown_category_id",
                    f"{what} has category id {category_id!r}, not in 'categories' "
                    f"(known: {short_list(sorted(category_ids))})",
                )
            )
    return problems


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


def segmentation_problem(segmentation: Any, height: int, width: int) -> str | None:
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
    if runs is None or not all(is_int(c) and c >= 0 for c in runs) or sum(runs) != height * width:
        kind = "compressed" if isinstance(counts, str) else "uncompressed"
        return f"has {kind} RLE counts that are not non-negative run lengths summing to {height}*{width}"
    return None


def annotation_problem(
    ann: dict[str, Any], annotation_file: str | Path, height: int, width: int
) -> FormatProblem | None:
    """What is wrong with the ``bbox`` or ``segmentation`` of an annotation that passed
    ``structure_problems``, on an image of ``height`` x ``width`` pixels (None when both are fine)."""
    what = f"{annotation_file}: annotation id {ann['id']}"
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
        return FormatProblem("bad_bbox", f"{what} has 'bbox' {bbox!r}, need [x, y, width, height]")
    problem = segmentation_problem(ann.get("segmentation"), height, width)
    if problem is not None:
        return FormatProblem("bad_segmentation", f"{what} {problem}")
    return None


def raise_first(problems: list[FormatProblem]) -> None:
    """Raise the first problem as a ``DatasetFormatError`` (saying how many more there are), if any."""
    if problems:
        more = (
            f" (and {len(problems) - 1} more problems; `zoo check-dataset` lists them)"
            if len(problems) > 1
            else ""
        )
        raise DatasetFormatError(problems[0].message + more)
