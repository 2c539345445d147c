"""DensePose-COCO fields: the validator/converter (``datamodules.densepose_annotations``) on hand-made
annotations, and the synthetic world's fields (``datamodules.synthetic.densepose``) against it and
against the shapes they come from."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from datamodules.densepose_annotations import (
    box_frame_to_image,
    image_to_box_frame,
    parse_densepose,
    segmentation_label_map,
)
from datamodules.errors import DatasetFormatError
from datamodules.synthetic.densepose import MAX_POINTS, chart_frame, densepose_fields, local_parts, local_uv
from datamodules.synthetic.world import SceneConfig, Thing, render_scene

FILE = "densepose_train.json"


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def _annotation() -> dict[str, Any]:
    first = np.zeros((256, 256), bool)
    first[:128] = True
    third = np.zeros((256, 256), bool)
    third[64:192, 64:192] = True
    return {
        "id": 4711,
        "image_id": 1,
        "category_id": 1,
        "bbox": [10.0, 20.0, 64.0, 128.0],
        "dp_x": [0.0, 128.5, 256.0],
        "dp_y": [10.0, 100.0, 255.5],
        "dp_I": [1.0, 24.0, 3.0],
        "dp_U": [0.0, 0.5, 1.0],
        "dp_V": [1.0, 0.25, 0.0],
        "dp_masks": [_rle(first), [], _rle(third)] + [[] for _ in range(11)],
    }


def test_valid_annotation_round_trips() -> None:
    ann = _annotation()
    parsed = parse_densepose(ann, FILE)
    assert parsed is not None
    assert parsed.points.dtype == np.float32 and parsed.points.shape == (3, 5)
    expected = np.stack([ann[k] for k in ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")], axis=1)
    np.testing.assert_array_equal(parsed.points, expected.astype(np.float32))
    labels = parsed.segmentation
    assert labels.dtype == np.uint8 and labels.shape == (256, 256)
    assert labels[0, 0] == 1 and labels[200, 0] == 0 and labels[100, 100] == 3 and labels[150, 100] == 3
    assert set(np.unique(labels).tolist()) == {0, 1, 3}


def test_later_parts_paint_over_earlier_and_uncompressed_rle() -> None:
    ann = _annotation()
    ann["dp_masks"] = [_rle(np.ones((256, 256), bool))] + [[] for _ in range(13)]
    ann["dp_masks"][13] = {"size": [256, 256], "counts": [0, 256 * 256]}  # uncompressed: all ones
    assert (segmentation_label_map(ann, FILE) == 14).all()


def test_no_densepose_fields_is_none() -> None:
    ann = {k: v for k, v in _annotation().items() if not k.startswith("dp_")}
    assert parse_densepose(ann, FILE) is None


def _set(key: str, value: Any) -> dict[str, Any]:
    ann = copy.deepcopy(_annotation())
    ann[key] = value
    return ann


def _drop(key: str) -> dict[str, Any]:
    ann = copy.deepcopy(_annotation())
    del ann[key]
    return ann


BAD = {
    "lengths": (_set("dp_U", [0.1, 0.2]), "different lengths"),
    "part_zero": (_set("dp_I", [0.0, 1.0, 2.0]), "dp_I"),
    "part_25": (_set("dp_I", [25.0, 1.0, 2.0]), "dp_I"),
    "part_fraction": (_set("dp_I", [1.5, 1.0, 2.0]), "dp_I"),
    "u_above_1": (_set("dp_U", [0.1, 1.01, 0.2]), "dp_U"),
    "v_negative": (_set("dp_V", [0.1, -0.01, 0.2]), "dp_V"),
    "x_outside": (_set("dp_x", [0.0, 256.5, 1.0]), "dp_x"),
    "y_negative": (_set("dp_y", [-1.0, 2.0, 1.0]), "dp_y"),
    "not_numbers": (_set("dp_x", ["a", 1.0, 2.0]), "dp_x"),
    "nan": (_set("dp_V", [float("nan"), 0.1, 0.2]), "dp_V"),
    "masks_13": (_set("dp_masks", [[] for _ in range(13)]), "dp_masks"),
    "masks_not_list": (_set("dp_masks", {"size": [256, 256], "counts": ""}), "dp_masks"),
    "rle_size": (
        _set("dp_masks", [_rle(np.ones((128, 128), bool))] + [[] for _ in range(13)]),
        "size",
    ),
    "rle_not_dict": (_set("dp_masks", [[1, 2, 3]] + [[] for _ in range(13)]), "COCO RLE"),
    "missing_point_key": (_drop("dp_V"), "dp_V"),
    "missing_masks": (_drop("dp_masks"), "dp_masks"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_annotation_names_file_and_id(case: str) -> None:
    ann, words = BAD[case]
    with pytest.raises(DatasetFormatError, match=words) as caught:
        parse_densepose(ann, FILE)
    assert FILE in str(caught.value) and "annotation id 4711" in str(caught.value)
    assert caught.value.kind == "bad_densepose"


def test_box_frame_maps_to_image_and_back() -> None:
    box = (10.0, 20.0, 74.0, 148.0)  # XYXY of bbox [10, 20, 64, 128]
    frame = np.array([[0.0, 0.0], [256.0, 256.0], [128.0, 64.0]])
    image = box_frame_to_image(frame, box)
    np.testing.assert_allclose(image, [[10.0, 20.0], [74.0, 148.0], [42.0, 52.0]])
    np.testing.assert_allclose(image_to_box_frame(image, box), frame)
    tensor = torch.tensor(frame, dtype=torch.float32)
    mapped = box_frame_to_image(tensor, box)
    assert isinstance(mapped, torch.Tensor) and mapped.dtype == torch.float32
    torch.testing.assert_close(image_to_box_frame(mapped, box), tensor)
    with pytest.raises(ValueError, match="no area"):
        image_to_box_frame(frame, (5.0, 5.0, 5.0, 9.0))


def _things() -> list[tuple[Thing, list[float]]]:
    config = SceneConfig(crowd_prob=0.5)
    things = []
    for seed in range(6):
        scene = render_scene(np.random.default_rng(seed), 96, config)
        for thing in scene.things:
            rle = mask_utils.encode(np.asfortranarray(thing.mask.astype(np.uint8)))
            things.append((thing, [float(v) for v in mask_utils.toBbox(rle)]))  # as the COCO writer
    return things


THINGS = _things()


def test_synthetic_world_has_crowds_and_things() -> None:
    assert any(thing.iscrowd for thing, _ in THINGS)
    assert sum(not thing.iscrowd for thing, _ in THINGS) >= 10
    occluded = [t for t, _ in THINGS if not t.iscrowd and (t.mask < t.shape.full_mask(96)).any()]
    assert occluded, "some things are partly covered, so sampling must follow the visible mask"


def test_synthetic_fields_pass_the_validator_and_match_their_shapes() -> None:
    rng = np.random.default_rng(0)
    for index, (thing, bbox) in enumerate(THINGS):
        fields = densepose_fields(thing, bbox, rng)
        if thing.iscrowd:
            assert fields == {}
            continue
        parsed = parse_densepose({"id": index, "bbox": bbox, **fields}, FILE)
        assert parsed is not None
        points = parsed.points
        assert len(points) == min(MAX_POINTS, int(thing.mask.sum()))
        x, y, w, h = bbox
        image = box_frame_to_image(np.stack([fields["dp_x"], fields["dp_y"]], axis=1), (x, y, x + w, y + h))
        cols, rows = np.floor(image).astype(np.int64).T
        assert thing.mask[rows, cols].all(), "points must lie on the thing's visible pixels"
        np.testing.assert_array_equal(fields["dp_I"], local_parts(thing.shape, image))
        local = (image - np.asarray(thing.shape.center)) / thing.shape.size
        np.testing.assert_allclose(local, chart_frame(thing.shape, image))
        angle = np.degrees(np.mod(np.arctan2(local[:, 1], local[:, 0]), 2 * np.pi))
        np.testing.assert_array_equal(fields["dp_I"], 1 + angle // 90)
        uv = np.stack([fields["dp_U"], fields["dp_V"]], axis=1)
        np.testing.assert_allclose(uv, np.clip((local + 1) / 2, 0, 1), atol=1e-9)
        np.testing.assert_allclose(uv, local_uv(thing.shape, image), atol=1e-9)
        assert ((uv >= 0) & (uv <= 1)).all()

        assert len(fields["dp_masks"]) == 14 and all(m == [] for m in fields["dp_masks"][4:])
        for rle in fields["dp_masks"][:4]:
            assert rle == [] or mask_utils.decode(rle).shape == (256, 256)
        labels = parsed.segmentation
        point_parts = set(points[:, 2].astype(int).tolist())
        assert point_parts <= set(np.unique(labels).tolist()) - {0}
        cells = labels[points[:, 1].astype(int).clip(0, 255), points[:, 0].astype(int).clip(0, 255)]
        assert (cells == points[:, 2]).mean() >= 0.9, "most points fall in their part's mask cells"
        # The label map covers the box: its foreground fraction is the mask's fraction of the box.
        box_fraction = thing.mask.sum() / (w * h)
        assert abs((labels > 0).mean() - box_fraction) < 0.02


def test_synthetic_fields_are_reproducible_and_capped() -> None:
    thing, bbox = next((t, b) for t, b in THINGS if not t.iscrowd)
    first = densepose_fields(thing, bbox, np.random.default_rng(3), max_points=5)
    assert first == densepose_fields(thing, bbox, np.random.default_rng(3), max_points=5)
    assert len(first["dp_x"]) == 5


def test_small_thing_gets_one_point_per_visible_pixel() -> None:
    thing = next(t for t, _ in THINGS if not t.iscrowd)
    mask = np.zeros_like(thing.mask)
    rows, cols = np.nonzero(thing.mask)
    mask[rows[:3], cols[:3]] = True
    small = Thing(thing.instance_id, thing.shapes, mask)
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    fields = densepose_fields(small, bbox, np.random.default_rng(0))
    parsed = parse_densepose({"id": 1, **fields}, FILE)
    assert parsed is not None and len(parsed.points) == 3
    x, y, w, h = bbox
    image = box_frame_to_image(parsed.points[:, :2].astype(np.float64), (x, y, x + w, y + h))
    cols_back, rows_back = np.floor(image).astype(np.int64).T
    assert {(r, c) for r, c in zip(rows_back, cols_back, strict=True)} == set(
        zip(rows[:3], cols[:3], strict=True)
    )
