"""NME (with FR and AUC), PCK and PCKh against plain numpy computations of their reference definitions:
on the real 300W and WFLW samples (68 and 98 keypoints) with known offsets, on hand-made cases at the
thresholds, and over two gloo DDP ranks against one process on the union; with instance ids, repeated
instances (DistributedSampler's padding) count once."""

import datetime
import json
import logging
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy.integrate import simpson

from metrics.keypoint_metrics import (
    MPII_JOINT_GROUPS,
    NormalizedMeanError,
    PCKh,
    PercentageCorrectKeypoints,
    ced_auc,
)

LANDMARKS = Path(__file__).parents[1] / ".." / "shared" / "data" / "landmarks_sample"
# The inter-ocular normaliser of each face sample: outer eye corners (mmpose NME DEFAULT_KEYPOINT_INDICES).
FACE_SAMPLES = {"300w": ("300w/test_300w.json", 68, (36, 45)), "wflw": ("wflw/test_wflw.json", 98, (60, 72))}


def _face_sample(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 3) keypoints and (N, 4) XYXY boxes of a real face sample, in annotation order."""
    path = LANDMARKS / FACE_SAMPLES[name][0]
    if not path.is_file():
        pytest.skip(f"real face sample missing: {path} (shared/ is beside the checkout)")
    annotations = json.loads(path.read_text())["annotations"]
    keypoints = np.array([a["keypoints"] for a in annotations], dtype=np.float64).reshape(
        len(annotations), -1, 3
    )
    boxes = np.array([a["bbox"] for a in annotations], dtype=np.float64)
    boxes[:, 2:] += boxes[:, :2]
    return keypoints, boxes


def _reference_nme(pred: np.ndarray, gt: np.ndarray, normalizers: np.ndarray) -> np.ndarray:
    """Per-instance NME as HRNet-facial's compute_nme: mean point-to-point error over the annotated
    keypoints, divided by the normaliser."""
    annotated = gt[..., 2] > 0
    errors = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    return np.array([e[m].mean() / d for e, m, d in zip(errors, annotated, normalizers, strict=True)])


def _reference_fr_auc(nmes: np.ndarray, threshold: float, step: float = 1e-4) -> tuple[float, float]:
    """The failure rate and AUC definition of PIPNet's compute_fr_and_auc, written out with numpy/scipy."""
    xs = np.arange(0, threshold + step, step)
    ys = np.array([np.count_nonzero(nmes <= x) for x in xs]) / float(len(nmes))
    return 1.0 - ys[-1], simpson(ys, x=xs) / threshold


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(array, dtype=torch.float32)


@pytest.mark.parametrize("name", sorted(FACE_SAMPLES))
def test_nme_on_real_faces_equals_the_inter_ocular_formula(name: str) -> None:
    gt, _ = _face_sample(name)
    _, num_keypoints, (first, second) = FACE_SAMPLES[name]
    assert gt.shape[1] == num_keypoints
    gt = _t(gt).double().numpy()  # the metric sees float32 inputs (what a model gives): so does numpy
    inter_ocular = np.linalg.norm(gt[:, first, :2] - gt[:, second, :2], axis=-1)

    # Every keypoint moved by (3, 4): 5 px each, so each face's NME is 5 / its inter-ocular distance.
    shifted = gt[..., :2] + np.array([3.0, 4.0])
    metric = NormalizedMeanError(normalizing_keypoints=(first, second))
    metric.update(_t(shifted), _t(gt))
    np.testing.assert_allclose(metric.compute()["NME"].item(), np.mean(5.0 / inter_ocular), rtol=1e-6)

    # Random offsets of a different size per face (so that some faces fail at 0.1), and a few keypoints
    # marked not annotated (they must not count).
    rng = np.random.default_rng(0)
    scale = inter_ocular[:, None, None] * rng.uniform(0.02, 0.2, (len(gt), 1, 1))
    pred = gt[..., :2] + rng.normal(0.0, 1.0, gt[..., :2].shape) * scale
    partial = gt.copy()
    partial[:, [0, 5, 17], 2] = 0.0
    partial[:, [0, 5, 17], :2] = 0.0  # what COCO-style files store for unannotated points
    for target in (gt, partial):
        metric = NormalizedMeanError(normalizing_keypoints=(first, second))
        metric.update(_t(pred), _t(target))
        output = metric.compute()
        expected = _reference_nme(_t(pred).double().numpy(), target, inter_ocular)
        fr, auc = _reference_fr_auc(expected, 0.1)
        assert set(output) == {"NME", "FR@0.1", "AUC@0.1"}
        assert output["NME"].dtype == torch.float64
        np.testing.assert_allclose(output["NME"].item(), expected.mean(), rtol=1e-6)
        assert output["FR@0.1"].item() == fr
        np.testing.assert_allclose(output["AUC@0.1"].item(), auc, atol=1e-6)
        assert metric.skipped_instances == 0


