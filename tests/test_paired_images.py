"""pix2pix's A|B reader and DataModule (``datamodules.paired_images``) on files the synthetic writer makes."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from datamodules.errors import DatasetFormatError
from datamodules.paired_images import PairedImagesDataModule, PairedImagesDataset
from datamodules.random_jitter import RandomJitter
from datamodules.synthetic.image_layouts import write_pix2pix_split

JITTER = RandomJitter(load_size=40, crop_size=32)


def _pair_with_permuted_b(folder: Path, photo: np.ndarray, name: str = "pair") -> Path:
    """An A|B file whose B is A with its channels permuted (a known function of A, exact under resizing)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    Image.fromarray(np.concatenate([photo, photo[..., [2, 0, 1]]], axis=1)).save(path)
    return path


@pytest.fixture(scope="module")
def pix2pix_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pix2pix")
    write_pix2pix_split(root, "train", 4, image_size=48)
    write_pix2pix_split(root, "val", 3, image_size=48)
    return root


def test_same_index_and_seed_give_identical_items(pix2pix_root: Path) -> None:
    dataset = PairedImagesDataset(pix2pix_root / "train", JITTER)
    first, again = dataset.seeded_item(2, 1234), dataset.seeded_item(2, 1234)
    assert torch.equal(first["a"], again["a"]) and torch.equal(first["b"], again["b"])
    others = [dataset.seeded_item(2, seed)["a"] for seed in range(6)]
    assert any(not torch.equal(first["a"], other) for other in others)
    assert first["a"].shape == first["b"].shape == (3, 32, 32) and first["a"].dtype == torch.float32
    assert first["names"] == "000003"


def test_a_and_b_get_the_same_crop_and_flip(tmp_path: Path) -> None:
    photo = np.random.default_rng(0).integers(0, 256, size=(48, 48, 3), dtype=np.uint8)
    path = _pair_with_permuted_b(tmp_path / "train", photo)
    dataset = PairedImagesDataset(tmp_path / "train", JITTER)
    resized = to_tensor(Image.fromarray(photo).resize((40, 40), Image.Resampling.BICUBIC))
    found = set()
    for seed in range(12):
        item = dataset.seeded_item(0, seed)
        assert torch.equal(item["b"], item["a"][[2, 0, 1]])  # B's crop and flip are A's
        # a is a 32 x 32 crop of A resized to 40 x 40 (the official resize_and_crop), flipped or not
        matches = [
            (left, top, flip)
            for top in range(9)
            for left in range(9)
            for flip in (False, True)
            if torch.equal(
                item["a"],
                resized[:, top : top + 32, left : left + 32].flip(-1)
                if flip
                else resized[:, top : top + 32, left : left + 32],
            )
        ]
        assert len(matches) == 1, path
        found.add(matches[0])
    assert len({left for left, _, _ in found}) > 1 and {flip for _, _, flip in found} == {False, True}


def test_evaluation_items_resize_to_the_crop_size_and_btoa_swaps(tmp_path: Path) -> None:
    photo = np.random.default_rng(1).integers(0, 256, size=(48, 48, 3), dtype=np.uint8)
    _pair_with_permuted_b(tmp_path / "val", photo)
    expected_a = to_tensor(Image.fromarray(photo).resize((32, 32), Image.Resampling.BICUBIC))
    item = PairedImagesDataset(tmp_path / "val", JITTER)[0]
    assert torch.equal(item["a"], expected_a) and torch.equal(item["b"], expected_a[[2, 0, 1]])
    swapped = PairedImagesDataset(tmp_path / "val", JITTER, direction="BtoA")[0]
    assert torch.equal(swapped["a"], item["b"]) and torch.equal(swapped["b"], item["a"])


def test_bad_input_names_the_file_or_folder(tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.new("RGB", (49, 24)).save(odd / "bad.png")
    with pytest.raises(DatasetFormatError, match=r"bad\.png.*even width.*49x24"):
        PairedImagesDataset(odd, JITTER)[0]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DatasetFormatError, match=r"cut\.png.*cannot read"):
        PairedImagesDataset(broken, JITTER).seeded_item(0, 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match=r"empty.*no image files"):
        PairedImagesDataset(tmp_path / "empty", JITTER)
    with pytest.raises(DatasetFormatError, match=r"missing.*no such folder"):
        PairedImagesDataset(tmp_path / "missing", JITTER)
    with pytest.raises(ValueError, match="crop_size"):
        RandomJitter(load_size=32, crop_size=40)


def test_datamodule_batches_follow_the_image_batch_convention(pix2pix_root: Path, tmp_path: Path) -> None:
    data = PairedImagesDataModule(
        pix2pix_root,
        load_size=40,
        crop_size=32,
        batch_size=2,
        val_batch_size=3,
        num_workers=0,
        test_split="val",
    )
    assert data.metadata.num_classes == 0 and data.metadata.style_image is None
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"a", "b", "names"}
    assert batch["a"].shape == batch["b"].shape == (2, 3, 32, 32)
    assert isinstance(batch["names"], list) and all(isinstance(n, str) for n in batch["names"])
    val = next(iter(data.val_dataloader()))
    assert val["a"].shape == (3, 3, 32, 32) and val["names"] == ["000001", "000002", "000003"]
    data.setup("predict")  # default: the test split (here val)
    assert next(iter(data.predict_dataloader()))["b"].shape == (3, 3, 32, 32)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.new("RGB", (20, 30), (255, 0, 0)).save(inputs / "photo.jpg")
    predict = PairedImagesDataModule(
        pix2pix_root, crop_size=32, load_size=40, num_workers=0, predict_images=inputs
    )
    predict.setup("predict")
    only = next(iter(predict.predict_dataloader()))
    assert set(only) == {"a", "names"} and only["a"].shape == (1, 3, 32, 32) and only["names"] == ["photo"]
