"""Keypoints of the synthetic world: canonical order, flip pairs, occlusion visibility, the COCO keypoint
JSON as the top-down reader and COCOeval take it, determinism, the YAML layout and the CLI."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from jsonargparse import ArgumentParser
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datamodules.coco_keypoints import CocoKeypointsDataset, TopDownAugmentation
from datamodules.keypoint_layouts import KeypointLayout
from datamodules.synthetic.coco_writer import scene_rng, write_coco_instances, write_coco_keypoints
from datamodules.synthetic.keypoints import (
    OUTLINE_KEYPOINTS,
    keypoint_visibility,
    points_in_polygon,
    scene_keypoints,
    shape_keypoint_layout,
    shape_keypoints,
)
from datamodules.synthetic.world import (
    THING_CLASSES,
    Scene,
    SceneConfig,
    Shape,
    Thing,
    paint_things,
    render_scene,
)
from zoo.tools import synthetic as synthetic_tool

CLASSES = {c.name: c for c in THING_CLASSES}
STAR_ID = CLASSES["star"].category_id
WHITE = (255, 255, 255)


def _symmetry_angle(name: str) -> float:
    """The turn that maps the class's outline onto itself (a tip to the next tip for the star)."""
    return 2 * math.pi * OUTLINE_KEYPOINTS[name].period / len(CLASSES[name].unit_outline)


def _rotate(points: np.ndarray, center: np.ndarray, angle: float) -> np.ndarray:
    """Turn ``points`` about ``center`` by ``angle`` clockwise on screen (Shape's sense)."""
    c, s = math.cos(angle), math.sin(angle)
    return (points - center) @ np.array([[c, -s], [s, c]]).T + center


def _angle_from_up(points: np.ndarray, center: np.ndarray) -> np.ndarray:
    offsets = points - center
    return np.arctan2(offsets[:, 0], -offsets[:, 1])


def _shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def test_layouts() -> None:
    expected = {
        "circle": (("centre", "top", "right", "bottom", "left"), ((2, 4),)),
        "square": (("centre", "corner_1", "corner_2", "corner_3", "corner_4"), ((2, 4),)),
        "triangle": (("centre", "corner_1", "corner_2", "corner_3"), ((2, 3),)),
        "star": (
            ("centre", *(f"{kind}_{i}" for i in range(1, 6) for kind in ("tip", "inner"))),
            ((2, 10), (3, 9), (4, 8), (5, 7)),
        ),
    }
    for name, (names, flip_pairs) in expected.items():
        layout = shape_keypoint_layout(name)
        assert layout.names == names and layout.flip_pairs == flip_pairs
        assert layout.oks_sigmas == (0.025,) * len(names) and layout.normalizing_keypoints is None
        n = len(names) - 1
        edges = {(1 + k, 1 + (k + 1) % n) for k in range(n)}
        spokes = {
            (0, i)
            for i, kp in enumerate(names)
            if kp.startswith(("tip", "corner")) or (name == "circle" and i > 0)
        }
        assert set(layout.skeleton) == edges | spokes and len(layout.skeleton) == len(edges | spokes)
        assert len(spokes) == (5 if name == "star" else n)
    with pytest.raises(ValueError, match="hexagon"):
        shape_keypoint_layout("hexagon")


def test_order_is_canonical_under_symmetry_turns() -> None:
    """A shape turned by whole symmetry angles plus a small angle is the shape turned by the small angle
    alone, so its keypoints are those turned by the small angle, with the same identities; once the first
    point is more than half a symmetry angle from up, "first" passes to the next candidate counter-clockwise
    (the wrap)."""
    rng = np.random.default_rng(1)
    center = np.array([50.3, 47.1])
    for name, thing_class in CLASSES.items():
        symmetry = _symmetry_angle(name)
        offset = float(rng.uniform(-0.2, 0.2))  # of a symmetry angle, from straight up

        def keypoints(turns: float, thing_class=thing_class, symmetry=symmetry) -> np.ndarray:
            shape = Shape(thing_class, (center[0], center[1]), 20.0, turns * symmetry, WHITE)
            return shape_keypoints(shape)

        base = keypoints(offset)
        assert abs(_angle_from_up(base[1:2], center)[0]) <= symmetry / 2
        assert _shoelace(base[1:]) > 0  # clockwise on screen
        for whole in (-3, -1, 0, 1, 2, 7):
            for small in (0.1, -0.15):
                np.testing.assert_allclose(
                    keypoints(whole + offset + small), _rotate(base, center, small * symmetry), atol=1e-9
                )
            # The first point 0.65 symmetry angles clockwise from up: the same shape as at -0.35.
            wrapped = keypoints(whole + 0.65)
            np.testing.assert_allclose(wrapped, _rotate(base, center, (-0.35 - offset) * symmetry), atol=1e-9)
            assert np.abs(wrapped[1] - _rotate(base, center, (0.65 - offset) * symmetry)[1]).max() > 1.0


