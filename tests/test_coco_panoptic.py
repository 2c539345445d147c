"""COCO panoptic dataset: the real COCO sample, a hand-written image with exact targets, augmentation in
sync, Cityscapes panoptic as ``createPanopticImgs`` writes it, and bad input (the DataModule:
``test_coco_panoptic_datamodule``)."""

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.batch import IGNORE_INDEX
from datamodules.coco_panoptic import CocoPanopticDataset, train_transforms
from datamodules.coco_panoptic_png import read_coco_panoptic_png, write_coco_panoptic_png
from datamodules.errors import DatasetFormatError
from datamodules.instance_transforms import train_transforms as instance_train_transforms

HEIGHT, WIDTH, IMAGE_ID = 10, 16, 5

# categories listed out of id order: things person (1) and car (3) are labels 1, 2; stuff sky (20) and
# wall (40) are semantic classes 0, 1, so person is semantic class 2 and car 3
CATEGORIES = [
    {"id": 40, "name": "wall", "isthing": 0},
    {"id": 3, "name": "car", "isthing": 1},
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 20, "name": "sky", "isthing": 0},
]
SEGMENTS = [  # id, category_id, iscrowd, (rows, columns) it covers
    (7, 1, 0, (slice(4, 9), slice(3, 8))),  # person: columns 3..7, rows 4..8 -> box (3, 4, 8, 9)
    (100, 20, 0, (slice(0, 3), slice(None))),  # sky
    (8, 3, 0, (slice(5, 7), slice(9, 11))),  # car -> box (9, 5, 11, 7)
    (9, 3, 1, (slice(9, 10), slice(0, 6))),  # a crowd of cars: semantic class, no instance
    (200, 40, 0, (slice(3, 10), slice(12, 16))),  # wall
    (11, 1, 0, (slice(4, 9), slice(11, 12))),  # a person 1 px wide: degenerate_box
]
SEMANTIC = {1: 2, 3: 3, 20: 0, 40: 1}


def hand_written_ids() -> np.ndarray:
    ids = np.zeros((HEIGHT, WIDTH), dtype=np.int64)  # the rest is void
    for segment_id, _, _, region in SEGMENTS:
        ids[region] = segment_id
    return ids


def write_panoptic(
    tmp_path: Path, edit: Callable[[dict], None] | None = None, ids: np.ndarray | None = None
) -> tuple[Path, Path]:
    """The hand-written image in the COCO layout: ``images/000005.png``, ``annotations/panoptic_val.json``
    and ``annotations/panoptic_val/000005.png``; ``edit`` may change the JSON, ``ids`` the PNG."""
    image_dir, png_dir = tmp_path / "images", tmp_path / "annotations" / "panoptic_val"
    image_dir.mkdir(parents=True, exist_ok=True)
    png_dir.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image_dir / "000005.png")
    write_coco_panoptic_png(
        torch.from_numpy(hand_written_ids() if ids is None else ids), png_dir / "000005.png"
    )
    segments_info = [
        {"id": i, "category_id": c, "iscrowd": crowd, "area": 1, "bbox": [0, 0, 1, 1]}
        for i, c, crowd, _ in SEGMENTS
    ]
    data = {
        "images": [{"id": IMAGE_ID, "file_name": "000005.png", "height": HEIGHT, "width": WIDTH}],
        "annotations": [{"image_id": IMAGE_ID, "file_name": "000005.png", "segments_info": segments_info}],
        "categories": json.loads(json.dumps(CATEGORIES)),
    }
    if edit is not None:
        edit(data)
    annotation_file = tmp_path / "annotations" / "panoptic_val.json"
    annotation_file.write_text(json.dumps(data))
    return image_dir, annotation_file


