"""VPSNet's cost per frame against its image network, measured in one process: the seconds per frame of
``VPSNet.track_video`` (flow network, fuse module with the previous frame, all heads on the fused levels,
track head association) against its own ``upsnet`` run frame by frame on the same frames (the issue's
baseline, before its mask-IoU linking, which costs next to nothing), and of VPSNet with fusion off (the
track head only) to split the cost. Eval mode, untrained weights (so ``--score-thresh`` lowers the
panoptic head's score threshold to keep a realistic number of detections tracked). Repeats alternate the
order so that machine noise hits all; medians and the ratios VPSNet / UPSNet are printed.

    python benchmarks/vpsnet.py [--frames 6] [--repeats 3] [--full-size --height 512 --width 1024]
        [--device cuda]

Default: the synthetic presets (``experiments/vpsnet/synthetic_model.yaml``) at 128 x 128; ``--full-size``:
the official Cityscapes FuseTrack model (``models.vpsnet.VPSNet()``) with images of ``--height`` x
``--width`` (the official test size is 1024 x 2048, slow on a CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import torch
from timing import timed

from models.vpsnet import VPSNet
from zoo.model_config import build_model

SYNTHETIC_MODEL = Path(__file__).resolve().parents[1] / "experiments" / "vpsnet" / "synthetic_model.yaml"


def build(full_size: bool, height: int) -> VPSNet:
    if not full_size:
        return build_model(SYNTHETIC_MODEL)
    model = VPSNet()
    model.detector.transform.min_size = (height,)
    model.detector.transform.max_size = 2 * height
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=6, help="frames per video")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--score-thresh", type=float, default=0.05)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build(args.full_size, args.height).eval().to(args.device)
    inference = model.upsnet.panoptic_inference
    model.upsnet.panoptic_inference = dataclasses.replace(inference, score_thresh=args.score_thresh)
    size = (args.height, args.width) if args.full_size else (128, 128)
    frames = [torch.rand(3, *size, device=args.device) for _ in range(args.frames)]

    def fuse_track() -> None:
        model.fusion = True
        model.track_video(frames)

    def track_only() -> None:
        model.fusion = False
        model.track_video(frames)

    def upsnet() -> None:
        for frame in frames:
            model.upsnet([frame])

    runs = {"VPSNet": fuse_track, "VPSNet, fusion off": track_only, "UPSNet frame by frame": upsnet}
    with torch.no_grad():
        for run in runs.values():  # warm-up
            run()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for repeat in range(args.repeats):
            order = list(runs.items())
            for name, run in order[repeat % len(order) :] + order[: repeat % len(order)]:
                times[name].append(timed(run, args.device) / args.frames)
    medians = {name: statistics.median(values) for name, values in times.items()}
    preset = "full size" if args.full_size else "synthetic preset"
    print(f"{preset}, {size[0]} x {size[1]}, {args.frames} frames, {args.repeats} repeats, {args.device}")
    for name, seconds in medians.items():
        print(f"{name:>24}: {seconds * 1000:9.1f} ms / frame")
    baseline = medians["UPSNet frame by frame"]
    print(f"VPSNet / UPSNet time per frame: {medians['VPSNet'] / baseline:.2f}x")
    print(f"VPSNet (fusion off) / UPSNet time per frame: {medians['VPSNet, fusion off'] / baseline:.2f}x")


if __name__ == "__main__":
    main()
