"""``zoo mpii-to-coco``: the official MPII Human Pose annotations as COCO keypoint JSON with head boxes.

Reads ``mpii_human_pose_v1_u12_1.mat`` (MATLAB struct ``RELEASE``, http://human-pose.mpi-inf.mpg.de/,
Andriluka et al., CVPR 2014) with ``scipy.io.loadmat(squeeze_me=True, struct_as_record=False)`` and
writes ``mpii_train.json`` and ``mpii_val.json`` under ``--out-dir``, which
``datamodules.coco_keypoints.CocoKeypointsDataset`` reads with the ``datamodules.keypoint_layouts.mpii``
layout (PCKh: ``metrics.keypoint_metrics.PCKh`` with the items' ``head_boxes``).

The fields read (the layout the dataset's README describes; read the same way by Newell's
``pose-hg-train`` ``src/misc/mpii.py`` + ``convert_annot.py``, whose annotations HRNet's
``lib/dataset/mpii.py`` and mmpose's ``MpiiDataset`` JSONs carry on):

- ``RELEASE.annolist(i).image.name``: the image file (under ``--images``);
- ``RELEASE.img_train(i)``: 1 train, 0 test. Only training images have joints; test images (their
  ``annorect`` holds only ``objpos`` and ``scale``) are skipped and counted;
- ``annolist(i).annorect(r)``: person r; ``annopoints.point``: the annotated joints, each ``id`` (0-15 in
  the order of ``MPII_JOINTS``), ``x``, ``y`` and ``is_visible``; ``x1, y1, x2, y2``: the head rectangle
  (PCKh's head size is 0.6 x its diagonal); ``objpos`` (``x``, ``y``: the person's rough centre) and
  ``scale`` (the person's height / 200 px);
- ``RELEASE.single_person(i)``: the 1-based ``annorect`` indices of the sufficiently separated persons
  (MPII's single-person benchmark). Written as each annotation's ``single_person`` flag; the persons kept
  do not depend on it (Newell, HRNet and mmpose train and validate on every annotated person).

MATLAB's struct arrays shrink under ``squeeze_me``: one person, one point or one image is a scalar struct,
not an array of one, and an empty field is an empty array; both are read as lists here.

Conversions (each annotation is one person):

- coordinates: MPII's are MATLAB's 1-based pixel coordinates (pixel k's centre at k; HRNet and mmpose
  subtract 1 to get 0-based pixel centres). The project's frame (``datamodules.batch``) puts pixel i over
  [i, i + 1), its centre at i + 0.5, so x = x_mat - 1 + 0.5 = x_mat - 0.5 (y alike) for head boxes and
  ``objpos``; joints are written as COCO keypoints are, 0-based pixel indices x_mat - 1 (the reader adds
  the half pixel, ``metrics.coco_results.COCO_PIXEL_INDEX_OFFSET``);
- ``keypoints`` [x, y, v] x 16: v = 2 where ``is_visible`` is 1, 1 where it is 0 (annotated but
  occluded), 0 for joints not annotated ([0, 0, 0], COCO's convention). Some points carry no
  ``is_visible`` (an empty array or string, or no field) or a string '0'/'1': empty counts as visible
  (v = 2), as Newell's ``mpii.py`` (``partinfo``) reads it; the official PCKh scores every annotated joint
  whatever its visibility (``jnt_missing``), so the choice never changes the metric;
- ``head_box`` [x1, y1, x2, y2]: the head rectangle shifted as the joints (its corners ordered; the
  diagonal, all PCKh uses, is the official one);
- ``bbox`` (XYWH): MPII has no person boxes. The box is mmpose 1.x's ``MpiiDataset`` box: a square of
  side ``200 * scale`` centred at ``objpos`` moved down by ``15 * scale`` px ("to avoid cropping limbs",
  Newell's ``convert_annot.py``, HRNet's ``c[1] + 15 * s[1]``). The reader grows it by
  ``top_down_crop.PADDING`` = 1.25 (mmpose's ``GetBBoxCenterScale(padding=1.25)``), which gives HRNet's
  crop of ``1.25 * 200 * scale`` px (``s * 1.25``) for a square input. The box is written as it is,
  reaching outside the image where the person does: read it with ``clip_boxes: false``
  (``experiments/hourglass/mpii_8stack.yaml``) to crop it as HRNet does (clipped, as for COCO, such
  persons' crops would be off-centre); ``area`` is its w x h (MPII has no segments);
- ids: ``image_id`` is the image's 1-based index i in ``RELEASE.annolist``, an annotation's ``id`` is
  ``1000 * i + r`` (r: the 1-based ``annorect`` index), so every id leads back to ``annolist(i).annorect(r)``.

Persons left out, counted under the first reason that applies and logged in one WARNING line with the
first (annolist, person) indices: ``no_annopoints`` (no annotated joint: the training images' unannotated
persons), ``malformed_points`` (a point id outside 0-15 or twice, a non-finite coordinate, an
``is_visible`` other than 0/1), ``no_center_scale`` (no ``objpos``, or no positive ``scale``: no box),
``no_head_box`` (no head rectangle, or one without area), ``missing_image`` (the image file is not under
``--images``), ``keypoint_far_outside`` (a joint more than an image size outside its image, which the
reader refuses). Images with no person left are not written. A file that is not the expected structure
(no ``RELEASE``, no ``annolist``/``img_train`` or of different lengths, an ``annolist`` entry without an
image name, an ``annorect``/``annopoints``/``point`` that is not a struct, a point without ``id``/``x``/
``y``) raises ``DatasetFormatError`` naming the file and the annolist and person indices (1-based).

The split: the standard validation set is Tompson et al.'s (CVPR 2015), which Newell, HRNet
(``annot/valid.json``) and mmpose (``mpii_val.json``) use; it is not in the .mat. ``--val-image-names``
takes it (or any list of image names): a text file with one name per line, a JSON list of names, a JSON
list of records with an ``"image"`` name (HRNet's ``valid.json``, mmpose's ``mpii_val.json``), or a
COCO JSON (its ``images``' ``file_name``). The split is by image: every kept person of a listed image goes
to val, so no image is in both files (those lists hold 2,958 persons; an image with further annotated
persons adds them to val). Without a list, ``--val-fraction`` of the training images that have a kept
person (after the .mat's own checks, before the image files are looked at, so the split depends on the
.mat and ``--seed`` only) go to val, drawn by a seeded permutation.

Widths and heights come from the image files' headers (PIL, the size ``coco_instances.read_image``
checks), so ``--images`` is required.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image
from scipy.io.matlab import MatReadError, mat_struct

from datamodules.coco_json_checks import short_list
from datamodules.errors import DatasetFormatError
from datamodules.keypoint_layouts import mpii

logger = logging.getLogger(__name__)

PIXEL_STD = 200.0
"""MPII's ``scale`` is the person's height in units of 200 px (the dataset's README; mmpose ``pixel_std``)."""
CENTER_SHIFT = 15.0
"""The box centre lies ``objpos`` + this many px times ``scale`` down (Newell, HRNet, mmpose)."""
MATLAB_TO_PIXEL_FRAME = -0.5  # boxes: continuous coordinates
MATLAB_TO_PIXEL_INDEX = -1.0  # keypoints: COCO's 0-based pixel indices
"""Added to MATLAB's 1-based pixel coordinates to get the project's continuous ones (module docstring)."""
ID_STRIDE = 1000
"""Annotation id = ID_STRIDE * (1-based annolist index) + (1-based annorect index)."""
NUM_JOINTS = 16
SPLIT_FILES = {"train": "mpii_train.json", "val": "mpii_val.json"}
EXAMPLES_LOGGED = 5


@dataclass
class Person:
    """One annotated person of an image, in the project's pixel frame."""

    index: int  # 1-based annorect index
    keypoints: np.ndarray  # (16, 3) float64: x, y, v
    box: tuple[float, float, float, float]  # XYWH
    head_box: tuple[float, float, float, float]  # XYXY
    single_person: bool | None  # None where the .mat has no single_person list


@dataclass
class MpiiImage:
    """A training image of the .mat with the persons kept from it."""

    index: int  # 1-based annolist index, the COCO image id
    name: str
    persons: list[Person]


@dataclass
class ConversionReport:
    """What ``convert`` wrote and left out."""

    files: dict[str, Path] = field(default_factory=dict)
    images: Counter[str] = field(default_factory=Counter)  # split -> images written
    annotations: Counter[str] = field(default_factory=Counter)  # split -> persons written
    skipped_persons: Counter[str] = field(default_factory=Counter)
    skipped_person_examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    test_images: int = 0  # img_train == 0: no joints
    images_without_persons: int = 0  # training images with no person kept
    val_names_not_found: list[str] = field(default_factory=list)

    def skip(self, reason: str, image_index: int, person_index: int) -> None:
        self.skipped_persons[reason] += 1
        self.skipped_person_examples[reason].append(f"annolist {image_index} person {person_index}")

    def skip_line(self, mat_file: Path) -> str | None:
        """The one line that lists the persons left out, or None when none was."""
        if not self.skipped_persons:
            return None
        reasons = "; ".join(
            f"{reason}: {count} ({short_list(self.skipped_person_examples[reason], EXAMPLES_LOGGED)})"
            for reason, count in sorted(self.skipped_persons.items())
        )
        return f"{mat_file}: persons left out -- {reasons}"


# ---------------------------------------------------------------------------------------- reading the .mat


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, np.ndarray) and value.size == 0)


