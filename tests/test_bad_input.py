"""Bad input found by trying the data as a new user would: each is a clear error naming the file and
id, or a counted, visible skip or note, caught by `zoo check-dataset` or the DataModule's setup before
training starts rather than mid-epoch or after training."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datamodules.coco_instances import CocoInstancesDataset
from datamodules.coco_instances_datamodule import CocoInstancesDataModule
from datamodules.errors import DatasetFormatError
from tests.coco_files import GOOD, HEIGHT, WIDTH, annotation, rect_polygon, write_coco
from zoo.tools.check_dataset import main as check_dataset

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def check(capsys: pytest.CaptureFixture, images: Path, annotations: Path, *flags: str) -> tuple[int, str]:
    code = check_dataset(["--images", str(images), "--annotations", str(annotations), *flags])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_a_truncated_image_is_found_by_decoding_not_by_its_header(tmp_path: Path, capsys, suffix: str):
    def use_truncated(data: dict) -> None:
        data["images"][0]["file_name"] = f"cut.{suffix}"

    image_dir, annotation_file = write_coco(tmp_path, [GOOD], use_truncated)
    pixels = np.random.default_rng(0).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image_dir / f"cut.{suffix}")
    whole = (image_dir / f"cut.{suffix}").read_bytes()
    (image_dir / f"cut.{suffix}").write_bytes(whole[: len(whole) // 2])
    code, out = check(capsys, image_dir, annotation_file)
    assert (
        code == 1
        and "unreadable_image: 1" in out
        and f"cut.{suffix}: cannot read image file for image id 1" in out
    )
    code, out = check(capsys, image_dir, annotation_file, "--fast")  # headers only: it looks fine
    assert code == 0
    with pytest.raises(DatasetFormatError, match=f"cut.{suffix}: cannot read image file for image id 1"):
        CocoInstancesDataset(image_dir, annotation_file)[0]  # what training would meet mid-epoch


def _without_area(data: dict) -> None:
    del data["annotations"][0]["area"]


def _without_iscrowd(data: dict) -> None:
    del data["annotations"][0]["iscrowd"]


def _short_polygon(data: dict) -> None:
    data["annotations"].append(annotation(2, [30, 5, 10, 10], [[30, 5, 40, 15]]))


@pytest.mark.parametrize(
    ("edit", "crash", "message"),
    [
        (_without_area, KeyError, "annotation id 1 has no number 'area'"),
        (_without_iscrowd, KeyError, "annotation id 1 needs 'iscrowd' 0 or 1"),
        (_short_polygon, Exception, "annotation id 2 has a polygon of fewer than 3 points"),
    ],
)
def test_a_val_file_that_would_crash_coco_evaluation_fails_before_training(
    tmp_path: Path, capsys, edit, crash: type, message: str
):
    image_dir, annotation_file = write_coco(tmp_path, [GOOD], edit)
    with (
        pytest.raises(crash),
        contextlib.redirect_stdout(io.StringIO()),
    ):  # what used to happen after training
        ground_truth = COCO(str(annotation_file))
        detections = ground_truth.loadRes(
            [{"image_id": 1, "category_id": 1, "bbox": [10, 5, 10, 10], "score": 0.9}]
        )
        for iou_type in ("bbox", "segm"):
            evaluation = COCOeval(ground_truth, detections, iou_type)
            evaluation.evaluate()
    datamodule = CocoInstancesDataModule(image_dir, annotation_file, image_dir, annotation_file)
    with pytest.raises(DatasetFormatError, match=message):
        datamodule.setup("fit")
    code, out = check(capsys, image_dir, annotation_file, "--for-evaluation")
    assert code == 1 and message in out
    code, out = check(capsys, image_dir, annotation_file)  # a training file: a note, not a failure
    assert code == 0 and "would fail COCO evaluation" in out


def test_a_file_without_annotations_is_refused_unless_it_is_a_predict_split(tmp_path: Path, capsys):
    def drop_annotations(data: dict) -> None:
        del data["annotations"]

    image_dir, annotation_file = write_coco(tmp_path, [GOOD], drop_annotations)
    with pytest.raises(DatasetFormatError, match="has no 'annotations' list"):
        CocoInstancesDataset(image_dir, annotation_file)
    assert check(capsys, image_dir, annotation_file)[0] == 1
    image_info = CocoInstancesDataset(image_dir, annotation_file, require_annotations=False)  # test-dev style
    assert len(image_info) == 1 and image_info.num_targets == 0
    _, good_file = write_coco(tmp_path / "good", [GOOD])
    splits = {"test_images": image_dir, "test_annotations": annotation_file}
    datamodule = CocoInstancesDataModule(image_dir, good_file, image_dir, good_file, **splits)
    datamodule.setup("predict")
    assert len(datamodule.predict_dataloader().dataset) == 1
    with pytest.raises(DatasetFormatError, match="has no 'annotations' list"):
        CocoInstancesDataModule(image_dir, good_file, image_dir, good_file, **splits).setup("test")


def test_no_categories_is_a_clear_error(tmp_path: Path):
    image_dir, annotation_file = write_coco(tmp_path, [], lambda data: data.update(categories=[]))
    with pytest.raises(DatasetFormatError, match=r"instances\.json: 'categories' is empty"):
        CocoInstancesDataset(image_dir, annotation_file)


@pytest.mark.parametrize(
    "annotations", [[], [annotation(1, [10, 5, 0.5, 10], [rect_polygon(10, 5, 11, 15)])]]
)
def test_a_train_split_with_nothing_to_train_on_is_refused(tmp_path: Path, capsys, annotations: list):
    image_dir, annotation_file = write_coco(tmp_path, annotations)
    _, val_file = write_coco(tmp_path / "val", [GOOD])
    with pytest.raises(DatasetFormatError, match=r"instances\.json: nothing to train on -- 1 images"):
        CocoInstancesDataModule(image_dir, annotation_file, image_dir, val_file).setup("fit")
    code, out = check(capsys, image_dir, annotation_file)
    assert code == 1 and "no annotation becomes a target instance" in out


def test_clipped_and_mismatched_boxes_are_kept_and_counted(tmp_path: Path, capsys, caplog):
    clipped = annotation(2, [40, 20, 20, 20], [rect_polygon(40, 20, 48, 32)])  # reaches past the 48x32 image
    mismatched = annotation(3, [0, 0, 8, 8], [rect_polygon(20, 16, 36, 30)])  # its mask is elsewhere
    image_dir, annotation_file = write_coco(tmp_path, [GOOD, clipped, mismatched])
    with caplog.at_level(logging.WARNING, logger="datamodules.coco_instances"):
        dataset = CocoInstancesDataset(image_dir, annotation_file)
        _, target = dataset[0]
        dataset[0]  # reading it again counts nothing twice
    assert len(target["boxes"]) == 3  # all kept
    assert target["boxes"][1].tolist() == [40, 20, 48, 32]
    assert dataset.noted == {"box_clipped": 1, "box_mask_mismatch": 1}
    assert "kept with a note -- box_clipped: 1 (annotation ids 2)" in caplog.text
    assert (
        "annotation id 3 kept: its box [0.0, 0.0, 8.0, 8.0] disagrees with its mask's [20, 16, 36, 30]"
        in caplog.text
    )
    code, out = check(capsys, image_dir, annotation_file)
    assert code == 0
    assert "kept in the targets with a note: 2" in out
    assert "  box_clipped: 1 (annotation ids 2)" in out and "  box_mask_mismatch: 1 (annotation ids 3)" in out


def test_crowd_regions_are_in_the_warning_summary(tmp_path: Path, caplog):
    crowd = annotation(2, [30, 5, 10, 10], [rect_polygon(30, 5, 40, 15)], iscrowd=1)
    image_dir, annotation_file = write_coco(tmp_path, [GOOD, crowd])
    with caplog.at_level(logging.WARNING, logger="datamodules.coco_instances"):
        dataset = CocoInstancesDataset(image_dir, annotation_file)
    assert dataset.skipped == {"crowd": 1}
    assert "left out of the targets -- crowd: 1 (annotation ids 2)" in caplog.text


def test_the_synthetic_world_passes_every_check(tmp_path: Path, capsys):
    from datamodules.synthetic.coco_writer import write_coco_instances

    annotation_file = write_coco_instances(tmp_path, "val", num_images=6, image_size=64, seed=0)
    code, out = check(capsys, tmp_path / "images" / "val", annotation_file, "--for-evaluation")
    assert code == 0 and "kept in the targets with a note: 0" in out, out
    assert json.loads(annotation_file.read_text())["annotations"]
