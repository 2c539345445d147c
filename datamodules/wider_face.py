"""WIDER FACE annotations (Yang et al., CVPR 2016) in the two layouts face detectors train on:

- the official ``wider_face_{train,val}_bbx_gt.txt``: an image path line, a face count line, then one line
  per face ``x y w h blur expression illumination invalid occlusion pose`` (an image without faces has the
  count 0 followed by one line of zeros);
- RetinaFace's ``label.txt`` (Deng et al. 2020, as biubug6/Pytorch_Retinaface's ``WiderFaceDetection``
  reads it): ``# <path>`` then one line per face ``x y w h`` followed, in the training file, by 5
  landmarks ``lx ly flag`` (left eye, right eye, nose, left and right mouth corner) and a final value;
  a face without landmarks has all of them -1.

Both become ``FaceImage`` records: XYXY boxes in pixels and (N, 5, 2) landmarks with NaN where a face has
none (the project's convention, ``datamodules.batch``). Faces of zero width or height (present in the
official files) are skipped and counted, as the detectors train without them; any other malformed line
is a ``DatasetFormatError`` naming the file, the line number and what is wrong.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datamodules.errors import DatasetFormatError

logger = logging.getLogger(__name__)

NUM_LANDMARKS = 5
OFFICIAL_FACE_FIELDS = 10  # x y w h blur expression illumination invalid occlusion pose
RETINAFACE_FACE_FIELDS = 4 + 3 * NUM_LANDMARKS + 1


@dataclass
class FaceImage:
    """One image's faces: ``boxes`` float32 (N, 4) XYXY pixels, ``landmarks`` float32 (N, 5, 2) (NaN: not
    annotated), ``invalid`` bool (N,) (the official file's ``invalid`` flag; False in RetinaFace's)."""

    path: str
    boxes: np.ndarray
    landmarks: np.ndarray
    invalid: np.ndarray


@dataclass
class WiderFaceAnnotations:
    """The images of one annotation file, in file order, and the faces skipped by reason."""

    images: list[FaceImage]
    skipped: Counter[str] = field(default_factory=Counter)


def _numbers(text: str, file: Path, line_number: int) -> list[float]:
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise DatasetFormatError(f"{file}:{line_number}: expected numbers, got {text.strip()!r}") from None
    if any(not math.isfinite(v) for v in values):
        raise DatasetFormatError(f"{file}:{line_number}: non-finite value in {text.strip()!r}")
    return values


def _image(
    path: str, faces: list[list[float]], landmarks: list[np.ndarray], invalid: list[bool]
) -> FaceImage:
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in faces], dtype=np.float32).reshape(-1, 4)
    points = np.array(landmarks, dtype=np.float32).reshape(-1, NUM_LANDMARKS, 2)
    return FaceImage(path, boxes, points, np.array(invalid, dtype=bool))


def _keep_face(box: list[float], skipped: Counter[str], file: Path, line_number: int) -> bool:
    if box[2] <= 0 or box[3] <= 0:
        skipped["degenerate_box"] += 1
        logger.debug("%s:%d: face of width %g and height %g skipped", file, line_number, box[2], box[3])
        return False
    return True


def read_official_annotations(file: str | Path) -> WiderFaceAnnotations:
    """The official ``wider_face_*_bbx_gt.txt`` layout (module docstring); no landmarks (all NaN)."""
    file = Path(file)
    lines = file.read_text().splitlines()
    result = WiderFaceAnnotations(images=[])
    position = 0
    while position < len(lines):
        if not lines[position].strip():
            position += 1
            continue
        path = lines[position].strip()
        if position + 1 >= len(lines):
            raise DatasetFormatError(f"{file}:{position + 1}: image {path} has no face count line")
        count_values = _numbers(lines[position + 1], file, position + 2)
        if len(count_values) != 1 or count_values[0] < 0 or not float(count_values[0]).is_integer():
            raise DatasetFormatError(
                f"{file}:{position + 2}: expected the face count of {path}, got {lines[position + 1]!r}"
            )
        count = int(count_values[0])
        face_lines = max(count, 1)  # an image without faces is followed by one line of zeros
        if position + 2 + face_lines > len(lines):
            raise DatasetFormatError(
                f"{file}:{position + 2}: image {path} announces {count} faces, the file ends first"
            )
        faces, invalid = [], []
        for offset in range(count):
            line_number = position + 3 + offset
            values = _numbers(lines[line_number - 1], file, line_number)
            if len(values) != OFFICIAL_FACE_FIELDS:
                raise DatasetFormatError(
                    f"{file}:{line_number}: a face of {path} needs {OFFICIAL_FACE_FIELDS} values "
                    f"(x y w h blur expression illumination invalid occlusion pose), got {len(values)}"
                )
            if _keep_face(values[:4], result.skipped, file, line_number):
                faces.append(values[:4])
                invalid.append(bool(values[7]))
        nan = np.full((len(faces), NUM_LANDMARKS, 2), np.nan)
        result.images.append(_image(path, faces, list(nan), invalid))
        position += 2 + face_lines
    _log_skipped(file, result.skipped)
    return result


def read_retinaface_annotations(file: str | Path) -> WiderFaceAnnotations:
    """RetinaFace's ``label.txt`` layout (module docstring): boxes with or without 5 landmarks."""
    file = Path(file)
    result = WiderFaceAnnotations(images=[])
    path: str | None = None
    faces: list[list[float]] = []
    landmarks: list[np.ndarray] = []
    for line_number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        if line.startswith("#"):
            if path is not None:
                result.images.append(_image(path, faces, landmarks, [False] * len(faces)))
            path, faces, landmarks = line[1:].strip(), [], []
            continue
        if path is None:
            raise DatasetFormatError(
                f"{file}:{line_number}: a face line before the first '# <image path>' line"
            )
        values = _numbers(line, file, line_number)
        if len(values) not in (4, RETINAFACE_FACE_FIELDS):
            raise DatasetFormatError(
                f"{file}:{line_number}: a face of {path} needs 4 values (x y w h) or "
                f"{RETINAFACE_FACE_FIELDS} "
                f"(x y w h, 5 x (lx ly flag), score), got {len(values)}"
            )
        if not _keep_face(values[:4], result.skipped, file, line_number):
            continue
        faces.append(values[:4])
        points = np.full((NUM_LANDMARKS, 2), np.nan)
        if len(values) == RETINAFACE_FACE_FIELDS and values[4] >= 0:
            triples = np.array(values[4 : 4 + 3 * NUM_LANDMARKS]).reshape(NUM_LANDMARKS, 3)
            if (triples[:, :2] < 0).any():
                raise DatasetFormatError(
                    f"{file}:{line_number}: a face of {path} has some landmarks at -1 but not all "
                    "(RetinaFace marks a face without landmarks with -1 everywhere)"
                )
            points = triples[:, :2]
        landmarks.append(points)
    if path is not None:
        result.images.append(_image(path, faces, landmarks, [False] * len(faces)))
    _log_skipped(file, result.skipped)
    return result


def read_wider_face_annotations(file: str | Path) -> WiderFaceAnnotations:
    """Either layout, told apart by the first non-empty line (``#`` starts RetinaFace's)."""
    file = Path(file)
    if not file.is_file():
        raise DatasetFormatError(f"{file}: WIDER FACE annotation file not found", "missing_file")
    first = next((line for line in file.read_text().splitlines() if line.strip()), "")
    return read_retinaface_annotations(file) if first.startswith("#") else read_official_annotations(file)


def _log_skipped(file: Path, skipped: Counter[str]) -> None:
    if skipped:
        logger.info(
            "%s: faces left out -- %s", file, ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
        )