def _structs(value: Any, what: str) -> list[mat_struct]:
    """A struct array as a list: a scalar struct (``squeeze_me`` of a 1x1 array) is one element, an empty
    array none; anything else is not the official structure."""
    if _is_empty(value):
        return []
    if isinstance(value, mat_struct):
        return [value]
    if isinstance(value, np.ndarray) and value.dtype == object:
        items = list(value.ravel())
        if all(isinstance(item, mat_struct) for item in items):
            return items
    raise DatasetFormatError(f"{what} is {type(value).__name__} {value!r:.60}, need a MATLAB struct (array)")


def _field(struct: mat_struct, name: str) -> Any:
    """A struct's field, None where the struct has no such field or it is empty."""
    value = getattr(struct, name, None)
    return None if _is_empty(value) else value


def _number(value: Any) -> float | None:
    """A finite real number (a scalar or a one-element array), else None."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, Real) and not isinstance(value, bool | np.bool_) and np.isfinite(value):
        return float(value)
    return None


def _visibility(value: Any) -> int | None:
    """COCO's v for MPII's ``is_visible``: 1 -> 2, 0 -> 1, empty or absent -> 2 (module docstring)."""
    if _is_empty(value):
        return 2
    if isinstance(value, str):
        return {"1": 2, "0": 1, "": 2}.get(value.strip())
    if isinstance(value, bool | np.bool_):
        return 2 if value else 1
    number = _number(value)
    return {1.0: 2, 0.0: 1}.get(number) if number is not None else None


def load_release(mat_file: Path) -> mat_struct:
    """``RELEASE`` of an MPII annotation file, with ``annolist`` and ``img_train``."""
    try:
        contents = scipy.io.loadmat(str(mat_file), squeeze_me=True, struct_as_record=False)
    except FileNotFoundError as e:
        raise DatasetFormatError(f"{mat_file}: MPII annotation file not found") from e
    except NotImplementedError as e:  # MATLAB v7.3 (HDF5) files
        raise DatasetFormatError(f"{mat_file}: not readable by scipy.io.loadmat ({e})") from e
    except (MatReadError, OSError, ValueError, TypeError) as e:
        raise DatasetFormatError(f"{mat_file}: not a MATLAB .mat file ({e})") from e
    release = contents.get("RELEASE")
    if not isinstance(release, mat_struct):
        found = ", ".join(k for k in contents if not k.startswith("__")) or "none"
        raise DatasetFormatError(
            f"{mat_file}: no struct 'RELEASE' (variables: {found}); need the official "
            "mpii_human_pose_v1_u12_1.mat"
        )
    for name in ("annolist", "img_train"):
        if not hasattr(release, name):
            raise DatasetFormatError(
                f"{mat_file}: RELEASE has no field '{name}' (fields {release._fieldnames})"
            )
    return release


def _point_rows(annopoints: Any, what: str) -> list[tuple[Any, Any, Any, Any]]:
    """(id, x, y, is_visible) of each point of a person's ``annopoints``."""
    holders = _structs(annopoints, f"{what} annopoints")
    if len(holders) != 1:
        raise DatasetFormatError(f"{what} has {len(holders)} annopoints structs, need one")
    if not hasattr(holders[0], "point"):
        raise DatasetFormatError(f"{what} annopoints has no field 'point'")
    rows = []
    for number, point in enumerate(_structs(holders[0].point, f"{what} annopoints.point"), start=1):
        missing = [name for name in ("id", "x", "y") if not hasattr(point, name)]
        if missing:
            raise DatasetFormatError(f"{what} point {number} has no field {', '.join(missing)}")
        rows.append((point.id, point.x, point.y, getattr(point, "is_visible", None)))
    return rows


