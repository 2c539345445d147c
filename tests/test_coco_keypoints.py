"""COCO keypoint top-down dataset: real COCO / 300W / WFLW samples read and mapped back to their JSON,
flips that swap pairs, seeded augmentation, crops aligned with their keypoints, and the bad-input rules
(errors, counted skips and notes)."""

import json
import logging
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.coco_keypoints import CocoKeypointsDataset, TopDownAugmentation
from datamodules.errors import DatasetFormatError
from datamodules.keypoint_layouts import KeypointLayout, coco_person, face_300w, face_wflw
from datamodules.top_down_crop import transform_boxes, transform_points
from metrics.coco_results import COCO_PIXEL_INDEX_OFFSET
from tests.test_top_down_crop import centroid, disc_coverage

SAMPLES = {  # folder, JSON, layout, annotations in the file, instances without a labelled keypoint
    "coco": ("coco_sample", "coco_sample/test_coco.json", coco_person, 14, 2),
    "300w": ("landmarks_sample/300w", "landmarks_sample/300w/test_300w.json", face_300w, 2, 0),
    "wflw": ("landmarks_sample/wflw", "landmarks_sample/wflw/test_wflw.json", face_wflw, 4, 0),
}
TARGET_KEYS = {"image_id", "keypoints", "boxes", "labels", "annotation_ids", "crop_to_image"}

# a hand-written world: one 96 x 64 image, three keypoints (a left/right pair and a middle one)
LAYOUT = KeypointLayout(names=("left_tip", "right_tip", "middle"), flip_pairs=((0, 1),))
HEIGHT, WIDTH = 64, 96


def sample(shared_data: Path, name: str, **kwargs: Any) -> CocoKeypointsDataset:
    folder, annotation_file, layout, _, _ = SAMPLES[name]
    return CocoKeypointsDataset(shared_data / folder, shared_data / annotation_file, layout(), **kwargs)


def keypoint_annotation(
    ann_id: int, bbox: list[float], keypoints: list[float], **extra: Any
) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": 1,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "keypoints": keypoints,
        "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
        **extra,
    }


GOOD = keypoint_annotation(1, [30, 10, 40, 40], [38.25, 30.5, 2, 61.75, 30.5, 2, 50.1, 42.3, 1])


def write_keypoints(
    tmp_path: Path, annotations: list[dict], categories: list[dict] | None = None, discs: bool = False
) -> tuple[Path, Path]:
    """One 96 x 64 PNG (image id 1) and a keypoint JSON; with ``discs``, the image shows a bright disc
    (radius 2.5 px) at every labelled keypoint of the annotations, on a dark noise background."""
    image_dir = tmp_path / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).uniform(0, 0.1, size=(HEIGHT, WIDTH))
    if discs:
        pixels[:] = 0
        for ann in annotations:
            for x, y, v in np.reshape(ann["keypoints"], (-1, 3)):
                if v > 0:  # at the keypoint's pixel index + 0.5: the continuous frame
                    pixels += disc_coverage((HEIGHT, WIDTH), (x + 0.5, y + 0.5), 2.5)
    gray = np.clip(pixels * 255, 0, 255).round().astype(np.uint8)
    Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2)).save(image_dir / "a.png")
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": HEIGHT, "width": WIDTH}],
        "annotations": annotations,
        "categories": categories or [{"id": 1, "name": "thing", "keypoints": list(LAYOUT.names)}],
    }
    annotation_file = tmp_path / "keypoints.json"
    annotation_file.write_text(json.dumps(data))
    return image_dir, annotation_file


def dataset(tmp_path: Path, annotations: list[dict], **kwargs: Any) -> CocoKeypointsDataset:
    image_dir, annotation_file = write_keypoints(tmp_path, annotations, kwargs.pop("categories", None))
    return CocoKeypointsDataset(image_dir, annotation_file, LAYOUT, input_size=(32, 48), **kwargs)


