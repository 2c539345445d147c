"""Face detection items from the synthetic faces (RetinaFace's WIDER FACE layout) and RetinaFace's training
augmentation: faces and landmarks follow the image through crop, flip (left/right landmarks swapped) and
resize; items are reproducible from their seed; a missing image names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.errors import DatasetFormatError
from datamodules.face_augmentation import face_train_transform, mirror, random_square_crop
from datamodules.face_detection import FaceDetectionDataset
from datamodules.synthetic.faces import write_face_split


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    write_face_split(root, "train", 12, image_size=128, seed=0)
    return root / "train"


def test_items_follow_the_batch_convention(faces: Path) -> None:
    dataset = FaceDetectionDataset(faces / "images", faces / "label.txt")
    image, target = dataset[0]
    assert (
        image.shape == (3, 128, 128) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    )
    assert int(target["image_id"]) == 1 and (target["labels"] == 1).all()
    assert target["boxes"].shape == (len(target["labels"]), 4) and target["landmarks"].shape[1:] == (5, 2)
    assert dataset.num_faces == sum(len(dataset[i][1]["boxes"]) for i in range(len(dataset)))


def test_augmented_items_keep_landmarks_inside_their_faces_and_are_reproducible(faces: Path) -> None:
    dataset = FaceDetectionDataset(faces / "images", faces / "label.txt", train_size=96)
    for item in range(len(dataset)):
        for seed in (0, 1, 2):
            image, target = dataset.seeded_item(item, seed)
            assert image.shape == (3, 96, 96)
            again_image, again_target = dataset.seeded_item(item, seed)
            assert torch.equal(image, again_image) and torch.equal(target["boxes"], again_target["boxes"])
            boxes, landmarks = target["boxes"], target["landmarks"]
            assert ((boxes >= 0) & (boxes <= 96)).all()
            for box, points in zip(boxes, landmarks, strict=True):
                if torch.isnan(points).all():
                    continue
                inside = (points >= box[:2] - 1) & (points <= box[2:] + 1)
                assert inside.all()
                assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # left stays left


def test_mirror_swaps_left_and_right_landmarks() -> None:
    image = np.zeros((10, 20, 3), dtype=np.uint8)
    boxes = np.array([[2.0, 1.0, 8.0, 9.0]], dtype=np.float32)
    landmarks = np.array([[[3, 3], [7, 3], [5, 5], [4, 7], [6, 7]]], dtype=np.float32)
    _, flipped_boxes, flipped = mirror(image, boxes, landmarks)
    assert flipped_boxes.tolist() == [[12.0, 1.0, 18.0, 9.0]]
    assert flipped[0].tolist() == [[13, 3], [17, 3], [15, 5], [14, 7], [16, 7]]


def test_crop_keeps_faces_whose_centre_is_inside() -> None:
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 10.0, 30.0, 30.0], [60.0, 60.0, 90.0, 95.0]], dtype=np.float32)
    landmarks = np.full((2, 5, 2), np.nan, dtype=np.float32)
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, kept, kept_landmarks, cropped = random_square_crop(image, boxes, landmarks, rng)
        assert cropped and len(kept) >= 1 and np.isnan(kept_landmarks).all()
        side = _.shape[0]
        assert ((kept >= 0) & (kept <= side)).all()


def test_images_without_faces_are_padded_and_resized() -> None:
    image = np.full((40, 80, 3), 200, dtype=np.uint8)
    out, boxes, landmarks = face_train_transform(
        image, np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), 64, np.random.default_rng(0)
    )
    assert out.shape == (64, 64, 3) and boxes.shape == (0, 4) and landmarks.shape == (0, 5, 2)


def test_missing_image_names_the_annotation_file(tmp_path: Path) -> None:
    (tmp_path / "label.txt").write_text("# nowhere.png\n1 2 10 10\n")
    dataset = FaceDetectionDataset(tmp_path, tmp_path / "label.txt")
    with pytest.raises(DatasetFormatError, match=r"label\.txt: image nowhere\.png \(item 0\) is missing"):
        dataset[0]


def test_official_subset_lists_become_face_subsets(faces: Path, tmp_path: Path) -> None:
    from scipy.io import savemat

    from metrics.wider_face_ap import SUBSETS, read_official_subsets

    dataset = FaceDetectionDataset(faces / "images", faces / "label.txt")
    names = [Path(record.path).stem for record in dataset.records]
    counts = [len(record.boxes) for record in dataset.records]

    def cell(items):
        array = np.empty((len(items), 1), dtype=object)
        for i, item in enumerate(items):
            array[i, 0] = item
        return array

    savemat(tmp_path / "wider_face_val.mat", {"file_list": cell([cell([np.array([n]) for n in names])])})
    for subset, keep_first in zip(SUBSETS, (1, 2, 5), strict=True):
        lists = [np.arange(1, min(keep_first, n) + 1, dtype=np.float64).reshape(-1, 1) for n in counts]
        savemat(tmp_path / f"wider_{subset}_val.mat", {"gt_list": cell([cell(lists)])})
    with_subsets = FaceDetectionDataset(
        faces / "images", faces / "label.txt", subsets=read_official_subsets(tmp_path)
    )
    _, target = with_subsets[1]
    keep = target["face_subsets"]
    assert keep.shape == (counts[1], 3) and keep[0].all()
    assert keep[:, 0].sum() == min(1, counts[1]) and keep[:, 2].sum() == min(5, counts[1])
    _, augmented = with_subsets.seeded_item(1, 0)
    assert "face_subsets" not in augmented
