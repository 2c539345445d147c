"""``zoo mpii-to-coco`` on a small .mat in the official file's MATLAB layout (``RELEASE.annolist``
struct array, scalar structs where MATLAB has one person or one point, empty fields, char
``is_visible``): the JSON the reader takes with the ``mpii`` layout, coordinates and visibility as
documented, counted skips, the validation split and the errors for broken files."""

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
from PIL import Image
from scipy.io.matlab import mat_struct

from datamodules.coco_keypoints import CocoKeypointsDataset
from datamodules.errors import DatasetFormatError
from datamodules.keypoint_layouts import mpii
from metrics.keypoint_metrics import MPII_JOINTS
from zoo.tools import mpii_to_coco
from zoo.tools.mpii_to_coco import convert

EMPTY = np.zeros((0, 0))  # MATLAB's [] (an empty field of a struct array)


def struct_array(items: list[dict[str, Any]]) -> np.ndarray:
    """A MATLAB 1 x n struct array: savemat writes a record array as one (and a dict as a 1 x 1 struct);
    fields an element lacks are [] as in MATLAB."""
    fields = list(dict.fromkeys(key for item in items for key in item))
    array = np.empty((1, len(items)), dtype=[(name, object) for name in fields])
    for i, item in enumerate(items):
        for name in fields:
            array[0, i][name] = item.get(name, EMPTY)
    return array


def points(*rows: tuple[float, float, float, Any]) -> np.ndarray:
    """annopoints.point: (id, x, y, is_visible) rows; is_visible a number, a char '0'/'1' or []."""
    return struct_array(
        [{"id": float(i), "x": float(x), "y": float(y), "is_visible": v} for i, x, y, v in rows]
    )


def person(
    point_rows: np.ndarray | None,
    head: tuple[float, float, float, float] | None = (1.0, 1.0, 9.0, 9.0),
    objpos: tuple[float, float] | None = (16.0, 16.0),
    scale: float | None = 0.1,
) -> dict[str, Any]:
    rect: dict[str, Any] = dict(zip(("x1", "y1", "x2", "y2"), head or (EMPTY,) * 4, strict=True))
    rect["annopoints"] = EMPTY if point_rows is None else {"point": point_rows}
    rect["scale"] = EMPTY if scale is None else scale
    rect["objpos"] = EMPTY if objpos is None else {"x": objpos[0], "y": objpos[1]}
    return rect


def image_entry(name: str, annorect: Any) -> dict[str, Any]:
    return {"image": {"name": name}, "annorect": annorect, "frame_sec": EMPTY, "vididx": EMPTY}


def write_mat(path: Path, entries: list[dict[str, Any]], img_train: list[int], single: list[Any]) -> Path:
    cells = np.empty((len(entries), 1), dtype=object)  # single_person: an N x 1 cell
    for i, value in enumerate(single):
        cells[i, 0] = EMPTY if value is None else np.asarray(value, dtype=float).reshape(-1, 1)
    release = {
        "annolist": struct_array(entries),
        "img_train": np.array([img_train], dtype=float),
        "version": "12",
        "single_person": cells,
    }
    scipy.io.savemat(path, {"RELEASE": release})
    return path


# the fixture world, in MATLAB's 1-based coordinates (image name -> width, height)
SIZES = {"multi.png": (64, 48), "single.png": (40, 60), "onepoint.png": (32, 32), "far.png": (64, 64)}
VISIBLE = (1.0, "0", EMPTY, 0.0)  # is_visible of joint k: VISIBLE[k % 4] -> v 2, 1, 2, 1
FULL = points(*((k, 10 + 2 * k, 10 + 2 * k, VISIBLE[k % 4]) for k in range(16)))


