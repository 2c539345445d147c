"""CycleGAN's unpaired reader and DataModule (``datamodules.unpaired_images``) on synthetic domains."""

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from datamodules.errors import DatasetFormatError
from datamodules.random_jitter import RandomJitter
from datamodules.synthetic.image_layouts import write_cyclegan_split
from datamodules.unpaired_images import UnpairedImagesDataModule, UnpairedImagesDataset

JITTER = RandomJitter(load_size=40, crop_size=32)


@pytest.fixture(scope="module")
def cyclegan_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cyclegan")
    write_cyclegan_split(root, "train", num_a=3, num_b=5, image_size=40)
    write_cyclegan_split(root, "test", num_a=2, num_b=3, image_size=40)
    return root


def _resized(path: Path) -> torch.Tensor:
    return to_tensor(Image.open(path).convert("RGB").resize((32, 32), Image.Resampling.BICUBIC))


def test_length_is_the_larger_domain_and_items_repeat_exactly(cyclegan_root: Path) -> None:
    dataset = UnpairedImagesDataset(cyclegan_root, "train", JITTER)
    assert len(dataset) == 5
    first, again = dataset.seeded_item(4, 99), dataset.seeded_item(4, 99)
    assert all(torch.equal(first[k], again[k]) for k in ("a", "b")) and first["names"] == again["names"]
    assert first["names"] == "000002"  # A[4 % 3]
    assert first["a"].shape == first["b"].shape == (3, 32, 32)


def test_the_b_image_depends_only_on_the_seed(cyclegan_root: Path) -> None:
    dataset = UnpairedImagesDataset(cyclegan_root, "train", JITTER)
    for seed in (0, 7, 123456789):
        bs = [dataset.seeded_item(index, seed)["b"] for index in range(len(dataset))]
        assert all(torch.equal(b, bs[0]) for b in bs[1:])
    by_seed = [dataset.seeded_item(0, seed)["b"] for seed in range(8)]
    assert any(not torch.equal(b, by_seed[0]) for b in by_seed[1:])


def test_evaluation_items_pair_by_index_and_only_resize(cyclegan_root: Path) -> None:
    dataset = UnpairedImagesDataset(cyclegan_root, "test", JITTER)
    assert len(dataset) == 3
    item = dataset[2]  # A[2 % 2], B[2 % 3]
    assert torch.equal(item["a"], _resized(dataset.a_paths[0])) and item["names"] == "000001"
    assert torch.equal(item["b"], _resized(dataset.b_paths[2]))
    swapped = UnpairedImagesDataset(cyclegan_root, "test", JITTER, direction="BtoA")
    assert torch.equal(swapped[1]["a"], _resized(cyclegan_root / "testB" / "000002.png"))


def test_a_missing_domain_names_its_folder(tmp_path: Path) -> None:
    write_cyclegan_split(tmp_path, "train", num_a=1, num_b=0, image_size=32)
    with pytest.raises(DatasetFormatError, match=r"trainB.*no image files.*domain B"):
        UnpairedImagesDataset(tmp_path, "train", JITTER)
    with pytest.raises(DatasetFormatError, match=r"testA.*no such folder"):
        UnpairedImagesDataset(tmp_path, "test", JITTER)


def test_datamodule_batches_follow_the_image_batch_convention(cyclegan_root: Path) -> None:
    data = UnpairedImagesDataModule(cyclegan_root, load_size=40, crop_size=32, batch_size=2, num_workers=0)
    assert data.metadata.num_classes == 0
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"a", "b", "names"} and batch["a"].shape == batch["b"].shape == (2, 3, 32, 32)
    val = next(iter(data.val_dataloader()))  # the test folders
    assert val["a"].shape == (2, 3, 32, 32) and len(data.datasets["val"]) == 3


def test_training_loader_resumes_mid_epoch_with_the_same_unpaired_draws(cyclegan_root: Path) -> None:
    def loader():
        data = UnpairedImagesDataModule(
            cyclegan_root, load_size=40, crop_size=32, batch_size=2, num_workers=0
        )
        data.setup("fit")
        return data.train_dataloader()

    first = loader()
    batches = iter(first)
    next(batches)
    state = first.state_dict()
    expected = list(batches)  # the rest of the epoch: 2 + 1 items
    resumed = loader()
    resumed.load_state_dict(state)
    got = list(resumed)
    assert len(expected) == 2
    for want, have in zip(expected, got, strict=True):
        assert want["names"] == have["names"]
        assert torch.equal(want["a"], have["a"]) and torch.equal(want["b"], have["b"])