def source_keypoints(target: dict[str, torch.Tensor], layout: KeypointLayout) -> np.ndarray:
    """The target's keypoints mapped back to the source image, in the JSON's order (a flipped crop, whose
    ``crop_to_image`` mirrors, holds them permuted by the flip pairs)."""
    matrix = target["crop_to_image"].numpy()
    points = target["keypoints"][0].double().numpy()
    points[:, :2] = transform_points(points[:, :2], matrix)
    return points[layout.flip_permutation()] if np.linalg.det(matrix[:, :2]) < 0 else points


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("train", [False, True])
def test_real_samples_map_back_to_their_json(shared_data: Path, name: str, train: bool) -> None:
    _, annotation_file, layout_of, annotations, unlabelled = SAMPLES[name]
    layout = layout_of()
    data = json.loads((shared_data / annotation_file).read_text())
    by_id = {ann["id"]: ann for ann in data["annotations"]}
    items = sample(shared_data, name, input_size=(192, 256), train=train, for_evaluation=not train)
    # training leaves out the instances without a labelled keypoint; evaluation keeps every annotation
    assert len(items) == annotations - (unlabelled if train else 0)
    assert dict(items.skipped) == ({"no_keypoints": unlabelled} if train and unlabelled else {})
    flipped = 0
    for index in range(len(items)):
        crop, target = items.seeded_item(index, seed=index)
        assert crop.shape == (3, 256, 192) and crop.dtype == torch.float32
        assert crop.min() >= 0 and crop.max() <= 1
        assert set(target) == TARGET_KEYS
        assert target["keypoints"].shape == (1, layout.num_keypoints, 3)
        assert target["keypoints"].dtype == torch.float32 and target["crop_to_image"].dtype == torch.float64
        assert target["labels"].tolist() == [1] and target["boxes"].shape == (1, 4)
        ann = by_id[int(target["annotation_ids"][0])]
        assert int(target["image_id"]) == ann["image_id"]
        expected = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        expected[:, :2] += COCO_PIXEL_INDEX_OFFSET  # COCO's pixel indices in the continuous frame
        back = source_keypoints(target, layout)
        np.testing.assert_array_equal(back[:, 2], expected[:, 2])  # visibility survives augmentation
        labelled = expected[:, 2] > 0
        np.testing.assert_allclose(back[labelled, :2], expected[labelled, :2], atol=1e-4, rtol=0)
        flipped += bool(np.linalg.det(target["crop_to_image"][:, :2].numpy()) < 0)
        if not train:  # the box goes back to the JSON's box (the samples' boxes lie inside their images)
            x, y, w, h = ann["bbox"]
            corners = transform_points(
                target["boxes"].double().numpy().reshape(2, 2), target["crop_to_image"]
            )
            np.testing.assert_allclose(corners.reshape(-1), [x, y, x + w, y + h], atol=1e-3)
    assert (flipped > 0) == train  # these seeds flip some training crops


def test_a_flip_mirrors_the_crop_and_swaps_the_pairs(shared_data: Path) -> None:
    plain = sample(shared_data, "300w", input_size=(128, 128))
    always = TopDownAugmentation(scale_range=(1.0, 1.0), rotation_prob=0.0, flip_prob=1.0)
    flipping = sample(shared_data, "300w", input_size=(128, 128), train=True, augmentation=always)
    crop, target = plain[0]
    flipped_crop, flipped = flipping.seeded_item(0, seed=5)
    assert (flipped_crop - crop.flip(-1)).abs().max() <= 1 / 255 + 1e-6  # OpenCV's rounding at most
    permutation = face_300w().flip_permutation()
    expected = target["keypoints"][0][permutation]
    expected[:, 0] = 128 - expected[:, 0]
    torch.testing.assert_close(flipped["keypoints"][0], expected, atol=1e-4, rtol=0)
    box = target["boxes"][0]
    torch.testing.assert_close(flipped["boxes"][0], torch.stack([128 - box[2], box[1], 128 - box[0], box[3]]))


def test_seeded_items_repeat_per_seed_and_evaluation_items_never_vary(shared_data: Path) -> None:
    jitter = A.Compose([A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0, p=1.0)])
    train = sample(shared_data, "wflw", input_size=(64, 64), train=True, photometric=jitter)
    first, again, other = train.seeded_item(1, 7), train.seeded_item(1, 7), train.seeded_item(1, 8)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1]["keypoints"], again[1]["keypoints"])
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[1]["keypoints"], other[1]["keypoints"])
    evaluation = sample(shared_data, "wflw", input_size=(64, 64))
    assert torch.equal(evaluation[1][0], evaluation.seeded_item(1, 3)[0])
    with pytest.raises(ValueError, match="changes the image geometry"):
        sample(shared_data, "wflw", train=True, photometric=A.Compose([A.HorizontalFlip()]))