def _keypoints(rows: list[tuple[Any, Any, Any, Any]]) -> np.ndarray | None:
    """(16, 3) keypoints in the project's frame, None if a point is malformed."""
    keypoints = np.zeros((NUM_JOINTS, 3))
    for joint_id, x, y, is_visible in rows:
        joint, x, y, v = _number(joint_id), _number(x), _number(y), _visibility(is_visible)
        if joint is None or x is None or y is None or v is None:
            return None
        if joint != int(joint) or not 0 <= joint < NUM_JOINTS or keypoints[int(joint), 2] > 0:
            return None
        keypoints[int(joint)] = (x + MATLAB_TO_PIXEL_INDEX, y + MATLAB_TO_PIXEL_INDEX, v)
    return keypoints


def _person_box(rect: mat_struct, what: str) -> tuple[float, float, float, float] | None:
    """The XYWH square of side 200 * scale around ``objpos`` moved down by 15 * scale (module docstring)."""
    objpos, scale = _field(rect, "objpos"), _number(_field(rect, "scale"))
    if objpos is None or scale is None or scale <= 0:
        return None
    positions = _structs(objpos, f"{what} objpos")
    if len(positions) != 1 or not all(hasattr(positions[0], name) for name in ("x", "y")):
        raise DatasetFormatError(f"{what} objpos is not one struct with x and y")
    x, y = _number(positions[0].x), _number(positions[0].y)
    if x is None or y is None:
        return None
    center_x = x + MATLAB_TO_PIXEL_FRAME
    center_y = y + MATLAB_TO_PIXEL_FRAME + CENTER_SHIFT * scale
    side = PIXEL_STD * scale
    return (center_x - side / 2, center_y - side / 2, side, side)