def test_star_wrap_moves_to_the_previous_tip() -> None:
    """A star just past 36 degrees clockwise: the tip that was fifth is now the first."""
    center = np.array([40.0, 40.0])
    before = shape_keypoints(Shape(CLASSES["star"], tuple(center), 20.0, math.radians(35.0), WHITE))
    after = shape_keypoints(Shape(CLASSES["star"], tuple(center), 20.0, math.radians(37.0), WHITE))
    turned = _rotate(before, center, math.radians(2.0))
    np.testing.assert_allclose(after[1:], np.roll(turned[1:], 2, axis=0), atol=1e-9)
    assert abs(math.degrees(_angle_from_up(after[1:2], center)[0]) + 35.0) < 1e-6


def test_mirrored_shape_has_mirrored_keypoints_by_the_flip_permutation() -> None:
    """Random angles (no exact ties between two candidates): the mirror image's keypoints are the mirrored
    keypoints reordered by the layout's flip permutation."""
    width = 100.0
    rng = np.random.default_rng(2)
    for name, thing_class in CLASSES.items():
        permutation = shape_keypoint_layout(name).flip_permutation()
        for _ in range(50):
            center = rng.uniform(20, 80, size=2)
            angle = float(rng.uniform(0, 2 * np.pi))
            shape = Shape(thing_class, (center[0], center[1]), 15.0, angle, WHITE)
            mirrored = Shape(thing_class, (width - center[0], center[1]), 15.0, -angle, WHITE)
            outline = shape.outline()
            mirrored_outline = mirrored.outline()
            # The unit outlines are symmetric about x = 0, so ``mirrored`` is the mirror image of ``shape``.
            flipped_outline = outline * [-1, 1] + [width, 0]
            assert np.abs(mirrored_outline[:, None] - flipped_outline[None]).sum(-1).min(1).max() < 1e-9
            keypoints = shape_keypoints(shape)
            flipped = (keypoints * [-1, 1] + [width, 0])[permutation]
            np.testing.assert_allclose(shape_keypoints(mirrored), flipped, atol=1e-9)


def test_points_in_polygon() -> None:
    square = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    points = np.array([[2.0, 2.0], [5.0, 2.0], [-0.1, 1.0], [3.9, 3.9], [2.0, 4.5]])
    assert points_in_polygon(points, square).tolist() == [True, False, False, True, False]
    star = Shape(CLASSES["star"], (10.0, 10.0), 8.0, 0.0, WHITE)
    inner_1 = math.radians(36)  # its first inner corner, at radius 4; 20 % further out lies outside
    beyond = 10.0 + 4.8 * np.array([[math.sin(inner_1), -math.cos(inner_1)]])
    assert not points_in_polygon(beyond, star.outline())[0]
    assert points_in_polygon(np.array([[10.0, 10.0]]), star.outline())[0]


def _axis_square(x0: float, y0: float, side: float) -> Shape:
    """An axis-aligned square [x0, x0 + side] x [y0, y0 + side] (the unit square is a diamond)."""
    center = (x0 + side / 2, y0 + side / 2)
    return Shape(CLASSES["square"], center, side / math.sqrt(2), math.pi / 4, (0, 200, 0))


