"""COCO panoptic DataModule: batches, metadata, shared categories, the evaluation pipeline rule and
building from a config."""

import json
from pathlib import Path

import albumentations as A
import pytest
import torch
from jsonargparse import ArgumentParser

from datamodules.coco_panoptic import CocoPanopticDataset
from datamodules.coco_panoptic_datamodule import CocoPanopticDataModule
from datamodules.errors import DatasetFormatError
from tests.test_coco_panoptic import HEIGHT, WIDTH, write_panoptic


def test_real_sample_batches_and_metadata(shared_data: Path) -> None:
    root = shared_data / "panoptic_sample"
    images, annotations = root / "input_images", root / "panoptic_examples.json"
    flip = A.Compose([A.HorizontalFlip(p=1.0)])
    datamodule = CocoPanopticDataModule(
        images, annotations, images, annotations, batch_size=2, num_workers=0, train_transforms=flip
    )
    metadata = datamodule.metadata  # readable before setup: the CLI hands it to the module
    categories = sorted(json.loads(annotations.read_text())["categories"], key=lambda c: c["id"])
    things = [c for c in categories if c["isthing"]]
    stuff = [c for c in categories if not c["isthing"]]
    assert metadata.class_names == tuple(c["name"] for c in things) and metadata.num_classes == 80
    assert metadata.label_to_category_id == {label: c["id"] for label, c in enumerate(things, start=1)}
    assert metadata.stuff_names == tuple(c["name"] for c in stuff)
    assert metadata.stuff_category_ids == tuple(c["id"] for c in stuff)
    assert metadata.num_semantic_classes == 133
    assert metadata.category_isthing == {c["id"]: bool(c["isthing"]) for c in categories}
    assert metadata.semantic_category_ids == tuple(c["id"] for c in stuff + things)
    assert metadata.annotation_files == {"val": annotations, "test": annotations}

    datamodule.setup("fit")
    batch_images, targets = next(iter(datamodule.train_dataloader()))
    assert len(batch_images) == len(targets) == 2
    val_images, val_targets = next(iter(datamodule.val_dataloader()))
    assert [t["image_id"].item() for t in val_targets] == [142238, 439180]  # in order
    for train_target, val_target in zip(
        sorted(targets, key=lambda t: t["image_id"].item()), val_targets, strict=True
    ):
        assert torch.equal(train_target["panoptic"].flip(-1), val_target["panoptic"])  # flipped for training
        assert set(val_target) == {
            "image_id",
            "panoptic",
            "semantic",
            "segments",
            "boxes",
            "labels",
            "masks",
            "annotation_ids",
        }
    assert {tuple(image.shape) for image in val_images} == {(3, 427, 640), (3, 360, 640)}


def test_splits_and_default_pipeline(tmp_path: Path) -> None:
    image_dir, annotation_file = write_panoptic(tmp_path)
    png_dir = tmp_path / "pngs"
    (tmp_path / "annotations" / "panoptic_val").rename(png_dir)
    datamodule = CocoPanopticDataModule(
        image_dir, annotation_file, image_dir, annotation_file, png_dir, png_dir, num_workers=0
    )
    assert [type(t).__name__ for t in datamodule.train_transforms.transforms] == ["HorizontalFlip"]
    assert "contiguous_labels" not in datamodule.hparams  # only this signature's arguments
    datamodule.setup("test")  # the test split defaults to the validation split, PNG folder included
    assert datamodule.test_dataset.panoptic_dir == png_dir
    images, targets = next(iter(datamodule.test_dataloader()))
    assert images[0].shape == (3, HEIGHT, WIDTH) and targets[0]["labels"].tolist() == [1, 2]
    datamodule.setup("fit")
    assert isinstance(datamodule.train_dataset, CocoPanopticDataset)
    assert datamodule.train_dataset.panoptic_dir == png_dir
    with pytest.raises(ValueError, match="test_panoptic needs test_images and test_annotations"):
        CocoPanopticDataModule(image_dir, annotation_file, image_dir, annotation_file, test_panoptic=png_dir)


def test_evaluation_pipelines_keep_the_frame(tmp_path: Path) -> None:
    image_dir, annotation_file = write_panoptic(tmp_path)
    with pytest.raises(ValueError, match="HorizontalFlip changes the image geometry"):
        CocoPanopticDataModule(
            image_dir,
            annotation_file,
            image_dir,
            annotation_file,
            val_transforms=A.Compose([A.HorizontalFlip()]),
        )


def test_train_and_val_categories_must_agree(tmp_path: Path) -> None:
    train_images, train_file = write_panoptic(tmp_path / "train")

    def stuff_renamed(data: dict) -> None:
        data["categories"][0]["name"] = "brick wall"

    val_images, val_file = write_panoptic(tmp_path / "val", stuff_renamed)
    datamodule = CocoPanopticDataModule(train_images, train_file, val_images, val_file)
    with pytest.raises(
        DatasetFormatError, match=r"have different stuff categories \(\['sky', 'brick wall'\]"
    ):
        datamodule.setup("fit")


def test_builds_from_config() -> None:
    """LightningCLI builds the DataModule with jsonargparse from YAML; every argument must be typed."""
    parser = ArgumentParser()
    parser.add_class_arguments(CocoPanopticDataModule, "data")
    arguments = ["--data.train_images=t", "--data.train_annotations=t.json", "--data.val_images=v"]
    arguments += ["--data.val_annotations=v.json", "--data.val_panoptic=v_png", "--data.batch_size=4"]
    arguments += ["--data.train_transforms.class_path=datamodules.coco_panoptic.train_transforms"]
    arguments += ["--data.train_transforms.init_args.flip_prob=0.25"]
    datamodule = parser.instantiate(parser.parse_args(arguments)).data
    assert isinstance(datamodule, CocoPanopticDataModule) and datamodule.batch_size == 4
    assert datamodule.val_panoptic == Path("v_png") and datamodule.train_transforms.transforms[0].p == 0.25
