"""YOLACT's premise, measured in one process: inference time of YOLACT against the project's Mask R-CNN
on the same images at the same input size (both full size with untrained weights, same ResNet depth,
eval mode, masks pasted at image size), and Fast NMS against torchvision's ``batched_nms`` on the same
19,248 anchors x 80 classes. Repeats alternate which goes first so that machine noise hits both;
medians and their ratios are printed.

    python benchmarks/yolact.py [--depth 50] [--size 550] [--images 2] [--repeats 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from models.fast_nms import fast_nms, greedy_nms
from models.mask_rcnn import MaskRCNN
from models.yolact import Yolact


def timed(function, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.no_grad():
        function()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def compare(name_a, run_a, name_b, run_b, repeats, device):
    times = {name_a: [], name_b: []}
    with torch.no_grad():  # warm-up
        run_a(), run_b()
    for repeat in range(repeats):
        order = [(name_a, run_a), (name_b, run_b)][:: 1 if repeat % 2 == 0 else -1]
        for name, run in order:
            times[name].append(timed(run, device))
    median_a, median_b = statistics.median(times[name_a]), statistics.median(times[name_b])
    print(
        f"{name_a}: {median_a * 1000:.1f} ms   {name_b}: {median_b * 1000:.1f} ms   "
        f"ratio {median_b / median_a:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--size", type=int, default=550)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = args.device
    yolact = Yolact(backbone_depth=args.depth, image_size=args.size).eval().to(device)
    mask_rcnn = MaskRCNN(num_classes=80, backbone_depth=args.depth, min_size=args.size, max_size=args.size)
    mask_rcnn = mask_rcnn.eval().to(device)
    images = [torch.rand(3, args.size, args.size, device=device) for _ in range(args.images)]
    print(
        f"ResNet-{args.depth}, {args.images} images of {args.size}x{args.size}, {device}, "
        f"{args.repeats} repeats"
    )
    compare("YOLACT", lambda: yolact(images), "Mask R-CNN", lambda: mask_rcnn(images), args.repeats, device)

    anchors, classes = 19248, 80
    centres = torch.rand(anchors, 2, device=device) * args.size
    sides = 8 + torch.rand(anchors, 2, device=device) * 200
    boxes = torch.cat([centres - sides / 2, centres + sides / 2], dim=1)
    scores = torch.randn(classes + 1, anchors, device=device).mul(3).softmax(dim=0)[1:]
    compare(
        "Fast NMS",
        lambda: fast_nms(boxes, scores),
        "batched_nms",
        lambda: greedy_nms(boxes, scores),
        args.repeats * 5,
        device,
    )


if __name__ == "__main__":
    main()