def test_nme_normalised_by_the_box_on_real_faces() -> None:
    gt, boxes = _face_sample("wflw")
    pred = gt[..., :2] + np.array([-2.0, 1.5])
    metric = NormalizedMeanError(normalizing_keypoints=None, failure_threshold=0.08)
    metric.update(_t(pred), _t(gt), _t(boxes))
    output = metric.compute()
    box_size = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    expected = _reference_nme(_t(pred).double().numpy(), _t(gt).double().numpy(), box_size)
    assert set(output) == {"NME", "FR@0.08", "AUC@0.1"}
    np.testing.assert_allclose(output["NME"].item(), expected.mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="pass boxes"):
        metric.update(_t(pred), _t(gt))


def test_auc_and_failure_rate_on_a_hand_made_error_list() -> None:
    errors = np.array([0.0, 0.012, 0.03, 0.0456, 0.07, 0.0999, 0.1, 0.1001, 0.25, 3.0])
    for threshold in (0.1, 0.08):
        fr, auc = _reference_fr_auc(errors, threshold)
        assert ced_auc(errors, threshold) == pytest.approx(auc, abs=1e-12)
        # The exact area of the step CED is the mean of max(0, 1 - e / t); Simpson on a 1e-4 grid is
        # within a few steps of it.
        exact = np.clip(1.0 - errors / threshold, 0.0, 1.0).mean()
        assert abs(ced_auc(errors, threshold) - exact) < 5e-3
    assert _reference_fr_auc(errors, 0.1)[0] == pytest.approx(0.3)  # 0.1001, 0.25, 3.0 fail; 0.1 does not
    assert ced_auc(np.zeros(4), 0.1) == pytest.approx(1.0, abs=1e-12)
    assert ced_auc(np.full(4, 0.2), 0.1) == 0.0
    with pytest.raises(ValueError, match="multiple of the CED step"):
        ced_auc(errors, 0.00015)

    # Errors off the CED grid and away from 0.1 (float rounding in the metric cannot move them across),
    # through the metric: instances whose one keypoint is off by 3 * error * inter-ocular (10).
    errors = np.array([0.00013, 0.01234, 0.03456, 0.05678, 0.07891, 0.09995, 0.10005, 0.25, 3.0])
    gt = torch.zeros(len(errors), 3, 3)
    gt[:, 1, 0] = 10.0  # normalising keypoints 0 and 1, 10 px apart
    gt[:, :, 2] = 2.0
    gt[:, 2, 0] = 5.0
    pred = gt[..., :2].clone().double()
    pred[:, 2, 1] += torch.as_tensor(errors) * 10.0 * 3  # 3 keypoints: the mean error is errors
    metric = NormalizedMeanError(normalizing_keypoints=(0, 1))
    metric.update(pred, gt.double())
    output = metric.compute()
    fr, auc = _reference_fr_auc(errors, 0.1)
    assert output["FR@0.1"].item() == pytest.approx(fr) == 3 / 9
    assert output["AUC@0.1"].item() == pytest.approx(auc, abs=1e-12)
    assert output["NME"].item() == pytest.approx(errors.mean())