def pixel_edge_boxes(masks: torch.Tensor) -> list[list[int]]:
    """Each mask's extent as [x1, y1, x2 + 1, y2 + 1] (a pixel covers [i, i + 1))."""
    boxes = []
    for mask in masks.bool():
        rows, columns = torch.nonzero(mask, as_tuple=True)
        boxes.append(
            [columns.min().item(), rows.min().item(), columns.max().item() + 1, rows.max().item() + 1]
        )
    return boxes


# --- the hand-written image: exact targets -------------------------------------------------------


def test_hand_written_targets(tmp_path: Path) -> None:
    dataset = CocoPanopticDataset(*write_panoptic(tmp_path))
    assert dataset.panoptic_dir == tmp_path / "annotations" / "panoptic_val"  # the JSON's path, no .json
    assert dataset.class_names == ["person", "car"] and dataset.label_to_category_id == {1: 1, 2: 3}
    assert dataset.stuff_names == ["sky", "wall"] and dataset.stuff_category_ids == [20, 40]
    assert dict(dataset.skipped) == {"crowd": 1}
    image, target = dataset[0]
    assert image.shape == (3, HEIGHT, WIDTH) and image.dtype == torch.float32
    assert int(target["image_id"]) == IMAGE_ID
    ids = hand_written_ids()
    assert torch.equal(target["panoptic"], torch.from_numpy(ids))
    assert target["segments"].tolist() == [[i, c, crowd] for i, c, crowd, _ in SEGMENTS]
    expected = np.full((HEIGHT, WIDTH), IGNORE_INDEX)
    for _, category_id, _, region in SEGMENTS:
        expected[region] = SEMANTIC[category_id]
    assert torch.equal(target["semantic"], torch.from_numpy(expected))
    assert target["semantic"].dtype == torch.int64 and target["panoptic"].dtype == torch.int64
    assert target["boxes"].tolist() == [[3, 4, 8, 9], [9, 5, 11, 7]]  # pixel edges; id 11 is 1 px wide
    assert target["boxes"].dtype == torch.float32
    assert target["labels"].tolist() == [1, 2] and target["annotation_ids"].tolist() == [7, 8]
    assert target["masks"].dtype == torch.uint8
    assert torch.equal(target["masks"], torch.from_numpy(np.stack([ids == 7, ids == 8])).to(torch.uint8))
    dataset[0]
    assert dict(dataset.skipped) == {"crowd": 1, "degenerate_box": 1}  # once per segment, not per read


def test_augmentation_that_empties_segments(tmp_path: Path) -> None:
    """Targets are derived from the transformed map: segments cropped away leave ``segments`` and the
    instances, the emptied thing segments are counted (per read)."""
    crop = A.Compose([A.Crop(x_min=0, y_min=0, x_max=8, y_max=HEIGHT)])
    dataset = CocoPanopticDataset(*write_panoptic(tmp_path), transforms=crop)
    _, target = dataset[0]
    assert target["panoptic"].shape == (HEIGHT, 8)
    assert target["segments"][:, 0].tolist() == [7, 100, 9]  # JSON order, those with pixels
    assert target["annotation_ids"].tolist() == [7] and target["boxes"].tolist() == [[3, 4, 8, 9]]
    assert dataset.skipped["empty_after_transform"] == 2  # the car and the thin person
    dataset[0]
    assert dataset.skipped["empty_after_transform"] == 4


def test_instance_pipelines_work_too(tmp_path: Path) -> None:
    """A pipeline built with ``instance_bbox_params()`` (the instance family's) moves the map as well."""
    flip = instance_train_transforms(flip_prob=1.0, color_jitter=0.0)
    _, target = CocoPanopticDataset(*write_panoptic(tmp_path), transforms=flip)[0]
    assert target["boxes"].tolist() == [[WIDTH - 8, 4, WIDTH - 3, 9], [WIDTH - 11, 5, WIDTH - 9, 7]]
    assert torch.equal(target["panoptic"], torch.from_numpy(hand_written_ids()).flip(-1))


