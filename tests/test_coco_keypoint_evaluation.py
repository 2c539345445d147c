"""COCOEvaluation's "keypoints" IoU type (OKS AP) against pycocotools' COCOeval called directly on the
same results: the real COCO sample (4 images, 14 persons, 17 keypoints) with ground truth fed back and
perturbed (jitter, dropped persons, left/right swaps), custom OKS sigmas, 68-keypoint 300W faces, the
faster-coco-eval backend and two gloo DDP ranks; and the COCO keypoint results it writes."""

import contextlib
import copy
import datetime
import io
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from metrics.coco_evaluation import KEYPOINT_STAT_NAMES, COCOEvaluation
from metrics.coco_results import COCO_PIXEL_INDEX_OFFSET, coco_keypoint_detections, keypoint_results

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
ANNOTATIONS = DATA / "coco_sample" / "test_coco.json"
FACES = DATA / "landmarks_sample" / "300w" / "test_300w.json"
pytestmark = pytest.mark.skipif(
    not ANNOTATIONS.is_file(),
    reason=f"real COCO sample missing: {ANNOTATIONS} (shared/ is beside the checkout)",
)
# COCO person keypoints' left/right pairs (eyes, ears, shoulders, elbows, wrists, hips, knees, ankles).
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


@dataclass
class ImageKeypoints:
    """One image's keypoint detections as arrays: (N, K, 3) x, y, score; (N,) scores; (N, 4) XYXY."""

    image_id: int
    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray

    def prediction(self) -> dict[str, torch.Tensor]:
        """What a model gives: keypoints in the continuous frame (COCO's pixel indices + 0.5)."""
        continuous = self.keypoints.copy()
        continuous[..., :2] += COCO_PIXEL_INDEX_OFFSET
        return {
            "keypoints": torch.from_numpy(continuous).float(),
            "scores": torch.from_numpy(self.scores).float(),
            "labels": torch.ones(len(self.scores), dtype=torch.int64),
            "boxes": torch.from_numpy(self.boxes).float(),
        }

    def target(self) -> dict[str, torch.Tensor]:
        return {"image_id": torch.tensor(self.image_id)}

    def results(self) -> list[dict[str, Any]]:
        """The same detections as COCO keypoint results written by hand (float32 values, as the metric
        stores what the model gives, back in COCO's pixel indices)."""
        keypoints = self.prediction()["keypoints"].double().numpy()
        keypoints[..., :2] -= COCO_PIXEL_INDEX_OFFSET
        scores = self.scores.astype(np.float32).astype(np.float64)
        return [
            {
                "image_id": self.image_id,
                "category_id": 1,
                "keypoints": k.reshape(-1).tolist(),
                "score": float(s),
            }
            for k, s in zip(keypoints, scores, strict=True)
        ]


def _load(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.fixture(scope="module")
def coco() -> COCO:
    return _load(ANNOTATIONS)


def _ground_truth(coco: COCO) -> list[ImageKeypoints]:
    """Every annotation (those without keypoints too) fed back with score 1 and keypoint scores 1."""
    images = []
    for image_id in sorted(coco.imgs):
        anns = coco.imgToAnns[image_id]
        keypoints = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), -1, 3)
        keypoints[..., 2] = 1.0
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        images.append(ImageKeypoints(image_id, keypoints, np.ones(len(anns)), boxes))
    return images


def _perturbed(coco: COCO, kind: str, seed: int = 0) -> list[ImageKeypoints]:
    rng = np.random.default_rng(seed)
    images = []
    for image in _ground_truth(coco):
        keypoints, scores, boxes = (
            image.keypoints.copy(),
            rng.uniform(0.2, 1.0, len(image.scores)),
            image.boxes,
        )
        if kind == "jitter":  # noise of 1-8% of the box size, and a false positive per image
            size = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
            keypoints[..., :2] += rng.normal(0, 1, keypoints[..., :2].shape) * (
                size[:, None, None] * rng.uniform(0.01, 0.08, (len(size), 1, 1))
            )
            false_positive = keypoints[:1].copy()
            false_positive[..., :2] += rng.uniform(50, 150, 2)
            keypoints, scores = np.concatenate([keypoints, false_positive]), np.append(scores, 0.5)
            boxes = np.concatenate(
                [boxes, boxes[:1] + np.tile(false_positive[0, 0, :2] - keypoints[0, 0, :2], 2)]
            )
        elif kind == "dropped":
            keep = rng.random(len(scores)) > 0.35
            keypoints, scores, boxes = keypoints[keep], scores[keep], boxes[keep]
        elif kind == "swapped":  # every other person has its left and right keypoints exchanged
            permutation = np.arange(keypoints.shape[1])
            for left, right in COCO_FLIP_PAIRS:
                permutation[[left, right]] = right, left
            keypoints[::2] = keypoints[::2][:, permutation]
        images.append(ImageKeypoints(image.image_id, keypoints, scores, boxes))
    return images


