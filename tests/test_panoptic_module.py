"""``lightning_modules.panoptic.PanopticModule`` with a test double of the model contract
(``tests.panoptic_oracle``): PQ logged per group, class and merge; ``zoo predict``'s COCO panoptic PNG +
JSON scored by the reference ``pq_compute`` exactly as the module scores them; W&B overlays; training
through ``LossDictModule``; the model/dataset class checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import wandb
from lightning.pytorch.loggers import WandbLogger

from datamodules.batch import IGNORE_INDEX
from lightning_modules.panoptic import PanopticModule
from lightning_modules.prediction_writers import coco_segments_info
from lightning_modules.wandb_overlays import PREDICTION_COLOUR, panoptic_overlay
from tests.panoptic_oracle import OraclePanopticNet
from tests.panoptic_world import (
    CATEGORIES,
    SIZES,
    SYNTHETIC_CATEGORIES,
    TOLERANCE,
    assert_logged_equals,
    by_size,
    handwritten_world,
    loader,
    metadata_of,
    perturbed,
    reference_on_files,
    scene,
    sgd,
    trainer,
)
from tests.test_panoptic_quality import (
    _reference,
    _sample,
    everything,
    shift_every_thing,
    split_biggest,
)


def validate_and_predict(
    gt_json: dict, gt_ids: dict, gt_folder: Path, tmp_path: Path, perturb, perturb_heuristic
) -> None:
    """Validation logs PQ (and the heuristic merge's); predict writes files the reference scores the same."""
    metadata = metadata_of(gt_json["categories"])
    answers, heuristic = perturbed(gt_json, gt_ids, perturb), perturbed(gt_json, gt_ids, perturb_heuristic)
    model = OraclePanopticNet(metadata, by_size(answers), by_size(heuristic))
    module = PanopticModule(model, metadata, sgd)
    run_dir = tmp_path / "run"
    runner = trainer(tmp_path, callbacks=[module.prediction_writer(run_dir)])
    [logged] = runner.validate(module, dataloaders=loader(gt_json, gt_ids), verbose=False)
    returned = runner.predict(module, dataloaders=loader(gt_json, gt_ids))
    assert all("panoptic" not in item for batch in returned for item in batch)  # maps written, not kept

    reference = reference_on_files(gt_json, gt_folder, run_dir)
    assert_logged_equals(logged, "val/panoptic", reference, gt_json["categories"])
    assert 0.0 < float(logged["val/panoptic/PQ"]) < 1.0
    (tmp_path / "heuristic").mkdir()
    heuristic_reference = _reference(gt_json, gt_ids, heuristic, tmp_path / "heuristic")
    assert_logged_equals(logged, "val/heuristic", heuristic_reference, gt_json["categories"])
    assert logged["val/heuristic/PQ"] != logged["val/panoptic/PQ"]
    written = json.loads((run_dir / "panoptic.json").read_text())
    assert [a["image_id"] for a in written["annotations"]] == sorted(
        a["image_id"] for a in gt_json["annotations"]
    )
    assert {c["id"] for c in written["categories"]} == {c["id"] for c in gt_json["categories"]}


def test_handwritten_world_logged_pq_equals_the_reference_on_the_predicted_files(tmp_path: Path) -> None:
    gt_json, gt_ids, gt_folder = handwritten_world(tmp_path)
    validate_and_predict(gt_json, gt_ids, gt_folder, tmp_path, split_biggest, shift_every_thing)


def test_coco_sample_logged_pq_equals_the_reference_on_the_predicted_files(
    shared_data: Path, tmp_path: Path
) -> None:
    gt_json, _, gt_ids = _sample(shared_data)
    gt_folder = shared_data / "panoptic_sample" / "panoptic_examples"
    validate_and_predict(gt_json, gt_ids, gt_folder, tmp_path, everything, shift_every_thing)


def test_a_group_never_seen_is_not_logged_and_a_model_without_the_heuristic_logs_one_merge(tmp_path: Path):
    gt_json, gt_ids, _ = handwritten_world(tmp_path)
    things_only = {}
    for annotation in gt_json["annotations"]:
        ids = gt_ids[annotation["file_name"]]
        ids[(ids == 101) | (ids == 102)] = 0
        annotation["segments_info"] = [s for s in annotation["segments_info"] if s["category_id"] < 10]
        things_only[annotation["file_name"]] = (ids, annotation["segments_info"])
    metadata = metadata_of(CATEGORIES)
    module = PanopticModule(OraclePanopticNet(metadata, by_size(things_only)), metadata, sgd)
    [logged] = trainer(tmp_path).validate(module, dataloaders=loader(gt_json, gt_ids), verbose=False)
    assert float(logged["val/panoptic/PQ"]) == float(logged["val/panoptic/PQ_things"]) == 1.0
    assert "val/panoptic/PQ_stuff" not in logged and "val/panoptic/SQ_stuff" not in logged
    assert float(logged["val/panoptic/PQ/sky"]) == 0.0  # per class: never seen reads 0, as the reference
    assert not any(name.startswith("val/heuristic") for name in logged)


def test_training_steps_on_the_weighted_named_losses(tmp_path: Path) -> None:
    gt_json, gt_ids, _ = handwritten_world(tmp_path)
    metadata = metadata_of(CATEGORIES)
    model = OraclePanopticNet(metadata, {})
    module = PanopticModule(model, metadata, sgd, loss_weights={"loss_panoptic": 3.0})
    runner = trainer(tmp_path, max_steps=2, limit_val_batches=0)
    runner.fit(module, train_dataloaders=loader(gt_json, gt_ids))
    # d/dw [(w - 1)^2 + 3 * 0.5 w^2] = 5 w - 2: 0.5 -> 0.45 -> 0.425 with lr 0.1
    assert float(model.weight.detach()) == pytest.approx(0.425)
    assert runner.global_step == 2 and module.skipped_nonfinite_steps == 0
    assert {"train/loss", "train/loss_semantic", "train/loss_panoptic"} <= set(runner.callback_metrics)


def test_the_model_must_have_the_dataset_classes() -> None:
    metadata = metadata_of(CATEGORIES)
    with pytest.raises(
        ValueError, match=r"num_semantic_classes=5 but the dataset has 4 semantic classes \(2 stuff"
    ):
        PanopticModule(OraclePanopticNet(metadata, {}, num_semantic_classes=5), metadata, sgd)
    with pytest.raises(ValueError, match=r"set --model.init_args.model.init_args.num_semantic_classes=4"):
        PanopticModule(OraclePanopticNet(metadata, {}, num_semantic_classes=5), metadata, sgd)
    fewer = metadata_of(CATEGORIES[1:])
    with pytest.raises(ValueError, match=r"num_classes=2 but the dataset has 1 classes \(square\)"):
        PanopticModule(OraclePanopticNet(metadata, {}), fewer, sgd)


def test_segments_info_areas_and_boxes_come_from_the_pixels() -> None:
    ids = torch.zeros(6, 8, dtype=torch.int64)
    ids[1:3, 2:7] = 1
    ids[5, 0] = 3
    assert coco_segments_info(ids, [10, 11, 12]) == [
        {"id": 1, "category_id": 10, "area": 10, "bbox": [2, 1, 5, 2], "iscrowd": 0},
        {"id": 3, "category_id": 12, "area": 1, "bbox": [0, 5, 1, 1], "iscrowd": 0},
    ]  # segment 2 has no pixels: the reference refuses a listed segment its PNG lacks
    with pytest.raises(ValueError, match=r"segment ids must lie in 0..2"):
        coco_segments_info(ids, [10, 11])


def test_overlay_paints_semantic_classes_and_outlines_segments() -> None:
    ids, segments = scene(0, *SIZES[0])
    metadata = metadata_of(CATEGORIES)
    names, category_ids = metadata.semantic_names, metadata.semantic_category_ids
    model = OraclePanopticNet(metadata, {SIZES[0]: (ids, [s for s in segments if not s["iscrowd"]])}).eval()
    image = torch.zeros(3, *SIZES[0])
    [prediction] = model([image])
    rows = torch.tensor([[s["id"], s["category_id"], s["iscrowd"]] for s in segments])
    overlay = panoptic_overlay(image, prediction, {"panoptic": ids, "segments": rows}, names, category_ids)
    truth = overlay._masks["ground_truth"]._val["mask_data"]
    predicted = overlay._masks["predictions"]._val["mask_data"]
    semantic = {1: 2, 2: 3, 3: 3, 4: 2, 101: 0, 102: 1, 0: IGNORE_INDEX}  # sky, grass, circle, square
    assert np.array_equal(truth, np.vectorize(semantic.get)(ids.numpy()))
    assert np.array_equal(predicted, np.where(ids.numpy() == 4, IGNORE_INDEX, truth))  # crowd not predicted
    assert overlay._masks["ground_truth"]._val["class_labels"][IGNORE_INDEX] == "void / unknown"
    pixels = np.asarray(overlay.image)
    assert (pixels[8, 5] == PREDICTION_COLOUR).all() and (pixels[5, 5] == 0).all()  # circle's edge, inside


def test_validation_draws_overlays_to_wandb(tmp_path: Path) -> None:
    gt_json, gt_ids, _ = handwritten_world(tmp_path)
    metadata = metadata_of(CATEGORIES)
    answers = perturbed(gt_json, gt_ids, shift_every_thing)  # semantic maps unlike the truth's
    module = PanopticModule(OraclePanopticNet(metadata, by_size(answers)), metadata, sgd, overlay_images=2)
    logger = WandbLogger(save_dir=str(tmp_path), project="panoptic", mode="offline")  # as zoo.tracking does
    try:
        trainer(tmp_path, logger=logger).validate(module, dataloaders=loader(gt_json, gt_ids), verbose=False)
    finally:
        wandb.finish()
    [run] = (tmp_path / "wandb").glob("offline-run-*")
    assert len(list((run / "files" / "media" / "images" / "val").glob("predictions_*.png"))) == 2
    masks = list((run / "files" / "media" / "images" / "mask" / "val").glob("predictions_*.mask.png"))
    assert len(masks) == 4  # predictions and ground truth of each (W&B names a mask file by its content)


@pytest.mark.timeout(180)
def test_two_ddp_processes_write_one_json_and_score_padded_images_once(tmp_path: Path) -> None:
    """3 images on 2 gloo ranks: validation pads rank 1 with a copy of an image, which counts once (the
    single-process PQ); predict (no padding) writes every rank's PNGs and rank 0 the one JSON of all."""
    gt_json, gt_ids, gt_folder = handwritten_world(tmp_path)
    metadata = metadata_of(CATEGORIES)
    answers = by_size(perturbed(gt_json, gt_ids, shift_every_thing))
    module = PanopticModule(OraclePanopticNet(metadata, answers), metadata, sgd)
    run_dir = tmp_path / "run"
    batches = loader(gt_json, gt_ids, batch_size=1)
    [single] = trainer(tmp_path).validate(module, dataloaders=batches, verbose=False)
    distributed = trainer(
        tmp_path, strategy="ddp_fork", devices=2, callbacks=[module.prediction_writer(run_dir)]
    )
    [logged] = distributed.validate(module, dataloaders=batches, verbose=False)
    assert float(logged["val/panoptic/PQ"]) == pytest.approx(float(single["val/panoptic/PQ"]), abs=TOLERANCE)
    distributed.predict(module, dataloaders=batches)
    assert sorted(path.name for path in (run_dir / "panoptic").iterdir()) == sorted(gt_ids)
    reference = reference_on_files(gt_json, gt_folder, run_dir)
    assert_logged_equals(single, "val/panoptic", reference, CATEGORIES)


def test_upsnet_mismatches_name_the_init_argument_that_sets_them() -> None:
    from tests.presets import small_upsnet

    model = small_upsnet()  # 4 things (its detector's num_classes), 4 stuff
    with pytest.raises(ValueError, match=r"init_args\.detector\.init_args\.num_classes=2$"):
        PanopticModule(model, metadata_of(CATEGORIES), sgd)
    fewer_stuff = [c for c in SYNTHETIC_CATEGORIES if c["id"] < 12]
    with pytest.raises(
        ValueError, match=r"num_stuff_classes=4 but the dataset has 2 stuff.*num_stuff_classes=2$"
    ):
        PanopticModule(model, metadata_of(fewer_stuff), sgd)


def test_upsnet_output_validates_and_predicts_through_the_module(tmp_path: Path) -> None:
    """The real model's eval output (untrained small preset) fits the module: both merges logged, PNG +
    JSON written for every image."""
    from tests.presets import small_upsnet

    torch.manual_seed(0)
    gt_json, gt_ids, gt_folder = handwritten_world(tmp_path)
    gt_json["categories"] = SYNTHETIC_CATEGORIES
    module = PanopticModule(small_upsnet(), metadata_of(SYNTHETIC_CATEGORIES), sgd)
    runner = trainer(tmp_path, callbacks=[module.prediction_writer(tmp_path / "run")])
    [logged] = runner.validate(module, dataloaders=loader(gt_json, gt_ids), verbose=False)
    assert {"val/panoptic/PQ", "val/heuristic/PQ", "val/panoptic/PQ/stuff10"} <= set(logged)
    runner.predict(module, dataloaders=loader(gt_json, gt_ids), return_predictions=False)
    reference = reference_on_files(gt_json, gt_folder, tmp_path / "run")
    assert abs(float(logged["val/panoptic/PQ"]) - reference["All"]["pq"]) < TOLERANCE
