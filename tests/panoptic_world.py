"""A hand-written panoptic world for the panoptic module's tests: three images in COCO panoptic form
(PNGs + JSON), the batches a panoptic datamodule yields of them, perturbed predictions for the test
double (``tests.panoptic_oracle``), and the reference ``pq_compute`` on the files ``zoo predict`` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from datamodules.coco_panoptic_png import write_coco_panoptic_png
from datamodules.collate import collate_detection
from datamodules.metadata import DatasetMetadata

TOLERANCE = 1e-9
SIZES = ((24, 32), (28, 36), (32, 26))  # one size per image: the oracle looks its answer up by size
CATEGORIES = [
    {"id": 1, "name": "circle", "isthing": 1},
    {"id": 2, "name": "square", "isthing": 1},
    {"id": 10, "name": "sky", "isthing": 0},
    {"id": 11, "name": "grass", "isthing": 0},
]


def sgd(parameters):
    return torch.optim.SGD(parameters, lr=0.1)


def metadata_of(categories: list[dict]) -> DatasetMetadata:
    things = [c for c in categories if c["isthing"]]
    stuff = [c for c in categories if not c["isthing"]]
    return DatasetMetadata(
        class_names=tuple(c["name"] for c in things),
        label_to_category_id={label: c["id"] for label, c in enumerate(things, start=1)},
        stuff_names=tuple(c["name"] for c in stuff),
        stuff_category_ids=tuple(c["id"] for c in stuff),
    )


def scene(index: int, height: int, width: int) -> tuple[torch.Tensor, list[dict]]:
    """Sky over grass with a void band between, two squares, a circle and a crowd of circles."""
    ids = torch.zeros(height, width, dtype=torch.int64)
    ids[: height // 2 - 1] = 101
    ids[height // 2 :] = 102
    ids[2 + index : 9 + index, 3:10] = 1
    ids[12:18, 12 + index : 20 + index] = 2
    ids[16:22, 20:25] = 3
    ids[height - 4 :, :6] = 4
    segments = [
        {"id": 1, "category_id": 1, "iscrowd": 0},
        {"id": 2, "category_id": 2, "iscrowd": 0},
        {"id": 3, "category_id": 2, "iscrowd": 0},
        {"id": 4, "category_id": 1, "iscrowd": 1},
        {"id": 101, "category_id": 10, "iscrowd": 0},
        {"id": 102, "category_id": 11, "iscrowd": 0},
    ]
    return ids, segments


def handwritten_world(root: Path) -> tuple[dict, dict[str, torch.Tensor], Path]:
    """Three images in COCO panoptic form (PNGs + JSON with areas, which the reference reads) under
    ``root``: (gt_json, ids by file name, PNG folder)."""
    folder = root / "panoptic_gt"
    folder.mkdir(parents=True)
    gt_json: dict[str, Any] = {"images": [], "annotations": [], "categories": CATEGORIES}
    gt_ids = {}
    for index, (height, width) in enumerate(SIZES):
        image_id, name = 7 + index, f"{7 + index:012d}.png"
        ids, segments = scene(index, height, width)
        segments = [{**s, "area": int((ids == s["id"]).sum())} for s in segments]
        write_coco_panoptic_png(ids, folder / name)
        gt_ids[name] = ids
        gt_json["images"].append({"id": image_id, "height": height, "width": width, "file_name": name})
        gt_json["annotations"].append({"image_id": image_id, "file_name": name, "segments_info": segments})
    return gt_json, gt_ids, folder


def loader(gt_json: dict, gt_ids: dict[str, torch.Tensor], batch_size: int = 2) -> DataLoader:
    """The batches a panoptic datamodule yields (only the keys the module reads), images random."""
    generator = torch.Generator().manual_seed(0)
    items = []
    for annotation in gt_json["annotations"]:
        ids = gt_ids[annotation["file_name"]]
        rows = [[s["id"], s["category_id"], s["iscrowd"]] for s in annotation["segments_info"]]
        target = {
            "image_id": torch.tensor(annotation["image_id"]),
            "panoptic": ids,
            "segments": torch.tensor(rows, dtype=torch.int64).reshape(-1, 3),
        }
        items.append((torch.rand(3, *ids.shape, generator=generator), target))
    return DataLoader(items, batch_size=batch_size, collate_fn=collate_detection)


def perturbed(gt_json: dict, gt_ids: dict[str, torch.Tensor], perturb) -> dict[str, tuple]:
    isthing = {c["id"]: bool(c["isthing"]) for c in gt_json["categories"]}
    return {
        a["file_name"]: perturb(gt_ids[a["file_name"]], a["segments_info"], isthing)
        for a in gt_json["annotations"]
    }


def by_size(answers: dict[str, tuple]) -> dict[tuple[int, int], tuple]:
    return {tuple(ids.shape): (ids, segments) for ids, segments in answers.values()}


def trainer(root: Path, **kwargs: Any) -> Trainer:
    settings = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return Trainer(default_root_dir=root, enable_model_summary=False, **{**settings, **kwargs})


def reference_on_files(gt_json: dict, gt_folder: Path, run_dir: Path) -> dict:
    """cityscapesscripts' ``pq_compute_single_core`` + ``average_pq`` on the files ``zoo predict`` wrote."""
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as reference

    predicted = json.loads((run_dir / "panoptic.json").read_text())
    by_image = {a["image_id"]: a for a in predicted["annotations"]}
    pairs = [(a, by_image[a["image_id"]]) for a in gt_json["annotations"]]
    categories = {c["id"]: c for c in gt_json["categories"]}
    folder = str(run_dir / "panoptic")
    return reference.average_pq(
        reference.pq_compute_single_core(0, pairs, str(gt_folder), folder, categories), categories
    )


def assert_logged_equals(logged: dict, prefix: str, reference: dict, categories: list[dict]) -> None:
    for suffix, group in (("", "All"), ("_things", "Things"), ("_stuff", "Stuff")):
        for name in ("PQ", "SQ", "RQ"):
            value = float(logged[f"{prefix}/{name}{suffix}"])
            assert abs(value - reference[group][name.lower()]) < TOLERANCE, name + suffix
    for category in categories:
        value = float(logged[f"{prefix}/PQ/{category['name']}"])
        assert abs(value - reference["per_class"][category["id"]]["pq"]) < TOLERANCE, category["name"]


SYNTHETIC_CATEGORIES = [  # the small UPSNet preset's 4 things and 4 stuff classes
    *({"id": i, "name": f"thing{i}", "isthing": 1} for i in range(1, 5)),
    *({"id": i, "name": f"stuff{i}", "isthing": 0} for i in range(10, 14)),
]
