"""Speed of ``models.mask_rcnn.MaskRCNN`` against torchvision's Mask R-CNN R50-FPN (frozen BN, 3
trainable stages, i.e. ``maskrcnn_resnet50_fpn``'s fine-tuning configuration) built from the same
state dict and run on the same inputs in the same process, alternating the two models every
iteration so that machine noise hits both. Prints ms/iteration and the ratio ours/torchvision for a
train step (forward + backward + SGD step) and for inference (goal: both ratios <= 1.05).

    python benchmarks/mask_rcnn.py --device cpu --iters 5 --image-size 320 --batch-size 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN as TorchvisionMaskRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from models.mask_rcnn import MaskRCNN


def make_batch(
    batch_size: int, image_size: int, objects: int, device: torch.device, seed: int = 0
) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """Random images with ``objects`` random rectangles each (boxes, labels, filled masks)."""
    generator = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(batch_size):
        corners = torch.rand(objects, 2, 2, generator=generator) * image_size
        boxes = torch.cat([corners.min(dim=1).values, corners.max(dim=1).values + 8], dim=1)
        boxes = boxes.clamp(max=image_size).floor()
        masks = torch.zeros(objects, image_size, image_size, dtype=torch.uint8)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist(), strict=True):
            mask[y0:y1, x0:x1] = 1
        labels = torch.randint(1, 91, (objects,), generator=generator)
        images.append(torch.rand(3, image_size, image_size, generator=generator).to(device))
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device), "masks": masks.to(device)})
    return images, targets


def build_models(image_size: int, score_thresh: float, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(ours, torchvision) with identical weights, resizing to ``image_size``."""
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3)
    reference = TorchvisionMaskRCNN(
        backbone, num_classes=91, min_size=image_size, max_size=image_size, box_score_thresh=score_thresh
    )
    ours = MaskRCNN(min_size=image_size, max_size=image_size, box_score_thresh=score_thresh)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours.to(device), reference.to(device)


def time_alternating(
    steps: dict[str, Callable[[int], None]], iters: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Milliseconds per call of each step, alternating the steps (and their order) every iteration."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for i in range(warmup + iters):
        for name in names if i % 2 == 0 else names[::-1]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            steps[name](i)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per model")
    parser.add_argument("--image-size", type=int, default=800, help="images are square, resized to this")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--objects", type=int, default=4, help="ground-truth objects per image")
    parser.add_argument(
        "--score-thresh",
        type=float,
        default=0.0,
        help="box score threshold of both models; randomly initialised models score every class near "
        "1/91, so 0 keeps the usual 100 detections per image (and their mask pasting) in the timing",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ours, reference = build_models(args.image_size, args.score_thresh, device)
    networks = {"ours": ours, "torchvision": reference}
    images, targets = make_batch(args.batch_size, args.image_size, args.objects, device)
    optimizers = {
        name: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        for name, m in networks.items()
    }

    def train_step(name: str) -> Callable[[int], None]:
        def step(i: int) -> None:
            torch.manual_seed(i)  # both models sample the same anchors and RoIs
            losses = networks[name](images, targets)
            optimizers[name].zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizers[name].step()

        return step

    def inference_step(name: str) -> Callable[[int], None]:
        def step(i: int) -> None:
            with torch.no_grad():
                networks[name](images)

        return step

    print(
        f"device={device} batch={args.batch_size} image={args.image_size}px iters={args.iters} "
        f"warmup={args.warmup} threads={torch.get_num_threads()}"
    )
    for model in networks.values():
        model.train()
    train = time_alternating({n: train_step(n) for n in networks}, args.iters, args.warmup, device)
    for model in networks.values():
        model.eval()
    with torch.no_grad():
        detections = sum(len(d["boxes"]) for d in ours(images))
    infer = time_alternating({n: inference_step(n) for n in networks}, args.iters, args.warmup, device)
    print(f"inference detections per batch: {detections}")
    for label, times in (("train step", train), ("inference", infer)):
        ours_ms, reference_ms = statistics.median(times["ours"]), statistics.median(times["torchvision"])
        print(
            f"{label:>10}: ours {ours_ms:8.1f} ms/iter  torchvision {reference_ms:8.1f} ms/iter  "
            f"ratio {ours_ms / reference_ms:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