def test_predict_split_without_annotations(tmp_path: Path) -> None:
    image_dir, annotation_file = write_panoptic(tmp_path, lambda data: data.pop("annotations"))
    with pytest.raises(DatasetFormatError, match="has no 'annotations' list"):
        CocoPanopticDataset(image_dir, annotation_file)
    image, target = CocoPanopticDataset(image_dir, annotation_file, require_annotations=False)[0]
    assert image.shape == (3, HEIGHT, WIDTH) and set(target) == {"image_id"}


# --- the real COCO panoptic sample ----------------------------------------------------------------


def sample_dataset(root: Path, **kwargs) -> CocoPanopticDataset:
    return CocoPanopticDataset(root / "input_images", root / "panoptic_examples.json", **kwargs)


def test_real_coco_panoptic_sample(shared_data: Path) -> None:
    root = shared_data / "panoptic_sample"
    raw = json.loads((root / "panoptic_examples.json").read_text())
    dataset = sample_dataset(root)
    categories = sorted(raw["categories"], key=lambda c: c["id"])
    things = [c["id"] for c in categories if c["isthing"]]
    stuff = [c["id"] for c in categories if not c["isthing"]]
    assert (len(things), len(stuff)) == (80, 53)
    assert list(dataset.label_to_category_id.values()) == things and dataset.stuff_category_ids == stuff
    semantic_class = {c: s for s, c in enumerate(stuff + things)}
    assert dict(dataset.skipped) == {"crowd": 3}
    for item, image_id in enumerate(dataset.image_ids):
        info = next(i for i in raw["images"] if i["id"] == image_id)
        ann = next(a for a in raw["annotations"] if a["image_id"] == image_id)
        image, target = dataset[item]
        assert image.shape == (3, info["height"], info["width"]) and int(target["image_id"]) == image_id
        assert image.min() >= 0.0 and image.max() <= 1.0 and image.max() > 0.5
        panoptic, semantic = target["panoptic"], target["semantic"]
        assert torch.equal(panoptic, read_coco_panoptic_png(root / "panoptic_examples" / ann["file_name"]))
        segments = ann["segments_info"]
        assert target["segments"].tolist() == [[s["id"], s["category_id"], s["iscrowd"]] for s in segments]
        assert torch.equal(semantic[panoptic == 0], torch.full_like(semantic[panoptic == 0], IGNORE_INDEX))
        assert (panoptic == 0).any()  # the sample has void pixels
        for segment in segments:  # every pixel's semantic class is its segment's category's
            assert (semantic[panoptic == segment["id"]] == semantic_class[segment["category_id"]]).all()
        instances = [s for s in segments if s["category_id"] in things and not s["iscrowd"]]
        assert target["annotation_ids"].tolist() == [s["id"] for s in instances]
        labels = target["labels"].tolist()
        assert [dataset.label_to_category_id[label] for label in labels] == [
            s["category_id"] for s in instances
        ]
        masks = target["masks"]
        crowd = [s["id"] for s in segments if s["iscrowd"]]
        assert crowd and not set(crowd) & set(target["annotation_ids"].tolist())
        non_crowd_things = torch.isin(panoptic, torch.tensor([s["id"] for s in instances]))
        assert torch.equal(masks.sum(0), non_crowd_things.to(torch.int64))  # a partition of those pixels
        for mask, segment_id in zip(masks, target["annotation_ids"].tolist(), strict=True):
            assert torch.equal(mask.bool(), panoptic == segment_id)
        boxes = target["boxes"]
        assert boxes.tolist() == pixel_edge_boxes(masks)
        # COCO's bbox is the tight box in pixel-edge XYWH: the same boxes
        assert boxes.tolist() == [[x, y, x + w, y + h] for x, y, w, h in (s["bbox"] for s in instances)]