def official_like_mat(path: Path) -> Path:
    multi = struct_array(
        [
            person(FULL, head=(12, 5, 20, 15), objpos=(30, 40), scale=0.2),
            person(  # missing joints; head rectangle given right to left
                points((0, 50, 30, 1.0), (5, 55, 35, "1"), (9, 45, 8, EMPTY)),
                head=(50, 2, 44, 12),
                objpos=(50, 25),
                scale=0.15,
            ),
            person(None),  # an unannotated person of a training image
        ]
    )
    single = struct_array(  # one person: a scalar struct after squeeze_me
        [
            person(
                points((12, 20, 20, 1.0), (13, 25, 20, 0.0)),
                head=(15, 5, 25, 15),
                objpos=(20, 30),
                scale=0.25,
            )
        ]
    )
    one_point = struct_array([person(points((9, 16, 4, 1.0)), head=(12, 1, 20, 8))])
    test = struct_array(
        [{"objpos": {"x": 5.0, "y": 5.0}, "scale": 1.0}, {"objpos": {"x": 9.0, "y": 9.0}, "scale": 2.0}]
    )
    bad = struct_array(
        [
            person(points((16, 5, 5, 1.0))),  # no joint 16
            person(points((3, 5, 5, 1.0), (3, 6, 6, 1.0))),  # joint 3 twice
            person(points((3, 5, 5, 1.0)), scale=None),  # no scale: no box
            person(points((3, 5, 5, 1.0)), head=None),  # no head rectangle
        ]
    )
    entries = [
        image_entry("multi.png", multi),
        image_entry("single.png", single),
        image_entry("onepoint.png", one_point),
        image_entry("test.png", test),
        image_entry("empty.png", EMPTY),
        image_entry("bad.png", bad),
        image_entry("missing.png", struct_array([person(points((3, 5, 5, 1.0)))])),
        image_entry("far.png", struct_array([person(points((3, 1000, 5, 1.0)))])),
    ]
    single_person = [[1, 2], [1], None, None, None, None, None, None]
    return write_mat(path, entries, [1, 1, 1, 0, 1, 1, 1, 1], single_person)


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    images = tmp_path / "images"
    images.mkdir()
    for name, (width, height) in SIZES.items():
        Image.new("RGB", (width, height), (40, 80, 120)).save(images / name)
    names = tmp_path / "valid.txt"
    names.write_text("single.png\n\nnot_in_the_mat.png\n")
    return {
        "mat": official_like_mat(tmp_path / "mpii.mat"),
        "images": images,
        "names": names,
        "out": tmp_path / "out",
    }


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def by_id(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {ann["id"]: ann for ann in data["annotations"]}


def test_fixture_has_the_official_squeezed_shapes(world: dict[str, Path]) -> None:
    release = scipy.io.loadmat(world["mat"], squeeze_me=True, struct_as_record=False)["RELEASE"]
    multi, single, one_point = release.annolist[0], release.annolist[1], release.annolist[2]
    assert multi.annorect.shape == (3,) and isinstance(multi.annorect[2].annopoints, np.ndarray)
    assert isinstance(single.annorect, mat_struct) and single.annorect.annopoints.point.shape == (2,)
    assert isinstance(one_point.annorect.annopoints.point, mat_struct)  # one point: no array
    assert multi.annorect[0].annopoints.point[1].is_visible == "0"
    assert not hasattr(release.annolist[3].annorect[0], "annopoints")  # a test image's persons


def test_converts_to_coco_keypoints_read_with_head_boxes(
    world: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="zoo.tools.mpii_to_coco"):
        report = convert(world["mat"], world["images"], world["out"], world["names"])
    train, val = load(world["out"] / "mpii_train.json"), load(world["out"] / "mpii_val.json")

    # images: id = 1-based annolist index, sizes from the files; the split by the names list
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in train["images"]] == [
        (1, "multi.png", 64, 48),
        (3, "onepoint.png", 32, 32),
    ]
    assert [(i["id"], i["file_name"]) for i in val["images"]] == [(2, "single.png")]
    assert report.val_names_not_found == ["not_in_the_mat.png"]
    assert sorted(by_id(train)) == [1001, 1002, 3001] and sorted(by_id(val)) == [2001]

    # a full person: x = x_mat - 1 (COCO's 0-based pixel indices), v from is_visible (1 -> 2, '0' -> 1,
    # [] -> 2, 0 -> 1)
    full = np.reshape(by_id(train)[1001]["keypoints"], (16, 3))
    expected_xy = 10 + 2 * np.arange(16) - 1.0
    np.testing.assert_allclose(full[:, 0], expected_xy)
    np.testing.assert_allclose(full[:, 1], expected_xy)
    assert full[:, 2].tolist() == [2, 1, 2, 1] * 4
    ann = by_id(train)[1001]
    assert ann["num_keypoints"] == 16 and ann["category_id"] == 1 and ann["iscrowd"] == 0
    assert ann["head_box"] == [11.5, 4.5, 19.5, 14.5]
    # box: a 200 * scale square around objpos moved down by 15 * scale
    assert ann["bbox"] == pytest.approx([29.5 - 20, 39.5 + 3 - 20, 40, 40])
    assert ann["area"] == pytest.approx(1600) and ann["single_person"] is True

    # missing joints are [0, 0, 0]; a right-to-left head rectangle is ordered (same diagonal)
    partial = by_id(train)[1002]
    keypoints = np.reshape(partial["keypoints"], (16, 3))
    assert np.flatnonzero(keypoints[:, 2]).tolist() == [0, 5, 9] and partial["num_keypoints"] == 3
    assert keypoints[[0, 5, 9]].tolist() == [[49, 29, 2], [54, 34, 2], [44, 7, 2]]
    assert (keypoints[keypoints[:, 2] == 0] == 0).all()
    assert partial["head_box"] == [43.5, 1.5, 49.5, 11.5]
    single_point = np.reshape(by_id(train)[3001]["keypoints"], (16, 3))
    assert single_point[9].tolist() == [15, 3, 2] and by_id(train)[3001]["single_person"] is False
    assert np.reshape(by_id(val)[2001]["keypoints"], (16, 3))[[12, 13], 2].tolist() == [2, 1]

    # category: the layout's names, a 1-based skeleton
    (category,) = train["categories"]
    assert category["keypoints"] == list(MPII_JOINTS)
    assert category["skeleton"] == [[a + 1, b + 1] for a, b in mpii().skeleton]

    # counted skips, one log line naming annolist and person indices
    assert report.skipped_persons == {
        "no_annopoints": 1,
        "malformed_points": 2,
        "no_center_scale": 1,
        "no_head_box": 1,
        "missing_image": 1,
        "keypoint_far_outside": 1,
    }
    assert report.test_images == 1 and report.images_without_persons == 2  # empty.png, bad.png
    (line,) = [r.getMessage() for r in caplog.records if "persons left out" in r.getMessage()]
    assert "malformed_points: 2 (annolist 6 person 1, annolist 6 person 2)" in line
    assert "no_annopoints: 1 (annolist 1 person 3)" in line

    # the reader takes both files with the mpii layout; items carry the head boxes
    dataset = CocoKeypointsDataset(world["images"], world["out"] / "mpii_train.json", mpii(), (64, 64))
    assert len(dataset) == 3 and not dataset.skipped
    assert [i.head_box for i in dataset.instances] == [
        (11.5, 4.5, 19.5, 14.5),
        (43.5, 1.5, 49.5, 11.5),
        (11.5, 0.5, 19.5, 7.5),
    ]
    crop, target = dataset[0]
    assert crop.shape == (3, 64, 64) and target["head_boxes"].shape == (1, 4)
    evaluation = CocoKeypointsDataset(
        world["images"], world["out"] / "mpii_val.json", mpii(), (64, 64), for_evaluation=True
    )
    assert len(evaluation) == 1 and "head_boxes" in evaluation[0][1]


