"""Two timings, each against a reference measured in the same run (these machines are noisy):

1. PQ: ``metrics.panoptic_quality.PanopticQuality`` against the reference ``pq_compute`` (panopticapi's, as
   cityscapesscripts ships it: ``pq_compute_single_core`` + ``average_pq``, one process) on the same
   predictions -- synthetic val images (200 of 128 px by default) and predictions made from their ground
   truth (segments shifted by a few pixels, the last segment of every other image left void), written as
   COCO panoptic PNG + JSON. Both read the PNGs from disk; the ratio is reference / ours (> 1: ours is
   faster), and the two PQs must agree to 1e-9. Also ours on the same maps already in memory (no PNGs
   read), the metric's cost in validation.
2. Inference: UPSNet against the Mask R-CNN it is built on (the same detector, weights shared), eval mode,
   the same images; the ratio is UPSNet / Mask R-CNN seconds per image.

    python benchmarks/panoptic.py --images 200 --repeats 3 [--size 128] [--batch-size 8] [--full-size]

``--full-size`` times inference with the full-size R50 models at 800 px (slow on a CPU) instead of the
small synthetic presets at 128 px.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from datamodules.coco_panoptic_png import read_coco_panoptic_png, write_coco_panoptic_png
from datamodules.synthetic.coco_writer import write_coco_split
from datamodules.synthetic.panoptic import panoptic_categories
from metrics.panoptic_quality import PanopticQuality, PanopticSegmentation
from models.mask_rcnn import MaskRCNN
from models.upsnet import UPSNet

SYNTHETIC_MODEL = Path(__file__).resolve().parents[1] / "experiments" / "upsnet" / "synthetic_model.yaml"


def write_predictions(data: Path, gt: dict) -> Path:
    """Shifted copies of the ground truth (every other image without its last segment) as COCO panoptic
    results under ``data / "pred"``; returns the JSON."""
    folder = data / "pred"
    folder.mkdir()
    annotations = []
    for index, annotation in enumerate(gt["annotations"]):
        ids = read_coco_panoptic_png(data / "annotations" / "panoptic_val" / annotation["file_name"])
        ids = torch.roll(ids, shifts=(2, 3), dims=(0, 1))
        segments = [dict(s) for s in annotation["segments_info"]]
        if index % 2 and len(segments) > 1:
            ids[ids == segments.pop()["id"]] = 0
        write_coco_panoptic_png(ids, folder / annotation["file_name"])
        annotations.append({**annotation, "segments_info": segments})
    path = data / "pred.json"
    path.write_text(json.dumps({"annotations": annotations}))
    return path


def reference_pq(data: Path, gt: dict, pred_json: Path) -> float:
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as reference

    pred = {a["image_id"]: a for a in json.loads(pred_json.read_text())["annotations"]}
    pairs = [(a, pred[a["image_id"]]) for a in gt["annotations"]]
    categories = {c["id"]: c for c in gt["categories"]}
    stat = reference.pq_compute_single_core(
        0, pairs, str(data / "annotations" / "panoptic_val"), str(data / "pred"), categories
    )
    return reference.average_pq(stat, categories)["All"]["pq"]


def read_segmentations(data: Path, annotations: list[dict], pred: dict[int, dict]) -> list[tuple]:
    """(prediction, ground truth, image id) of each annotated image, read from its PNGs."""
    pairs = []
    for annotation in annotations:
        name = annotation["file_name"]
        prediction = PanopticSegmentation.from_coco(
            read_coco_panoptic_png(data / "pred" / name), pred[annotation["image_id"]]["segments_info"]
        )
        target = PanopticSegmentation.from_coco(
            read_coco_panoptic_png(data / "annotations" / "panoptic_val" / name), annotation["segments_info"]
        )
        pairs.append((prediction, target, annotation["image_id"]))
    return pairs


def update(metric: PanopticQuality, pairs: list[tuple]) -> None:
    predictions, targets, image_ids = zip(*pairs, strict=True)
    metric.update(list(predictions), list(targets), image_ids=list(image_ids))


def our_pq(data: Path, gt: dict, pred_json: Path, batch_size: int) -> float:
    """From the files, as the reference: ``batch_size`` images read, then given to the metric in one
    update, as the panoptic module's validation steps do."""
    metric = PanopticQuality({c["id"]: bool(c["isthing"]) for c in gt["categories"]})
    pred = {a["image_id"]: a for a in json.loads(pred_json.read_text())["annotations"]}
    annotations = gt["annotations"]
    for start in range(0, len(annotations), batch_size):
        update(metric, read_segmentations(data, annotations[start : start + batch_size], pred))
    return float(metric.compute()["PQ"])


