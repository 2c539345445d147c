"""DensePose-COCO reader on the synthetic world's DensePose JSON: targets, flips with the chart symmetry,
the pipeline rules, the official symmetry file and malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import scipy.io

from datamodules.coco_instances import CocoInstancesDataset
from datamodules.densepose_annotations import box_frame_to_image, parse_densepose
from datamodules.densepose_coco import DensePoseCocoDataModule, DensePoseCocoDataset
from datamodules.densepose_symmetry import (
    DENSEPOSE_COCO_MASK_PARTS,
    DENSEPOSE_COCO_POINT_PARTS,
    densepose_coco_symmetry,
    synthetic_symmetry,
)
from datamodules.errors import DatasetFormatError
from datamodules.instance_transforms import train_transforms
from datamodules.synthetic.coco_writer import write_coco_split


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("densepose_world")
    files = write_coco_split(out, "train", 6, image_size=96, seed=1, keypoints=False, densepose=True)
    assert files.densepose == out / "annotations" / "densepose_train.json"
    return out


def _dataset(world: Path, transforms: A.Compose | None = None, **kwargs) -> DensePoseCocoDataset:
    return DensePoseCocoDataset(
        world / "images" / "train", world / "annotations" / "densepose_train.json", transforms, **kwargs
    )


def test_items_carry_the_json_points_and_masks(world: Path) -> None:
    dataset = _dataset(world)
    plain = CocoInstancesDataset(world / "images" / "train", world / "annotations" / "instances_train.json")
    annotations = {a["id"]: a for a in json.loads(dataset.annotation_file.read_text())["annotations"]}
    assert dataset.num_densepose == sum(1 for a in annotations.values() if "dp_x" in a) > 10
    for item in range(len(dataset)):
        image, target = dataset[item]
        plain_image, plain_target = plain[item]
        assert (image == plain_image).all() and (target["boxes"] == plain_target["boxes"]).all()
        image_id = int(target["image_id"])
        ids = [a["id"] for a in annotations.values() if a["image_id"] == image_id and not a["iscrowd"]]
        assert len(ids) == len(target["boxes"])
        for row, annotation_id in enumerate(ids):
            parsed = parse_densepose(annotations[annotation_id], "x")
            points = target["dense_points"][row].numpy()
            valid = ~np.isnan(points[:, 0])
            np.testing.assert_array_equal(points[valid], parsed.points)
            assert np.isnan(points[~valid]).all()
            np.testing.assert_array_equal(target["dense_segmentation"][row].numpy(), parsed.segmentation)


def test_flipped_items_mirror_points_parts_and_charts(world: Path) -> None:
    symmetry = synthetic_symmetry()
    plain = _dataset(world)
    flipped = _dataset(world, train_transforms(flip_prob=1.0, color_jitter=0), flip_symmetry=symmetry)
    for item in range(len(plain)):
        _, target = plain[item]
        image, mirrored = flipped[item]
        width = image.shape[-1]
        np.testing.assert_allclose(
            mirrored["boxes"][:, [2, 0]].numpy(), width - target["boxes"][:, [0, 2]].numpy(), atol=1e-4
        )
        for row in range(len(target["boxes"])):
            points, mirror = target["dense_points"][row].numpy(), mirrored["dense_points"][row].numpy()
            valid = ~np.isnan(points[:, 0])
            points, mirror = points[valid], mirror[valid]
            np.testing.assert_allclose(mirror[:, 0], 256 - points[:, 0], atol=1e-4)
            swap = {1: 2, 2: 1, 3: 4, 4: 3}
            assert [swap[int(p)] for p in points[:, 2]] == mirror[:, 2].astype(int).tolist()
            np.testing.assert_allclose(mirror[:, 3], 1 - np.floor(points[:, 3] * 255) / 255, atol=1e-6)
            np.testing.assert_allclose(mirror[:, 4], np.floor(points[:, 4] * 255) / 255, atol=1e-6)
            # each mirrored point lands on the mirrored instance's mask
            xy = box_frame_to_image(mirror[:, :2].astype(np.float64), mirrored["boxes"][row].tolist())
            mask = mirrored["masks"][row].numpy()
            assert mask[np.floor(xy[:, 1]).astype(int), np.floor(xy[:, 0]).astype(int)].all()
            segmentation = target["dense_segmentation"][row].numpy()[:, ::-1]
            expected = np.array([0, 2, 1, 4, 3, *range(5, 15)], np.uint8)[segmentation]
            np.testing.assert_array_equal(mirrored["dense_segmentation"][row].numpy(), expected)


def test_pipeline_rules(world: Path) -> None:
    with pytest.raises(ValueError, match="chart symmetry"):
        _dataset(world, train_transforms(flip_prob=0.5))
    unrecorded = A.Compose([A.HorizontalFlip()], bbox_params=train_transforms().processors["bboxes"].params)
    with pytest.raises(ValueError, match="save_applied_params"):
        _dataset(world, unrecorded, flip_symmetry=synthetic_symmetry())
    crop = A.Compose([A.RandomCrop(64, 64)], bbox_params=train_transforms().processors["bboxes"].params)
    with pytest.raises(ValueError, match="RandomCrop moves DensePose points"):
        _dataset(world, crop)
    _dataset(world, train_transforms(flip_prob=0.0, color_jitter=0.2))  # a flip that never happens is fine


def test_official_symmetry_file_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    u = np.empty((1, 24), object)
    v = np.empty((1, 24), object)
    for i in range(24):
        u[0, i], v[0, i] = rng.random((256, 256)), rng.random((256, 256))
    path = tmp_path / "UV_symmetry_transforms.mat"
    scipy.io.savemat(path, {"U_transforms": u, "V_transforms": v})
    symmetry = densepose_coco_symmetry(path)
    points = np.array([[10.0, 20.0, 3, 0.5, 0.25], [200.0, 5.0, 1, 1.0, 0.0]], np.float32)
    flipped = symmetry.flip_points(points)
    np.testing.assert_allclose(flipped[:, :3], [[246, 20, 4], [56, 5, 1]])
    np.testing.assert_allclose(flipped[0, 3:], [u[0, 2][63, 127], v[0, 2][63, 127]], rtol=1e-6)
    np.testing.assert_allclose(flipped[1, 3:], [u[0, 0][0, 255], v[0, 0][0, 255]], rtol=1e-6)
    labels = np.zeros((256, 256), np.uint8)
    labels[:, :10] = 2
    flipped_labels = symmetry.flip_segmentation(labels)
    assert (flipped_labels[:, -10:] == DENSEPOSE_COCO_MASK_PARTS[2]).all() and (
        flipped_labels[:, :-10] == 0
    ).all()
    assert DENSEPOSE_COCO_POINT_PARTS[3] == 4
    with pytest.raises(FileNotFoundError, match=r"missing\.mat"):
        densepose_coco_symmetry(tmp_path / "missing.mat")
    scipy.io.savemat(tmp_path / "bad.mat", {"U_transforms": u[:, :3], "V_transforms": v})
    with pytest.raises(DatasetFormatError, match="'U_transforms' has shape"):
        densepose_coco_symmetry(tmp_path / "bad.mat")


def test_malformed_points_name_the_annotation(world: Path, tmp_path: Path) -> None:
    data = json.loads((world / "annotations" / "densepose_train.json").read_text())
    annotated = next(a for a in data["annotations"] if "dp_x" in a)
    annotated["dp_I"] = annotated["dp_I"][:-1]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(
        DatasetFormatError, match=f"annotation id {annotated['id']} has DensePose point lists"
    ):
        DensePoseCocoDataset(world / "images" / "train", bad)


def test_datamodule_builds_densepose_datasets(world: Path) -> None:
    annotations = world / "annotations" / "densepose_train.json"
    images = world / "images" / "train"
    datamodule = DensePoseCocoDataModule(
        images,
        annotations,
        images,
        annotations,
        batch_size=2,
        num_workers=0,
        flip_symmetry=synthetic_symmetry(),
    )
    datamodule.setup("fit")
    assert isinstance(datamodule.train_dataset, DensePoseCocoDataset)
    assert isinstance(datamodule.val_dataset, DensePoseCocoDataset)
    assert datamodule.train_dataset.flip_symmetry is datamodule.flip_symmetry
    assert "flip_symmetry" not in datamodule.hparams
    _, target = datamodule.val_dataset[0]
    assert target["dense_points"].shape[-1] == 5
