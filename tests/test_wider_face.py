"""WIDER FACE annotation readers: the official ``bbx_gt`` layout and RetinaFace's ``label.txt`` (with its -1
convention for faces without landmarks), on hand-written files in the exact layouts; bad lines raise errors
naming the file and line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.errors import DatasetFormatError
from datamodules.wider_face import read_wider_face_annotations

# the official files end face lines with a space
OFFICIAL = "\n".join(
    [
        "0--Parade/0_Parade_marchingband_1_849.jpg",
        "1",
        "449 330 122 149 0 0 0 0 0 0 ",
        "0--Parade/0_Parade_Parade_0_904.jpg",
        "3",
        "361 98 263 339 0 0 0 0 0 0 ",
        "10 20 0 5 2 0 0 1 0 0 ",
        "78 221 7 8 2 0 0 1 0 0 ",
        "0--Parade/0_Parade_Parade_0_empty.jpg",
        "0",
        "0 0 0 0 0 0 0 0 0 0 ",
    ]
)

RETINAFACE = "\n".join(
    [
        "# 0--Parade/0_Parade_marchingband_1_849.jpg",
        "449 330 122 149 488.906 373.643 0.0 542.089 376.442 0.0 515.031 412.83 0.0 485.174 425.893 0.0 "
        "538.357 431.491 0.0 0.82",
        "# 0--Parade/0_Parade_Parade_0_904.jpg",
        "361 98 263 339 424.143 251.656 0.0 547.134 232.571 0.0 494.121 325.875 0.0 453.83 368.286 0.0 "
        "561.978 342.839 0.0 0.89",
        "78 221 7 8" + " -1.0" * 16,
        "# 0--Parade/0_Parade_Parade_0_val.jpg",
        "78 221 7 8",
    ]
)


def write(tmp_path: Path, text: str, name: str = "labels.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_official_layout(tmp_path: Path) -> None:
    annotations = read_wider_face_annotations(write(tmp_path, OFFICIAL, "wider_face_train_bbx_gt.txt"))
    assert [image.path for image in annotations.images] == [
        "0--Parade/0_Parade_marchingband_1_849.jpg",
        "0--Parade/0_Parade_Parade_0_904.jpg",
        "0--Parade/0_Parade_Parade_0_empty.jpg",
    ]
    first, second, empty = annotations.images
    assert first.boxes.tolist() == [[449, 330, 571, 479]]
    assert second.boxes.tolist() == [[361, 98, 624, 437], [78, 221, 85, 229]]
    assert second.invalid.tolist() == [False, True]
    assert np.isnan(second.landmarks).all() and second.landmarks.shape == (2, 5, 2)
    assert empty.boxes.shape == (0, 4) and empty.landmarks.shape == (0, 5, 2)
    assert annotations.skipped == {"degenerate_box": 1}


def test_retinaface_layout_with_and_without_landmarks(tmp_path: Path) -> None:
    annotations = read_wider_face_annotations(write(tmp_path, RETINAFACE))
    first, second, boxes_only = annotations.images
    expected = [
        [488.906, 373.643],
        [542.089, 376.442],
        [515.031, 412.83],
        [485.174, 425.893],
        [538.357, 431.491],
    ]
    assert np.allclose(first.landmarks[0], expected, atol=1e-3)
    assert second.boxes.tolist() == [[361, 98, 624, 437], [78, 221, 85, 229]]
    assert not np.isnan(second.landmarks[0]).any() and np.isnan(second.landmarks[1]).all()
    assert boxes_only.boxes.tolist() == [[78, 221, 85, 229]] and np.isnan(boxes_only.landmarks).all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n",
            r"labels.txt:2: image a.jpg announces 2 faces, the file ends first",
        ),
        ("a.jpg\nx\n", r"labels.txt:2: expected numbers"),
        ("a.jpg\n1\n1 2 3 4 0 0\n", r"labels.txt:3: a face of a.jpg needs 10 values"),
        ("1 2 3 4\n", r"labels.txt:1: image 1 2 3 4 has no face count line"),
        ("# a.jpg\n1 2 3\n", r"labels.txt:2: a face of a.jpg needs 4 values"),
        (
            "# a.jpg\n1 2 3 4 5 6 0 -1 -1 0" + " 1 1 0" * 3 + " 0.9\n",
            r"labels.txt:2: .* some landmarks at -1",
        ),
        ("# a.jpg\n1 2 3 nan\n", r"labels.txt:2: non-finite"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DatasetFormatError, match=message):
        read_wider_face_annotations(write(tmp_path, text))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="annotation file not found"):
        read_wider_face_annotations(tmp_path / "label.txt")
