"""Super-resolution items (``datamodules.super_resolution``): HR crops and their bicubic LR, on synthetic
HR renders."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from datamodules.errors import DatasetFormatError
from datamodules.super_resolution import SuperResolutionDataModule, SuperResolutionDataset, bicubic_downscale
from datamodules.synthetic.image_layouts import write_super_resolution_split


@pytest.fixture(scope="module")
def hr_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sr")
    write_super_resolution_split(root, "train", 3, image_size=48)
    write_super_resolution_split(root, "val", 2, image_size=48)
    return root


def _pil(image: torch.Tensor) -> Image.Image:
    """The 8-bit image behind a [0, 1] tensor (exact: values are k / 255)."""
    return Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def test_training_lr_is_the_pil_bicubic_downscale_of_an_hr_crop(hr_root: Path) -> None:
    dataset = SuperResolutionDataset(hr_root / "train", scale=4, hr_crop_size=24)
    item = dataset.seeded_item(1, 5)
    assert item["b"].shape == (3, 24, 24) and item["a"].shape == (3, 6, 6) and item["names"] == "000002"
    assert torch.equal(item["a"], to_tensor(_pil(item["b"]).resize((6, 6), Image.Resampling.BICUBIC)))
    whole = to_tensor(Image.open(hr_root / "train" / "000002.png").convert("RGB"))
    crops = [whole[:, y : y + 24, x : x + 24] for y in range(25) for x in range(25)]
    assert sum(torch.equal(item["b"], crop) for crop in crops) == 1  # a crop of the file, unscaled
    again = dataset.seeded_item(1, 5)
    assert torch.equal(item["a"], again["a"]) and torch.equal(item["b"], again["b"])
    assert any(not torch.equal(item["b"], dataset.seeded_item(1, seed)["b"]) for seed in range(4))


def test_flips_and_rotations_are_drawn_from_the_seed(hr_root: Path) -> None:
    dataset = SuperResolutionDataset(hr_root / "train", scale=4, hr_crop_size=24, flip_and_rotate=True)
    items = [dataset.seeded_item(0, seed) for seed in range(6)]
    assert all(torch.equal(item["b"], dataset.seeded_item(0, seed)["b"]) for seed, item in enumerate(items))
    assert all(torch.equal(i["a"], to_tensor(bicubic_downscale(_pil(i["b"]), 4))) for i in items)


def test_evaluation_crops_to_a_multiple_of_the_scale(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(45, 50, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "odd.png")
    item = SuperResolutionDataset(tmp_path, scale=4, hr_crop_size=24)[0]
    assert torch.equal(item["b"], to_tensor(image[:44, :48]))
    assert item["a"].shape == (3, 11, 12)
    assert torch.equal(item["a"], to_tensor(Image.fromarray(image[:44, :48]).resize((12, 11), Image.BICUBIC)))


def test_too_small_images_name_the_file(tmp_path: Path) -> None:
    Image.new("RGB", (30, 20)).save(tmp_path / "small.png")
    with pytest.raises(DatasetFormatError, match=r"small\.png: 30x20 pixels, smaller than the training crop"):
        SuperResolutionDataset(tmp_path, hr_crop_size=24).seeded_item(0, 0)
    Image.new("RGB", (3, 20)).save(tmp_path / "small.png")
    with pytest.raises(DatasetFormatError, match=r"small\.png: 3x20 pixels, smaller than the scale 4"):
        SuperResolutionDataset(tmp_path, hr_crop_size=24)[0]
    with pytest.raises(ValueError, match="multiple of scale"):
        SuperResolutionDataset(tmp_path, scale=4, hr_crop_size=30)


def test_datamodule_batches_follow_the_image_batch_convention(hr_root: Path) -> None:
    data = SuperResolutionDataModule(
        hr_root / "train", hr_root / "val", hr_crop_size=24, batch_size=3, num_workers=0
    )
    assert data.metadata.num_classes == 0 and data.val_batch_size == 1
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"a", "b", "names"}
    assert batch["a"].shape == (3, 3, 6, 6) and batch["b"].shape == (3, 3, 24, 24)
    val = next(iter(data.val_dataloader()))
    assert val["a"].shape == (1, 3, 12, 12) and val["b"].shape == (1, 3, 48, 48)
    data.setup("test")
    assert data.datasets["test"].paths == data.datasets["val"].paths  # test defaults to val
