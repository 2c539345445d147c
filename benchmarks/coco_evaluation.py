"""Time of ``COCOEvaluation.compute()`` (COCOeval, box and mask) with pycocotools against faster-coco-eval,
on the same detections in the same process: a synthetic val split (2,000 images of 128 px by default,
seed 0) and detections made from its ground truth by ``metrics.simulated_detections`` (jittered boxes,
shifted/eroded/dilated masks, misses, false positives). Each repeat times both backends, alternating
which goes first, so that machine noise hits both. Prints the seconds per compute and the ratio
pycocotools/faster-coco-eval of the medians.

    python benchmarks/coco_evaluation.py --images 2000 --repeats 3 [--data DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from datamodules.synthetic.coco_writer import write_coco_instances
from metrics.coco_evaluation import BACKENDS, COCOEvaluation
from metrics.simulated_detections import ImageDetections, as_prediction, perturbed_ground_truth

SPLIT = "val"


def annotation_file(data: Path, images: int, image_size: int, seed: int) -> Path:
    """The split's annotation file under ``data``, written first unless ``data`` already holds it."""
    path = data / "annotations" / f"instances_{SPLIT}.json"
    if path.is_file():
        print(f"using {path}")
        return path
    start = time.perf_counter()
    path = write_coco_instances(data, SPLIT, num_images=images, image_size=image_size, seed=seed)
    print(f"wrote {images} synthetic {SPLIT} images to {data} in {time.perf_counter() - start:.1f} s")
    return path


def batches(iterator: Iterator[ImageDetections], size: int) -> Iterator[list[ImageDetections]]:
    while batch := list(islice(iterator, size)):
        yield batch


def updated_metrics(annotations: Path, seed: int, batch_size: int) -> dict[str, COCOEvaluation]:
    """One metric per backend, all updated with the same detections. ``compute_with_cache=False`` so
    that every ``compute()`` runs COCOeval again."""
    metrics = {b: COCOEvaluation(annotations, backend=b, compute_with_cache=False) for b in BACKENDS}
    coco = metrics["pycocotools"].coco_gt
    detections = 0
    for batch in batches(perturbed_ground_truth(coco, seed), batch_size):
        preds = [as_prediction(image) for image in batch]
        targets = [{"image_id": torch.tensor(image.image_id)} for image in batch]
        detections += sum(len(image.scores) for image in batch)
        for metric in metrics.values():
            metric.update(preds, targets)
    print(f"{len(coco.imgs)} images, {len(coco.anns)} ground-truth objects, {detections} detections")
    return metrics


def time_computes(metrics: dict[str, COCOEvaluation], repeats: int) -> dict[str, list[float]]:
    """Seconds per ``compute()`` of each metric, alternating their order every repeat."""
    times: dict[str, list[float]] = {name: [] for name in metrics}
    names = list(metrics)
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            with contextlib.redirect_stdout(io.StringIO()):
                start = time.perf_counter()
                metrics[name].compute()
                times[name].append(time.perf_counter() - start)
    return times


def check_agreement(metrics: dict[str, COCOEvaluation]) -> float:
    """The largest difference between the backends' stats (both IoU types, all 12 stats)."""
    reference, other = (metrics[name].last_stats for name in BACKENDS)
    return max(float(np.abs(reference[t] - other[t]).max()) for t in reference)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000, help="synthetic val images to write")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and of the detections")
    parser.add_argument("--repeats", type=int, default=3, help="timed compute() calls per backend")
    parser.add_argument("--batch-size", type=int, default=16, help="images per update()")
    parser.add_argument(
        "--data", type=Path, default=None, help="keep the synthetic split here (reused if present)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data if args.data is not None else Path(tmp)
        annotations = annotation_file(data, args.images, args.image_size, args.seed)
        metrics = updated_metrics(annotations, args.seed, args.batch_size)
        print(f"repeats={args.repeats} cpus={os.cpu_count()} torch_threads={torch.get_num_threads()}")
        times = time_computes(metrics, args.repeats)
    for name, seconds in times.items():
        listed = " ".join(f"{s:.2f}" for s in seconds)
        print(f"{name:>16}: median {statistics.median(seconds):7.2f} s per compute  (each: {listed})")
    ratio = statistics.median(times["pycocotools"]) / statistics.median(times["faster_coco_eval"])
    print(f"ratio pycocotools/faster_coco_eval: {ratio:.2f}")
    print(f"largest stats difference between the backends: {check_agreement(metrics):.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