def _head_box(rect: mat_struct) -> tuple[float, float, float, float] | None:
    corners = [_number(_field(rect, name)) for name in ("x1", "y1", "x2", "y2")]
    if any(c is None for c in corners):
        return None
    x1, y1, x2, y2 = (c + MATLAB_TO_PIXEL_FRAME for c in corners)
    box = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
    return box if box[2] > box[0] and box[3] > box[1] else None


def _single_person_indices(release: mat_struct, count: int, mat_file: Path) -> list[set[int]] | None:
    """Per image, the 1-based annorect indices of ``RELEASE.single_person``; None if the .mat has none."""
    if not hasattr(release, "single_person"):
        return None
    cells = release.single_person
    cells = [cells] if count == 1 else list(np.asarray(cells, dtype=object).ravel())
    if len(cells) != count:
        raise DatasetFormatError(
            f"{mat_file}: RELEASE.single_person has {len(cells)} entries, annolist {count}"
        )
    indices = []
    for number, cell in enumerate(cells, start=1):
        values = [] if _is_empty(cell) else np.atleast_1d(np.asarray(cell, dtype=object)).ravel()
        numbers = [_number(v) for v in values]
        if any(n is None for n in numbers):
            raise DatasetFormatError(f"{mat_file}: RELEASE.single_person({number}) is not a list of indices")
        indices.append({int(n) for n in numbers})
    return indices


def read_release(mat_file: Path, report: ConversionReport) -> list[MpiiImage]:
    """The training images of the .mat with their kept persons (before the image files are looked at);
    skips are counted in ``report``."""
    release = load_release(mat_file)
    annolist = _structs(release.annolist, f"{mat_file}: RELEASE.annolist")
    img_train = np.atleast_1d(np.asarray(release.img_train, dtype=object)).ravel()
    if len(img_train) != len(annolist):
        raise DatasetFormatError(
            f"{mat_file}: RELEASE.img_train has {len(img_train)} entries, RELEASE.annolist {len(annolist)}"
        )
    single_person = _single_person_indices(release, len(annolist), mat_file)
    images = []
    for i, (entry, train) in enumerate(zip(annolist, img_train, strict=True), start=1):
        what = f"{mat_file}: annolist {i}"
        image = _structs(getattr(entry, "image", None), f"{what} image")
        name = getattr(image[0], "name", None) if len(image) == 1 else None
        if not isinstance(name, str) or not name:
            raise DatasetFormatError(f"{what} has no image.name")
        if _number(train) not in (0.0, 1.0):
            raise DatasetFormatError(f"{what}: img_train is {train!r:.40}, need 0 or 1")
        if _number(train) == 0.0:
            report.test_images += 1
            continue
        persons = []
        for r, rect in enumerate(_structs(getattr(entry, "annorect", None), f"{what} annorect"), start=1):
            if r >= ID_STRIDE:
                raise DatasetFormatError(f"{what} has over {ID_STRIDE - 1} persons")
            person_what = f"{what} person {r}"
            annopoints = _field(rect, "annopoints")
            rows = [] if annopoints is None else _point_rows(annopoints, person_what)
            if not rows:
                report.skip("no_annopoints", i, r)
                continue
            keypoints = _keypoints(rows)
            if keypoints is None:
                report.skip("malformed_points", i, r)
                continue
            box = _person_box(rect, person_what)
            if box is None:
                report.skip("no_center_scale", i, r)
                continue
            head_box = _head_box(rect)
            if head_box is None:
                report.skip("no_head_box", i, r)
                continue
            single = None if single_person is None else r in single_person[i - 1]
            persons.append(Person(r, keypoints, box, head_box, single))
        if persons:
            images.append(MpiiImage(i, name, persons))
        else:
            report.images_without_persons += 1
    return images


