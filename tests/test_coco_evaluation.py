"""COCOEvaluation against pycocotools called directly, on the real COCO sample (4 images, 14 persons) and
a small synthetic world; its faster-coco-eval backend against its pycocotools one; its DDP evaluation."""

import contextlib
import datetime
import io
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datamodules.synthetic.coco_writer import write_coco_instances
from metrics.coco_evaluation import BACKENDS, STAT_NAMES, STATS_PER_IOU_TYPE, COCOEvaluation, coco_api
from metrics.simulated_detections import ImageDetections, as_prediction, perturbed_ground_truth

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


def _image_sample(detections: ImageDetections) -> Sample:
    """Pack detections into the model's eval output format and, by hand, into COCO results lists."""
    pred = as_prediction(detections)
    target = {"image_id": torch.tensor(detections.image_id)}
    bbox_results, segm_results = [], []
    for (x1, y1, x2, y2), category_id, score, mask in zip(
        pred["boxes"].tolist(),
        detections.category_ids.tolist(),
        pred["scores"].tolist(),
        detections.masks,
        strict=True,
    ):
        common = {"image_id": detections.image_id, "category_id": category_id, "score": score}
        bbox_results.append({**common, "bbox": [x1, y1, x2 - x1, y2 - y1]})
        segm_results.append({**common, "segmentation": mask_utils.encode(np.asfortranarray(mask))})
    return pred, target, bbox_results, segm_results


def _perturbed_samples(coco: COCO, seed: int = 0) -> list[Sample]:
    """GT with jittered boxes, shifted/eroded/dilated masks, random scores, misses and false positives."""
    return [_image_sample(detections) for detections in perturbed_ground_truth(coco, seed)]


def _detections(coco: COCO, image_id: int, anns: list[dict[str, Any]]) -> ImageDetections:
    """`anns` of one image as detections with score 1."""
    image = coco.imgs[image_id]
    return ImageDetections(
        image_id=image_id,
        boxes=np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4),
        category_ids=np.array([a["category_id"] for a in anns], dtype=np.int64),
        scores=np.ones(len(anns)),
        masks=np.array([coco.annToMask(a) for a in anns], np.uint8).reshape(
            -1, image["height"], image["width"]
        ),
    )


def _ground_truth_samples(coco: COCO) -> list[Sample]:
    return [_image_sample(_detections(coco, i, coco.imgToAnns[i])) for i in sorted(coco.imgs)]


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


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_detections(coco: COCO, backend: str) -> None:
    image_id = 785  # one large person (area 27789 > 96^2), no small or medium ones
    empty = _image_sample(_detections(coco, image_id, []))
    metric = COCOEvaluation(ANNOTATIONS, backend=backend)
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


def test_rejects_unknown_backend() -> None:
    with pytest.raises(ValueError, match=r"unknown COCO evaluation backend 'detectron2'.*faster_coco_eval"):
        COCOEvaluation(ANNOTATIONS, backend="detectron2")


@pytest.fixture(scope="module")
def synthetic_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, COCO]:
    """20 synthetic val images (several categories, crowd regions, polygon and RLE masks)."""
    annotation_file = write_coco_instances(
        tmp_path_factory.mktemp("synthetic"), "val", num_images=20, image_size=128, seed=0
    )
    with contextlib.redirect_stdout(io.StringIO()):
        return annotation_file, COCO(str(annotation_file))


@pytest.mark.parametrize("world", ["coco_sample", "synthetic"])
def test_faster_coco_eval_gives_the_pycocotools_stats(
    world: str, coco: COCO, samples: list[Sample], synthetic_world: tuple[Path, COCO]
) -> None:
    """All 12 stats of both IoU types agree to 1e-12. Not bit for bit: faster-coco-eval's C++
    accumulate gives some precisions 1-2 ulps (<= 2.2e-16) away from pycocotools' numpy ones (1.8.0 on
    the synthetic world's segm: 531 of 48,480 entries), which moves segm AP75 there by 1.4e-17; all other
    stats are identical. A real difference (one detection matched otherwise) moves an AP by far more."""
    if world == "synthetic":
        annotation_file, coco = synthetic_world
        samples = _perturbed_samples(coco)
    else:
        annotation_file = ANNOTATIONS
    stats = {}
    for backend in BACKENDS:
        metric = COCOEvaluation(annotation_file, backend=backend)
        _update(metric, samples)
        metric.compute()
        stats[backend] = metric.last_stats
    for iou_type in IOU_TYPES:
        reference = _pycocotools_stats(coco, samples, iou_type)
        np.testing.assert_allclose(stats["pycocotools"][iou_type], reference, rtol=0, atol=1e-9)
        assert stats["faster_coco_eval"][iou_type].shape == (STATS_PER_IOU_TYPE,)
        np.testing.assert_allclose(
            stats["faster_coco_eval"][iou_type], stats["pycocotools"][iou_type], rtol=0, atol=1e-12
        )
        assert 0.1 < stats["pycocotools"][iou_type][0] < 0.95  # not a degenerate case


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _instrument_evaluate(cocoeval_class: type, fail: bool) -> list[None]:
    """Count the calls of `cocoeval_class.evaluate` (or make them fail). Only for a forked child: the
    class is patched for the rest of the process."""
    calls: list[None] = []
    original = cocoeval_class.evaluate

    def evaluate(self: Any) -> None:
        calls.append(None)
        if fail:
            raise ValueError("evaluation broke")
        original(self)

    cocoeval_class.evaluate = evaluate
    return calls


