"""Layout presets: valid flips, the facts they cite (pycocotools' sigmas, COCO's skeleton), and on real
samples that a flip followed by the layout's permutation keeps left and right where they belong."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.cocoeval import Params

from datamodules.keypoint_layouts import KeypointLayout, coco_person, face_300w, face_wflw

PRESETS = {"coco": coco_person, "300w": face_300w, "wflw": face_wflw}
SAMPLES = {
    "coco": "coco_sample/test_coco.json",
    "300w": "landmarks_sample/300w/test_300w.json",
    "wflw": "landmarks_sample/wflw/test_wflw.json",
}
# index groups on the image-left / image-right of a subject facing the camera (the face JSONs' first
# points are the subject's right side, drawn on the image's left)
SIDES = {
    "coco": ([2, 4, 6, 8, 10, 12, 14, 16], [1, 3, 5, 7, 9, 11, 13, 15]),  # right_*, left_*
    "300w": (list(range(36, 42)), list(range(42, 48))),  # eyes
    "wflw": (list(range(60, 68)), list(range(68, 76))),  # eyes
}
JAWS = {"300w": (range(0, 8), range(9, 17)), "wflw": (range(0, 16), range(17, 33))}


def _faces(shared_data: Path, name: str) -> list[tuple[np.ndarray, int]]:
    """(K, 3) keypoints and image width of each fully annotated instance of a sample."""
    data = json.loads((shared_data / SAMPLES[name]).read_text())
    widths = {image["id"]: image["width"] for image in data["images"]}
    instances = []
    for ann in data["annotations"]:
        keypoints = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        if (keypoints[:, 2] > 0).all():
            instances.append((keypoints, widths[ann["image_id"]]))
    return instances


def _flip(keypoints: np.ndarray, width: int, layout: KeypointLayout) -> np.ndarray:
    """A horizontal flip of the image (x -> W - x) with the keypoints renamed by the flip pairs."""
    flipped = keypoints.copy()
    flipped[:, 0] = width - flipped[:, 0]
    return flipped[layout.flip_permutation()]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_flip_as_an_involution(name: str) -> None:
    layout = PRESETS[name]()
    permutation = layout.flip_permutation()
    assert sorted(permutation) == list(range(layout.num_keypoints))
    assert all(permutation[permutation[k]] == k for k in range(layout.num_keypoints))
    assert all(left != right for left, right in layout.flip_pairs)
    if layout.normalizing_keypoints is not None:  # the two outer eye corners mirror each other
        left, right = layout.normalizing_keypoints
        assert permutation[left] == right


def test_preset_sizes() -> None:
    sizes = {name: (p().num_keypoints, len(p().flip_pairs)) for name, p in PRESETS.items()}
    assert sizes == {"coco": (17, 8), "300w": (68, 29), "wflw": (98, 44)}
    assert face_300w().normalizing_keypoints == (36, 45) and face_wflw().normalizing_keypoints == (60, 72)


def test_coco_person_matches_pycocotools_and_the_coco_json(shared_data: Path) -> None:
    layout = coco_person()
    np.testing.assert_allclose(
        layout.oks_sigmas, Params(iouType="keypoints").kpt_oks_sigmas, rtol=0, atol=1e-12
    )
    [category] = json.loads((shared_data / SAMPLES["coco"]).read_text())["categories"]
    assert layout.names == tuple(category["keypoints"])
    assert layout.skeleton == tuple((a - 1, b - 1) for a, b in category["skeleton"])
    for left, right in layout.flip_pairs:  # pairs by name
        assert layout.names[left].replace("left_", "right_") == layout.names[right]


@pytest.mark.parametrize("name", PRESETS)
def test_flip_and_permute_keep_left_and_right_on_real_samples(shared_data: Path, name: str) -> None:
    layout = PRESETS[name]()
    image_left, image_right = SIDES[name]
    instances = _faces(shared_data, name)
    assert instances
    for keypoints, width in instances:
        for points in (keypoints, _flip(keypoints, width, layout)):
            assert points[image_left, 0].mean() < points[image_right, 0].mean()
            if name in JAWS:
                assert points[list(JAWS[name][0]), 0].mean() < points[list(JAWS[name][1]), 0].mean()
        plain_flip = keypoints.copy()
        plain_flip[:, 0] = width - plain_flip[:, 0]
        assert plain_flip[image_left, 0].mean() > plain_flip[image_right, 0].mean()  # what the pairs fix


def _mirror_residual(keypoints: np.ndarray, mirrored: np.ndarray, iod: float) -> float:
    """Mean distance, in inter-ocular distances, of the mirrored landmarks from the original after the
    best rotation + scale + translation (no reflection: ``cv2.estimateAffinePartial2D``)."""
    matrix, _ = cv2.estimateAffinePartial2D(
        mirrored[:, :2].astype(np.float32), keypoints[:, :2].astype(np.float32), method=cv2.LMEDS
    )
    moved = mirrored[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    return float(np.linalg.norm(moved - keypoints[:, :2], axis=1).mean() / iod)


@pytest.mark.parametrize("name", ["300w", "wflw"])
def test_flipped_faces_match_themselves_as_mirror_images(shared_data: Path, name: str) -> None:
    """A face is nearly symmetric: flipped and renamed by the pairs, its landmarks lie on the original
    ones up to a similarity (measured 0.04-0.09 inter-ocular distances on the samples); renamed wrongly
    (here: not at all) they are half an inter-ocular distance off."""
    layout = PRESETS[name]()
    i, j = layout.normalizing_keypoints
    for keypoints, width in _faces(shared_data, name):
        iod = float(np.linalg.norm(keypoints[i, :2] - keypoints[j, :2]))
        assert _mirror_residual(keypoints, _flip(keypoints, width, layout), iod) < 0.12
        unpaired = keypoints.copy()
        unpaired[:, 0] = width - unpaired[:, 0]
        assert _mirror_residual(keypoints, unpaired, iod) > 0.4
