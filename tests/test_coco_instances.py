"""COCO instances dataset: real sample, synthetic world, counted skips and image-file errors
(malformed JSON: ``test_coco_json_checks``; the DataModule: ``test_coco_instances_datamodule``)."""

import json
import logging
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torchvision.ops import masks_to_boxes

from datamodules.coco_instances import CocoInstancesDataset, read_image
from datamodules.errors import DatasetFormatError
from datamodules.instance_transforms import instance_bbox_params, train_transforms
from datamodules.synthetic.coco_writer import write_coco_instances
from tests.coco_files import GOOD, HEIGHT, WIDTH, annotation, edit_categories, rect_polygon, write_coco

# pycocotools 2.0.x under numpy 2 warns inside its own decode; nothing this project can change
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def rect_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


# --- real and synthetic data -------------------------------------------------------------------


def test_real_coco_sample(shared_data: Path) -> None:
    root = shared_data / "coco_sample"
    dataset = CocoInstancesDataset(root, root / "test_coco.json")
    raw = json.loads((root / "test_coco.json").read_text())
    assert len(dataset) == 4
    assert dataset.class_names == ["person"]
    assert dataset.label_to_category_id == {1: 1}
    assert sum(dataset.skipped.values()) == 0
    total = 0
    for item in range(len(dataset)):
        image, target = dataset[item]
        image_id = int(target["image_id"])
        info = next(i for i in raw["images"] if i["id"] == image_id)
        anns = [a for a in raw["annotations"] if a["image_id"] == image_id]
        assert image.shape == (3, info["height"], info["width"]) and image.dtype == torch.float32
        assert image.min() >= 0.0 and image.max() <= 1.0 and image.max() > 0.5
        n = len(target["labels"])
        total += n
        assert n == len(anns)
        assert (
            target["masks"].shape == (n, info["height"], info["width"])
            and target["masks"].dtype == torch.uint8
        )
        assert set(target["masks"].unique().tolist()) <= {0, 1}
        assert torch.equal(target["labels"], torch.ones(n, dtype=torch.int64))
        # boxes are the JSON boxes (XYWH -> XYXY) in JSON order; masks rasterize the polygons inside them
        expected = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        torch.testing.assert_close(target["boxes"], expected)
        assert (masks_to_boxes(target["masks"]) - target["boxes"]).abs().max() < 2.0
        # the pixel areas match COCO's own polygon areas to a few percent
        areas = target["masks"].flatten(1).sum(1).double()
        torch.testing.assert_close(areas, torch.tensor([a["area"] for a in anns]).double(), rtol=0.06, atol=0)
    assert total == 14


def test_synthetic_world_round_trip(tmp_path: Path) -> None:
    # 12 images of 64 px include a crowd region and non-crowd RLE masks beside the polygons
    annotation_file = write_coco_instances(tmp_path, "train", num_images=12, image_size=64, seed=0)
    raw = json.loads(annotation_file.read_text())
    crowd = [a for a in raw["annotations"] if a["iscrowd"]]
    assert crowd and any(isinstance(a["segmentation"], dict) for a in raw["annotations"] if not a["iscrowd"])
    dataset = CocoInstancesDataset(
        tmp_path / "images" / "train", annotation_file, transforms=train_transforms(0.5)
    )
    categories = sorted(raw["categories"], key=lambda c: c["id"])
    assert dataset.class_names == [c["name"] for c in categories]
    assert dataset.skipped == {"crowd": len(crowd)}
    assert len(dataset) == 12
    for item in range(len(dataset)):
        _, target = dataset[item]
        anns = [
            a for a in raw["annotations"] if a["image_id"] == int(target["image_id"]) and not a["iscrowd"]
        ]
        assert target["masks"].shape == (len(anns), 64, 64)
        assert sorted(target["labels"].tolist()) == sorted(
            dataset.category_id_to_label[a["category_id"]] for a in anns
        )
        # the world's boxes and areas are those of its masks, flipped or not
        assert sorted(target["masks"].flatten(1).sum(1).tolist()) == sorted(a["area"] for a in anns)
        if anns:
            mask_boxes = masks_to_boxes(target["masks"]) + torch.tensor([0.0, 0, 1, 1])
            torch.testing.assert_close(mask_boxes, target["boxes"], atol=1e-3, rtol=0)


# --- segmentation formats, empty images, labels ------------------------------------------------


