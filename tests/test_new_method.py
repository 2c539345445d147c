"""A new method is a few new files and no edit to shared code: a tiny box-only detector and its module
are defined in this file, an experiment YAML is written next to the run, and `zoo fit` trains it on the
synthetic world with COCO box AP, checkpoints on its main metric, metrics.jsonl and `zoo compare` rows
-- all from the shared contracts (``lightning_modules.base``, ``lightning_modules.detection``,
``datamodules.metadata``, ``datamodules.batch``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from torchvision.ops import generalized_box_iou_loss

from datamodules.batch import Target
from lightning_modules.detection import DetectionModule
from tests.cli_runs import REPO_ROOT, data_arguments, read_metrics
from zoo.cli import run_cli
from zoo.compare.table import build_table
from zoo.runs.records import find_runs


class OneBoxPerClassNet(nn.Module):
    """For each class, one box (normalised XYXY from a pooled conv feature) and a confidence."""

    def __init__(self, num_classes: int, channels: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.ReLU())
        self.boxes = nn.Linear(channels, 4 * num_classes)
        self.logits = nn.Linear(channels, num_classes)

    def forward(self, images: list[Tensor]) -> tuple[Tensor, Tensor]:
        pooled = torch.stack([self.features(image[None]).mean(dim=(0, 2, 3)) for image in images])
        corners = self.boxes(pooled).view(len(images), self.num_classes, 2, 2).sigmoid().sort(dim=2).values
        return corners.flatten(2), self.logits(pooled)


class OneBoxPerClassDetector(DetectionModule):
    """The method's own training: GIoU to the first box of each class present, BCE on presence."""

    def compute_losses(self, images: list[Tensor], targets: list[Target]) -> dict[str, Tensor]:
        boxes, logits = self.model(images)
        presence = torch.zeros_like(logits)
        box_losses = []
        for index, (image, target) in enumerate(zip(images, targets, strict=True)):
            scale = torch.tensor([image.shape[-1], image.shape[-2]] * 2, dtype=boxes.dtype)
            for label, box in zip(target["labels"].tolist(), target["boxes"], strict=True):
                if presence[index, label - 1] == 0:  # labels run 1..C: channel label - 1
                    presence[index, label - 1] = 1
                    box_losses.append(generalized_box_iou_loss(boxes[index, label - 1] * scale, box))
        box_loss = torch.stack(box_losses).mean() if box_losses else boxes.sum() * 0
        return {"loss_box": box_loss, "loss_presence": F.binary_cross_entropy_with_logits(logits, presence)}

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        boxes, logits = self.model(images)
        labels = torch.arange(1, self.model.num_classes + 1)
        return [
            {
                "boxes": box * torch.tensor([image.shape[-1], image.shape[-2]] * 2),
                "labels": labels,
                "scores": score.sigmoid(),
            }
            for image, box, score in zip(images, boxes, logits, strict=True)
        ]


EXPERIMENT = {
    "experiment": "one_box_per_class_synthetic",
    "seed_everything": 0,
    "published": [{"source": "a made-up reference", "metrics": {"val/bbox/AP50": 0.5}}],
    "trainer": {
        "accelerator": "cpu",
        "max_steps": 6,
        "val_check_interval": 3,
        "check_val_every_n_epoch": None,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    },
    "model": {
        "class_path": "tests.test_new_method.OneBoxPerClassDetector",
        "init_args": {
            "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
            "lr_scheduler": {
                "class_path": "torch.optim.lr_scheduler.CosineAnnealingLR",
                "init_args": {"T_max": 6},
            },
            "loss_weights": {"loss_box": 2.0},
            "model": {
                "class_path": "tests.test_new_method.OneBoxPerClassNet",
                "init_args": {"num_classes": 4},
            },
        },
    },
    "data": str(REPO_ROOT / "experiments" / "common" / "synthetic_coco_instances.yaml"),
}


@pytest.fixture(autouse=True)
def _finish_wandb():
    import wandb

    yield
    wandb.finish()


def test_a_method_defined_outside_the_shared_code_trains_evaluates_and_compares(
    tiny_synthetic: Path, tmp_path
):
    config = tmp_path / "one_box_per_class.yaml"
    config.write_text(yaml.safe_dump(EXPERIMENT))
    runs = tmp_path / "runs"
    cli = run_cli(
        ["fit", f"--config={config}", *data_arguments(tiny_synthetic), "--data.init_args.batch_size=2",
         "--data.init_args.num_workers=0", f"--runs_dir={runs}", "--run_id=first"]
    )  # fmt: skip
    assert isinstance(cli.trainer.optimizers[0], torch.optim.Adam)
    assert cli.trainer.lr_scheduler_configs[0].interval == "step"
    run_dir = runs / "one_box_per_class_synthetic" / "first"
    records = read_metrics(run_dir)
    assert [record["step"] for record in records] == [3, 6]
    assert {f"val/bbox/{name}" for name in ("AP", "AP50", "AP75", "APs", "APm", "APl")} <= set(records[-1])
    assert not any(name.startswith("val/segm") for name in records[-1])  # box-only: iou_types ("bbox",)
    best = max(records, key=lambda record: record["val/bbox/AP"])  # the main metric, by value
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["best-{}.ckpt".format(
        best["step"]), "last.ckpt"]  # fmt: skip
    assert (run_dir / "wandb").is_dir()  # W&B by default (offline without credentials)

    [record] = find_runs(runs)
    [row] = build_table([record], ["val/bbox/AP50"]).rows
    assert row[:5] == ["one_box_per_class_synthetic", "first", "metrics.jsonl", "6", "val/bbox/AP"]
    assert row[5] == f"{100 * records[-1]['val/bbox/AP']:.1f}"
    ap50 = records[-1]["val/bbox/AP50"]
    assert row[-4:] == [
        f"{100 * ap50:.1f}",
        "50.0",
        f"{100 * (ap50 - 0.5):+.1f}",
        "[1]",
    ]  # beside "published"

    run_cli(
        ["predict", f"--config={config}", *data_arguments(tiny_synthetic), "--data.init_args.num_workers=0",
         f"--runs_dir={runs}", "--run_id=first", "--ckpt_path=last", "--wandb=false"]
    )  # fmt: skip
    predictions = (run_dir / "predictions.json").read_text()
    assert '"bbox"' in predictions and '"segmentation"' not in predictions
