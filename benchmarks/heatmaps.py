"""The heatmap codec, vectorised against the straightforward per-keypoint loop, in one process: encode
and decode (each decoder) for a batch of 64 x 17 keypoints at 64x64 heatmaps (256x256 input, sigma 2),
medians of alternating repeats and their ratios (goal: >= 50x), and DARK's round-trip error in pixels.

    python benchmarks/heatmaps.py [--batch 64] [--keypoints 17] [--repeats 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from timing import timed

from models.heatmap_loops import decode_loop, encode_loop
from models.heatmaps import GaussianHeatmapCodec


def median_times(vectorised: Callable[[], object], loop: Callable[[], object], repeats: int, device: str):
    vectorised(), loop()  # warm-up
    times: dict[str, list[float]] = {"vectorised": [], "loop": []}
    for repeat in range(repeats):
        order = [("vectorised", vectorised), ("loop", loop)][:: 1 if repeat % 2 == 0 else -1]
        for name, function in order:
            times[name].append(timed(function, device))
    return statistics.median(times["vectorised"]), statistics.median(times["loop"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--keypoints", type=int, default=17)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(args.batch, args.keypoints, 2, generator=generator) * 192 + 32
    keypoints = torch.cat([xy, torch.full((args.batch, args.keypoints, 1), 2.0)], -1).to(args.device)
    keypoints_numpy = keypoints[:, None].cpu().numpy()
    print(f"{args.batch} x {args.keypoints} keypoints, 256x256 input, 64x64 heatmaps, {args.device}")
    print(f"{'operation':<22}{'vectorised ms':>15}{'loop ms':>12}{'speed-up':>10}")
    codec = GaussianHeatmapCodec((256, 256), (64, 64))
    with torch.no_grad():
        fast, slow = median_times(
            lambda: codec.encode(keypoints),
            lambda: encode_loop(keypoints_numpy, codec),
            args.repeats,
            args.device,
        )
        print(f"{'encode':<22}{fast * 1e3:>15.2f}{slow * 1e3:>12.1f}{slow / fast:>9.0f}x")
        heatmaps = codec.encode(keypoints)[0]
        heatmaps_numpy = heatmaps.cpu().numpy()
        for decoder in ("argmax", "dark", "soft_argmax"):
            decoding = GaussianHeatmapCodec((256, 256), (64, 64), decoder=decoder)
            fast, slow = median_times(
                lambda d=decoding: d.decode(heatmaps),
                lambda d=decoding: decode_loop(heatmaps_numpy, d),
                args.repeats,
                args.device,
            )
            print(f"{'decode ' + decoder:<22}{fast * 1e3:>15.2f}{slow * 1e3:>12.1f}{slow / fast:>9.0f}x")
            decoded, _ = decoding.decode(heatmaps)
            error = (decoded - keypoints[..., :2]).norm(dim=-1)
            print(f"  round-trip error: mean {error.mean():.4f} px, max {error.max():.4f} px")


if __name__ == "__main__":
    main()
