"""Class-conditional image folders (``datamodules.class_images``) on the synthetic world's single shapes."""

import shutil
from pathlib import Path

import pytest
import torch

from datamodules.class_images import ClassImagesDataModule, ClassImagesDataset
from datamodules.errors import DatasetFormatError
from datamodules.synthetic.image_layouts import write_class_images_split
from datamodules.synthetic.world import THING_CLASSES

NAMES = tuple(sorted(c.name for c in THING_CLASSES))


@pytest.fixture(scope="module")
def classes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("classes")
    write_class_images_split(root, "train", 2)
    write_class_images_split(root, "val", 1)
    return root


def test_labels_follow_sorted_class_names(classes_root: Path) -> None:
    dataset = ClassImagesDataset(classes_root / "train", image_size=16)
    assert dataset.class_names == NAMES and len(dataset) == 8
    items = [dataset[i] for i in range(len(dataset))]
    assert [int(item["labels"]) for item in items] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert items[2]["names"] == f"{NAMES[1]}_000001" and items[0]["labels"].dtype == torch.int64
    assert items[0]["b"].shape == (3, 16, 16)


def test_training_flips_come_from_the_seed(classes_root: Path) -> None:
    dataset = ClassImagesDataset(classes_root / "train", image_size=32, flip=True)
    items = [dataset.seeded_item(0, seed)["b"] for seed in range(8)]
    assert all(torch.equal(b, dataset.seeded_item(0, seed)["b"]) for seed, b in enumerate(items))
    plain = dataset[0]["b"]
    assert {torch.equal(b, plain) for b in items} == {True, False}
    assert all(torch.equal(b, plain) or torch.equal(b, plain.flip(-1)) for b in items)


def test_mismatched_or_empty_classes_name_the_folder(classes_root: Path, tmp_path: Path) -> None:
    shutil.copytree(classes_root / "val", tmp_path / "val")
    shutil.rmtree(tmp_path / "val" / "star")
    with pytest.raises(DatasetFormatError, match=r"val: class folders .* differ from the training split"):
        ClassImagesDataset(tmp_path / "val", 32, class_names=NAMES)
    (tmp_path / "val" / "star").mkdir()
    with pytest.raises(DatasetFormatError, match=r"star: no image files .*class 'star'"):
        ClassImagesDataset(tmp_path / "val", 32)
    with pytest.raises(DatasetFormatError, match="no such folder"):
        ClassImagesDataset(tmp_path / "test", 32)


def test_datamodule_batches_and_metadata(classes_root: Path) -> None:
    data = ClassImagesDataModule(classes_root, image_size=32, batch_size=4, num_workers=0)
    assert data.metadata.class_names == NAMES and data.metadata.label_to_category_id == {
        1: 1,
        2: 2,
        3: 3,
        4: 4,
    }
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"b", "labels", "names"} and batch["b"].shape == (4, 3, 32, 32)
    assert batch["labels"].shape == (4,) and batch["labels"].dtype == torch.int64
    assert set(batch["labels"].tolist()) <= {1, 2, 3, 4}
    val = next(iter(data.val_dataloader()))
    assert val["labels"].tolist() == [1, 2, 3, 4]
