"""YolactEdge's premise (Liu et al. 2021, Sec. 3), measured in one process: the time of a non-keyframe
(backbone to C3, FeatFlowNet, warp of P4/P5 with scale and bias, P3 rebuild, SPA, then YOLACT's FPN
outputs, heads and protonet) against a keyframe (the full YOLACT network) of the same model at the same
input size. Full-size YolactEdge with untrained weights, eval mode, network outputs only (the detection
step after it, Fast NMS and mask assembly, is the same for both and left out). Repeats alternate which
goes first so that machine noise hits both; medians and the ratio non-keyframe / keyframe are printed
(goal: <= 0.6).

    python benchmarks/yolact_edge.py [--depth 50] [--size 550] [--images 1] [--repeats 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import timed

from models.yolact_edge import YolactEdge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--size", type=int, default=550)
    parser.add_argument("--images", type=int, default=1, help="frames per batch (videos in parallel)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = YolactEdge(backbone_depth=args.depth, image_size=args.size).eval().to(args.device)
    shape = (3, args.size, args.size)
    keyframe_images = [torch.rand(shape, device=args.device) for _ in range(args.images)]
    images = [torch.rand(shape, device=args.device) for _ in range(args.images)]
    with torch.no_grad():
        _, keyframe = model.forward_keyframe(keyframe_images)
        runs = {
            "keyframe": lambda: model.forward_keyframe(images),
            "non-keyframe": lambda: model.forward_non_keyframe(images, keyframe),
        }
        for run in runs.values():  # warm-up
            run()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for repeat in range(args.repeats):
            for name, run in list(runs.items())[:: 1 if repeat % 2 == 0 else -1]:
                times[name].append(timed(run, args.device))
    key, non_key = (statistics.median(times[name]) for name in runs)
    print(
        f"YolactEdge ResNet-{args.depth}, {args.images} image(s) of {args.size}x{args.size}, {args.device}, "
        f"{args.repeats} repeats"
    )
    print(
        f"keyframe: {key * 1000:.1f} ms   non-keyframe: {non_key * 1000:.1f} ms   "
        f"ratio non-keyframe / keyframe {non_key / key:.2f}x"
    )


if __name__ == "__main__":
    main()