def test_polygon_uncompressed_and_compressed_rle_decode_alike(tmp_path: Path) -> None:
    expected = rect_mask(10, 5, 20, 15)
    flat = expected.flatten(order="F")  # COCO RLE runs are column-major, starting with zeros
    changes = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    compressed = mask_utils.encode(np.asfortranarray(expected))
    compressed["counts"] = compressed["counts"].decode()
    image_dir, annotation_file = write_coco(
        tmp_path,
        [
            GOOD,
            annotation(2, [10, 5, 10, 10], {"size": [HEIGHT, WIDTH], "counts": counts}),
            annotation(3, [10, 5, 10, 10], compressed),
        ],
    )
    _, target = CocoInstancesDataset(image_dir, annotation_file)[0]
    assert target["masks"].shape == (3, HEIGHT, WIDTH)
    for mask in target["masks"]:
        np.testing.assert_array_equal(mask.numpy(), expected)
    torch.testing.assert_close(target["boxes"], torch.tensor([[10.0, 5, 20, 15]] * 3))


def test_image_without_annotations_has_empty_targets(tmp_path: Path) -> None:
    image_dir, annotation_file = write_coco(tmp_path, [])
    dataset = CocoInstancesDataset(image_dir, annotation_file, transforms=train_transforms(flip_prob=1.0))
    image, target = dataset[0]
    assert image.shape == (3, HEIGHT, WIDTH)
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64
    assert target["masks"].shape == (0, HEIGHT, WIDTH) and target["masks"].dtype == torch.uint8
    assert int(target["image_id"]) == 1


def test_boxes_are_clipped_to_the_image(tmp_path: Path) -> None:
    image_dir, annotation_file = write_coco(
        tmp_path, [annotation(1, [40, -3, 20, 10], [rect_polygon(40, 0, 48, 7)])]
    )
    _, target = CocoInstancesDataset(image_dir, annotation_file)[0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[40.0, 0, 48, 7]]))


def test_training_flip_keeps_dataset_targets_in_sync(tmp_path: Path) -> None:
    image_dir, annotation_file = write_coco(tmp_path, [GOOD])
    plain = CocoInstancesDataset(image_dir, annotation_file)[0]
    flipped = CocoInstancesDataset(image_dir, annotation_file, transforms=train_transforms(1.0, 0.0))[0]
    torch.testing.assert_close(flipped[0], plain[0].flip(-1))
    torch.testing.assert_close(flipped[1]["masks"], plain[1]["masks"].flip(-1))
    torch.testing.assert_close(
        flipped[1]["boxes"], torch.tensor([[WIDTH - 20.0, 5, WIDTH - 10, 15]]), atol=1e-3, rtol=0
    )
    assert torch.equal(flipped[1]["labels"], plain[1]["labels"])


def test_instances_emptied_by_augmentation_are_dropped_and_counted(tmp_path: Path) -> None:
    right = annotation(2, [30, 5, 10, 10], [rect_polygon(30, 5, 40, 15)])
    image_dir, annotation_file = write_coco(tmp_path, [GOOD, right])
    left_half = A.Compose(
        [A.Crop(x_min=0, y_min=0, x_max=24, y_max=HEIGHT)], bbox_params=instance_bbox_params()
    )
    dataset = CocoInstancesDataset(image_dir, annotation_file, transforms=left_half)
    image, target = dataset[0]
    assert image.shape == (3, HEIGHT, 24) and target["masks"].shape == (1, HEIGHT, 24)
    assert target["boxes"].tolist() == [[10, 5, 20, 15]]
    assert dataset.skipped == {"empty_after_transform": 1}


def test_contiguous_labels_follow_category_id_order(tmp_path: Path) -> None:
    anns = [
        annotation(1, [10, 5, 10, 10], [rect_polygon(10, 5, 20, 15)], category_id=90),
        annotation(2, [1, 1, 5, 5], [rect_polygon(1, 1, 6, 6)], category_id=3),
    ]
    cats = [{"id": 90, "name": "toothbrush"}, {"id": 3, "name": "car"}, {"id": 7, "name": "train"}]
    image_dir, annotation_file = write_coco(tmp_path, anns, edit_categories(cats))
    dataset = CocoInstancesDataset(image_dir, annotation_file)
    assert dataset.class_names == ["car", "train", "toothbrush"]
    assert dataset.label_to_category_id == {1: 3, 2: 7, 3: 90}
    assert dataset.num_classes == 3
    assert dataset[0][1]["labels"].tolist() == [3, 1]


