"""COCO instances DataModule: loaders, metadata, shared categories, injected pipelines, and building
from a config."""

from pathlib import Path
from typing import Any

import pytest
import torch
from jsonargparse import ArgumentParser

from datamodules.coco_instances_datamodule import CocoInstancesDataModule
from datamodules.errors import DatasetFormatError
from datamodules.instance_transforms import train_transforms
from tests.coco_files import GOOD, HEIGHT, WIDTH, annotation, edit_categories, rect_polygon, write_coco

# pycocotools 2.0.x under numpy 2 warns inside its own decode; nothing this project can change
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def make_datamodule(tmp_path: Path, **kwargs: Any) -> CocoInstancesDataModule:
    image_dir, annotation_file = write_coco(
        tmp_path, [GOOD, annotation(2, [1, 1, 5, 5], [rect_polygon(1, 1, 6, 6)])]
    )
    return CocoInstancesDataModule(image_dir, annotation_file, image_dir, annotation_file, **kwargs)


def test_datamodule_loaders_and_attributes(tmp_path: Path) -> None:
    flip = train_transforms(flip_prob=1.0, color_jitter=0.0)
    datamodule = make_datamodule(tmp_path, batch_size=2, num_workers=0, train_transforms=flip)
    metadata = datamodule.metadata  # readable before setup: the CLI hands it to the module
    assert metadata.num_classes == 1 and metadata.class_names == ("thing",)
    assert metadata.label_to_category_id == {1: 1} and metadata.label_names == {1: "thing"}
    assert metadata.annotation_files == {
        "val": tmp_path / "instances.json",
        "test": tmp_path / "instances.json",
    }
    datamodule.setup("fit")
    train = datamodule.train_dataloader()
    assert train.drop_last is False and not train.persistent_workers
    images, targets = next(iter(train))
    assert isinstance(images, list) and len(images) == 1 and images[0].shape == (3, HEIGHT, WIDTH)
    assert targets[0]["boxes"].tolist()[0] == [WIDTH - 20, 5, WIDTH - 10, 15]  # flipped for training
    images, targets = next(iter(datamodule.val_dataloader()))
    assert targets[0]["boxes"].tolist()[0] == [10, 5, 20, 15]  # never for validation
    datamodule.setup("test")
    datamodule.setup("predict")
    for loader in (datamodule.test_dataloader(), datamodule.predict_dataloader()):
        assert loader.dataset.annotation_file == metadata.annotation_file("test")
    with_workers = make_datamodule(tmp_path, num_workers=1)
    with_workers.setup("fit")
    assert with_workers.train_dataloader().persistent_workers


def test_datamodule_rejects_different_categories(tmp_path: Path) -> None:
    datamodule = make_datamodule(tmp_path / "a")
    _, other = write_coco(tmp_path / "b", [], edit_categories([{"id": 1, "name": "other"}]))
    datamodule.val_annotations = other
    with pytest.raises(DatasetFormatError, match="have different categories"):
        datamodule.setup("fit")


def test_datamodule_builds_from_config(tmp_path: Path) -> None:
    """LightningCLI builds the DataModule with jsonargparse from YAML; every argument must be typed."""
    parser = ArgumentParser()
    parser.add_class_arguments(CocoInstancesDataModule, "data")
    config = parser.parse_args(
        [
            "--data.train_images",
            "t",
            "--data.train_annotations",
            "t.json",
            "--data.val_images",
            "v",
            "--data.val_annotations",
            "v.json",
            "--data.batch_size",
            "4",
            "--data.contiguous_labels",
            "false",
            "--data.train_transforms.class_path=datamodules.instance_transforms.train_transforms",
            "--data.train_transforms.init_args.flip_prob=0.25",
        ]
    )
    datamodule = parser.instantiate(config).data
    assert datamodule.batch_size == 4 and datamodule.contiguous_labels is False
    assert datamodule.val_annotations == Path("v.json")
    [flip, _] = datamodule.train_transforms.transforms  # the experiment's pipeline, not the default
    assert flip.p == 0.25


def test_evaluation_pipelines_may_only_change_pixel_values(tmp_path: Path) -> None:
    import albumentations as A

    with pytest.raises(ValueError, match="val_transforms: HorizontalFlip changes the image geometry"):
        make_datamodule(tmp_path, val_transforms=train_transforms())
    datamodule = make_datamodule(tmp_path, num_workers=0, val_transforms=A.Compose([A.ToGray(p=1.0)]))
    datamodule.setup("validate")
    images, targets = next(iter(datamodule.val_dataloader()))
    assert torch.equal(images[0][0], images[0][1])  # grey
    assert targets[0]["boxes"].tolist()[0] == [10, 5, 20, 15]
