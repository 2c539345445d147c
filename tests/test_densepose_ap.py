"""DensePose GPS / GPSm AP (metrics.densepose_ap) against hand computations and a transcription of the
official evaluator's per-instance GPS (detectron2 ``DensePoseCocoEval.computeOgps``)."""

import itertools
import json
import math
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from scipy.io import savemat
from scipy.spatial.distance import cdist

from metrics.densepose_ap import DensePoseAP, densepose_ap
from metrics.densepose_cocoeval import instance_gps
from metrics.densepose_geodesic import (
    MEAN_DISTANCES,
    SMPL_FILES,
    ChartEuclideanDistance,
    SmplGeodesicDistance,
)
from models.densepose_results import quantize_chart_result

FULL_MASK = mask_utils.encode(np.asfortranarray(np.ones((256, 256), np.uint8)))
FULL_RLE = {"size": [256, 256], "counts": FULL_MASK["counts"].decode("ascii")}


def _annotation(ann_id, image_id, bbox, points=None, iscrowd=0):
    x, y, w, h = bbox
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "bbox": list(bbox),
        "area": float(w * h),
        "iscrowd": iscrowd,
        "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
    }
    if points is not None:  # rows (dp_x, dp_y, part, u, v)
        for key, column in zip(("dp_x", "dp_y", "dp_I", "dp_U", "dp_V"), np.asarray(points).T, strict=True):
            ann[key] = column.tolist()
        ann["dp_masks"] = [FULL_RLE] + [[]] * 13
    return ann


def _random_points(rng, count=12):
    return np.stack(
        [
            rng.uniform(5, 250, count),
            rng.uniform(5, 250, count),
            rng.integers(1, 25, count),
            *rng.random((2, count)),
        ],
        axis=1,
    )


def _write(tmp_path: Path, annotations, image_ids=(1, 2)) -> Path:
    images = [{"id": i, "width": 320, "height": 300, "file_name": f"{i}.png"} for i in image_ids]
    data = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "densepose.json"
    path.write_text(json.dumps(data))
    return path


