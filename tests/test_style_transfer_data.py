"""Style-transfer data (``datamodules.style_transfer``): content images, the style image in the metadata."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from datamodules.errors import DatasetFormatError
from datamodules.image_files import resize_and_center_crop
from datamodules.style_transfer import StyleTransferDataModule, read_style_image
from datamodules.synthetic.image_layouts import write_style_transfer


@pytest.fixture(scope="module")
def style_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("style")
    write_style_transfer(root, num_train=3, num_val=2, image_size=48)
    return root


@pytest.mark.parametrize("size", [(50, 31), (31, 50), (40, 40)])
def test_resize_and_center_crop_equals_torchvision(size: tuple[int, int]) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(*size[::-1], 3), dtype=np.uint8))
    expected = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32)])(image)
    assert np.array_equal(np.asarray(resize_and_center_crop(image, 32)), np.asarray(expected))


def test_content_items_are_deterministic(style_root: Path) -> None:
    data = StyleTransferDataModule(
        style_root / "train", style_root / "style.png", style_root / "val", image_size=32
    )
    dataset = data.build_dataset("train")
    item = dataset.seeded_item(2, 17)
    assert set(item) == {"a", "names"} and item["a"].shape == (3, 32, 32) and item["names"] == "000003"
    assert torch.equal(item["a"], dataset.seeded_item(2, 18)["a"]) and torch.equal(item["a"], dataset[2]["a"])
    with pytest.raises(DatasetFormatError, match=r"nothing.*no such folder \(expected content images\)"):
        StyleTransferDataModule(style_root / "nothing", style_root / "style.png", style_root / "val").setup(
            "fit"
        )


def test_the_style_image_is_checked_at_construction(style_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match=r"nowhere\.png: style image not found"):
        StyleTransferDataModule(style_root / "train", tmp_path / "nowhere.png", style_root / "val")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetFormatError, match=r"broken\.jpg: cannot read"):
        StyleTransferDataModule(style_root / "train", tmp_path / "broken.jpg", style_root / "val")


def test_datamodule_batches_and_metadata(style_root: Path) -> None:
    data = StyleTransferDataModule(
        style_root / "train",
        style_root / "style.png",
        style_root / "val",
        image_size=32,
        batch_size=2,
        num_workers=0,
    )
    assert data.metadata.style_image == style_root / "style.png" and data.metadata.num_classes == 0
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"a", "names"} and batch["a"].shape == (2, 3, 32, 32)
    assert next(iter(data.val_dataloader()))["a"].shape == (2, 3, 32, 32)
    style = read_style_image(data.metadata.style_image)
    assert style.shape == (3, 48, 48) and style.dtype == torch.float32
    assert read_style_image(data.metadata.style_image, size=24).shape == (3, 24, 24)