# ---------------------------------------------------------------------------------------- split and write


def read_image_names(names_file: Path) -> list[str]:
    """Image names from a text file (one per line), a JSON list of names, a JSON list of records with an
    ``"image"`` (HRNet's ``valid.json``, mmpose's ``mpii_val.json``) or a COCO JSON (``images[].file_name``).
    Names are compared by their last path component."""
    try:
        text = names_file.read_text()
    except FileNotFoundError as e:
        raise DatasetFormatError(f"{names_file}: validation image list not found") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        lines = (line.strip() for line in text.splitlines())
        names = [line for line in lines if line and not line.startswith("#")]
    else:
        if isinstance(data, dict) and isinstance(data.get("images"), list):
            data = [image.get("file_name") if isinstance(image, dict) else None for image in data["images"]]
        if not isinstance(data, list):
            raise DatasetFormatError(f"{names_file}: JSON is {type(data).__name__}, need a list of names")
        names = [item.get("image") if isinstance(item, dict) else item for item in data]
        if not all(isinstance(name, str) for name in names):
            raise DatasetFormatError(
                f"{names_file}: need image names (strings, records with 'image', or COCO 'images')"
            )
    return [Path(name).name for name in names]


def split_images(
    images: list[MpiiImage],
    val_names: list[str] | None,
    val_fraction: float,
    seed: int,
    report: ConversionReport,
    names_file: Path | None = None,
) -> dict[str, list[MpiiImage]]:
    """Train and val images: by ``val_names`` when given, else a seeded ``val_fraction`` of the images."""
    if val_names is not None:
        wanted = set(val_names)
        known = {image.name for image in images}
        report.val_names_not_found = sorted(wanted - known)
        if not wanted & known:
            raise DatasetFormatError(
                f"{names_file}: none of its {len(wanted)} image names is a training image with an annotated "
                f"person (e.g. {short_list(sorted(wanted), 3)})"
            )
        in_val = [image.name in wanted for image in images]
    else:
        count = round(val_fraction * len(images))
        chosen = set(np.random.default_rng(seed).permutation(len(images))[:count].tolist())
        in_val = [position in chosen for position in range(len(images))]
    return {
        "train": [image for image, val in zip(images, in_val, strict=True) if not val],
        "val": [image for image, val in zip(images, in_val, strict=True) if val],
    }


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header; None if there is no such file."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        return None
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetFormatError(f"{path}: cannot read image header ({e})", "unreadable_image") from e


def _far_outside(keypoints: np.ndarray, width: int, height: int) -> bool:
    """A labelled keypoint more than an image size outside the image (the reader's hard error)."""
    labelled = keypoints[keypoints[:, 2] > 0]
    x, y = labelled[:, 0], labelled[:, 1]
    return bool((x < -width).any() or (x > 2 * width).any() or (y < -height).any() or (y > 2 * height).any())


