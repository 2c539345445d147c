"""WIDER FACE AP against a transcription of the official evaluation (``widerface_evaluate/evaluation.py`` and
its Cython ``bbox_overlaps``) on random predictions with random subset keep lists, to 1e-9; merged rank
states equal one metric; the official ``.mat`` keep lists are read in their layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.wider_face_ap import SUBSETS, WiderFaceAP, read_official_subsets


def official_overlaps(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    overlaps = np.zeros((len(boxes), len(query)))
    for k in range(len(query)):
        area = (query[k, 2] - query[k, 0] + 1) * (query[k, 3] - query[k, 1] + 1)
        for n in range(len(boxes)):
            iw = min(boxes[n, 2], query[k, 2]) - max(boxes[n, 0], query[k, 0]) + 1
            if iw > 0:
                ih = min(boxes[n, 3], query[k, 3]) - max(boxes[n, 1], query[k, 1]) + 1
                if ih > 0:
                    ua = (boxes[n, 2] - boxes[n, 0] + 1) * (boxes[n, 3] - boxes[n, 1] + 1) + area - iw * ih
                    overlaps[n, k] = iw * ih / ua
    return overlaps


def official_image_eval(pred, gt, ignore, iou_thresh):
    _pred, _gt = pred.copy(), gt.copy()
    pred_recall = np.zeros(_pred.shape[0])
    recall_list = np.zeros(_gt.shape[0])
    proposal_list = np.ones(_pred.shape[0])
    _pred[:, 2] += _pred[:, 0]
    _pred[:, 3] += _pred[:, 1]
    _gt[:, 2] += _gt[:, 0]
    _gt[:, 3] += _gt[:, 1]
    overlaps = official_overlaps(_pred[:, :4], _gt)
    for h in range(_pred.shape[0]):
        max_overlap, max_idx = overlaps[h].max(), overlaps[h].argmax()
        if max_overlap >= iou_thresh:
            if ignore[max_idx] == 0:
                recall_list[max_idx] = -1
                proposal_list[h] = -1
            elif recall_list[max_idx] == 0:
                recall_list[max_idx] = 1
        pred_recall[h] = len(np.where(recall_list == 1)[0])
    return pred_recall, proposal_list


def official_img_pr_info(thresh_num, pred_info, proposal_list, pred_recall):
    pr_info = np.zeros((thresh_num, 2))
    for t in range(thresh_num):
        thresh = 1 - (t + 1) / thresh_num
        r_index = np.where(pred_info[:, 4] >= thresh)[0]
        if len(r_index) != 0:
            r_index = r_index[-1]
            pr_info[t, 0] = len(np.where(proposal_list[: r_index + 1] == 1)[0])
            pr_info[t, 1] = pred_recall[r_index]
    return pr_info


def official_voc_ap(rec, prec):
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def official_evaluation(preds: list[np.ndarray], gts: list[np.ndarray], keeps: list[list[np.ndarray]]):
    """The official ``evaluation`` loop: preds (x, y, w, h, s) per image in score order, gts (x, y, w, h),
    keeps[subset][image] 1-based kept face indices."""
    preds = [p.copy() for p in preds]
    max_score, min_score = 0, 1
    for v in preds:
        if len(v):
            max_score, min_score = max(v[:, -1].max(), max_score), min(v[:, -1].min(), min_score)
    for v in preds:
        if len(v):
            v[:, -1] = (v[:, -1] - min_score) / (max_score - min_score)
    aps = []
    for setting in range(3):
        count_face, pr_curve = 0, np.zeros((1000, 2))
        for pred_info, gt_boxes, keep_index in zip(preds, gts, keeps[setting], strict=True):
            count_face += len(keep_index)
            if len(gt_boxes) == 0 or len(pred_info) == 0:
                continue
            ignore = np.zeros(gt_boxes.shape[0])
            if len(keep_index) != 0:
                ignore[keep_index - 1] = 1
            pred_recall, proposal_list = official_image_eval(pred_info, gt_boxes, ignore, 0.5)
            pr_curve += official_img_pr_info(1000, pred_info, proposal_list, pred_recall)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = pr_curve[:, 1] / pr_curve[:, 0]
        aps.append(official_voc_ap(pr_curve[:, 1] / count_face, precision))
    return aps


def random_world(seed: int, images: int = 16):
    rng = np.random.default_rng(seed)
    preds, gts, keeps, ours = [], [], [[], [], []], []
    for index in range(images):
        faces = int(rng.integers(0, 7))
        xy = rng.uniform(0, 200, (faces, 2))
        wh = rng.uniform(4, 60, (faces, 2))
        gt = np.concatenate([xy, wh], 1).round()
        jitter = rng.normal(0, 3, (faces, 4))
        predicted = np.concatenate([gt + jitter, rng.uniform(0.3, 1.0, (faces, 1))], 1)[
            rng.random(faces) < 0.8
        ]
        spurious = np.concatenate(
            [rng.uniform(0, 200, (3, 2)), rng.uniform(4, 40, (3, 2)), rng.uniform(0, 0.6, (3, 1))], 1
        )
        pred = np.concatenate([predicted, spurious[: int(rng.integers(0, 4))]])
        pred = pred[np.argsort(-pred[:, 4], kind="stable")] if index % 5 else pred[:0]
        subsets = np.stack([rng.random(faces) < p for p in (0.5, 0.75, 1.0)], 1)
        for s in range(3):
            keeps[s].append(np.where(subsets[:, s])[0] + 1)
        preds.append(pred)
        gts.append(gt)
        to_xyxy = lambda b: torch.from_numpy(np.concatenate([b[:, :2], b[:, :2] + b[:, 2:4]], 1))  # noqa: E731
        ours.append(
            (
                {"boxes": to_xyxy(pred), "scores": torch.from_numpy(pred[:, 4])},
                {"boxes": to_xyxy(gt), "face_subsets": torch.from_numpy(subsets)},
            )
        )
    return preds, gts, keeps, ours


@pytest.mark.parametrize("seed", [1])
def test_equals_the_official_evaluation(seed: int) -> None:
    preds, gts, keeps, ours = random_world(seed)
    metric = WiderFaceAP()
    for prediction, target in ours:
        metric.update([prediction], [target])
    result = metric.compute()
    expected = official_evaluation(preds, gts, keeps)
    for name, value in zip(SUBSETS, expected, strict=True):
        assert abs(float(result[f"AP_{name}"]) - value) < 1e-9, name
    assert 0 < expected[2] < 1


def test_merged_rank_states_equal_one_metric() -> None:
    _, _, _, ours = random_world(3)
    single, ranks = WiderFaceAP(), [WiderFaceAP(), WiderFaceAP()]
    for index, (prediction, target) in enumerate(ours):
        single.update([prediction], [target])
        ranks[index % 2].update([prediction], [target])
    ranks[0].merge_state(ranks[1])
    merged, expected = ranks[0].compute(), single.compute()
    for key in expected:
        assert abs(float(merged[key]) - float(expected[key])) < 1e-12


def test_without_subsets_every_face_counts_in_all_three() -> None:
    metric = WiderFaceAP()
    prediction = {
        "boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0], [150.0, 10.0, 170.0, 30.0]]),
        "scores": torch.tensor([0.9, 0.3]),
    }
    faces = torch.tensor([[10.0, 10.0, 50.0, 50.0], [100.0, 100.0, 120.0, 130.0]])
    metric.update([prediction], [{"boxes": faces}])
    values = [float(v) for v in metric.compute().values()]
    assert values == pytest.approx([0.5, 0.5, 0.5])  # one of two faces found, at precision 1


def test_official_subset_files_are_read(tmp_path: Path) -> None:
    from scipy.io import savemat

    def cell(items):
        array = np.empty((len(items), 1), dtype=object)
        for i, item in enumerate(items):
            array[i, 0] = item
        return array

    files = cell([cell([np.array(["0_Parade_1"]), np.array(["0_Parade_2"])])])
    savemat(tmp_path / "wider_face_val.mat", {"file_list": files})
    for subset, lists in zip(SUBSETS, ([[1], [2]], [[1, 3], [2]], [[1, 2, 3], [1, 2]]), strict=True):
        gt_list = cell([cell([np.array(k, dtype=np.float64).reshape(-1, 1) for k in lists])])
        savemat(tmp_path / f"wider_{subset}_val.mat", {"gt_list": gt_list})
    subsets = read_official_subsets(tmp_path)
    assert subsets["medium"]["0_Parade_1"].tolist() == [0, 2]
    assert subsets["hard"]["0_Parade_2"].tolist() == [0, 1]
    (tmp_path / "wider_hard_val.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"wider_hard_val\.mat"):
        read_official_subsets(tmp_path)