def test_visibility_from_occlusion_and_the_image_border() -> None:
    """A star tip under a later square gets v = 1, a triangle corner outside the image v = 0 (and x = y =
    0), a tip under a dropped (never painted) thing v = 2; crowd regions get no keypoints."""
    config = SceneConfig(min_visible_fraction=0.25, min_visible_pixels=16)
    star = Shape(CLASSES["star"], (32.0, 32.0), 16.0, 0.0, (200, 0, 200))
    tip_2 = shape_keypoints(star)[3]  # 72 degrees clockwise from up
    assert tip_2 == pytest.approx(
        (32 + 16 * math.sin(math.radians(72)), 32 - 16 * math.cos(math.radians(72)))
    )
    triangle = Shape(CLASSES["triangle"], (3.0, 10.0), 8.0, 0.0, (0, 0, 200))
    crowd = tuple(Shape(CLASSES["circle"], (44.0 + 7 * i, 57.0), 3.0, 0.0, WHITE) for i in range(3))
    middle = _axis_square(45.5, 22.0, 10.0)  # contains tip_2 (x = 47.22)
    for top_x0, middle_kept in ((47.5, False), (50.0, True)):
        top = _axis_square(top_x0, 22.0, 10.0)  # covers 80 % or 50 % of ``middle``, never tip_2
        layers = [
            (1, crowd, True),
            (2, (star,), False),
            (3, (triangle,), False),
            (4, (middle,), False),
            (5, (top,), False),
        ]
        image, things = paint_things(np.zeros((64, 64, 3), np.uint8), layers, config)
        expected_ids = [1, 2, 3, 4, 5] if middle_kept else [1, 2, 3, 5]
        assert [t.instance_id for t in things] == expected_ids
        keypoints = scene_keypoints(Scene(image, np.zeros((64, 64), np.uint8), things))
        assert not keypoints[0].any() and keypoints[0].shape == (5, 3)  # the crowd
        star_v = keypoints[1][:, 2]
        assert star_v[3] == (1 if middle_kept else 2)
        assert (np.delete(star_v, 3) == 2).all()
        triangle_kp = keypoints[2]
        assert triangle_kp[:, 2].tolist() == [2, 2, 2, 0]  # centre, top, bottom right, bottom left (x < 0)
        assert triangle_kp[3].tolist() == [0.0, 0.0, 0.0]
        assert (keypoints[-1][:, 2] == 2).all()  # the top square
        # Pixel (46, 27), centre 0.8 px inward of tip_2, lies in the star and in ``middle``, not in ``top``.
        expected_colour = middle.colour if middle_kept else star.colour  # a dropped thing is not painted
        assert tuple(image[27, 46].tolist()) == expected_colour
    v = keypoint_visibility(np.array([[-0.01, 5.0], [0.0, 5.0], [63.99, 5.0], [64.0, 5.0]]), [], 64, 64)
    assert v.tolist() == [0, 2, 2, 0]


def _things_in_annotation_order(seed: int, split: str, count: int, size: int) -> list[Thing]:
    """The things of a written split in annotation order (annotation id = position + 1)."""
    things: list[Thing] = []
    for index in range(count):
        things += render_scene(scene_rng(seed, split, index), size).things
    return things


def test_written_json_reads_as_top_down_star_items(tmp_path: Path) -> None:
    seed, count, size = 3, 20, 128
    keypoints_file = write_coco_keypoints(tmp_path, "train", count, image_size=size, seed=seed)
    assert keypoints_file == tmp_path / "annotations" / "keypoints_train.json"
    data = json.loads(keypoints_file.read_text())
    instances = json.loads((tmp_path / "annotations" / "instances_train.json").read_text())
    assert data["images"] == instances["images"]
    for with_keypoints, plain in zip(data["annotations"], instances["annotations"], strict=True):
        assert {k: v for k, v in with_keypoints.items() if k not in ("keypoints", "num_keypoints")} == plain
        v = with_keypoints["keypoints"][2::3]
        assert with_keypoints["num_keypoints"] == sum(x > 0 for x in v)
        if plain["iscrowd"]:
            assert with_keypoints["keypoints"] == [0] * len(v) * 3
        else:
            assert v[0] > 0  # centres lie inside the image
    for category in data["categories"]:
        layout = shape_keypoint_layout(category["name"])
        assert category["keypoints"] == list(layout.names)
        assert category["skeleton"] == [[a + 1, b + 1] for a, b in layout.skeleton]

    layout = shape_keypoint_layout("star")
    things = _things_in_annotation_order(seed, "train", count, size)
    stars = [a for a in data["annotations"] if a["category_id"] == STAR_ID]
    image_dir = tmp_path / "images" / "train"
    evaluation = CocoKeypointsDataset(
        image_dir, keypoints_file, layout, input_size=(64, 64), category_id=STAR_ID, for_evaluation=True
    )
    assert len(evaluation) == sum(not a["iscrowd"] for a in stars) >= 10
    assert evaluation.skipped.get("crowd", 0) == sum(a["iscrowd"] for a in stars)
    train = CocoKeypointsDataset(
        image_dir, keypoints_file, layout, input_size=(64, 64), category_id=STAR_ID, train=True
    )
    assert len(train) == len(evaluation)
    # Along centre -> visible tip, 65 % of the way lies in the star's arm, 120 % beyond its tip (an
    # inner corner or a wrong frame would put both inside the star's body, or both off it).
    tips = [i for i, name in enumerate(layout.names) if name.startswith("tip")]
    star_colour: dict[float, list[bool]] = {0.65: [], 1.2: []}
    for i in range(len(train)):
        crop, target = train.seeded_item(i, seed=i)
        keypoints = target["keypoints"][0].numpy()
        colour = np.array(things[int(target["annotation_ids"][0]) - 1].shape.colour) / 255
        for tip in tips:
            if keypoints[tip, 2] != 2 or keypoints[0, 2] == 0:
                continue
            for fraction, samples in star_colour.items():
                point = keypoints[0, :2] + fraction * (keypoints[tip, :2] - keypoints[0, :2])
                x, y = np.floor(point).astype(int)
                if 0 <= x < 64 and 0 <= y < 64:
                    samples.append(bool(np.abs(crop[:, y, x].numpy() - colour).max() < 0.2))
    assert len(star_colour[0.65]) >= 40 and np.mean(star_colour[0.65]) >= 0.9
    assert len(star_colour[1.2]) >= 40 and np.mean(star_colour[1.2]) <= 0.1


