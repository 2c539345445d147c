"""The module contract (``lightning_modules.base``) and the detection bases: optimizer and schedule
from the YAML, the main metric declaration, and the error paths a user meets first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from datamodules.metadata import DatasetMetadata
from lightning_modules.base import ZooModule
from lightning_modules.detection import DetectionModule, InstanceSegmentationModule
from lightning_modules.lr_schedules import WarmupMultiStepLR
from tests.presets import small_mask_rcnn

METADATA = DatasetMetadata(("circle", "square"), {1: 1, 2: 2}, {"val": Path("val.json")})


class ScoreModule(ZooModule):
    """The smallest module: one parameter, a main metric to minimise."""

    main_metric = "val/score"
    main_metric_mode = "min"

    def __init__(
        self,
        metadata: DatasetMetadata | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(metadata, optimizer, lr_scheduler)
        self.weight = nn.Parameter(torch.ones(3))


def module_from_yaml(text: str) -> ScoreModule:
    """What LightningCLI does with ``model.init_args``: parse the YAML, build the callables."""
    parser = ArgumentParser()
    parser.add_class_arguments(ScoreModule, "model", skip={"metadata"}, instantiate=False)
    init = parser.instantiate(parser.parse_object({"model": yaml.safe_load(text)})).model
    return ScoreModule(METADATA, init.optimizer, init.get("lr_scheduler"))


@pytest.mark.parametrize(
    ("optimizer", "expected"),
    [
        ("{class_path: torch.optim.SGD, init_args: {lr: 0.02, momentum: 0.9}}", torch.optim.SGD),
        ("{class_path: torch.optim.Adam, init_args: {lr: 0.001}}", torch.optim.Adam),
        ("{class_path: torch.optim.RMSprop, init_args: {lr: 0.01}}", torch.optim.RMSprop),
    ],
)
def test_the_yaml_picks_the_optimizer(optimizer: str, expected: type) -> None:
    configured = module_from_yaml(f"optimizer: {optimizer}").configure_optimizers()
    assert type(configured) is expected  # no schedule: the optimizer alone, constant lr
    assert configured.param_groups[0]["params"][0].shape == (3,)


def test_the_yaml_picks_the_schedule_and_when_it_steps() -> None:
    sgd = "optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.1}}\n"
    warmup = module_from_yaml(
        sgd + "lr_scheduler: {class_path: lightning_modules.lr_schedules.WarmupMultiStepLR, "
        "init_args: {milestones: [10], warmup_steps: 5}}"
    ).configure_optimizers()
    assert isinstance(warmup["lr_scheduler"]["scheduler"], WarmupMultiStepLR)
    assert warmup["lr_scheduler"]["interval"] == "step"
    cosine = module_from_yaml(
        sgd
        + "lr_scheduler: {class_path: torch.optim.lr_scheduler.CosineAnnealingLR, init_args: {T_max: 100}}"
    ).configure_optimizers()
    assert cosine["lr_scheduler"]["interval"] == "step"
    plateau = module_from_yaml(
        sgd + "lr_scheduler: {class_path: torch.optim.lr_scheduler.ReduceLROnPlateau, init_args: {mode: min}}"
    ).configure_optimizers()
    assert plateau["lr_scheduler"] | {"scheduler": None} == {
        "scheduler": None,
        "interval": "epoch",
        "monitor": "val/score",
    }


def test_a_plateau_schedule_must_watch_the_main_metric_the_right_way() -> None:
    module = module_from_yaml(
        "optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.1}}\n"
        "lr_scheduler: {class_path: torch.optim.lr_scheduler.ReduceLROnPlateau, init_args: {mode: max}}"
    )
    with pytest.raises(ValueError, match=r"set lr_scheduler\.init_args\.mode to 'min'"):
        module.configure_optimizers()


def test_a_module_must_declare_its_main_metric_and_get_metadata() -> None:
    class NoMetric(ZooModule):
        pass

    with pytest.raises(TypeError, match="NoMetric must declare main_metric"):
        NoMetric(METADATA, torch.optim.SGD)
    with pytest.raises(ValueError, match="needs the dataset's metadata"):
        ScoreModule(None, torch.optim.SGD)


def sgd(parameters):
    return torch.optim.SGD(parameters, lr=0.01)


def test_detection_bases_declare_their_main_metrics_and_iou_types() -> None:
    model = small_mask_rcnn(num_classes=2)
    boxes = DetectionModule(model, METADATA, sgd)
    masks = InstanceSegmentationModule(model, METADATA, sgd)
    assert (boxes.main_metric, boxes.iou_types) == ("val/bbox/AP", ("bbox",))
    assert (masks.main_metric, masks.iou_types) == ("val/segm/AP", ("bbox", "segm"))
    with pytest.raises(ValueError, match="includes 'segm'"):
        InstanceSegmentationModule(model, METADATA, sgd, iou_types=["bbox"])
    with pytest.raises(ValueError, match="subset of"):
        DetectionModule(model, METADATA, sgd, iou_types=["bbox", "keypoints"])


def test_num_classes_mismatch_names_the_override_that_fixes_it() -> None:
    with pytest.raises(ValueError, match=r"set --model.init_args.model.init_args.num_classes=2"):
        InstanceSegmentationModule(small_mask_rcnn(num_classes=4), METADATA, sgd)


def test_loss_weights_multiply_named_losses_and_unknown_names_are_refused() -> None:
    module = DetectionModule(small_mask_rcnn(num_classes=2), METADATA, sgd, loss_weights={"loss_mask": 2.0})
    losses = {"loss_mask": torch.tensor(1.5), "loss_classifier": torch.tensor(0.5)}
    assert float(module.weighted_loss(losses)) == pytest.approx(2.0 * 1.5 + 0.5)
    typo = DetectionModule(small_mask_rcnn(num_classes=2), METADATA, sgd, loss_weights={"loss_masks": 2.0})
    with pytest.raises(ValueError, match=r"loss_weights names \['loss_masks'\], but the model's losses are"):
        typo.weighted_loss(losses)


def test_metadata_rules() -> None:
    assert METADATA.num_classes == 2 and METADATA.label_names == {1: "circle", 2: "square"}
    with pytest.raises(ValueError, match="no annotation file for the 'test' split"):
        METADATA.annotation_file("test")
    with pytest.raises(ValueError, match=r"labels must lie in 1..2"):
        DatasetMetadata(("a", "b"), {0: 1, 1: 2})
    assert DatasetMetadata.without_classes().num_classes == 0  # image translation, super-resolution
    with pytest.raises(ValueError, match=r"labels must lie in 1..0"):
        DatasetMetadata((), {1: 1})