def test_names_list_formats_and_cli_registration(
    world: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    from zoo.cli import TOOLS, main

    assert TOOLS["mpii-to-coco"] is mpii_to_coco.main
    hrnet_style = world["names"].with_suffix(".json")  # HRNet's valid.json: one record per person
    hrnet_style.write_text(json.dumps([{"image": "single.png", "scale": 1.0}, {"image": "multi.png"}] * 2))
    args = ["--mat", str(world["mat"]), "--images", str(world["images"]), "--out-dir", str(world["out"])]
    assert main(["mpii-to-coco", *args, "--val-image-names", str(hrnet_style)]) == 0
    assert [i["file_name"] for i in load(world["out"] / "mpii_val.json")["images"]] == [
        "multi.png",
        "single.png",
    ]
    assert [i["file_name"] for i in load(world["out"] / "mpii_train.json")["images"]] == ["onepoint.png"]
    printed = capsys.readouterr().out
    assert "val: 2 images, 3 persons" in printed and "1 test images" in printed
    coco_style = world["out"] / "mpii_val.json"  # a COCO file names its images too
    report = convert(world["mat"], world["images"], world["out"] / "again", coco_style)
    assert report.images == {"train": 1, "val": 2}


def test_fraction_split_is_seeded_and_by_image(world: dict[str, Path]) -> None:
    def split(out: str, fraction: float, seed: int) -> tuple[list[int], list[int], bytes]:
        convert(world["mat"], world["images"], world["out"] / out, val_fraction=fraction, seed=seed)
        train, val = (load(world["out"] / out / f"mpii_{s}.json") for s in ("train", "val"))
        raw = b"".join((world["out"] / out / f"mpii_{s}.json").read_bytes() for s in ("train", "val"))
        return [i["id"] for i in train["images"]], [i["id"] for i in val["images"]], raw

    first, again = split("a", 0.5, seed=3), split("b", 0.5, seed=3)
    assert first == again  # byte-identical files
    train_ids, val_ids, _ = first
    assert not set(train_ids) & set(val_ids) and set(train_ids) | set(val_ids) <= {1, 2, 3}
    assert split("c", 0.0, seed=3)[1] == []


def test_broken_files_raise_naming_file_and_indices(world: dict[str, Path], tmp_path: Path) -> None:
    def fails(mat: Path, match: str) -> None:
        with pytest.raises(DatasetFormatError, match=match):
            convert(mat, world["images"], tmp_path / "out-broken")

    text = tmp_path / "text.mat"
    text.write_text("not a mat file")
    fails(text, "text.mat: not a MATLAB .mat file")
    fails(tmp_path / "absent.mat", "absent.mat: MPII annotation file not found")
    other = tmp_path / "other.mat"
    scipy.io.savemat(other, {"annot": np.ones(3)})
    fails(other, r"other.mat: no struct 'RELEASE' \(variables: annot\)")

    good = image_entry("multi.png", struct_array([person(points((3, 5, 5, 1.0)))]))
    fails(write_mat(tmp_path / "short.mat", [good, good], [1], [None, None]), "img_train has 1 entries")
    unnamed = {"image": {"name": EMPTY}, "annorect": EMPTY, "frame_sec": EMPTY, "vididx": EMPTY}
    fails(
        write_mat(tmp_path / "unnamed.mat", [good, unnamed], [1, 1], [None, None]),
        "annolist 2 has no image.name",
    )
    no_x = struct_array([{"id": 3.0, "y": 5.0}])
    rects = struct_array([person(points((3, 5, 5, 1.0))), person(no_x)])
    fails(
        write_mat(tmp_path / "no_x.mat", [image_entry("multi.png", rects)], [1], [None]),
        "no_x.mat: annolist 1 person 2 point 1 has no field x",
    )
    fails(
        write_mat(tmp_path / "rect.mat", [image_entry("multi.png", 5.0)], [1], [None]),
        "rect.mat: annolist 1 annorect is float",
    )
    with pytest.raises(DatasetFormatError, match="none of the 5 annotated images is there"):
        convert(world["mat"], tmp_path, tmp_path / "out-wrong-folder")
    with pytest.raises(DatasetFormatError, match="none of its 1 image names"):
        (tmp_path / "names.txt").write_text("nowhere.png\n")
        convert(world["mat"], world["images"], tmp_path / "out-names", tmp_path / "names.txt")


def test_images_folder_is_required(world: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        mpii_to_coco.main(["--mat", str(world["mat"]), "--out-dir", str(world["out"])])
    assert exit_info.value.code == 2
    assert "--images DIR is required: COCO images need width and height" in capsys.readouterr().err


def test_mpii_layout_names_and_flips() -> None:
    layout = mpii()
    assert layout.names == MPII_JOINTS and layout.num_keypoints == 16
    assert not layout.oks_sigmas and layout.normalizing_keypoints is None
    permutation = layout.flip_permutation()
    for k, name in enumerate(layout.names):
        swapped = name.replace("right_", "LEFT_").replace("left_", "right_").replace("LEFT_", "left_")
        assert layout.names[permutation[k]] == swapped
    joined = {0}  # the skeleton connects all 16 joints
    for _ in range(16):
        joined |= {b for a, b in layout.skeleton if a in joined} | {
            a for a, b in layout.skeleton if b in joined
        }
    assert joined == set(range(16))