def _render(ann, uv_shift=0.0, background=()):
    """The box-frame chart of a detection with the annotation's box: foreground everywhere, each point's
    part and (u, v) (+ ``uv_shift``) at the pixel the evaluator reads; parts 0 at ``background`` points."""
    x, y, w, h = ann["bbox"]
    labels = torch.ones(int(h), int(w), dtype=torch.uint8)
    uv = torch.zeros(2, int(h), int(w))
    for n, (fx, fy, part, u, v) in enumerate(
        zip(*(ann[k] for k in ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")), strict=True)
    ):
        px, py = int(fx * w / 255.0 + x - x), int(fy * h / 255.0 + y - y)
        if px < labels.shape[1] and py < labels.shape[0]:
            labels[py, px] = 0 if n in background else int(part)
            uv[:, py, px] = torch.tensor([u, v], dtype=torch.float64) + uv_shift
    return labels, uv


def _prediction(anns, scores, charts):
    boxes = torch.tensor(
        [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
    )
    return {
        "boxes": boxes.reshape(-1, 4).float(),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.ones(len(anns), dtype=torch.int64),
        "densepose": charts,
    }


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(0)
    persons = [
        _annotation(1, 1, [10, 20, 100, 150], _random_points(rng)),
        _annotation(2, 1, [150, 40, 80, 120], _random_points(rng)),
        _annotation(5, 2, [10, 10, 60, 60], _random_points(rng)),
    ]
    no_densepose = _annotation(3, 1, [20, 200, 60, 60])
    crowd = _annotation(4, 2, [100, 100, 150, 150], iscrowd=1)
    return _write(tmp_path, [*persons, no_densepose, crowd]), persons, no_densepose


def test_perfect_prediction_has_ap_one_in_both_modes(scene) -> None:
    path, (a, b, e), no_densepose = scene
    stray = {**no_densepose, "bbox": [200, 200, 40, 40]}
    image1 = _prediction(
        [a, b, no_densepose],
        [0.9, 0.8, 0.95],
        [_render(a), _render(b), _render({**a, "bbox": no_densepose["bbox"]})],
    )
    image2 = _prediction([e, stray], [0.7, 0.1], [_render(e), _render({**e, "bbox": stray["bbox"]})])
    stats = densepose_ap(path, [image1, image2], [1, 2], ChartEuclideanDistance())
    for mode in ("GPS", "GPSm"):  # the detection on the person without DensePose data is ignored
        for name in ("AP", "AP50", "AP75", "APm", "APl", "AR"):
            assert stats[f"{mode}/{name}"] == pytest.approx(1.0), (mode, name)


def test_hand_computed_gps(tmp_path) -> None:
    k = np.array([40, 100, 200, 30, 70, 10])
    points = np.stack([[30, 80, 130, 180, 220, 255], [60] * 6, [1, 2, 3, 4, 5, 6], k / 255, k / 255], axis=1)
    ann = _annotation(1, 1, [20, 30, 100, 90], points)
    # Points 0-2 exact, 3 off by 82/255 in u, 4 on background, 5 at dp_x = 255: column w, outside the box.
    labels, uv = _render(ann, uv_shift=0.5 / 255, background=(4,))
    uv[0, int(60 * 90 / 255), int(180 * 100 / 255)] += 82 / 255
    off = math.exp(-((1.7 * 82 / 255) ** 2) / (2 * 0.255**2))
    expected = (3 + off) / 6
    iuv = quantize_chart_result(labels, uv).numpy()
    assert instance_gps(points, ann["bbox"], ann["bbox"], iuv, ChartEuclideanDistance()) == pytest.approx(
        expected, abs=1e-12
    )
    stats = densepose_ap(
        _write(tmp_path, [ann]), [_prediction([ann], [0.5], [(labels, uv)])], [1], ChartEuclideanDistance()
    )
    assert (
        0.5 < expected < 0.55
        and stats["GPS/AP"] == pytest.approx(0.1)
        and stats["GPS/AP50"] == pytest.approx(1.0)
    )
    iou = (labels.numel() - 1) / labels.numel()
    assert 0.7 < math.sqrt(expected * iou) < 0.75 and stats["GPSm/AP"] == pytest.approx(0.5)


def test_degrading_uv_lowers_gps_monotonically(tmp_path) -> None:
    rng = np.random.default_rng(1)
    ann = _annotation(1, 1, [10, 10, 200, 250], _random_points(rng, 30))
    points = np.stack([np.asarray(ann[k]) for k in ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")], axis=1)
    path = _write(tmp_path, [ann])
    gps, aps = [], []
    for shift in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4):
        labels, uv = _render(ann, uv_shift=shift)
        iuv = quantize_chart_result(labels, uv).numpy()
        gps.append(instance_gps(points, ann["bbox"], ann["bbox"], iuv, ChartEuclideanDistance()))
        aps.append(
            densepose_ap(path, [_prediction([ann], [1.0], [(labels, uv)])], [1], ChartEuclideanDistance())[
                "GPS/AP"
            ]
        )
    assert all(a > b for a, b in itertools.pairwise(gps)) and gps[0] > 0.99
    assert all(a >= b for a, b in itertools.pairwise(aps)) and aps[0] == pytest.approx(1.0) and aps[-1] < 1.0


def _fake_smpl(directory: Path, rng, n=12, per_part=3):
    """Tiny files in the official layout: ``per_part`` subdivided vertices per part, ``n`` mesh vertices."""
    parts = np.repeat(np.arange(1, 25), per_part)
    uv = rng.random((2, len(parts)))
    savemat(
        directory / "SMPL_subdiv.mat", {"U_subdiv": uv[:1], "V_subdiv": uv[1:], "Part_ID_subdiv": parts[None]}
    )
    transform = rng.integers(1, n + 1, len(parts))
    savemat(directory / "SMPL_SUBDIV_TRANSFORM.mat", {"index": transform[:, None].astype(np.float64)})
    pdist = rng.random((n * (n - 1) // 2, 1)) + 0.01
    with open(directory / "Pdist_matrix.pkl", "wb") as file:
        pickle.dump({"Pdist_matrix": pdist}, file)
    return parts, uv, transform, pdist


def _official_condensed(i, j, n):
    """getDistancesUV's index arithmetic for 0-based vertices i != j."""
    if j > i:
        i, j = j, i
    i, j = n - i - 1, n - j - 1
    k = (n * (n - 1) / 2) - (n - i) * ((n - i) - 1) / 2 + j - i - 1
    return int((n * n - n) / 2 - k - 1)


def _official_ogps(gt, dt_bbox, iuv, smpl, n):
    """computeOgps for one (detection, ground truth) pair, re-expressed from the official evaluator."""
    parts_sub, uv_sub, transform, pdist = smpl
    g = gt["bbox"]
    dy, dx = int(dt_bbox[3]), int(dt_bbox[2])
    py = (np.array(gt["dp_y"]) * g[3] / 255.0 + g[1] - dt_bbox[1]).astype(int)
    px = (np.array(gt["dp_x"]) * g[2] / 255.0 + g[0] - dt_bbox[0]).astype(int)
    out = (px >= dx) | (py >= dy) | (px < 0) | (py < 0)
    if out.all():
        return 0.0
    px[out], py[out] = 0, 0
    ipts = iuv[0, py, px].astype(np.int64)
    ipts[out] = 0

    def closest(index, u, v):
        verts = np.full(len(index), -1)
        for part in range(1, 25):
            sel = index == part
            if sel.any():
                dists = cdist(uv_sub[:, parts_sub == part].T, np.stack([u[sel], v[sel]]).T)
                verts[sel] = (np.arange(len(parts_sub)) + 1)[parts_sub == part][dists.argmin(axis=0)]
        mapped = transform[verts - 1]
        mapped[verts < 0] = 0
        return mapped

    gt_verts = closest(np.array(gt["dp_I"]), np.array(gt["dp_U"]), np.array(gt["dp_V"]))
    verts = closest(ipts, iuv[1, py, px] / 255.0, iuv[2, py, px] / 255.0)
    dists = []
    for a, b in zip(gt_verts, verts, strict=True):
        if b <= 0:
            dists.append(np.inf)
        else:
            dists.append(0.0 if a == b else pdist[_official_condensed(a - 1, b - 1, n)][0])
    sigma = MEAN_DISTANCES[
        np.array([0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8])[
            np.array(gt["dp_I"], int)
        ]
    ]
    return float(np.mean(np.exp(-(np.array(dists) ** 2) / (2 * sigma**2))))


def test_instance_gps_equals_official_transcription(tmp_path) -> None:
    rng = np.random.default_rng(2)
    smpl = _fake_smpl(tmp_path, rng)
    distance = SmplGeodesicDistance(tmp_path)
    for case in range(8):
        gt_bbox = [*rng.uniform(0, 40, 2), *rng.uniform(20, 90, 2)]
        gt = _annotation(1, 1, gt_bbox, _random_points(rng, 15))
        dt_bbox = [
            gt_bbox[0] + rng.uniform(-15, 15),
            gt_bbox[1] + rng.uniform(-15, 15),
            *rng.uniform(15, 100, 2),
        ]
        iuv = np.stack(
            [
                rng.integers(0, 25, (int(dt_bbox[3]), int(dt_bbox[2]))),
                *rng.integers(0, 256, (2, int(dt_bbox[3]), int(dt_bbox[2]))),
            ]
        ).astype(np.uint8)
        points = np.stack([np.asarray(gt[k]) for k in ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")], axis=1)
        ours = instance_gps(points, gt_bbox, dt_bbox, iuv, distance)
        assert ours == pytest.approx(_official_ogps(gt, dt_bbox, iuv, smpl, 12), abs=1e-9), case
        assert 0 < ours < 1


def test_smpl_distance_closest_vertex_and_condensed_index(tmp_path) -> None:
    n = 12
    parts, uv, transform, pdist = _fake_smpl(tmp_path, np.random.default_rng(3), n=n)
    distance = SmplGeodesicDistance(tmp_path)
    part_5 = np.nonzero(parts == 5)[0]
    for v in part_5:  # a point at a vertex (nudged) picks that vertex, mapped by the transform
        point = uv[:, v] + 1e-4
        assert distance.closest_vertices(np.array([5]), point[None]).tolist() == [transform[v]]
    assert distance.closest_vertices(np.array([0]), np.zeros((1, 2))).tolist() == [0]
    a, b = np.meshgrid(np.arange(1, n + 1), np.arange(1, n + 1))
    got = distance.vertex_distances(a.ravel(), b.ravel())
    expected = [
        0.0 if i == j else pdist[_official_condensed(i - 1, j - 1, n)][0]
        for i, j in zip(a.ravel(), b.ravel(), strict=True)
    ]
    assert np.array_equal(got, expected)
    assert got[(5 - 1) * n + (2 - 1)] == pdist[4 * 3 // 2 + 1][0]  # vertices 2 and 5: lower triangle, row 4
    assert distance.vertex_distances(np.array([3]), np.array([0]))[0] == np.inf


def test_missing_smpl_data_names_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        SmplGeodesicDistance(tmp_path / "nowhere")
    (tmp_path / SMPL_FILES[0]).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"SMPL_SUBDIV_TRANSFORM\.mat, Pdist_matrix\.pkl"):
        SmplGeodesicDistance(tmp_path)


def test_metric_equals_functional_api(scene) -> None:
    path, (a, b, e), no_densepose = scene
    generator = torch.Generator().manual_seed(4)

    def noisy(ann, like):
        labels, uv = _render(like)
        return labels, (uv + 0.1 * torch.randn(uv.shape, generator=generator)).clamp(0, 1)

    moved = {**a, "bbox": [14, 18, 95, 160]}
    image1 = _prediction(
        [a, b, moved, no_densepose],
        [0.9, 0.8, 0.85, 0.3],
        [noisy(a, a), noisy(b, b), noisy(moved, moved), _render({**a, "bbox": no_densepose["bbox"]})],
    )
    image2 = _prediction([e], [0.7], [noisy(e, e)])
    expected = densepose_ap(path, [image1, image2], [1, 2], ChartEuclideanDistance())
    metric = DensePoseAP(path, ChartEuclideanDistance())
    metric.update([image1], [{"image_id": torch.tensor(1)}])
    metric.update([image2, image1], [{"image_id": torch.tensor(2)}, {"image_id": torch.tensor(1)}])  # padding
    got = metric.compute()
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name].item() == pytest.approx(value, abs=1e-12), name
    assert 0 < expected["GPS/AP"] < 1 and 0 < expected["GPSm/AP"] < 1


def test_an_image_without_detections_counts_its_persons_as_missed(scene) -> None:
    path, (a, b, _), _ = scene
    image1 = _prediction([a, b], [0.9, 0.8], [_render(a), _render(b)])
    image2 = _prediction([], [], [])  # no detection at all: e is missed
    stats = densepose_ap(path, [image1, image2], [1, 2], ChartEuclideanDistance())
    for mode in ("GPS", "GPSm"):
        assert stats[f"{mode}/AR"] == pytest.approx(2 / 3), mode
        assert 0.6 < stats[f"{mode}/AP"] < 0.7, mode