def _pycocotools_stats(
    coco: COCO, images: list[ImageKeypoints], iou_type: str = "keypoints", sigmas: list[float] | None = None
) -> np.ndarray:
    results = [r for image in images for r in image.results()]
    if iou_type == "bbox":
        results = [
            {**r, "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
            for image in images
            for r, (x1, y1, x2, y2) in zip(
                image.results(), image.boxes.astype(np.float32).astype(np.float64), strict=True
            )
        ]
        results = [{k: v for k, v in r.items() if k != "keypoints"} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), iou_type)
        coco_eval.params.imgIds = sorted({image.image_id for image in images})
        if sigmas is not None:
            coco_eval.params.kpt_oks_sigmas = np.array(sigmas)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


def _evaluate(metric: COCOEvaluation, images: list[ImageKeypoints]) -> dict[str, float]:
    half = len(images) // 2
    for batch in (images[:half], images[half:]):
        metric.update([i.prediction() for i in batch], [i.target() for i in batch])
    return {name: value.item() for name, value in metric.compute().items()}


def _assert_equal_stats(metric: COCOEvaluation, output: dict[str, float], expected: np.ndarray) -> None:
    assert list(output) == [f"keypoints/{name}" for name in KEYPOINT_STAT_NAMES]
    assert metric.last_stats["keypoints"].shape == (10,)
    np.testing.assert_allclose(metric.last_stats["keypoints"], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(list(output.values()), expected, rtol=0, atol=1e-12)


def test_ground_truth_fed_back_gives_the_pycocotools_keypoint_ap(coco: COCO) -> None:
    images = _ground_truth(coco)
    metric = COCOEvaluation(ANNOTATIONS, {1: 1}, iou_types=("keypoints",))
    output = _evaluate(metric, images)
    _assert_equal_stats(metric, output, _pycocotools_stats(coco, images))
    # ../shared/data/README.md: persons without keypoints count as ground truth, so not 1.0.
    assert output["keypoints/AP"] == pytest.approx(0.8939, abs=5e-5)


@pytest.mark.parametrize("kind", ["jitter", "dropped", "swapped"])
def test_perturbed_keypoints_give_the_pycocotools_stats(coco: COCO, kind: str) -> None:
    images = _perturbed(coco, kind)
    metric = COCOEvaluation(ANNOTATIONS, {1: 1}, iou_types=("keypoints",))
    output = _evaluate(metric, images)
    _assert_equal_stats(metric, output, _pycocotools_stats(coco, images))
    assert 0.1 < output["keypoints/AP"] < 0.88  # the perturbation costs AP: not a degenerate case


def test_boxes_and_keypoints_together(coco: COCO) -> None:
    images = _perturbed(coco, "jitter")
    metric = COCOEvaluation(ANNOTATIONS, {1: 1}, iou_types=("bbox", "keypoints"))
    output = _evaluate(metric, images)
    np.testing.assert_allclose(
        metric.last_stats["bbox"], _pycocotools_stats(coco, images, "bbox"), atol=1e-12
    )
    np.testing.assert_allclose(metric.last_stats["keypoints"], _pycocotools_stats(coco, images), atol=1e-12)
    assert {name for name in output if name.startswith("bbox/")} == {
        f"bbox/{n}" for n in ("AP", "AP50", "AP75", "APs", "APm", "APl")
    }
    # Boxes do not enter OKS: keypoints alone give the same keypoint stats.
    alone = COCOEvaluation(ANNOTATIONS, {1: 1}, iou_types=("keypoints",))
    without_boxes = [ImageKeypoints(i.image_id, i.keypoints, i.scores, i.boxes) for i in images]
    for image in without_boxes:
        alone.update([{k: v for k, v in image.prediction().items() if k != "boxes"}], [image.target()])
    alone.compute()
    np.testing.assert_array_equal(alone.last_stats["keypoints"], metric.last_stats["keypoints"])


def test_custom_oks_sigmas_are_used(coco: COCO) -> None:
    images = _perturbed(coco, "jitter")
    sigmas = [0.04] * 17
    metric = COCOEvaluation(ANNOTATIONS, {1: 1}, iou_types=("keypoints",), oks_sigmas=sigmas)
    output = _evaluate(metric, images)
    _assert_equal_stats(metric, output, _pycocotools_stats(coco, images, sigmas=sigmas))
    assert not np.allclose(metric.last_stats["keypoints"], _pycocotools_stats(coco, images))


def test_other_keypoint_counts_need_their_sigmas() -> None:
    """300W's 68 face keypoints in a COCO-style file: OKS with the dataset's sigmas, or a clear error."""
    if not FACES.is_file():
        pytest.skip(f"real 300W sample missing: {FACES}")
    faces = _load(FACES)
    rng = np.random.default_rng(4)
    images = []
    for image in _ground_truth(faces):
        keypoints = image.keypoints.copy()
        keypoints[..., :2] += rng.normal(0, 20, keypoints[..., :2].shape)
        images.append(
            ImageKeypoints(image.image_id, keypoints, rng.uniform(0.5, 1, len(keypoints)), image.boxes)
        )
    sigmas = list(rng.uniform(0.01, 0.05, 68))
    metric = COCOEvaluation(FACES, {1: 1}, iou_types=("keypoints",), oks_sigmas=sigmas)
    output = _evaluate(metric, images)
    _assert_equal_stats(metric, output, _pycocotools_stats(faces, images, sigmas=sigmas))
    assert 0.0 < output["keypoints/AP"] < 1.0

    with pytest.raises(ValueError, match=r"68 keypoints per instance, but without oks_sigmas COCO's 17"):
        COCOEvaluation(FACES, iou_types=("keypoints",)).update([images[0].prediction()], [images[0].target()])
    with pytest.raises(ValueError, match="68 keypoints per instance, but 17 oks_sigmas"):
        COCOEvaluation(FACES, iou_types=("keypoints",), oks_sigmas=[0.05] * 17).update(
            [images[0].prediction()], [images[0].target()]
        )


def test_faster_coco_eval_gives_the_pycocotools_keypoint_stats(coco: COCO) -> None:
    images = _perturbed(coco, "jitter")
    stats = {}
    for backend in ("pycocotools", "faster_coco_eval"):
        metric = COCOEvaluation(ANNOTATIONS, {1: 1}, iou_types=("keypoints",), backend=backend)
        _evaluate(metric, images)
        stats[backend] = metric.last_stats["keypoints"]
    np.testing.assert_allclose(stats["faster_coco_eval"], stats["pycocotools"], rtol=0, atol=1e-12)


def test_padding_duplicates_count_once_and_no_detections(coco: COCO) -> None:
    images = _perturbed(coco, "dropped")
    metric = COCOEvaluation(ANNOTATIONS, iou_types=("keypoints",))
    metric.update([images[0].prediction()], [images[0].target()])
    metric.update([images[1].prediction(), images[0].prediction()], [images[1].target(), images[0].target()])
    _assert_equal_stats(
        metric, {n: v.item() for n, v in metric.compute().items()}, _pycocotools_stats(coco, images[:2])
    )

    empty = ImageKeypoints(785, np.zeros((0, 17, 3)), np.zeros(0), np.zeros((0, 4)))  # one large person
    metric = COCOEvaluation(ANNOTATIONS, iou_types=("keypoints",))
    metric.update([empty.prediction()], [empty.target()])
    assert {n: v.item() for n, v in metric.compute().items()} == {
        **{f"keypoints/{n}": 0.0 for n in KEYPOINT_STAT_NAMES},
        "keypoints/APm": -1.0,
        "keypoints/ARm": -1.0,
    }


def test_bad_keypoint_predictions_get_a_clear_error(coco: COCO) -> None:
    image = _ground_truth(coco)[0]
    pred, target = image.prediction(), image.target()
    with pytest.raises(ValueError, match="no 'keypoints', needed for keypoint AP"):
        COCOEvaluation(ANNOTATIONS, iou_types=("keypoints",)).update([{**pred, "keypoints": None} and {
            k: v for k, v in pred.items() if k != "keypoints"}], [target])  # fmt: skip
    with pytest.raises(ValueError, match=r"keypoints must be \(1, K, 3\)"):
        COCOEvaluation(ANNOTATIONS, iou_types=("keypoints",)).update(
            [{**pred, "keypoints": pred["keypoints"][..., :2]}], [target]
        )
    with pytest.raises(ValueError, match="no 'boxes', needed for box AP"):
        COCOEvaluation(ANNOTATIONS, iou_types=("bbox", "keypoints")).update(
            [{k: v for k, v in pred.items() if k != "boxes"}], [target]
        )
    with pytest.raises(ValueError, match="iou_types must be a non-empty subset"):
        COCOEvaluation(ANNOTATIONS, iou_types=("keypoint",))


def test_written_keypoint_results_load_and_score_like_the_metric(coco: COCO, tmp_path: Path) -> None:
    images = _perturbed(coco, "swapped")
    results = [
        r for image in images for r in coco_keypoint_detections(image.prediction(), image.image_id, {1: 1})
    ]
    first = results[0]
    assert set(first) == {"image_id", "category_id", "keypoints", "score"}  # no "bbox": see keypoint_results
    assert len(first["keypoints"]) == 3 * 17 and all(isinstance(v, float) for v in first["keypoints"])
    path = tmp_path / "keypoints.json"
    path.write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(coco, coco.loadRes(str(path)), "keypoints")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    metric = COCOEvaluation(ANNOTATIONS, {1: 1}, iou_types=("keypoints",))
    _evaluate(metric, images)
    np.testing.assert_allclose(metric.last_stats["keypoints"], coco_eval.stats, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"keypoints must be \(N, K, 3\)"):
        keypoint_results([1], [1], np.zeros((1, 17, 2)), [1.0])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, port: int, shares: list[list[ImageKeypoints]], out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
        timeout=datetime.timedelta(seconds=60),
    )  # fmt: skip
    try:
        metric = COCOEvaluation(ANNOTATIONS, {1: 1}, iou_types=("bbox", "keypoints"))
        for image in shares[rank]:
            metric.update([image.prediction()], [image.target()])
        output = metric.compute()
        stats = {iou_type: torch.from_numpy(value) for iou_type, value in metric.last_stats.items()}
        torch.save({"output": output, "last_stats": stats}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_two_gloo_ranks_give_the_single_process_stats(coco: COCO, tmp_path: Path) -> None:
    """12 box and 10 keypoint stats broadcast from rank 0 in one buffer, split back on every rank."""
    images = _perturbed(coco, "jitter")
    shares = [images[:2], [*images[2:], images[0]]]  # rank 1 also repeats an image, as padding does
    mp.start_processes(_ddp_worker, args=(_free_port(), shares, str(tmp_path)), nprocs=2, start_method="fork")
    single = COCOEvaluation(ANNOTATIONS, {1: 1}, iou_types=("bbox", "keypoints"))
    expected = _evaluate(single, images)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert {k: v.item() for k, v in result["output"].items()} == expected
        for iou_type in ("bbox", "keypoints"):
            assert result["last_stats"][iou_type].tolist() == single.last_stats[iou_type].tolist()


def test_only_the_predicted_categories_are_scored(tmp_path: Path) -> None:
    """A top-down model of the synthetic world's stars, scored against the file of all four shape classes:
    the ground truth fed back per instance gives AP 1 for the stars, not a quarter of it for categories
    the model never predicts."""
    from datamodules.synthetic.coco_writer import write_coco_keypoints
    from datamodules.synthetic.keypoints import shape_keypoint_layout

    annotation_file = write_coco_keypoints(tmp_path, "val", num_images=12, image_size=128, seed=0)
    sigmas = shape_keypoint_layout("star").oks_sigmas
    stars = [a for a in json.loads(annotation_file.read_text())["annotations"] if a["category_id"] == 4]
    stars = [a for a in stars if not a["iscrowd"]]
    assert stars
    predictions, targets = [], []
    for star in stars:
        keypoints = torch.tensor(star["keypoints"], dtype=torch.float64).reshape(1, -1, 3)
        keypoints[..., :2] += COCO_PIXEL_INDEX_OFFSET  # a model's continuous coordinates
        keypoints[..., 2] = 1.0  # scores
        predictions.append(
            {"keypoints": keypoints, "scores": torch.ones(1), "labels": torch.ones(1, dtype=torch.int64)}
        )
        targets.append(
            {"image_id": torch.tensor(star["image_id"]), "annotation_ids": torch.tensor([star["id"]])}
        )
    scored = {}
    for name, mapping in (("stars", {1: 4}), ("every category", None)):
        metric = COCOEvaluation(
            annotation_file, mapping, ("keypoints",), oks_sigmas=sigmas, per_instance=True
        )
        labelled = predictions if mapping else [{**p, "labels": p["labels"] * 4} for p in predictions]
        metric.update(labelled, targets)
        scored[name] = float(metric.compute()["keypoints/AP"])
    assert scored["stars"] == pytest.approx(1.0)
    assert scored["every category"] < 0.5  # the other three categories' ground truth counts as missed
