"""COCOEvaluation against pycocotools called directly, on the real COCO sample (4 images, 14 persons)."""

import contextlib
import datetime
import io
import socket
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from metrics.coco_evaluation import STAT_NAMES, COCOEvaluation

ANNOTATIONS = Path(__file__).parents[1] / ".." / "shared" / "data" / "coco_sample" / "test_coco.json"
pytestmark = [
    pytest.mark.skipif(
        not ANNOTATIONS.is_file(),
        reason=f"real COCO sample missing: {ANNOTATIONS} (shared/ is beside the checkout)",
    ),
    # pycocotools' mask.decode (used by COCO.annToMask to build the test detections) under numpy 2.
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]
IOU_TYPES = ("bbox", "segm")
# One image's data: (prediction, target, bbox results, segm results); the results are the same
# detections written as a COCO results list by hand, for pycocotools called directly.
Sample = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[dict[str, Any]], list[dict[str, Any]]]


def _load_gt() -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ANNOTATIONS))


def _image_sample(
    coco: COCO, image_id: int, boxes: list, scores: list, binaries: list, label: int = 1
) -> Sample:
    """Pack detections into the model's eval output format and into COCO results lists."""
    image = coco.imgs[image_id]
    boxes_t = torch.tensor(np.array(boxes, dtype=np.float32).reshape(-1, 4))
    scores_t = torch.tensor(np.array(scores, dtype=np.float32))
    binary = np.array(binaries, dtype=np.uint8).reshape(-1, image["height"], image["width"])
    # Probabilities strictly above 0.5 inside the mask and below it outside.
    rng = np.random.default_rng(image_id)
    probabilities = np.where(
        binary == 1, rng.uniform(0.51, 1.0, binary.shape), rng.uniform(0.0, 0.49, binary.shape)
    )
    pred = {
        "boxes": boxes_t,
        "labels": torch.full((len(scores),), label, dtype=torch.int64),
        "scores": scores_t,
        "masks": torch.tensor(probabilities, dtype=torch.float32)[:, None],
    }
    target = {"image_id": torch.tensor(image_id)}
    bbox_results, segm_results = [], []
    for (x1, y1, x2, y2), score, mask in zip(boxes_t.tolist(), scores_t.tolist(), binary, strict=True):
        bbox_results.append(
            {"image_id": image_id, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
        )
        rle = mask_utils.encode(np.asfortranarray(mask))
        segm_results.append({"image_id": image_id, "category_id": 1, "segmentation": rle, "score": score})
    return pred, target, bbox_results, segm_results


def _perturbed_samples(coco: COCO, seed: int = 0) -> list[Sample]:
    """GT with jittered boxes, shifted/eroded/dilated masks, random scores, misses and false positives."""
    rng = np.random.default_rng(seed)
    kernel = np.ones((3, 3), np.uint8)
    samples = []
    for image_id in sorted(coco.imgs):
        height, width = coco.imgs[image_id]["height"], coco.imgs[image_id]["width"]
        boxes, scores, binaries = [], [], []
        for ann in coco.imgToAnns[image_id]:
            if rng.random() < 0.2:  # a missed person
                continue
            x, y, w, h = ann["bbox"]
            boxes.append(np.array([x, y, x + w, y + h]) + rng.normal(0.0, 3.0, 4))
            mask = coco.annToMask(ann)
            kind = rng.integers(3)
            if kind == 0:
                mask = np.roll(mask, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
            elif kind == 1:
                mask = cv2.erode(mask, kernel, iterations=2)
            else:
                mask = cv2.dilate(mask, kernel, iterations=2)
            binaries.append(mask)
            scores.append(rng.uniform(0.3, 1.0))
        for _ in range(2):  # false positives
            x1, y1 = rng.uniform(0, width - 80), rng.uniform(0, height - 80)
            x2, y2 = x1 + rng.uniform(8, 80), y1 + rng.uniform(8, 80)
            mask = np.zeros((height, width), np.uint8)
            mask[int(y1) : int(y2), int(x1) : int(x2)] = 1
            boxes.append([x1, y1, x2, y2])
            binaries.append(mask)
            scores.append(rng.uniform(0.0, 0.8))
        samples.append(_image_sample(coco, image_id, boxes, scores, binaries))
    return samples


def _ground_truth_samples(coco: COCO) -> list[Sample]:
    samples = []
    for image_id in sorted(coco.imgs):
        anns = coco.imgToAnns[image_id]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (ann["bbox"] for ann in anns)]
        binaries = [coco.annToMask(ann) for ann in anns]
        samples.append(_image_sample(coco, image_id, boxes, [1.0] * len(anns), binaries))
    return samples


def _pycocotools_stats(coco: COCO, samples: list[Sample], iou_type: str) -> np.ndarray:
    # Copies: loadRes adds keys to the dicts it is given (a "bbox" array to segm results).
    results = [dict(r) for sample in samples for r in sample[2 if iou_type == "bbox" else 3]]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(coco, coco.loadRes(results), iou_type)
        coco_eval.params.imgIds = sorted({int(sample[1]["image_id"]) for sample in samples})
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


def _update(metric: COCOEvaluation, samples: list[Sample]) -> None:
    metric.update([s[0] for s in samples], [s[1] for s in samples])


def _assert_matches_pycocotools(
    metric: COCOEvaluation, output: dict, coco: COCO, samples: list[Sample]
) -> None:
    assert set(output) == {f"{t}/{n}" for t in IOU_TYPES for n in STAT_NAMES}
    for iou_type in IOU_TYPES:
        expected = _pycocotools_stats(coco, samples, iou_type)
        np.testing.assert_allclose(metric.last_stats[iou_type], expected, rtol=0, atol=1e-9)
        for name, value in zip(STAT_NAMES, expected, strict=False):
            assert output[f"{iou_type}/{name}"].dtype == torch.float64
            assert abs(output[f"{iou_type}/{name}"].item() - value) <= 1e-9, (iou_type, name)


@pytest.fixture(scope="module")
def coco() -> COCO:
    return _load_gt()


@pytest.fixture(scope="module")
def samples(coco: COCO) -> list[Sample]:
    return _perturbed_samples(coco)


def test_perturbed_detections_match_pycocotools(coco: COCO, samples: list[Sample]) -> None:
    metric = COCOEvaluation(ANNOTATIONS, label_to_category_id={1: 1})
    _update(metric, samples[:2])
    _update(metric, samples[2:])
    output = metric.compute()
    _assert_matches_pycocotools(metric, output, coco, samples)
    # Not a degenerate case: the perturbations cost AP, and small, medium and large persons all exist.
    for iou_type in IOU_TYPES:
        assert 0.2 < output[f"{iou_type}/AP"].item() < 0.95
        assert all(output[f"{iou_type}/{n}"].item() >= 0 for n in ("APs", "APm", "APl"))


def test_partial_evaluation_and_padding_duplicates(coco: COCO, samples: list[Sample]) -> None:
    metric = COCOEvaluation(ANNOTATIONS)
    _update(metric, samples[:2])
    _update(metric, samples[1:2])  # DistributedSampler padding repeats an image: it must count once
    _assert_matches_pycocotools(metric, metric.compute(), coco, samples[:2])


def test_ground_truth_fed_back(coco: COCO) -> None:
    samples = _ground_truth_samples(coco)
    metric = COCOEvaluation(ANNOTATIONS)
    _update(metric, samples)
    output = metric.compute()
    _assert_matches_pycocotools(metric, output, coco, samples)
    # What pycocotools 2.0.11 gives on this sample: no crowd boxes, so every person is found exactly.
    assert all(
        output[f"{t}/{n}"].item() == pytest.approx(1.0, abs=1e-12) for t in IOU_TYPES for n in STAT_NAMES
    )


def test_no_detections(coco: COCO) -> None:
    image_id = 785  # one large person (area 27789 > 96^2), no small or medium ones
    empty = _image_sample(coco, image_id, [], [], [])
    metric = COCOEvaluation(ANNOTATIONS)
    _update(metric, [empty])
    output = metric.compute()
    expected = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": -1.0, "APm": -1.0, "APl": 0.0}
    assert {k: v.item() for k, v in output.items()} == {
        f"{t}/{n}": v for t in IOU_TYPES for n, v in expected.items()
    }


def test_label_mapping(coco: COCO, samples: list[Sample]) -> None:
    relabelled = [({**s[0], "labels": torch.full_like(s[0]["labels"], 7)}, *s[1:]) for s in samples]
    metric = COCOEvaluation(ANNOTATIONS, label_to_category_id={7: 1}, iou_types=("bbox",))
    _update(metric, relabelled)
    output = metric.compute()
    assert set(output) == {f"bbox/{n}" for n in STAT_NAMES}
    np.testing.assert_allclose(
        metric.last_stats["bbox"], _pycocotools_stats(coco, samples, "bbox"), atol=1e-9
    )


def test_detections_of_unmapped_labels_are_dropped_counted_and_logged(
    coco: COCO, samples: list[Sample], caplog: pytest.LogCaptureFixture
) -> None:
    """A 91-way torchvision head can predict ids COCO leaves unused: those cannot be scored."""
    pred, target = samples[0][0], samples[0][1]
    stray = {key: torch.cat([value, value[:1]]) for key, value in pred.items()}
    stray["labels"][-1] = 12
    with_stray = COCOEvaluation(ANNOTATIONS, label_to_category_id={1: 1})
    with_stray.update([stray], [target])
    clean = COCOEvaluation(ANNOTATIONS, label_to_category_id={1: 1})
    clean.update([pred], [target])
    assert with_stray.unmapped_detections == 1
    assert "labels [12] have no category id" in caplog.text
    for name, value in clean.compute().items():
        assert with_stray.compute()[name] == value, name


def test_rejects_masks_not_in_original_size(samples: list[Sample]) -> None:
    pred, target = samples[0][0], samples[0][1]
    small = {**pred, "masks": pred["masks"][..., ::2, ::2]}
    with pytest.raises(ValueError, match="original size"):
        COCOEvaluation(ANNOTATIONS).update([small], [target])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, port: int, shares: list[list[Sample]], out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        metric = COCOEvaluation(ANNOTATIONS)
        for sample in shares[rank]:
            _update(metric, [sample])
        torch.save(metric.compute(), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_ddp_two_ranks_match_single_process(samples: list[Sample], tmp_path: Path) -> None:
    # Rank 1 gets one image more, the repeat of rank 0's first image, as DistributedSampler pads.
    shares = [samples[:2], [*samples[2:], samples[0]]]
    # fork: the children inherit the imported modules, which keeps the test a few seconds.
    mp.start_processes(_ddp_worker, args=(_free_port(), shares, str(tmp_path)), nprocs=2, start_method="fork")
    single = COCOEvaluation(ANNOTATIONS)
    _update(single, samples)
    expected = single.compute()
    rank0_alone = COCOEvaluation(ANNOTATIONS)
    _update(rank0_alone, shares[0])
    assert rank0_alone.compute()["segm/AP"].item() != expected["segm/AP"].item()  # so the sync is needed
    for rank in range(2):
        output = torch.load(tmp_path / f"rank{rank}.pt")
        assert set(output) == set(expected)
        for key, value in expected.items():
            assert output[key].item() == value.item(), (rank, key)
