"""The synthetic world v1: determinism, exact COCO masks, occlusion rules, class coverage and the CLI."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from datamodules.synthetic.coco_writer import (
    coco_annotation,
    mask_to_segmentation,
    scene_rng,
    write_coco_instances,
)
from datamodules.synthetic.world import (
    STUFF_CLASSES,
    THING_CLASSES,
    SceneConfig,
    Shape,
    paint_things,
    render_scene,
)
from zoo.tools import synthetic as synthetic_tool


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def test_same_seed_same_bytes_and_images_independent_of_count(tmp_path: Path) -> None:
    for name, count, seed in (("a", 4, 3), ("b", 4, 3), ("c", 2, 3), ("d", 4, 4)):
        write_coco_instances(tmp_path / name, "train", count, image_size=64, seed=seed)
    a, b, c, d = (_files(tmp_path / name) for name in "abcd")
    assert a == b
    assert len(a) == 5  # 4 PNGs and the JSON
    for image in ("images/train/000001.png", "images/train/000002.png"):
        assert c[image] == a[image]
    assert d["annotations/instances_train.json"] != a["annotations/instances_train.json"]
    assert d["images/train/000001.png"] != a["images/train/000001.png"]


def test_coco_json_matches_the_rendered_scenes(tmp_path: Path) -> None:
    config, size, seed, count = SceneConfig(crowd_prob=0.5), 96, 7, 24
    annotation_file = write_coco_instances(tmp_path, "val", count, image_size=size, seed=seed, config=config)
    raw = json.loads(annotation_file.read_text())
    assert [c["id"] for c in raw["categories"]] == [1, 2, 3, 4]
    coco = COCO(str(annotation_file))
    assert sorted(coco.getImgIds()) == list(range(1, count + 1))
    kinds: list[tuple[str, bool]] = []
    for index in range(count):
        image_id = index + 1
        scene = render_scene(scene_rng(seed, "val", index), size, config)
        info = coco.loadImgs(image_id)[0]
        assert (info["width"], info["height"], info["file_name"]) == (size, size, f"{image_id:06d}.png")
        png = np.asarray(Image.open(tmp_path / "images" / "val" / info["file_name"]).convert("RGB"))
        np.testing.assert_array_equal(png, scene.image)
        annotations = sorted(
            coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=None)), key=lambda a: a["id"]
        )
        assert len(annotations) == len(scene.things) >= 1
        coverage = np.zeros((size, size), np.int64)
        for annotation, thing in zip(annotations, scene.things, strict=True):
            decoded = coco.annToMask(annotation).astype(bool)
            np.testing.assert_array_equal(decoded, thing.mask)
            assert annotation["category_id"] == thing.category_id
            assert annotation["iscrowd"] == int(thing.iscrowd)
            assert annotation["area"] == int(thing.mask.sum())
            assert annotation["bbox"] == _bbox(thing.mask)
            segmentation = annotation["segmentation"]
            if isinstance(segmentation, dict):
                assert isinstance(segmentation["counts"], str) and segmentation["size"] == [size, size]
            kinds.append(("polygon" if isinstance(segmentation, list) else "rle", bool(thing.iscrowd)))
            coverage += decoded
        assert coverage.max() <= 1, f"visible masks of image {image_id} overlap"
    assert ("rle", True) in kinds and ("polygon", True) not in kinds
    # Polygons are the common case: only split or holed visible masks need RLE.
    assert kinds.count(("polygon", False)) >= 0.9 * sum(not crowd for _, crowd in kinds)


def test_mask_to_segmentation_polygon_only_for_one_clean_component() -> None:
    rectangle = np.zeros((20, 30), bool)
    rectangle[3:9, 5:17] = True
    ring = rectangle.copy()
    ring[5:7, 8:12] = False
    two_blobs = rectangle.copy()
    two_blobs[12:18, 20:28] = True
    rotated = np.zeros((20, 30), bool)
    rotated[
        cv2.fillPoly(np.zeros((20, 30), np.uint8), [np.array([[2, 10], [14, 1], [27, 9], [12, 18]])], 1) > 0
    ] = True
    for mask, expect_polygon in ((rectangle, True), (rotated, True), (ring, False), (two_blobs, False)):
        segmentation = mask_to_segmentation(mask)
        assert isinstance(segmentation, list) == expect_polygon
        if isinstance(segmentation, list):
            assert len(segmentation) == 1 and len(segmentation[0]) >= 6
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, 20, 30))
        else:
            rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)
    annotation = coco_annotation(two_blobs, annotation_id=5, image_id=2, category_id=3, iscrowd=True)
    assert annotation["area"] == 72 + 48 and annotation["bbox"] == [5.0, 3.0, 23.0, 15.0]
    assert isinstance(annotation["segmentation"], dict) and annotation["iscrowd"] == 1


def test_occlusion_drops_mostly_hidden_things_and_does_not_paint_them() -> None:
    config = SceneConfig(min_visible_fraction=0.25, min_visible_pixels=4)
    square = THING_CLASSES[1]
    half_side = np.sqrt(2) / 2  # the unit square has circumradius 1, axis-aligned at 45 degrees

    def layer(instance_id: int, x: float, y: float, side: float, colour: tuple[int, int, int]):
        return instance_id, (Shape(square, (x, y), side / 2 / half_side, np.pi / 4, colour),), False

    background = np.zeros((40, 40, 3), np.uint8)
    layers = [
        layer(1, 10, 10, 8, (255, 0, 0)),
        layer(2, 12, 12, 8, (0, 255, 0)),  # 2 covers 3/4 of 1: kept
        layer(3, 30, 30, 8, (0, 0, 255)),
        layer(4, 30.5, 30.5, 8, (255, 255, 0)),
    ]  # 4 hides 3: dropped
    image, things = paint_things(background, layers, config)
    assert [t.instance_id for t in things] == [1, 2, 4]
    masks = {t.instance_id: t.mask for t in things}
    assert masks[1].sum() == 64 - 36 and masks[2].sum() == 64 and masks[4].sum() == 64
    assert not (masks[1] & masks[2]).any()
    np.testing.assert_array_equal(image[masks[1]], np.tile([255, 0, 0], (28, 1)))
    assert not (image == [0, 0, 255]).all(axis=-1).any(), "a dropped thing was painted"
    painted = (image != 0).any(axis=-1)
    np.testing.assert_array_equal(painted, masks[1] | masks[2] | masks[4])


def test_shape_geometry_is_consistent_with_its_mask() -> None:
    rng = np.random.default_rng(0)
    for thing_class in THING_CLASSES:
        shape = Shape(thing_class, (40.3, 37.9), 20.0, float(rng.uniform(0, 2 * np.pi)), (255, 255, 255))
        outline = shape.outline()
        np.testing.assert_allclose(shape.to_local(outline), np.array(thing_class.unit_outline), atol=1e-9)
        assert np.linalg.norm(outline - shape.center, axis=1).max() == pytest.approx(20.0)
        x, y = outline[:, 0], outline[:, 1]
        polygon_area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        perimeter = np.linalg.norm(outline - np.roll(outline, 1, axis=0), axis=1).sum()
        assert abs(shape.full_mask(80).sum() - polygon_area) < 0.1 * perimeter


def test_scenes_use_every_class_and_things_stand_out() -> None:
    config, size = SceneConfig(), 64
    thing_ids, stuff_ids = set(), set()
    for index in range(40):
        scene = render_scene(scene_rng(0, "train", index), size, config)
        assert scene.image.shape == (size, size, 3) and scene.image.dtype == np.uint8
        assert config.min_things <= sum(not t.iscrowd for t in scene.things) <= config.max_things
        assert len({t.instance_id for t in scene.things}) == len(scene.things)
        thing_ids |= {t.category_id for t in scene.things}
        stuff_ids |= set(np.unique(scene.stuff_map).tolist())
        saturation = cv2.cvtColor(scene.image, cv2.COLOR_RGB2HSV)[..., 1]
        on_things = np.logical_or.reduce([t.mask for t in scene.things])
        assert saturation[~on_things].max() < saturation[on_things].min()
        for thing in scene.things:
            full = np.logical_or.reduce([shape.full_mask(size) for shape in thing.shapes])
            assert thing.mask.sum() >= config.min_visible_fraction * full.sum()
    assert thing_ids == {c.category_id for c in THING_CLASSES}
    assert stuff_ids == {c.category_id for c in STUFF_CLASSES}
    assert not thing_ids & stuff_ids


def test_cli_writes_train_and_val(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path), "--train-images", "3", "--val-images", "2", "--size", "48", "--seed", "1"]
    assert synthetic_tool.main(argv) == 0
    out = capsys.readouterr().out
    for split, count in (("train", 3), ("val", 2)):
        annotation_file = tmp_path / "annotations" / f"instances_{split}.json"
        assert str(annotation_file) in out
        images = json.loads(annotation_file.read_text())["images"]
        assert len(images) == count
        assert all((tmp_path / "images" / split / image["file_name"]).is_file() for image in images)
    train_first = (tmp_path / "images" / "train" / "000001.png").read_bytes()
    assert train_first != (tmp_path / "images" / "val" / "000001.png").read_bytes()


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        synthetic_tool.main(["--out", str(tmp_path), "--size", "16"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        synthetic_tool.main(["--out", str(tmp_path), "--train-images", "-1"])
    with pytest.raises(ValueError, match="split"):
        write_coco_instances(tmp_path, "../train", 1)
    with pytest.raises(ValueError, match="num_images"):
        write_coco_instances(tmp_path, "train", -1)
    assert not any(tmp_path.iterdir())