def coco_split(
    images: list[MpiiImage], sizes: dict[int, tuple[int, int] | None], report: ConversionReport
) -> dict[str, Any]:
    """A COCO keypoint JSON of ``images``; persons of missing images or far outside theirs are skipped."""
    layout = mpii()
    coco_images, annotations = [], []
    for image in images:
        size = sizes[image.index]
        if size is None:
            for person in image.persons:
                report.skip("missing_image", image.index, person.index)
            continue
        width, height = size
        kept = []
        for person in image.persons:
            if _far_outside(person.keypoints, width, height):
                report.skip("keypoint_far_outside", image.index, person.index)
                continue
            x, y, w, h = person.box
            annotation = {
                "id": ID_STRIDE * image.index + person.index,
                "image_id": image.index,
                "category_id": 1,
                "keypoints": [
                    float(v) if k % 3 < 2 else int(v) for k, v in enumerate(person.keypoints.ravel())
                ],
                "num_keypoints": int((person.keypoints[:, 2] > 0).sum()),
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
                "head_box": list(person.head_box),
            }
            if person.single_person is not None:
                annotation["single_person"] = person.single_person
            kept.append(annotation)
        if kept:
            coco_images.append({"id": image.index, "file_name": image.name, "width": width, "height": height})
            annotations.extend(kept)
    return {
        "info": {
            "description": "MPII Human Pose (Andriluka et al., CVPR 2014) converted by zoo mpii-to-coco",
            "url": "http://human-pose.mpi-inf.mpg.de/",
        },
        "images": coco_images,
        "annotations": annotations,
        "categories": [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": list(layout.names),
                "skeleton": [[a + 1, b + 1] for a, b in layout.skeleton],  # COCO's skeleton is 1-based
            }
        ],
    }


def _image_sizes(images: Iterable[MpiiImage], image_dir: Path) -> dict[int, tuple[int, int] | None]:
    sizes = {image.index: image_size(image_dir / image.name) for image in images}
    if sizes and all(size is None for size in sizes.values()):
        names = short_list(sorted({image.name for image in images}), 3)
        raise DatasetFormatError(f"{image_dir}: none of the {len(sizes)} annotated images is there ({names})")
    return sizes


def convert(
    mat_file: Path,
    image_dir: Path,
    out_dir: Path,
    val_names_file: Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> ConversionReport:
    """Write ``mpii_train.json`` and ``mpii_val.json`` under ``out_dir`` (module docstring)."""
    report = ConversionReport()
    images = read_release(mat_file, report)
    val_names = read_image_names(val_names_file) if val_names_file is not None else None
    splits = split_images(images, val_names, val_fraction, seed, report, val_names_file)
    sizes = _image_sizes(images, image_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, members in splits.items():
        data = coco_split(members, sizes, report)
        path = out_dir / SPLIT_FILES[split]
        path.write_text(json.dumps(data))
        report.files[split] = path
        report.images[split] = len(data["images"])
        report.annotations[split] = len(data["annotations"])
    line = report.skip_line(mat_file)
    if line is not None:
        logger.warning(line)
    return report


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo mpii-to-coco",
        description="Convert the official MPII Human Pose annotations (mpii_human_pose_v1_u12_1.mat) to COCO "
        "keypoint JSON (mpii_train.json, mpii_val.json) with head boxes for PCKh.",
    )
    parser.add_argument("--mat", type=Path, required=True, help="mpii_human_pose_v1_u12_1.mat")
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help="the MPII images folder (required: COCO needs each image's width and height, read from the "
        "file headers; the .mat does not store them)",
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="where the two JSON files are written")
    split = parser.add_mutually_exclusive_group()
    split.add_argument(
        "--val-image-names",
        type=Path,
        default=None,
        help="validation images: a text file (one name per line), a JSON list of names, HRNet's valid.json "
        "/ mmpose's mpii_val.json, or a COCO JSON -- the standard split is Tompson et al.'s list in those",
    )
    split.add_argument(
        "--val-fraction",
        type=_fraction,
        default=0.1,
        help="without --val-image-names: this fraction of the images goes to val, drawn with --seed",
    )
    parser.add_argument("--seed", type=_non_negative, default=0, help="seed of the --val-fraction draw")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.images is None:
        parser.error(
            "--images DIR is required: COCO images need width and height, which the .mat does not store "
            "(they are read from the image file headers)"
        )
    if not args.images.is_dir():
        parser.error(f"--images {args.images}: not a folder")
    report = convert(args.mat, args.images, args.out_dir, args.val_image_names, args.val_fraction, args.seed)
    for split, path in report.files.items():
        print(f"{split}: {report.images[split]} images, {report.annotations[split]} persons -> {path}")
    skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(report.skipped_persons.items()))
    print(
        f"left out: {report.test_images} test images (no joints), {report.images_without_persons} training "
        f"images without an annotated person; persons: {skipped or 'none'}"
    )
    if report.val_names_not_found:
        print(
            f"{len(report.val_names_not_found)} validation names are not training images with a kept person "
            f"(e.g. {short_list(report.val_names_not_found, 3)})"
        )
    return 0