def test_category_ids_as_labels_like_torchvision(tmp_path: Path) -> None:
    anns = [annotation(1, [10, 5, 10, 10], [rect_polygon(10, 5, 20, 15)], category_id=90)]
    cats = [{"id": 90, "name": "toothbrush"}, {"id": 3, "name": "car"}]
    image_dir, annotation_file = write_coco(tmp_path, anns, edit_categories(cats))
    dataset = CocoInstancesDataset(image_dir, annotation_file, contiguous_labels=False)
    assert dataset.num_classes == 90  # a 91-way classifier with background, as torchvision's COCO models
    assert dataset.class_names[2] == "car" and dataset.class_names[89] == "toothbrush"
    assert dataset.class_names[0] == "N/A"
    assert dataset.label_to_category_id == {3: 3, 90: 90}
    assert dataset[0][1]["labels"].tolist() == [90]


def test_category_id_zero_cannot_be_a_label(tmp_path: Path) -> None:
    image_dir, annotation_file = write_coco(tmp_path, [], edit_categories([{"id": 0, "name": "zero"}]))
    assert CocoInstancesDataset(image_dir, annotation_file).label_to_category_id == {1: 0}
    with pytest.raises(DatasetFormatError, match="category id 0"):
        CocoInstancesDataset(image_dir, annotation_file, contiguous_labels=False)


# --- counted skips -----------------------------------------------------------------------------


def test_crowd_is_left_out_and_counted(tmp_path: Path) -> None:
    crowd = annotation(2, [0, 0, 30, 30], {"size": [HEIGHT, WIDTH], "counts": [0, HEIGHT * WIDTH]}, iscrowd=1)
    image_dir, annotation_file = write_coco(tmp_path, [GOOD, crowd])
    dataset = CocoInstancesDataset(image_dir, annotation_file)
    assert dataset.skipped == {"crowd": 1}
    assert len(dataset[0][1]["labels"]) == 1


def test_degenerate_box_is_a_logged_counted_skip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    thin = annotation(7, [10, 5, 0.5, 10], [rect_polygon(10, 5, 10.5, 15)])
    outside = annotation(8, [60, 5, 10, 10], [rect_polygon(60, 5, 70, 15)])  # nothing left after clipping
    image_dir, annotation_file = write_coco(tmp_path, [GOOD, thin, outside])
    with caplog.at_level(logging.WARNING, logger="datamodules.coco_instances"):
        dataset = CocoInstancesDataset(image_dir, annotation_file)
    assert dataset.skipped == {"degenerate_box": 2}
    assert "degenerate_box: 2 (annotation ids 7, 8)" in caplog.text
    assert len(caplog.records) == 1  # logged once
    assert dataset[0][1]["boxes"].tolist() == [[10, 5, 20, 15]]


def test_invalid_polygons_count_once_per_annotation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # a 4-number polygon would be read as a box by pycocotools; an odd-length one is no polygon either
    mixed = annotation(
        1, [10, 5, 10, 10], [rect_polygon(10, 5, 20, 15), [30, 5, 40, 5], [1, 2, 3, 4, 5, 6, 7]]
    )
    only_bad = annotation(2, [30, 5, 10, 10], [[30, 5, 40, 15]])
    image_dir, annotation_file = write_coco(tmp_path, [mixed, only_bad])
    with caplog.at_level(logging.WARNING, logger="datamodules.coco_instances"):
        dataset = CocoInstancesDataset(image_dir, annotation_file)
    # annotation 1 is kept without its two bad polygons (noted once); 2 has none left (skipped once)
    assert dataset.skipped == {"no_valid_polygon": 1} and dataset.noted == {"invalid_polygon_dropped": 1}
    assert "left out of the targets -- no_valid_polygon: 1 (annotation ids 2)" in caplog.text
    assert "kept with a note -- invalid_polygon_dropped: 1 (annotation ids 1)" in caplog.text
    _, target = dataset[0]
    assert target["masks"].shape == (1, HEIGHT, WIDTH)
    np.testing.assert_array_equal(target["masks"][0].numpy(), rect_mask(10, 5, 20, 15))


def test_all_zero_rle_is_an_empty_mask_skip(tmp_path: Path) -> None:
    empty = annotation(2, [0, 0, 10, 10], {"size": [HEIGHT, WIDTH], "counts": [HEIGHT * WIDTH]})
    image_dir, annotation_file = write_coco(tmp_path, [GOOD, empty])
    assert CocoInstancesDataset(image_dir, annotation_file).skipped == {"empty_mask": 1}