def test_unscorable_instances_are_skipped_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    gt, _ = _face_sample("300w")
    pred = gt[..., :2] + 2.0
    no_keypoints = gt[0].copy()
    no_keypoints[:, 2] = 0.0
    zero_normaliser = gt[0].copy()
    zero_normaliser[45, :2] = zero_normaliser[36, :2]
    eye_not_annotated = gt[1].copy()
    eye_not_annotated[36, 2] = 0.0
    bad = np.stack([no_keypoints, zero_normaliser, eye_not_annotated])

    metric = NormalizedMeanError(normalizing_keypoints=(36, 45))
    with caplog.at_level(logging.WARNING, logger="metrics.keypoint_metrics"):
        metric.update(_t(np.concatenate([pred, pred[:1], pred[:1], pred[1:]])), _t(np.concatenate([gt, bad])))
        metric.update(_t(pred[:1]), _t(bad[:1]))
    output = metric.compute()
    assert metric.skipped_instances == 4 and metric.last_skipped_instances == 4
    assert len(caplog.records) == 1
    assert (
        "skipped 3 of 5 instances (1 without an annotated keypoint, 2 with a zero or undefined" in caplog.text
    )
    clean = NormalizedMeanError(normalizing_keypoints=(36, 45))
    clean.update(_t(pred), _t(gt))
    assert {k: v.item() for k, v in output.items()} == {k: v.item() for k, v in clean.compute().items()}
    assert all(np.isfinite(v.item()) for v in output.values())

    metric.reset()
    assert metric.skipped_instances == 0
    with caplog.at_level(logging.WARNING, logger="metrics.keypoint_metrics"):
        metric.update(_t(pred[:1]), _t(bad[:1]))
    assert len(caplog.records) == 2  # logged again after a reset (a new epoch)
    with pytest.raises(ValueError, match="no instance was scored"):
        metric.compute()


def _reference_pck(pred: np.ndarray, gt: np.ndarray, boxes: np.ndarray, threshold: float) -> float:
    """mmpose keypoint_pck_accuracy with norm_item='bbox', written out: distance / max(w, h) < thr per
    keypoint type over the instances where it is annotated, then the mean over annotated types."""
    size = (boxes[:, 2:] - boxes[:, :2]).max(axis=1)
    distances = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1) / size[:, None]
    annotated = gt[..., 2] > 0
    rates = [(d[m] < threshold).mean() for d, m in zip(distances.T, annotated.T, strict=True) if m.any()]
    return float(np.mean(rates))


