"""The synthetic world in the COCO panoptic format: valid files, equal to the scene and the instances JSON,
deterministic, PQ = 1 for the ground truth with the reference evaluator and ours, and the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from datamodules.coco_panoptic_png import read_coco_panoptic_png
from datamodules.synthetic import coco_writer
from datamodules.synthetic.coco_writer import scene_rng, write_coco_split
from datamodules.synthetic.panoptic import panoptic_categories, scene_panoptic
from datamodules.synthetic.world import (
    STUFF_CLASSES,
    THING_CLASSES,
    Scene,
    SceneConfig,
    Shape,
    Thing,
    render_scene,
)
from metrics.panoptic_quality import PanopticQuality, PanopticSegmentation
from zoo.tools import synthetic as synthetic_tool

SPLIT, COUNT, SIZE, SEED = "val", 6, 64, 0
CONFIG = SceneConfig(crowd_prob=0.5)  # seed 0 gives 3 crowd regions in 6 images


def _write(out: Path, **kwargs) -> coco_writer.CocoSplitFiles:
    return write_coco_split(out, SPLIT, COUNT, image_size=SIZE, seed=SEED, config=CONFIG, **kwargs)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("panoptic")
    files = _write(out, keypoints=False, panoptic=True)
    assert files.panoptic == out / "annotations" / f"panoptic_{SPLIT}.json"
    return out


def _load(out: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    dataset = json.loads((out / "annotations" / f"panoptic_{SPLIT}.json").read_text())
    folder = out / "annotations" / f"panoptic_{SPLIT}"
    ids = {a["file_name"]: read_coco_panoptic_png(folder / a["file_name"]) for a in dataset["annotations"]}
    return dataset, ids


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _near(mask: np.ndarray) -> np.ndarray:
    """Pixels with ``mask`` in their 3 x 3 neighbourhood."""
    padded = np.pad(mask, 1)
    height, width = mask.shape
    return np.logical_or.reduce(
        [padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
    )


def test_files_are_valid_coco_panoptic(written: Path) -> None:
    dataset, ids = _load(written)
    assert set(dataset) == {"info", "licenses", "images", "annotations", "categories"}
    instances = json.loads((written / "annotations" / f"instances_{SPLIT}.json").read_text())
    assert dataset["images"] == instances["images"]
    assert dataset["categories"] == panoptic_categories()
    categories = {c["id"]: c for c in dataset["categories"]}
    assert sorted(categories) == list(range(1, 9))
    assert {c: categories[c]["isthing"] for c in categories} == {c: int(c <= 4) for c in range(1, 9)}
    assert all({"name", "supercategory", "color"} <= set(c) for c in categories.values())
    assert len({tuple(c["color"]) for c in categories.values()}) == len(categories)
    assert [(a["image_id"], a["file_name"]) for a in dataset["annotations"]] == [
        (i, f"{i:06d}.png") for i in range(1, COUNT + 1)
    ]
    void = crowds = 0
    for annotation in dataset["annotations"]:
        image = ids[annotation["file_name"]].numpy()
        assert image.shape == (SIZE, SIZE)
        segments = annotation["segments_info"]
        assert [s["id"] for s in segments] == list(range(1, len(segments) + 1))
        assert set(np.unique(image).tolist()) <= {0} | {s["id"] for s in segments}
        for segment in segments:
            mask = image == segment["id"]
            assert mask.any(), f"segment {segment['id']} of {annotation['file_name']} has no pixels"
            assert segment["area"] == int(mask.sum()) and segment["bbox"] == _bbox(mask)
            assert segment["category_id"] in categories
            assert segment["iscrowd"] in (0, 1)
            assert not segment["iscrowd"] or categories[segment["category_id"]]["isthing"]
            crowds += segment["iscrowd"]
        stuff = [s["category_id"] for s in segments if not categories[s["category_id"]]["isthing"]]
        assert stuff == sorted(set(stuff)), "one segment per stuff category, by category id"
        void += int((image == 0).sum())
    assert void > 0 and crowds > 0


def test_segments_equal_the_scene_and_the_instances_json(written: Path) -> None:
    dataset, ids = _load(written)
    coco = COCO(str(written / "annotations" / f"instances_{SPLIT}.json"))
    thing_ids = {c.category_id for c in THING_CLASSES}
    for index, annotation in enumerate(dataset["annotations"]):
        scene = render_scene(scene_rng(SEED, SPLIT, index), SIZE, CONFIG)
        image = ids[annotation["file_name"]].numpy()
        instances = sorted(
            coco.loadAnns(coco.getAnnIds(imgIds=[annotation["image_id"]], iscrowd=None)),
            key=lambda a: a["id"],
        )
        things = [s for s in annotation["segments_info"] if s["category_id"] in thing_ids]
        assert len(things) == len(instances) == len(scene.things)
        for segment, instance in zip(things, instances, strict=True):
            np.testing.assert_array_equal(image == segment["id"], coco.annToMask(instance).astype(bool))
            assert (segment["category_id"], segment["iscrowd"]) == (
                instance["category_id"],
                instance["iscrowd"],
            )
            assert segment["area"] == instance["area"]
        on_things = np.logical_or.reduce([t.mask for t in scene.things])
        void = _near(on_things) & ~on_things  # the 1 px band of stuff around things
        np.testing.assert_array_equal(image == 0, void)
        stuff = {
            s["category_id"]: image == s["id"] for s in annotation["segments_info"] if s["id"] > len(things)
        }
        for category in STUFF_CLASSES:
            expected = (scene.stuff_map == category.category_id) & ~on_things & ~void
            assert (category.category_id in stuff) == bool(expected.any())
            np.testing.assert_array_equal(stuff.get(category.category_id, expected), expected)


def test_void_band_and_covered_stuff_on_a_hand_made_scene() -> None:
    stuff_map = np.full((12, 12), 5, np.uint8)  # sky, with a 2 x 2 patch of grass under the square
    stuff_map[5:7, 5:7] = 6
    mask = np.zeros((12, 12), bool)
    mask[4:8, 4:8] = True
    shape = Shape(THING_CLASSES[1], (6.0, 6.0), 2.0 * np.sqrt(2), np.pi / 4, (255, 0, 0))
    scene = Scene(np.zeros((12, 12, 3), np.uint8), stuff_map, [Thing(3, (shape,), mask)])
    annotation = scene_panoptic(scene)
    assert annotation.segments_info == [
        {
            "id": 1,
            "category_id": shape.thing_class.category_id,
            "area": 16,
            "bbox": [4, 4, 4, 4],
            "iscrowd": 0,
        },
        {"id": 2, "category_id": 5, "area": 144 - 36, "bbox": [0, 0, 12, 12], "iscrowd": 0},
    ]
    ring = np.zeros((12, 12), bool)
    ring[3:9, 3:9] = True
    ring[4:8, 4:8] = False
    np.testing.assert_array_equal(annotation.ids == 0, ring)
    assert (scene_panoptic(scene, band=0).ids == 0).sum() == 0
    assert (scene_panoptic(scene, band=2).ids == 0).sum() == 64 - 16


def test_deterministic_and_the_same_images_and_instances_as_the_coco_format(
    written: Path, tmp_path: Path
) -> None:
    _write(tmp_path / "again", keypoints=False, panoptic=True)
    _write(tmp_path / "coco", keypoints=True)
    first, again, coco = _files(written), _files(tmp_path / "again"), _files(tmp_path / "coco")
    assert first == again
    assert len([name for name in first if name.startswith(f"annotations/panoptic_{SPLIT}/")]) == COUNT
    shared = {name: data for name, data in first.items() if "panoptic" not in name}
    assert shared == {name: data for name, data in coco.items() if "keypoints" not in name}


def test_ground_truth_as_prediction_has_pq_one_with_the_reference_and_ours(written: Path) -> None:
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as reference

    dataset, ids = _load(written)
    categories = {c["id"]: c for c in dataset["categories"]}
    folder = str(written / "annotations" / f"panoptic_{SPLIT}")
    pairs = [(a, a) for a in dataset["annotations"]]
    stat = reference.pq_compute_single_core(0, pairs, folder, folder, categories)
    results = reference.average_pq(stat, categories)
    for group in ("All", "Things", "Stuff"):
        assert results[group]["n"] > 0
        assert results[group]["pq"] == results[group]["sq"] == results[group]["rq"] == 1.0, group
    metric = PanopticQuality({c: bool(info["isthing"]) for c, info in categories.items()})
    for annotation in dataset["annotations"]:
        segmentation = PanopticSegmentation.from_coco(
            ids[annotation["file_name"]], annotation["segments_info"]
        )
        metric.update([segmentation], [segmentation])
    ours = metric.compute()
    for name in ("PQ", "PQ_things", "PQ_stuff"):
        assert float(ours[name]) == 1.0, name


def test_cli_writes_panoptic_and_renders_once_with_coco(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--train-images", "2", "--val-images", "1", "--size", "48", "--seed", "1"]
    assert synthetic_tool.main(["--out", str(tmp_path / "p"), *argv, "--formats", "panoptic"]) == 0
    out = capsys.readouterr().out
    for split, count in (("train", 2), ("val", 1)):
        annotations = tmp_path / "p" / "annotations"
        assert str(annotations / f"panoptic_{split}.json") in out
        dataset = json.loads((annotations / f"panoptic_{split}.json").read_text())
        assert len(dataset["annotations"]) == count
        for entry in dataset["annotations"]:
            assert (annotations / f"panoptic_{split}" / entry["file_name"]).is_file()
        assert (annotations / f"instances_{split}.json").is_file()
        assert not (annotations / f"keypoints_{split}.json").exists()
    rendered: list[int] = []

    def counting_render(*args, **kwargs):
        rendered.append(1)
        return render_scene(*args, **kwargs)

    monkeypatch.setattr(coco_writer, "render_scene", counting_render)
    assert synthetic_tool.main(["--out", str(tmp_path / "both"), *argv, "--formats", "panoptic,coco"]) == 0
    assert len(rendered) == 3
    both = _files(tmp_path / "both")
    assert {n: d for n, d in both.items() if "keypoints" not in n} == _files(tmp_path / "p")
    assert "annotations/keypoints_val.json" in both