def test_mask_without_pixels_is_skipped_when_read_and_counted_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    line = annotation(5, [10, 5, 20, 5], [[10, 5, 20, 5, 30, 5]])  # three collinear points: no area
    image_dir, annotation_file = write_coco(tmp_path, [GOOD, line])
    dataset = CocoInstancesDataset(image_dir, annotation_file)
    assert dataset.skipped == {}
    with caplog.at_level(logging.WARNING, logger="datamodules.coco_instances"):
        for _ in range(2):
            _, target = dataset[0]
            assert target["labels"].tolist() == [1] and target["masks"].shape == (1, HEIGHT, WIDTH)
    assert dataset.skipped == {"empty_mask": 1}
    assert len(caplog.records) == 1 and "annotation id 5" in caplog.text


# --- hard errors: image files (malformed JSON: test_coco_json_checks) --------------------------


def test_missing_image_file_names_file_and_image_id(tmp_path: Path) -> None:
    image_dir, annotation_file = write_coco(tmp_path, [GOOD])
    (image_dir / "a.png").unlink()
    dataset = CocoInstancesDataset(image_dir, annotation_file)  # image files are checked per item
    with pytest.raises(DatasetFormatError, match=r"a\.png: image file for image id 1 not found"):
        dataset[0]


def test_unreadable_image_names_file_and_image_id(tmp_path: Path) -> None:
    image_dir, annotation_file = write_coco(tmp_path, [GOOD])
    (image_dir / "a.png").write_bytes(b"not an image")
    with pytest.raises(DatasetFormatError, match=r"a\.png: cannot read image file for image id 1"):
        CocoInstancesDataset(image_dir, annotation_file)[0]


def test_image_of_another_size_than_the_json_says(tmp_path: Path) -> None:
    image_dir, annotation_file = write_coco(tmp_path, [GOOD])
    Image.new("RGB", (WIDTH, HEIGHT + 1)).save(image_dir / "a.png")
    with pytest.raises(
        DatasetFormatError, match=r"a\.png: image id 1 is 48x33 pixels, the annotations say 48x32"
    ):
        CocoInstancesDataset(image_dir, annotation_file)[0]


# --- image decoding: bit depth -----------------------------------------------------------------


def test_16_bit_grayscale_png_keeps_its_top_8_bits(tmp_path: Path) -> None:
    # PIL's convert("RGB") clips 16-bit grayscale ("I;16") to 255: a silently constant image
    image_dir, annotation_file = write_coco(tmp_path, [GOOD])
    gray = np.random.default_rng(1).integers(0, 2**16, size=(HEIGHT, WIDTH), dtype=np.uint16)
    assert cv2.imwrite(str(image_dir / "a.png"), gray)
    assert Image.open(image_dir / "a.png").mode.startswith("I")  # really read as a 16-bit image
    image = read_image(image_dir / "a.png", 1, HEIGHT, WIDTH)
    expected = (gray >> 8).astype(np.uint8)
    assert image.dtype == np.uint8 and image.shape == (HEIGHT, WIDTH, 3) and len(np.unique(image)) > 100
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], expected)
    tensor, _ = CocoInstancesDataset(image_dir, annotation_file)[0]
    torch.testing.assert_close(tensor[0], torch.from_numpy(expected).float() / 255)


def test_16_bit_rgb_png_keeps_its_top_8_bits(tmp_path: Path) -> None:
    bgr = np.random.default_rng(2).integers(0, 2**16, size=(HEIGHT, WIDTH, 3), dtype=np.uint16)
    assert cv2.imwrite(str(tmp_path / "rgb16.png"), bgr)
    image = read_image(tmp_path / "rgb16.png", 1, HEIGHT, WIDTH)
    np.testing.assert_array_equal(image, (bgr[:, :, ::-1] >> 8).astype(np.uint8))


def test_32_bit_float_image_is_refused_naming_file_and_image_id(tmp_path: Path) -> None:
    Image.fromarray(np.full((HEIGHT, WIDTH), 0.5, dtype=np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(DatasetFormatError, match=r"f\.tiff: image id 7 is a 32-bit float image") as error:
        read_image(tmp_path / "f.tiff", 7, HEIGHT, WIDTH)
    assert error.value.kind == "unsupported_image"
