"""The synthetic faces: written in RetinaFace's WIDER FACE layout, read back by the reader, deterministic,
landmarks where the face is drawn (eyes dark, inside the box), small faces without landmarks (-1)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from datamodules.synthetic.faces import MIN_LANDMARK_FACE, write_face_split
from datamodules.wider_face import read_wider_face_annotations


def test_faces_round_trip_through_the_reader(tmp_path: Path) -> None:
    label_file = write_face_split(tmp_path, "train", 40, image_size=128, seed=0)
    annotations = read_wider_face_annotations(label_file)
    assert len(annotations.images) == 40 and not annotations.skipped
    faces = with_landmarks = 0
    for record in annotations.images:
        image = cv2.cvtColor(cv2.imread(str(tmp_path / "train" / "images" / record.path)), cv2.COLOR_BGR2RGB)
        assert 1 <= len(record.boxes) <= 5
        assert (record.boxes[:, :2] >= 0).all() and (record.boxes[:, 2:] <= 128).all()
        for box, points in zip(record.boxes, record.landmarks, strict=True):
            faces += 1
            if np.isnan(points).all():
                assert box[2] - box[0] < MIN_LANDMARK_FACE
                continue
            with_landmarks += 1
            assert ((points >= box[:2]) & (points <= box[2:])).all()
            assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # left before right
            eye = image[int(points[0, 1]), int(points[0, 0])].astype(int)
            cheek = image[int(points[2, 1]), int((points[0, 0] + points[2, 0]) / 2)].astype(int)
            assert eye.sum() < cheek.sum()  # the eye is drawn darker than the skin
    assert 0 < with_landmarks < faces


def test_faces_are_deterministic(tmp_path: Path) -> None:
    first = write_face_split(tmp_path / "a", "val", 3, image_size=64, seed=5)
    second = write_face_split(tmp_path / "b", "val", 3, image_size=64, seed=5)
    assert first.read_text() == second.read_text()
    for name in ("000001.png", "000003.png"):
        assert (first.parent / "images" / name).read_bytes() == (second.parent / "images" / name).read_bytes()


def test_zoo_synthetic_writes_faces(tmp_path: Path) -> None:
    from zoo.tools import synthetic as synthetic_tool

    argv = [
        "--out",
        str(tmp_path),
        "--train-images",
        "2",
        "--val-images",
        "1",
        "--size",
        "64",
        "--formats",
        "faces",
    ]
    assert synthetic_tool.main(argv) == 0
    assert len(read_wider_face_annotations(tmp_path / "faces" / "train" / "label.txt").images) == 2
    assert len(read_wider_face_annotations(tmp_path / "faces" / "val" / "label.txt").images) == 1
