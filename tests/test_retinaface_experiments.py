"""RetinaFace through the zoo CLI: the synthetic experiment trains, validates (WIDER FACE AP, landmark NME)
and predicts (JSON with landmarks) on a tiny synthetic face world; the landmark matching the module scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from datamodules.synthetic.faces import write_face_split
from lightning_modules.face_detection import matched_landmarks
from tests.cli_runs import REPO_ROOT, read_metrics, split_arguments
from zoo.cli import run_cli


def test_landmarks_are_scored_on_the_faces_a_detection_finds() -> None:
    target = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [40.0, 0.0, 50.0, 10.0]]),
        "landmarks": torch.stack(
            [torch.full((5, 2), 1.0), torch.full((5, 2), 25.0), torch.full((5, 2), float("nan"))]
        ),
    }
    prediction = {
        "boxes": torch.tensor([[40.0, 0.0, 50.0, 10.0], [0.5, 0.0, 10.0, 10.0], [60.0, 60.0, 70.0, 70.0]]),
        "landmarks": torch.stack([torch.zeros(5, 2), torch.full((5, 2), 2.0), torch.zeros(5, 2)]),
    }
    predicted, truth, boxes, faces = matched_landmarks(prediction, target)
    assert faces.tolist() == [0]  # face 1 is missed, face 2 has no landmarks
    assert predicted.tolist() == [[[2.0, 2.0]] * 5] and truth[0, :, 2].tolist() == [2.0] * 5
    assert boxes.tolist() == [[0.0, 0.0, 10.0, 10.0]]


@pytest.mark.timeout(300)
def test_synthetic_experiment_fits_validates_and_predicts(tmp_path: Path) -> None:
    data = tmp_path / "faces"
    write_face_split(data, "train", 4, image_size=128, seed=0)
    write_face_split(data, "val", 3, image_size=128, seed=0)
    common = [
        f"--config={REPO_ROOT / 'experiments' / 'retinaface' / 'synthetic.yaml'}",
        *split_arguments(data, "{split}/images", "{split}/label.txt"),
        f"--runs_dir={tmp_path / 'runs'}",
        "--run_id=tiny",
        "--wandb=false",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=2",
    ]
    run_cli(["fit", *common, "--trainer.max_steps=2", "--trainer.val_check_interval=2"])
    run_dir = tmp_path / "runs" / "retinaface_synthetic" / "tiny"
    [record] = [r for r in read_metrics(run_dir) if "val/widerface/AP_hard" in r]
    assert {"val/widerface/AP_easy", "val/widerface/AP_medium"} <= set(record)
    run_cli(["predict", *common, "--ckpt_path=last"])
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert sorted(p["image_id"] for p in predictions) == [1, 2, 3]
    for image in predictions:
        for face in image["faces"]:
            assert len(face["bbox"]) == 4 and len(face["landmarks"]) == 5 and 0 <= face["score"] <= 1
    assert sorted(p.name for p in (run_dir / "overlays").iterdir()) == [f"{i:06d}.png" for i in (1, 2, 3)]
    # a bare folder of images (no annotations): file names in the JSON, one overlay per image
    folder = tmp_path / "photos" / "event"
    folder.mkdir(parents=True)
    for name in ("b.png", "a.png"):
        (folder / name).write_bytes((data / "val" / "images" / "000001.png").read_bytes())
    (run_dir / "overlays").rename(tmp_path / "split_overlays")
    run_cli(
        ["predict", *common, "--ckpt_path=last", f"--data.init_args.predict_images={tmp_path / 'photos'}"]
    )
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert [(p["image_id"], p["file_name"]) for p in predictions] == [(1, "event/a.png"), (2, "event/b.png")]
    assert len(list((run_dir / "overlays").iterdir())) == 2


@pytest.mark.parametrize(
    ("name", "backbone", "parameters", "size", "batch", "devices", "max_steps", "milestones", "hard"),
    [
        ("widerface_mnet025", "mobilenet0.25", 426_608, 640, 32, 1, 100_750, [76_570, 88_660], 0.8099),
        ("widerface_r50", "resnet50", 27_293_600, 840, 6, 4, 53_700, [37_590, 48_330], 0.8960),
    ],
)
def test_widerface_experiment_is_the_implementation_configuration(
    name, backbone, parameters, size, batch, devices, max_steps, milestones, hard
) -> None:
    import yaml

    from models.retinaface import RetinaFace
    from models.retinaface_network import RetinaFaceNetwork

    config = yaml.safe_load((REPO_ROOT / "experiments" / "retinaface" / f"{name}.yaml").read_text())
    module = config["model"]["init_args"]
    spec = module["model"]["init_args"]
    assert spec["network"]["init_args"] == {"backbone": backbone}
    model = RetinaFace(RetinaFaceNetwork(backbone), image_size=spec["image_size"])
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert spec["image_size"] == size == config["data"]["init_args"]["image_size"]
    assert module["loss_weights"] == {"loss_box": 2.0, "loss_class": 1.0, "loss_landmark": 1.0}
    assert module["optimizer"]["init_args"] == {"lr": 0.001, "momentum": 0.9, "weight_decay": 0.0005}
    assert module["lr_scheduler"]["init_args"]["milestones"] == milestones
    assert config["trainer"]["max_steps"] == max_steps and config["trainer"]["devices"] == devices
    assert config["data"]["init_args"]["batch_size"] == batch
    assert config["published"][0]["metrics"]["val/widerface/AP_hard"] == hard
    assert (model.score_threshold, model.nms_threshold) == (0.02, 0.4)