def test_flip_keeps_everything_in_sync(shared_data: Path) -> None:
    root = shared_data / "panoptic_sample"
    plain = sample_dataset(root)
    flipped = sample_dataset(root, transforms=A.Compose([A.HorizontalFlip(p=1.0)]))
    for item in range(len(plain)):
        image, target = plain[item]
        flipped_image, flipped_target = flipped[item]
        width = image.shape[-1]
        assert torch.equal(flipped_image.flip(-1), image)  # flipped back, it is the original
        for key in ("panoptic", "semantic", "masks"):
            assert torch.equal(flipped_target[key].flip(-1), target[key]), key
        x1, y1, x2, y2 = flipped_target["boxes"].unbind(1)
        assert torch.equal(torch.stack([width - x2, y1, width - x1, y2], 1), target["boxes"])
        for key in ("labels", "annotation_ids", "segments", "image_id"):
            assert torch.equal(flipped_target[key], target[key]), key


def test_default_training_pipeline_is_seeded(shared_data: Path) -> None:
    """UPSNet's training augmentation (flip 0.5) drawn from the item's seed: exact resume."""
    dataset = sample_dataset(shared_data / "panoptic_sample", transforms=train_transforms())
    assert [type(t).__name__ for t in dataset.transforms.transforms] == ["HorizontalFlip"]
    original = sample_dataset(shared_data / "panoptic_sample")[0][1]["panoptic"]
    first = [dataset.seeded_item(0, seed)[1]["panoptic"] for seed in range(6)]
    again = [dataset.seeded_item(0, seed)[1]["panoptic"] for seed in range(6)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    flipped = [torch.equal(p, original.flip(-1)) for p in first]
    assert all(f or torch.equal(p, original) for f, p in zip(flipped, first, strict=True))
    assert any(flipped) and not all(flipped)


# --- the synthetic world in COCO panoptic format ---------------------------------------------------


@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")  # pycocotools
def test_synthetic_split_matches_its_instances_json(tmp_path: Path) -> None:
    """One rendering writes the instances JSON and the panoptic files: the instances the panoptic reader
    derives from the PNGs equal those the instance reader reads from the JSON, crowd regions left out."""
    from datamodules.coco_instances import CocoInstancesDataset
    from datamodules.synthetic.coco_writer import write_coco_split
    from datamodules.synthetic.world import SceneConfig

    config = SceneConfig(crowd_prob=0.5)
    files = write_coco_split(tmp_path, "val", 4, image_size=64, config=config, keypoints=False, panoptic=True)
    panoptic = CocoPanopticDataset(tmp_path / "images" / "val", files.panoptic)
    instances = CocoInstancesDataset(tmp_path / "images" / "val", files.instances)
    assert panoptic.skipped["crowd"] == instances.skipped["crowd"] > 0
    semantic_class = {c: s for s, c in enumerate(panoptic.stuff_category_ids)}
    stuff = len(semantic_class)
    semantic_class |= {c: stuff + label - 1 for label, c in panoptic.label_to_category_id.items()}
    for item in range(len(panoptic)):
        image, target = panoptic[item]
        instance_image, instance_target = instances[item]
        assert target["image_id"] == instance_target["image_id"] and torch.equal(image, instance_image)
        assert torch.equal(target["masks"], instance_target["masks"])
        assert torch.equal(target["boxes"], instance_target["boxes"])
        category_ids = [panoptic.label_to_category_id[label] for label in target["labels"].tolist()]
        assert category_ids == [
            instances.label_to_category_id[label] for label in instance_target["labels"].tolist()
        ]
        for segment_id, category_id, _ in target["segments"].tolist():
            assert (target["semantic"][target["panoptic"] == segment_id] == semantic_class[category_id]).all()
    assert sum(len(panoptic[i][1]["labels"]) for i in range(len(panoptic))) == instances.num_targets


# --- Cityscapes panoptic, written by cityscapesscripts' createPanopticImgs ----------------------


def test_cityscapes_panoptic_layout(tmp_path: Path) -> None:
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    name = "frankfurt_000000_000294"
    instance_ids = np.zeros((HEIGHT, WIDTH), dtype=np.uint16)  # 0: unlabeled, ignored in evaluation
    instance_ids[:3] = 23  # sky (stuff)
    instance_ids[3:, :4] = 7  # road (stuff)
    instance_ids[4:9, 5:9] = 26000  # car instance 0
    instance_ids[4:9, 10:12] = 24001  # person instance 1
    instance_ids[9, 5:] = 26  # a crowd of cars (no instance id)
    instance_ids[5, 14] = 4  # static: ignored in evaluation, void
    (tmp_path / "gtFine" / "val" / "frankfurt").mkdir(parents=True)
    Image.fromarray(instance_ids).save(
        tmp_path / "gtFine" / "val" / "frankfurt" / f"{name}_gtFine_instanceIds.png"
    )
    image_dir = tmp_path / "leftImg8bit" / "val"
    (image_dir / "frankfurt").mkdir(parents=True)
    pixels = np.random.default_rng(1).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image_dir / "frankfurt" / f"{name}_leftImg8bit.png")
    convert2panoptic(str(tmp_path / "gtFine"), str(tmp_path / "gtFine"), setNames=["val"])
    annotation_file = tmp_path / "gtFine" / "cityscapes_panoptic_val.json"
    raw = json.loads(annotation_file.read_text())
    assert (
        raw["images"][0]["id"] == name and raw["images"][0]["file_name"] == f"{name}_gtFine_leftImg8bit.png"
    )

    dataset = CocoPanopticDataset(image_dir, annotation_file)
    assert dataset.panoptic_dir == tmp_path / "gtFine" / "cityscapes_panoptic_val"
    assert dataset.class_names == ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    assert dataset.label_to_category_id[3] == 26 and len(dataset.stuff_names) == 11
    assert dataset.image_ids == [name]
    image, target = dataset[0]
    assert int(target["image_id"]) == 0  # string ids: the item's index
    assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    assert target["annotation_ids"].tolist() == [24001, 26000]  # createPanopticImgs lists ids sorted
    assert target["labels"].tolist() == [1, 3]
    assert target["boxes"].tolist() == [[10, 4, 12, 9], [5, 4, 9, 9]]
    assert sorted(target["segments"].tolist()) == [
        [7, 7, 0],
        [23, 23, 0],
        [26, 26, 1],
        [24001, 24, 0],
        [26000, 26, 0],
    ]
    stuff = dataset.stuff_category_ids
    assert target["semantic"][0, 0] == stuff.index(23) and target["semantic"][9, 5] == len(stuff) + 3 - 1
    assert target["semantic"][5, 14] == IGNORE_INDEX and target["panoptic"][5, 14] == 0


