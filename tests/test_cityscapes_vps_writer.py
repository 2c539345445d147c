"""The Cityscapes-VPS prediction writer: two frames of one video written and read back (the PNG ids decode
to the persistent ids, the JSON lists each frame's segments that have pixels, sorted by image id), read as
the official ``tools/eval_vpq.py`` reads a submission (``pred.json``'s annotations paired with the ground
truth's images by position, ``pan_pred/<image id>.png``) into ``VideoPanopticQuality``, which scores the
predictions against themselves as VPQ 1; integer ``frame_image_id`` ids are named through the dataset's
videos."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from datamodules.cityscapes_vps import VPSVideo
from datamodules.coco_panoptic_png import read_coco_panoptic_png
from datamodules.video_clips import frame_image_id
from lightning_modules.prediction_writers import CityscapesVPSWriter, video_segments_info
from metrics.panoptic_quality import PanopticSegmentation
from metrics.video_panoptic_quality import VideoPanopticQuality

ROAD, CAR = 7, 26  # Cityscapes-VPS category ids (a stuff and a thing)
IMAGE_IDS = ["0005_0025_frankfurt_000000_001736", "0005_0026_frankfurt_000000_001741"]


def fake_trainer(videos: list[VPSVideo] | None = None) -> SimpleNamespace:
    loader = SimpleNamespace(dataset=SimpleNamespace(videos=videos) if videos else None)
    return SimpleNamespace(predict_dataloaders=[loader], world_size=1, is_global_zero=True)


def frames() -> list[dict]:
    """Two 4 x 6 frames: road (id 8) and car track 1000 moving right; in the second a new car 1001 and a
    listed segment (1002) without pixels."""
    first = torch.tensor([[8, 1000, 1000, 8, 8, 8]] * 4)
    second = torch.tensor([[8, 8, 1000, 1000, 1001, 0]] * 4)
    return [
        {"image_id": IMAGE_IDS[1], "panoptic": second, "segment_ids": [1000, 8, 1001, 1002],
         "category_ids": [CAR, ROAD, CAR, CAR]},
        {"image_id": IMAGE_IDS[0], "panoptic": first, "segment_ids": torch.tensor([8, 1000]),
         "category_ids": [ROAD, CAR]},
    ]  # fmt: skip


CATEGORIES = [{"id": ROAD, "name": "road", "isthing": 0}, {"id": CAR, "name": "car", "isthing": 1}]


def predict(tmp_path: Path, batches: list[list], trainer: SimpleNamespace | None = None) -> dict:
    writer, trainer = CityscapesVPSWriter(tmp_path, CATEGORIES), trainer or fake_trainer()
    for index, batch in enumerate(batches):
        writer.write_on_batch_end(trainer, None, batch, None, None, index, 0)
    writer.on_predict_end(trainer, None)
    return json.loads((tmp_path / "pred.json").read_text())


def test_two_frames_round_trip(tmp_path: Path) -> None:
    written = frames()
    maps = [frame["panoptic"].clone() for frame in written]
    result = predict(tmp_path, [written[:1], written[1:]])
    assert "panoptic" not in written[0]  # the maps are dropped from what predict returns
    annotations = result["annotations"]
    assert result["categories"] == CATEGORIES
    assert [a["image_id"] for a in annotations] == IMAGE_IDS
    assert [a["file_name"] for a in annotations] == [f"{i}.png" for i in IMAGE_IDS]
    assert sorted(p.name for p in (tmp_path / "pan_pred").iterdir()) == [f"{i}.png" for i in IMAGE_IDS]
    assert torch.equal(read_coco_panoptic_png(tmp_path / "pan_pred" / f"{IMAGE_IDS[0]}.png"), maps[1])
    assert torch.equal(read_coco_panoptic_png(tmp_path / "pan_pred" / f"{IMAGE_IDS[1]}.png"), maps[0])
    first, second = (a["segments_info"] for a in annotations)
    assert [(s["id"], s["category_id"], s["area"], s["iscrowd"]) for s in first] == [
        (8, ROAD, 16, 0),
        (1000, CAR, 8, 0),
    ]
    assert [(s["id"], s["category_id"], s["area"], s["bbox"]) for s in second] == [
        (1000, CAR, 8, [2, 0, 2, 4]),
        (8, ROAD, 8, [0, 0, 2, 4]),
        (1001, CAR, 4, [4, 0, 1, 4]),
    ]  # 1002 has no pixels: the official evaluator would refuse it


def test_eval_vpq_reading_path_scores_the_files(tmp_path: Path) -> None:
    """Read as eval_vpq.py l. 274-309 reads a submission, then scored by our VPQ against the same frames."""
    written = frames()
    expected = [
        PanopticSegmentation.from_coco(frame["panoptic"], video_segments_info(**_segments(frame)))
        for frame in sorted(written, key=lambda f: f["image_id"])
    ]
    predict(tmp_path, [written])
    gt_images = [{"id": image_id} for image_id in IMAGE_IDS]  # the ground truth JSON's images, in order
    pred_annotations = json.loads((tmp_path / "pred.json").read_text())["annotations"]
    pred_pans = [read_coco_panoptic_png(tmp_path / "pan_pred" / (item["id"] + ".png")) for item in gt_images]
    submission = [
        PanopticSegmentation.from_coco(ids, annotation["segments_info"])
        for annotation, ids in zip(pred_annotations, pred_pans, strict=True)
    ]
    metric = VideoPanopticQuality({ROAD: False, CAR: True}, window_sizes=(0, 5))
    metric.update(submission, expected)
    results = metric.compute()
    assert float(results["VPQ"]) == 1.0 and int(results["k5/windows"]) == 1


def _segments(frame: dict) -> dict:
    return {
        "ids": frame["panoptic"],
        "segment_ids": frame["segment_ids"],
        "category_ids": frame["category_ids"],
    }


def test_integer_frame_ids_are_named_through_the_dataset_videos(tmp_path: Path) -> None:
    videos = [VPSVideo(5, "0005", tuple(IMAGE_IDS))]
    written = frames()
    written[0]["image_id"] = torch.tensor(frame_image_id(5, 1))
    written[1]["image_id"] = frame_image_id(5, 0)
    repeated = {**frames()[0], "image_id": frame_image_id(5, 1)}  # a clip padded with the last frame
    result = predict(tmp_path, [[written], [[repeated]]], fake_trainer(videos))
    assert [a["image_id"] for a in result["annotations"]] == IMAGE_IDS
    with pytest.raises(ValueError, match="lacks"):
        predict(tmp_path, [[{**frames()[0], "image_id": frame_image_id(6, 0)}]], fake_trainer(videos))
    with pytest.raises(ValueError, match="no Cityscapes-VPS videos"):
        predict(tmp_path, [[{**frames()[0], "image_id": 3}]])


def test_segments_info_refuses_unlisted_and_repeated_ids() -> None:
    ids = torch.tensor([[0, 8, 1000]])
    with pytest.raises(ValueError, match=r"pixel ids \[1000\]"):
        video_segments_info(ids, [8], [ROAD])
    with pytest.raises(ValueError, match="distinct"):
        video_segments_info(ids, [8, 8, 1000], [ROAD, ROAD, CAR])
    with pytest.raises(ValueError, match="2 segment ids for 1"):
        video_segments_info(ids, [8, 1000], [ROAD])
    assert video_segments_info(torch.zeros(2, 2, dtype=torch.int64), [], []) == []
