"""The synthetic world's generative layouts (``datamodules.synthetic.image_layouts``) and ``zoo synthetic
--formats``."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from datamodules.synthetic.coco_writer import scene_rng
from datamodules.synthetic.image_layouts import (
    LABEL_COLOURS,
    domain_b_colours,
    label_map,
    write_class_images_split,
    write_cyclegan_split,
    write_pix2pix_split,
    write_style_transfer,
    write_super_resolution_split,
)
from datamodules.synthetic.world import STUFF_CLASSES, THING_CLASSES, render_scene
from zoo.tools import synthetic as synthetic_tool


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _write_all(root: Path, count: int) -> None:
    write_pix2pix_split(root / "pix2pix", "train", count, image_size=32, seed=3)
    write_cyclegan_split(root / "cyclegan", "train", count, count, image_size=32, seed=3)
    write_super_resolution_split(root / "sr", "train", count, image_size=32, seed=3)
    write_style_transfer(root / "style", count, 1, image_size=32, seed=3)
    write_class_images_split(root / "classes", "train", count, seed=3)


def test_same_arguments_same_bytes_and_images_independent_of_counts(tmp_path: Path) -> None:
    _write_all(tmp_path / "one", 2)
    _write_all(tmp_path / "two", 2)
    _write_all(tmp_path / "three", 3)
    one, three = _files(tmp_path / "one"), _files(tmp_path / "three")
    assert one == _files(tmp_path / "two")
    assert len(three) > len(one) and all(three[name] == data for name, data in one.items())


def test_pix2pix_pairs_are_the_label_map_beside_the_photo(tmp_path: Path) -> None:
    folder = write_pix2pix_split(tmp_path, "val", 3, image_size=48, seed=1)
    for index in range(3):
        scene = render_scene(scene_rng(1, "pix2pix-val", index), 48)
        pair = _read(folder / f"{index + 1:06d}.png")
        assert pair.shape == (48, 96, 3)
        assert np.array_equal(pair[:, :48], label_map(scene)) and np.array_equal(pair[:, 48:], scene.image)
        for thing in scene.things:  # a thing's visible pixels carry its class colour
            assert (pair[:, :48][thing.mask] == LABEL_COLOURS[thing.category_id]).all()
    assert len(set(LABEL_COLOURS.values())) == len(THING_CLASSES) + len(STUFF_CLASSES)


def test_cyclegan_domains_are_unpaired_and_differ_in_colour(tmp_path: Path) -> None:
    a_folder, b_folder = write_cyclegan_split(tmp_path, "train", 6, 6, image_size=48, seed=0)
    a = np.stack([_read(p) for p in sorted(a_folder.iterdir())]).astype(np.float64)
    b = np.stack([_read(p) for p in sorted(b_folder.iterdir())]).astype(np.float64)
    restyled_a = domain_b_colours(a.astype(np.uint8)).astype(np.float64)
    assert all(not np.array_equal(restyled, image) for restyled in restyled_a for image in b)  # other scenes
    assert b.mean() - a.mean() > 15  # brighter
    hue = [cv2.cvtColor(x.astype(np.uint8).reshape(-1, 48, 3), cv2.COLOR_RGB2HSV)[..., 0] for x in (a, b)]
    histograms = [np.bincount(h.ravel() // 15, minlength=12) / h.size for h in hue]
    assert 0.5 * np.abs(histograms[0] - histograms[1]).sum() > 0.3  # total variation of the hue histograms
    assert np.array_equal(domain_b_colours(np.array([[[255, 0, 0]]], np.uint8)), [[[0, 255, 0]]])


def test_sr_style_and_class_layouts(tmp_path: Path) -> None:
    hr = write_super_resolution_split(tmp_path / "sr", "train", 2, image_size=64)
    assert [_read(p).shape for p in sorted(hr.iterdir())] == [(64, 64, 3)] * 2
    style = write_style_transfer(tmp_path / "style", 2, 1, image_size=64)
    painting = cv2.cvtColor(_read(style), cv2.COLOR_RGB2HSV)
    assert painting[..., 1].mean() > 180 and np.unique(painting[..., 0]).size > 60  # vivid, many hues
    assert sorted(p.name for p in (tmp_path / "style").iterdir()) == ["style.png", "train", "val"]
    classes = write_class_images_split(tmp_path / "classes", "train", 2)
    assert sorted(p.name for p in classes.iterdir()) == sorted(c.name for c in THING_CLASSES)
    for thing_class in THING_CLASSES:
        for path in sorted((classes / thing_class.name).iterdir()):
            image = _read(path)
            assert image.shape == (32, 32, 3)
            assert (image[14:18, 14:18] == image[16, 16]).all()  # the thing's flat colour at the centre


def test_cli_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path), "--train-images", "4", "--val-images", "4", "--size", "32"]
    assert synthetic_tool.main([*argv, "--formats", "pix2pix,cyclegan,sr,style,classes"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "images").exists() and not (tmp_path / "annotations").exists()
    for folder, count in [
        ("pix2pix/train", 4),
        ("pix2pix/val", 4),
        ("cyclegan/trainA", 4),
        ("cyclegan/trainB", 4),
        ("cyclegan/testA", 4),
        ("cyclegan/testB", 4),
        ("sr/val", 4),
        ("style/train", 4),
        ("classes/train/star", 1),
    ]:
        assert len(list((tmp_path / folder).iterdir())) == count, folder
        assert str(tmp_path / folder.split("/star")[0]) in out
    assert (tmp_path / "style" / "style.png").is_file()
    with pytest.raises(SystemExit) as exit_info:
        synthetic_tool.main([*argv, "--formats", "coco,pix2pics"])
    assert exit_info.value.code == 2
    assert synthetic_tool.build_parser().parse_args(["--out", "x"]).formats == ["coco"]