# --- bad input ------------------------------------------------------------------------------------


def edit_segment(key: str, value) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["annotations"][0]["segments_info"][2][key] = value  # segment id 8

    return edit


def without_isthing(data: dict) -> None:
    del data["categories"][1]["isthing"]


def unknown_image(data: dict) -> None:
    data["annotations"][0]["image_id"] = 6


def duplicate_annotation(data: dict) -> None:
    data["annotations"].append(data["annotations"][0])


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            edit_segment("category_id", 99),
            r"annotation #0 \(image id 5\) segment id 8 has category id 99, not in",
        ),
        (edit_segment("id", 7), r"annotation #0 \(image id 5\) segment id 7 appears twice"),
        (edit_segment("iscrowd", 2), r"segment id 8 needs 'iscrowd' 0 or 1"),
        (edit_segment("id", 0), r"segment id 0: needs an integer 'id' in 1\.\.16777215"),
        (without_isthing, r"category id 3 \('car'\) needs 'isthing' 0 or 1"),
        (unknown_image, r"annotation #0 \(image id 6\) refers to an image id not in 'images'"),
        (duplicate_annotation, r"annotation #1 \(image id 5\): a second annotation for this image"),
        (lambda data: data["annotations"].clear(), r"image ids 5 have no panoptic annotation"),
        (lambda data: data["images"].append({**data["images"][0], "id": "x"}), "mix integers and strings"),
    ],
)
def test_json_errors_at_construction(tmp_path: Path, edit: Callable[[dict], None], expected: str) -> None:
    image_dir, annotation_file = write_panoptic(tmp_path, edit)
    with pytest.raises(DatasetFormatError) as error:
        CocoPanopticDataset(image_dir, annotation_file)
    assert str(error.value).startswith(str(annotation_file)) and re.search(expected, str(error.value))