def test_augmented_crops_show_their_discs_at_their_keypoints(tmp_path: Path) -> None:
    """A hand-written keypoint JSON whose image has a disc at each keypoint: through scale, rotation and
    flip the crop's discs stay where the target's keypoints say."""
    image_dir, annotation_file = write_keypoints(tmp_path, [GOOD], discs=True)
    strong = TopDownAugmentation(scale_range=(0.8, 1.2), rotation_degrees=45.0, rotation_prob=1.0)
    items = CocoKeypointsDataset(
        image_dir, annotation_file, LAYOUT, (96, 128), train=True, augmentation=strong
    )
    for seed in range(4):
        crop, target = items.seeded_item(0, seed)
        intensity = crop[0].double().numpy()
        for x, y, _ in target["keypoints"][0].tolist():
            x0, y0 = int(x) - 9, int(y) - 9  # a window around the disc (radius 2.5 px x up to 2.4 zoom)
            window = intensity[y0 : y0 + 19, x0 : x0 + 19]
            assert np.abs(centroid(window) + np.array([x0, y0]) - [x, y]).max() < 0.1


def test_head_boxes_and_keypoints_pushed_out_of_the_crop(tmp_path: Path) -> None:
    far_keypoint = keypoint_annotation(
        2, [10, 10, 8, 8], [12, 12, 2, 16, 12, 1, 90, 60, 2], head_box=[11.0, 10.0, 17.0, 14.0]
    )
    items = dataset(tmp_path, [far_keypoint], train=True)
    for seed in range(3):
        _, target = items.seeded_item(0, seed)
        keypoints = target["keypoints"][0]
        assert keypoints[:, 2].tolist() in ([2, 1, 2], [1, 2, 2])  # v kept (the pair swapped by a flip)
        x, y = keypoints[2, :2].tolist()
        assert not (0 <= x <= 32 and 0 <= y <= 48)  # outside the 32 x 48 crop, where it was pushed
        head = target["head_boxes"]
        assert head.shape == (1, 4) and head.dtype == torch.float32
        # the moved head box holds the rotated head box, so its four corners moved back hold the original
        low_x, low_y, high_x, high_y = transform_boxes(head.double().numpy(), target["crop_to_image"])[0]
        assert low_x <= 11 + 1e-3 and low_y <= 10 + 1e-3 and high_x >= 17 - 1e-3 and high_y >= 14 - 1e-3
    _, target = dataset(tmp_path / "plain", [far_keypoint])[0]
    corners = transform_points(target["head_boxes"].double().numpy().reshape(2, 2), target["crop_to_image"])
    np.testing.assert_allclose(corners.reshape(-1), [11, 10, 17, 14], atol=1e-4)  # exact without rotation
    assert "head_boxes" not in dataset(tmp_path / "b", [GOOD])[0][1]


@pytest.mark.parametrize(
    ("keypoints", "message"),
    [
        ([1, 2, 2] * 2, r"'keypoints' of length 6, need 3 x 3 = 9"),
        ([1, 2, 2, 3, 4, 3, 5, 6, 2], r"visibility \[3.0\], need 0, 1 or 2"),
        ([1, 2, 2, None, 4, 2, 5, 6, 2], "not all finite numbers"),
        ([1, 2, 2, float("nan"), 4, 2, 5, 6, 2], "not all finite numbers"),
        ([1, 2, 2, 3 * WIDTH, 4, 1, 5, 6, 2], "labelled keypoint more than an image size outside"),
    ],
)
def test_malformed_keypoints_are_errors_naming_file_and_id(
    tmp_path: Path, keypoints: list, message: str
) -> None:
    bad = keypoint_annotation(7, [10, 10, 20, 20], keypoints)
    bad["num_keypoints"] = 3
    with pytest.raises(DatasetFormatError, match=message) as raised:
        dataset(tmp_path, [GOOD, bad])
    assert "keypoints.json: annotation id 7" in str(raised.value)