def test_flipped_crops_keep_the_canonical_order(tmp_path: Path) -> None:
    """Flip only: with the layout's flip permutation, tip_1 is still the tip closest to up in the crop and
    the outline runs clockwise."""
    keypoints_file = write_coco_keypoints(tmp_path, "val", 20, image_size=128, seed=5)
    layout = shape_keypoint_layout("star")
    flip_only = TopDownAugmentation(scale_range=(1.0, 1.0), rotation_prob=0.0, flip_prob=1.0)
    dataset = CocoKeypointsDataset(
        tmp_path / "images" / "val",
        keypoints_file,
        layout,
        input_size=(64, 64),
        category_id=STAR_ID,
        train=True,
        augmentation=flip_only,
    )
    checked = 0
    for i in range(len(dataset)):
        keypoints = dataset.seeded_item(i, seed=i)[1]["keypoints"][0].numpy().astype(np.float64)
        if not (keypoints[:, 2] > 0).all():
            continue
        center, outline = keypoints[0, :2], keypoints[1:, :2]
        from_up = np.abs(_angle_from_up(outline[0::2], center))
        assert from_up.argmin() == 0 and _shoelace(outline) > 0
        checked += 1
    assert checked >= 10


def test_coco_eval_scores_the_ground_truth_as_perfect(tmp_path: Path) -> None:
    keypoints_file = write_coco_keypoints(tmp_path, "val", 20, image_size=128, seed=6)
    ground_truth = COCO(str(keypoints_file))
    results = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "keypoints": a["keypoints"],
            "score": 1.0,
        }
        for a in ground_truth.loadAnns(ground_truth.getAnnIds(catIds=[STAR_ID], iscrowd=False))
    ]
    evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), "keypoints")
    evaluator.params.catIds = [STAR_ID]
    evaluator.params.kpt_oks_sigmas = np.array(shape_keypoint_layout("star").oks_sigmas)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_the_same_instances_as_write_coco_instances(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_coco_keypoints(tmp_path / name, "train", 6, image_size=64, seed=9)
    write_coco_instances(tmp_path / "c", "train", 6, image_size=64, seed=9)
    write_coco_keypoints(tmp_path / "d", "train", 6, image_size=64, seed=10)
    a, b, c, d = (_files(tmp_path / name) for name in "abcd")
    assert a == b and len(a) == 8  # 6 PNGs and 2 JSONs
    assert {k: v for k, v in a.items() if "keypoints_" not in k} == c
    assert d["annotations/keypoints_train.json"] != a["annotations/keypoints_train.json"]


def test_layout_from_yaml() -> None:
    parser = ArgumentParser()
    parser.add_argument("--layout", type=KeypointLayout)
    for name in ("star", "circle"):
        config = parser.parse_string(
            "layout:\n"
            "  class_path: datamodules.synthetic.keypoints.shape_keypoint_layout\n"
            f"  init_args:\n    name: {name}\n"
        )
        assert parser.instantiate(config).layout == shape_keypoint_layout(name)
    default = parser.parse_object(
        {"layout": {"class_path": "datamodules.synthetic.keypoints.shape_keypoint_layout"}}
    )
    assert parser.instantiate(default).layout == shape_keypoint_layout("star")


def test_cli_writes_keypoints_beside_instances(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path), "--train-images", "2", "--val-images", "1", "--size", "48"]
    assert synthetic_tool.main(argv) == 0
    out = capsys.readouterr().out
    for split, count in (("train", 2), ("val", 1)):
        for kind in ("instances", "keypoints"):
            annotation_file = tmp_path / "annotations" / f"{kind}_{split}.json"
            assert str(annotation_file) in out
            assert len(json.loads(annotation_file.read_text())["images"]) == count