def pq_in_memory(pairs: list[tuple], categories: list[dict], batch_size: int) -> float:
    """The same updates on segmentations already in memory (no PNGs read)."""
    metric = PanopticQuality({c["id"]: bool(c["isthing"]) for c in categories})
    for start in range(0, len(pairs), batch_size):
        update(metric, pairs[start : start + batch_size])
    return float(metric.compute()["PQ"])


def time_pq(images: int, repeats: int, size: int, batch_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        write_coco_split(data, "val", images, image_size=size, seed=0, keypoints=False, panoptic=True)
        gt = json.loads((data / "annotations" / "panoptic_val.json").read_text())
        gt["categories"] = panoptic_categories()
        pred_json = write_predictions(data, gt)
        pred = {a["image_id"]: a for a in json.loads(pred_json.read_text())["annotations"]}
        in_memory = read_segmentations(data, gt["annotations"], pred)
        times: dict[str, list[float]] = {"reference": [], "ours": [], "in memory": []}
        values: dict[str, float] = {}
        for i in range(repeats):
            order = [
                ("reference", lambda: reference_pq(data, gt, pred_json)),
                ("ours", lambda: our_pq(data, gt, pred_json, batch_size)),
                ("in memory", lambda: pq_in_memory(in_memory, gt["categories"], batch_size)),
            ]
            for name, function in order if i % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                values[name] = function()
                times[name].append(time.perf_counter() - start)
    reference, ours, in_memory_time = (statistics.median(times[n]) for n in times)
    print(
        f"PQ on {images} images of {size} px (ours updated {batch_size} at a time): "
        f"reference {values['reference']:.6f}, ours {values['ours']:.6f}"
    )
    assert all(abs(values["reference"] - v) < 1e-9 for v in values.values()), "the PQs disagree"
    print(
        f"PQ time: reference {reference:.3f} s, ours {ours:.3f} s, "
        f"ratio reference/ours {reference / ours:.2f}x"
    )
    print(
        f"PQ time of ours on maps already in memory (validation's case, no PNGs read): "
        f"{in_memory_time:.3f} s, {in_memory_time / ours:.0%} of ours from the files"
    )


def models(full_size: bool) -> tuple[MaskRCNN, UPSNet, int]:
    """Mask R-CNN and the UPSNet built on that very detector, and the image size to time them at."""
    if full_size:
        detector = MaskRCNN(num_classes=80, fpn_global_context=True)
        return detector, UPSNet(detector), 800
    settings = dict(yaml.safe_load(SYNTHETIC_MODEL.read_text())["init_args"])
    detector = MaskRCNN(**settings.pop("detector")["init_args"])
    return detector, UPSNet(detector, **settings), 128


def time_inference(full_size: bool, images: int, repeats: int) -> None:
    torch.manual_seed(0)
    detector, upsnet, size = models(full_size)
    detector.eval()
    upsnet.eval()
    batch = [torch.rand(3, size, size) for _ in range(images)]
    times: dict[str, list[float]] = {"Mask R-CNN": [], "UPSNet": []}
    with torch.no_grad():
        for i in range(repeats):
            order = [("Mask R-CNN", detector), ("UPSNet", upsnet)]
            for name, model in order if i % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                for image in batch:
                    model([image])
                times[name].append((time.perf_counter() - start) / images)
    mask_rcnn, ups = (statistics.median(times[n]) for n in ("Mask R-CNN", "UPSNet"))
    print(
        f"inference at {size} px ({images} images): Mask R-CNN {mask_rcnn * 1000:.1f} ms/image, "
        f"UPSNet {ups * 1000:.1f} ms/image, ratio UPSNet/Mask R-CNN {ups / mask_rcnn:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200, help="synthetic val images for the PQ timing")
    parser.add_argument("--inference-images", type=int, default=20, help="images per inference timing")
    parser.add_argument("--size", type=int, default=128, help="synthetic image size for the PQ timing")
    parser.add_argument("--batch-size", type=int, default=8, help="images per PQ update (ours)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-size", action="store_true", help="time the full-size R50 models at 800 px")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    time_pq(args.images, args.repeats, args.size, args.batch_size)
    time_inference(args.full_size, args.inference_images, args.repeats)


if __name__ == "__main__":
    main()