def _ddp_worker(
    rank: int, port: int, shares: list[list[Sample]], out_dir: str, backend: str, fail_on_rank_zero: bool
) -> None:
    """One gloo rank: update with its share, compute, and save the output and `last_stats` (or the
    error) and how often COCOeval.evaluate ran in this process."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        calls = _instrument_evaluate(coco_api(backend)[1], fail=fail_on_rank_zero and rank == 0)
        metric = COCOEvaluation(ANNOTATIONS, backend=backend)
        for sample in shares[rank]:
            _update(metric, [sample])
        try:
            output = metric.compute()
            stats = {iou_type: torch.from_numpy(value) for iou_type, value in metric.last_stats.items()}
            result: dict[str, Any] = {"output": output, "last_stats": stats}
        except Exception as error:
            result = {"error": f"{type(error).__name__}: {error}"}
        torch.save({**result, "evaluate_calls": len(calls)}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _run_two_ranks(
    shares: list[list[Sample]], out_dir: Path, backend: str, fail_on_rank_zero: bool = False
) -> list[dict[str, Any]]:
    # fork: the children inherit the imported modules, which keeps the test a few seconds.
    args = (_free_port(), shares, str(out_dir), backend, fail_on_rank_zero)
    mp.start_processes(_ddp_worker, args=args, nprocs=2, start_method="fork")
    return [torch.load(out_dir / f"rank{rank}.pt") for rank in range(2)]


def _ddp_shares(samples: list[Sample]) -> list[list[Sample]]:
    """Different images per rank; rank 1 also repeats rank 0's first image, as DistributedSampler pads."""
    return [samples[:2], [*samples[2:], samples[0]]]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", BACKENDS)
def test_ddp_rank_zero_evaluates_once_and_both_ranks_get_the_single_process_stats(
    samples: list[Sample], tmp_path: Path, backend: str
) -> None:
    shares = _ddp_shares(samples)
    ranks = _run_two_ranks(shares, tmp_path, backend)
    single = COCOEvaluation(ANNOTATIONS, backend=backend)
    _update(single, samples)
    expected = single.compute()
    rank0_alone = COCOEvaluation(ANNOTATIONS, backend=backend)
    _update(rank0_alone, shares[0])
    assert rank0_alone.compute()["segm/AP"].item() != expected["segm/AP"].item()  # so the sync is needed
    # COCOeval ran on rank 0 only, once per IoU type.
    assert [result["evaluate_calls"] for result in ranks] == [len(IOU_TYPES), 0]
    for rank, result in enumerate(ranks):
        assert set(result["output"]) == set(expected)
        for key, value in expected.items():
            assert result["output"][key].dtype == torch.float64
            assert result["output"][key].item() == value.item(), (rank, key)
        for iou_type in IOU_TYPES:
            assert result["last_stats"][iou_type].tolist() == single.last_stats[iou_type].tolist()


@pytest.mark.timeout(180)
def test_ddp_failure_on_rank_zero_is_raised_on_every_rank(samples: list[Sample], tmp_path: Path) -> None:
    """Rank 1 must not wait forever for stats that rank 0 could not compute."""
    ranks = _run_two_ranks(_ddp_shares(samples), tmp_path, "pycocotools", fail_on_rank_zero=True)
    assert ranks[0]["error"] == "ValueError: evaluation broke"
    assert ranks[1]["error"] == "RuntimeError: COCO evaluation failed on rank 0: see its error"
    assert [result["evaluate_calls"] for result in ranks] == [1, 0]