def test_other_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="annotation id 3 has 'head_box'"):
        dataset(tmp_path / "a", [GOOD, {**GOOD, "id": 3, "head_box": [5, 5, 4, 9]}])
    without_count = {key: value for key, value in GOOD.items() if key != "num_keypoints"}
    assert len(dataset(tmp_path / "b", [without_count])) == 1
    with pytest.raises(DatasetFormatError, match="integer 'num_keypoints' \\(COCOeval reads it\\)"):
        dataset(tmp_path / "b", [without_count], for_evaluation=True)
    with pytest.raises(DatasetFormatError, match="names 2 keypoints, the layout has 3: wrong layout"):
        dataset(tmp_path / "c", [GOOD], categories=[{"id": 1, "name": "thing", "keypoints": ["a", "b"]}])
    two = [{"id": 1, "name": "thing"}, {"id": 4, "name": "other"}]
    with pytest.raises(DatasetFormatError, match="has 2 categories \\(ids 1, 4\\); pass category_id"):
        dataset(tmp_path / "d", [GOOD], categories=two)
    assert dataset(tmp_path / "d", [GOOD], categories=two, category_id=1).category_name == "thing"
    assert len(dataset(tmp_path / "d", [GOOD], categories=two, category_id=4)) == 0
    with pytest.raises(DatasetFormatError, match="no category id 9"):
        dataset(tmp_path / "d", [GOOD], categories=two, category_id=9)
    with pytest.raises(ValueError, match="exclude each other"):
        dataset(tmp_path / "e", [GOOD], train=True, for_evaluation=True)


def test_unnamed_face_categories_take_k_from_the_layout(tmp_path: Path) -> None:
    for names in ([], 0):
        items = dataset(
            tmp_path / str(names), [GOOD], categories=[{"id": 1, "name": "face", "keypoints": names}]
        )
        assert len(items) == 1 and items[0][1]["keypoints"].shape == (1, 3, 3)


def test_skips_and_notes_are_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    annotations = [
        GOOD,
        keypoint_annotation(2, [30, 10, 0, 40], GOOD["keypoints"]),  # no width
        keypoint_annotation(3, [30, 10, 40, 40], GOOD["keypoints"], iscrowd=1),
        keypoint_annotation(4, [30, 10, 40, 40], [0, 0, 0] * 3),  # nothing labelled
        keypoint_annotation(
            5, [30, 10, 80, 40], [38, 30, 2, WIDTH + 3, 30, 2, 50, 42, 0]
        ),  # box and point out
        {**keypoint_annotation(6, [30, 10, 40, 40], GOOD["keypoints"]), "num_keypoints": 1},
    ]
    with caplog.at_level(logging.WARNING, logger="datamodules.coco_keypoints"):
        train = dataset(tmp_path, annotations, train=True)
    assert dict(train.skipped) == {"degenerate_box": 1, "crowd": 1, "no_keypoints": 1}
    assert dict(train.noted) == {"box_clipped": 1, "keypoint_outside_image": 1, "num_keypoints_mismatch": 1}
    assert [int(train[i][1]["annotation_ids"][0]) for i in range(len(train))] == [1, 5, 6]
    [record] = caplog.records
    assert "degenerate_box: 1 (annotation ids 2)" in record.message
    assert "no_keypoints: 1 (annotation ids 4)" in record.message
    assert "keypoint_outside_image: 1 (annotation ids 5)" in record.message
    evaluation = dataset(tmp_path, annotations, for_evaluation=True)
    assert dict(evaluation.skipped) == {"degenerate_box": 1, "crowd": 1}  # unlabelled instances are kept
    assert len(evaluation) == 4


def test_boxes_reaching_outside_the_image_are_clipped_unless_asked_not_to(tmp_path: Path) -> None:
    """COCO boxes are clipped to the image (noted); MPII's centre-and-scale boxes are cropped as they are
    (``clip_boxes=False``), so a person at the border stays centred in its crop."""
    border = keypoint_annotation(3, [70, -10, 40, 40], [80, 5, 2, 90, 5, 2, 85, 20, 2])
    clipped = dataset(tmp_path / "clipped", [border])
    assert dict(clipped.noted) == {"box_clipped": 1}
    _, target = clipped[0]
    bounds = transform_boxes(target["boxes"].double().numpy(), target["crop_to_image"])[0]
    np.testing.assert_allclose(bounds, [70, 0, WIDTH, 30], atol=1e-4)
    kept = dataset(tmp_path / "kept", [border], clip_boxes=False)
    assert dict(kept.noted) == {}
    _, target = kept[0]
    bounds = transform_boxes(target["boxes"].double().numpy(), target["crop_to_image"])[0]
    np.testing.assert_allclose(bounds, [70, -10, 110, 30], atol=1e-4)