def test_pck_follows_mmpose_bbox_convention() -> None:
    # Box 100 x 50 -> normaliser 100 (the longer side). Errors: 3 px, exactly 5 px (= 0.05 * 100: not
    # correct at 0.05, mmpose's "<"), 9 px, and a huge error on a keypoint that is not annotated.
    gt = torch.tensor([[[10.0, 10.0, 2.0], [20.0, 20.0, 1.0], [30.0, 30.0, 2.0], [40.0, 40.0, 0.0]]])
    pred = gt[..., :2] + torch.tensor([[[3.0, 0.0], [3.0, 4.0], [0.0, 9.0], [500.0, 0.0]]])
    boxes = torch.tensor([[0.0, 0.0, 100.0, 50.0]])
    metric = PercentageCorrectKeypoints()
    metric.update(pred, gt, boxes)
    output = metric.compute()
    assert set(output) == {"PCK@0.05", "PCK@0.1"}
    assert output["PCK@0.05"].item() == pytest.approx(1 / 3)
    assert output["PCK@0.1"].item() == 1.0

    # A second instance where only keypoint 0 is annotated and wrong: mmpose averages per keypoint type
    # (type 0: 1/2, types 1, 2: as before), not over all keypoints pooled (which would give 3/4).
    gt2 = torch.cat([gt, torch.tensor([[[10.0, 10.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0, 0, 0]]])])
    pred2 = torch.cat([pred, torch.tensor([[[90.0, 10.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])])
    metric = PercentageCorrectKeypoints(thresholds=(0.1,))
    metric.update(pred2, gt2, torch.cat([boxes, boxes]))
    assert metric.compute()["PCK@0.1"].item() == pytest.approx((0.5 + 1.0 + 1.0) / 3)

    rng = np.random.default_rng(1)
    gt = np.concatenate([rng.uniform(0, 200, (30, 17, 2)), rng.integers(0, 3, (30, 17, 1))], axis=-1)
    pred = gt[..., :2] + rng.normal(0, 8, (30, 17, 2))
    corner = rng.uniform(0, 50, (30, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(40, 160, (30, 2))], axis=1)
    metric = PercentageCorrectKeypoints(thresholds=(0.05, 0.1, 0.2))
    metric.update(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(boxes))
    output = metric.compute()
    for threshold in (0.05, 0.1, 0.2):
        assert output[f"PCK@{threshold:g}"].item() == pytest.approx(
            _reference_pck(pred, gt, boxes, threshold), abs=1e-12
        )
    assert 0.2 < output["PCK@0.05"].item() < output["PCK@0.2"].item() < 1.0  # not degenerate


def _reference_pckh(pred: np.ndarray, gt: np.ndarray, head_boxes: np.ndarray, threshold: float) -> dict:
    """The official MPII evaluation (HRNet lib/dataset/mpii.py, mmpose 0.x), written out, as fractions."""
    uv_err = np.linalg.norm(pred - gt[..., :2], axis=-1).T  # (16, N)
    head_sizes = np.linalg.norm(head_boxes[:, 2:] - head_boxes[:, :2], axis=-1) * 0.6
    visible = (gt[..., 2] > 0).T
    jnt_count = visible.sum(axis=1)
    less = ((uv_err / head_sizes) <= threshold) * visible
    pckh = np.ma.array(less.sum(axis=1) / jnt_count, mask=False)
    pckh.mask[6:8] = True
    counts = np.ma.array(jnt_count, mask=False)
    counts.mask[6:8] = True
    mean = float(np.sum(pckh * counts / np.sum(counts).astype(np.float64)))
    name = f"PCKh@{threshold:g}"
    result = {name: mean, f"{name}/Mean": mean}
    for group, joints in MPII_JOINT_GROUPS.items():
        result[f"{name}/{group}"] = float(np.mean([pckh[j] for j in joints]))
    return result


def test_pckh_gives_the_mpii_table() -> None:
    rng = np.random.default_rng(2)
    gt = np.concatenate(
        [rng.uniform(0, 300, (40, 16, 2)), rng.choice([0, 1, 2], (40, 16, 1), p=[0.1, 0.2, 0.7])], -1
    )
    corner = rng.uniform(0, 250, (40, 2))
    head_boxes = np.concatenate([corner, corner + rng.uniform(20, 50, (40, 2))], axis=1)
    pred = gt[..., :2] + rng.normal(0, 9, (40, 16, 2))
    metric = PCKh()
    metric.update(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(head_boxes))
    output = {k: v.item() for k, v in metric.compute().items()}
    expected = _reference_pckh(pred, gt, head_boxes, 0.5)
    assert list(output) == ["PCKh@0.5", *(f"PCKh@0.5/{g}" for g in MPII_JOINT_GROUPS), "PCKh@0.5/Mean"]
    assert output == pytest.approx(expected, abs=1e-12)
    assert 0.3 < output["PCKh@0.5"] < 0.95

    # Pelvis and thorax do not enter the Mean: making them all wrong leaves it unchanged.
    wrong = pred.copy()
    wrong[:, 6:8] += 1000.0
    other = PCKh()
    other.update(torch.from_numpy(wrong), torch.from_numpy(gt), torch.from_numpy(head_boxes))
    assert other.compute()["PCKh@0.5"].item() == output["PCKh@0.5"]

    # Other K: only the pooled value, over all annotated keypoints.
    metric = PCKh(threshold=0.1)
    metric.update(torch.from_numpy(pred[:, :14]), torch.from_numpy(gt[:, :14]), torch.from_numpy(head_boxes))
    sizes = 0.6 * np.linalg.norm(head_boxes[:, 2:] - head_boxes[:, :2], axis=-1)
    visible = gt[:, :14, 2] > 0
    correct = (np.linalg.norm(pred[:, :14] - gt[:, :14, :2], axis=-1) / sizes[:, None] <= 0.1) & visible
    assert {k: v.item() for k, v in metric.compute().items()} == {
        "PCKh@0.1": pytest.approx(correct.sum() / visible.sum(), abs=1e-12)
    }


def test_bad_input_gets_a_clear_error() -> None:
    gt = torch.zeros(2, 5, 3)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 2)
    metric = PercentageCorrectKeypoints()
    with pytest.raises(ValueError, match=r"targets must be \(N, K, 3\)"):
        metric.update(torch.zeros(2, 5, 2), torch.zeros(2, 5, 2), boxes)
    with pytest.raises(ValueError, match="differ in N or K"):
        metric.update(torch.zeros(2, 4, 2), gt, boxes)
    with pytest.raises(ValueError, match="x2 >= x1"):
        metric.update(torch.zeros(2, 5, 2), gt, boxes.flip(1))
    with pytest.raises(ValueError, match=r"head_boxes must be \(2, 4\)"):
        PCKh().update(torch.zeros(2, 5, 2), gt, boxes[:1])
    gt[..., 2] = 2.0
    metric.update(torch.zeros(2, 5, 2), gt, boxes)
    with pytest.raises(ValueError, match="got K = 6 keypoints after K = 5"):
        metric.update(torch.zeros(2, 6, 2), torch.ones(2, 6, 3), boxes)
    with pytest.raises(ValueError, match="outside the 5 keypoints"):
        NormalizedMeanError(normalizing_keypoints=(0, 7)).update(torch.zeros(2, 5, 2), gt)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _metrics() -> dict[str, Any]:
    return {
        "nme": NormalizedMeanError(normalizing_keypoints=(36, 45)),
        "pck": PercentageCorrectKeypoints(),
        "pckh": PCKh(),
    }


def _update_all(metrics: dict[str, Any], batch: dict[str, torch.Tensor]) -> None:
    """Update the three metrics, with the batch's "ids" as instance_ids when it has them."""
    ids = batch.get("ids")
    metrics["nme"].update(batch["pred"], batch["gt"], instance_ids=ids)
    metrics["pck"].update(batch["pred"], batch["gt"], batch["boxes"], instance_ids=ids)
    metrics["pckh"].update(batch["pred"][:, :16], batch["gt"][:, :16], batch["head_boxes"], instance_ids=ids)


def _outputs(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {name: {k: v.item() for k, v in metric.compute().items()} for name, metric in metrics.items()}


def _ddp_worker(
    rank: int, port: int, shares: list[list[dict]], padded_shares: list[list[dict]], out_dir: str
) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
        timeout=datetime.timedelta(seconds=60),
    )  # fmt: skip
    try:
        result = {}
        for key, batches in (("", shares[rank]), ("padded_", padded_shares[rank])):
            metrics = _metrics()
            for batch in batches:
                _update_all(metrics, batch)
            result[f"{key}outputs"] = {name: metric.compute() for name, metric in metrics.items()}
            result[f"{key}skipped"] = {
                name: metric.last_skipped_instances for name, metric in metrics.items()
            }
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _face_batches() -> list[dict[str, torch.Tensor]]:
    """Batches of 68-keypoint faces (jittered copies of the real 300W pair), one of them unscorable; the
    first 16 points stand in for MPII joints, under a head box at the top of the face box."""
    gt, boxes = _face_sample("300w")
    rng = np.random.default_rng(3)
    batches = []
    for size in (3, 1, 4, 2):
        index = rng.integers(0, len(gt), size)
        target = gt[index].copy()
        target[..., :2] += rng.normal(0, 2, (size, 68, 2))
        if size == 4:
            target[0, :, 2] = 0.0  # a face with nothing annotated
        pred = target[..., :2] + rng.normal(0, 12, (size, 68, 2))
        box = boxes[index]
        head_boxes = np.concatenate([box[:, :2], box[:, :2] + 0.06 * (box[:, 2:] - box[:, :2])], axis=1)
        batches.append({
            "pred": torch.from_numpy(pred), "gt": torch.from_numpy(target),
            "boxes": torch.from_numpy(box), "head_boxes": torch.from_numpy(head_boxes),
        })  # fmt: skip
    return batches


def _with_ids(batches: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """The batches with distinct int64 "ids" (annotation ids 1000, 1001, ... in order)."""
    starts = np.cumsum([0] + [len(b["gt"]) for b in batches])
    return [
        {**batch, "ids": torch.arange(1000 + start, 1000 + start + len(batch["gt"]))}
        for batch, start in zip(batches, starts.tolist(), strict=False)
    ]


def _repeated(
    batches: list[dict[str, torch.Tensor]], picks: list[tuple[int, int]]
) -> dict[str, torch.Tensor]:
    """A batch of instances repeated from `batches`, (batch index, row) each, ids and all (what
    DistributedSampler's padding gives)."""
    return {key: torch.stack([batches[b][key][row] for b, row in picks]) for key in batches[0]}


def test_an_instance_repeated_with_its_id_counts_once() -> None:
    batches = _with_ids(_face_batches())
    once = _metrics()
    for batch in batches:
        _update_all(once, batch)
    expected = _outputs(once)

    # The first instance and the unscorable face (batch 2, row 0) again: in a later batch, and the first
    # instance also twice within one batch.
    padding = [_repeated(batches, [(0, 0), (2, 0)]), _repeated(batches, [(0, 0), (0, 0), (1, 0)])]
    twice, without_ids = _metrics(), _metrics()
    for batch in batches + padding:
        _update_all(twice, batch)
        _update_all(without_ids, {k: v for k, v in batch.items() if k != "ids"})
    assert _outputs(twice) == expected
    without = _outputs(without_ids)
    for name in expected:
        assert without[name] != expected[name], name  # without ids the repeats do count
        assert once[name].last_skipped_instances == twice[name].last_skipped_instances == 1, name
        assert once[name].skipped_instances == twice[name].skipped_instances == 1, name
        assert without_ids[name].last_skipped_instances == without_ids[name].skipped_instances == 2, name

    # An instance updated twice with the same id gives the numbers of one update.
    single, repeated = _metrics(), _metrics()
    _update_all(single, batches[0])
    _update_all(repeated, batches[0])
    _update_all(repeated, batches[0])
    assert _outputs(repeated) == _outputs(single)


def test_instance_ids_in_some_updates_only_are_refused() -> None:
    gt = torch.tensor([[[10.0, 10.0, 2.0], [20.0, 25.0, 2.0]]] * 2)
    pred = gt[..., :2] + 1.0
    boxes = torch.tensor([[0.0, 0.0, 100.0, 50.0]] * 2)
    ids = torch.tensor([7, 8])
    metric = PercentageCorrectKeypoints()
    metric.update(pred, gt, boxes, instance_ids=ids)
    with pytest.raises(ValueError, match="in every update since the last reset or in none, got none after"):
        metric.update(pred, gt, boxes)
    metric.reset()
    metric.update(pred, gt, boxes)
    with pytest.raises(ValueError, match="in every update since the last reset or in none, got some after"):
        metric.update(pred, gt, boxes, instance_ids=ids)
    metric.reset()
    metric.update(pred, gt, boxes, instance_ids=ids.int())  # any integer dtype: int32 here
    with pytest.raises(ValueError, match=r"instance_ids must be \(2,\)"):
        metric.update(pred, gt, boxes, instance_ids=ids[:1])
    with pytest.raises(ValueError, match="instance_ids must be integers"):
        metric.update(pred, gt, boxes, instance_ids=ids.double())

    # One rank with ids, another without (the states of two metrics merged as a sync gathers them).
    with_ids, without = NormalizedMeanError(normalizing_keypoints=(0, 1)), NormalizedMeanError((0, 1))
    with_ids.update(pred, gt, instance_ids=ids)
    without.update(pred, gt)
    with_ids.merge_state(without)
    with pytest.raises(ValueError, match=r"or in none \(over the ranks\)"):
        with_ids.compute()


@pytest.mark.timeout(120)
def test_two_gloo_ranks_give_the_single_process_numbers_on_the_union(tmp_path: Path) -> None:
    batches = _face_batches()
    shares = [batches[:1], batches[1:]]  # uneven: 3 instances on rank 0, 7 on rank 1
    # With ids and repeats, as DistributedSampler pads: rank 1 also gets rank 0's first instance, and rank 0
    # the unscorable face of rank 1 (batch 2, row 0), which must be counted as skipped once.
    identified = _with_ids(batches)
    padded_shares = [
        [identified[0], _repeated(identified, [(2, 0)])],
        [*identified[1:], _repeated(identified, [(0, 0)])],
    ]
    port = _free_port()
    mp.start_processes(
        _ddp_worker, args=(port, shares, padded_shares, str(tmp_path)), nprocs=2, start_method="fork"
    )
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]

    single = _metrics()
    for batch in batches:  # rank 0's instances first, as the gather concatenates them
        _update_all(single, batch)
    rank0_alone = _metrics()
    _update_all(rank0_alone, batches[0])
    for name, metric in single.items():
        expected = {k: v.item() for k, v in metric.compute().items()}
        assert {k: v.item() for k, v in rank0_alone[name].compute().items()} != expected  # the sync matters
        for result in ranks:
            for key in ("", "padded_"):
                assert {k: v.item() for k, v in result[f"{key}outputs"][name].items()} == expected, name
                assert result[f"{key}skipped"][name] == metric.last_skipped_instances
    assert single["nme"].last_skipped_instances == 1  # the face with nothing annotated, on rank 1