def test_png_ids_not_in_segments_info(tmp_path: Path) -> None:
    ids = hand_written_ids()
    ids[0, 0] = 555
    dataset = CocoPanopticDataset(*write_panoptic(tmp_path, ids=ids))
    with pytest.raises(DatasetFormatError) as error:
        dataset[0]
    png = dataset.panoptic_dir / "000005.png"
    assert str(error.value).startswith(f"{png}: image id 5: segment ids 555 are in the PNG but not in")
    assert error.value.kind == "unknown_segment_id"


def test_segment_without_pixels(tmp_path: Path) -> None:
    ids = hand_written_ids()
    ids[ids == 8] = 0
    dataset = CocoPanopticDataset(*write_panoptic(tmp_path, ids=ids))
    with pytest.raises(
        DatasetFormatError,
        match=r"000005\.png: image id 5: segment ids 8 \(in .*panoptic_val\.json\) have no pixel",
    ):
        dataset[0]


@pytest.mark.parametrize("which", ["png", "image"])
def test_file_sizes_must_agree(tmp_path: Path, which: str) -> None:
    image_dir, annotation_file = write_panoptic(tmp_path)
    dataset = CocoPanopticDataset(image_dir, annotation_file)
    if which == "png":
        path = dataset.panoptic_dir / "000005.png"
        write_coco_panoptic_png(torch.from_numpy(hand_written_ids()[:, :12].copy()), path)
        expected = r"the panoptic PNG of image id 5 is 12x10 pixels, the image and the JSON say 16x10"
    else:
        path = image_dir / "000005.png"
        Image.new("RGB", (12, HEIGHT)).save(path)
        expected = r"image id 5 is 12x10 pixels, the annotations say 16x10"
    with pytest.raises(DatasetFormatError, match=expected) as error:
        dataset[0]
    assert str(error.value).startswith(str(path))


@pytest.mark.parametrize("which", ["png", "image"])
def test_missing_files(tmp_path: Path, which: str) -> None:
    image_dir, annotation_file = write_panoptic(tmp_path)
    dataset = CocoPanopticDataset(image_dir, annotation_file)
    path = dataset.panoptic_dir / "000005.png" if which == "png" else image_dir / "000005.png"
    path.unlink()
    with pytest.raises(DatasetFormatError, match="image id 5") as error:
        dataset[0]
    assert str(error.value).startswith(str(path)) and "not found" in str(error.value)
    assert error.value.kind == f"missing_{which}"


def test_corrupted_copy_of_the_real_sample(shared_data: Path, tmp_path: Path) -> None:
    """A real PNG with one segment painted over by an id the JSON does not list."""
    root = tmp_path / "panoptic_sample"
    shutil.copytree(shared_data / "panoptic_sample", root)
    png = root / "panoptic_examples" / "000000439180.png"
    ids = read_coco_panoptic_png(png)
    ids[ids == 4587520] = 4242
    write_coco_panoptic_png(ids, png)
    dataset = sample_dataset(root)
    dataset[0]  # the other image is fine
    with pytest.raises(DatasetFormatError) as error:
        dataset[1]
    message = str(error.value)
    assert message.startswith(f"{png}: image id 439180: segment ids 4242 are in the PNG but not in")
