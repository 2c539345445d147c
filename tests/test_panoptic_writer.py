"""The COCO panoptic prediction writer: integer image ids give ``<id:012d>.png``; a dataset with string ids
(Cityscapes panoptic, whose targets carry the item index) gets its own ids back in the JSON and the PNG
names, so the reference evaluator can match predictions to its ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from datamodules.coco_panoptic_png import read_coco_panoptic_png
from lightning_modules.prediction_writers import CocoPanopticWriter


def fake_trainer(image_ids: list) -> SimpleNamespace:
    loader = SimpleNamespace(dataset=SimpleNamespace(image_ids=image_ids))
    return SimpleNamespace(predict_dataloaders=[loader], world_size=1, is_global_zero=True)


def predict(tmp_path: Path, image_ids: list, batch_ids: list[int]) -> dict:
    writer = CocoPanopticWriter(tmp_path, [{"id": 7, "name": "car", "isthing": 1}])
    trainer = fake_trainer(image_ids)
    segments = torch.tensor([[0, 1], [1, 1]])
    prediction = [{"image_id": i, "panoptic": segments.clone(), "category_ids": [7]} for i in batch_ids]
    writer.write_on_batch_end(trainer, None, prediction, None, None, 0, 0)
    writer.on_predict_end(trainer, None)
    return json.loads((tmp_path / "panoptic.json").read_text())


def test_string_image_ids_are_written_back(tmp_path: Path) -> None:
    result = predict(tmp_path, ["frankfurt_000000_000294", "lindau_000001_000019"], [1, 0])
    annotations = result["annotations"]
    assert [a["image_id"] for a in annotations] == ["frankfurt_000000_000294", "lindau_000001_000019"]
    assert [a["file_name"] for a in annotations] == [f"{a['image_id']}.png" for a in annotations]
    ids = read_coco_panoptic_png(tmp_path / "panoptic" / "lindau_000001_000019.png")
    assert ids.tolist() == [[0, 1], [1, 1]] and annotations[0]["segments_info"][0]["category_id"] == 7


def test_integer_image_ids_name_the_files(tmp_path: Path) -> None:
    result = predict(tmp_path, [3, 5], [5])
    assert [(a["image_id"], a["file_name"]) for a in result["annotations"]] == [(5, "000000000005.png")]
