"""`zoo check-dataset`: counts every problem of a COCO instances dataset and fails on hard errors."""

import json
from pathlib import Path

import pytest

from datamodules.synthetic.coco_writer import write_coco_instances
from zoo.tools.check_dataset import main

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def run(capsys: pytest.CaptureFixture, images: Path, annotations: Path) -> tuple[int, str]:
    code = main(["--images", str(images), "--annotations", str(annotations)])
    return code, capsys.readouterr().out


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A 12-image synthetic split (with a crowd region, RLE) and its JSON, to break in each test."""
    annotation_file = write_coco_instances(tmp_path, "val", num_images=12, image_size=64, seed=0)
    return tmp_path / "images" / "val", annotation_file, json.loads(annotation_file.read_text())


def test_real_sample_is_clean(capsys: pytest.CaptureFixture, shared_data: Path) -> None:
    root = shared_data / "coco_sample"
    code, out = run(capsys, root, root / "test_coco.json")
    assert code == 0
    assert "4 images, 1 categories, 14 annotations" in out
    assert "target instances: 14; images without any: 0" in out
    assert "hard errors: 0" in out and out.rstrip().endswith("OK")


def test_synthetic_world_is_clean_and_crowds_are_counted(capsys: pytest.CaptureFixture, synthetic) -> None:
    images, annotation_file, data = synthetic
    code, out = run(capsys, images, annotation_file)
    crowd = sum(a["iscrowd"] for a in data["annotations"])
    assert code == 0 and crowd > 0
    assert f"  crowd: {crowd} " in out
    assert f"target instances: {len(data['annotations']) - crowd};" in out


def test_counted_skips_alone_pass(capsys: pytest.CaptureFixture, synthetic) -> None:
    images, annotation_file, data = synthetic
    first, second, third = data["annotations"][:3]
    first["bbox"][2] = 0.5  # degenerate box
    second["segmentation"] = [[1, 1, 5, 5]]  # a polygon with two points
    third["segmentation"] = [[10, 10, 20, 10, 30, 10]]  # three collinear points: rasterizes to nothing
    annotation_file.write_text(json.dumps(data))
    code, out = run(capsys, images, annotation_file)
    assert code == 0
    assert f"  degenerate_box: 1 (annotation ids {first['id']})" in out
    assert f"  no_valid_polygon: 1 (annotation ids {second['id']})" in out  # one reason per annotation
    assert f"  empty_mask: 1 (annotation ids {third['id']})" in out


def test_hard_errors_are_counted_per_kind_and_fail(capsys: pytest.CaptureFixture, synthetic) -> None:
    images, annotation_file, data = synthetic
    (images / data["images"][0]["file_name"]).unlink()
    (images / data["images"][1]["file_name"]).write_bytes(b"broken")
    with_rle = {a["image_id"] for a in data["annotations"] if isinstance(a["segmentation"], dict)}
    next(i for i in data["images"][2:] if i["id"] not in with_rle)["width"] += 1  # (an RLE would not fit)
    data["annotations"][0]["bbox"] = [1, 2]
    data["annotations"][1]["segmentation"] = [[float("nan"), 1, 5, 1, 5, 5]]
    annotation_file.write_text(json.dumps(data))
    code, out = run(capsys, images, annotation_file)
    assert code == 1
    for kind in ("missing_image", "unreadable_image", "image_size_mismatch", "bad_bbox", "bad_segmentation"):
        assert f"  {kind}: 1\n" in out
    assert "hard errors: 5" in out
    assert (
        f"{data['images'][0]['file_name']}: image file for image id {data['images'][0]['id']} not found"
        in out
    )
    assert f"annotation id {data['annotations'][0]['id']} has 'bbox' [1, 2]" in out
    assert out.rstrip().endswith("FAILED: hard errors above")


def test_id_problems_are_all_listed_before_stopping(capsys: pytest.CaptureFixture, synthetic) -> None:
    images, annotation_file, data = synthetic
    data["annotations"][0]["category_id"] = 99
    data["annotations"][1]["category_id"] = 98
    data["annotations"][2]["image_id"] = 77
    annotation_file.write_text(json.dumps(data))
    code, out = run(capsys, images, annotation_file)
    assert code == 1
    assert "  unknown_category_id: 2\n" in out and "  unknown_image_id: 1\n" in out
    assert f"annotation id {data['annotations'][2]['id']} refers to image id 77" in out


def test_unreadable_annotation_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[1, 2")
    code, out = run(capsys, tmp_path, tmp_path / "bad.json")
    assert code == 1 and "bad.json: not valid JSON" in out


def test_arguments_are_required() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--images", "x"])
    assert exit_info.value.code == 2
