"""Three timings of the keypoint detectors, each against a reference measured in the same run (these
machines are noisy):

1. CenterNet's decode (3x3 max-pool NMS, top 100, offsets and sizes: ``models.centernet.decode_centers``)
   against the post-processing a box detector would need on the same outputs: every location above a
   score threshold becomes a box, then torchvision's ``batched_nms`` (IoU 0.5) and the best 100. The maps
   look like a trained network's: 50 objects' Gaussian bumps over low noise.
2. CenterNet against CornerNet inference on the same Hourglass-104 input (both full size; the paper:
   14 vs 4.1 fps on a Titan Xp, CornerNet with its flip test and soft-NMS). On a CPU the default input is
   smaller than the official 511/512 (``--size``).
3. Corner pooling by ``torch.cummax`` on flipped tensors (``models.corner_pooling``) against the official
   extension's algorithm: a loop along the axis taking the running maximum one row (column) at a time.
   (On a CPU the loop is the faster: ``cummax`` also computes the arg-max indices.)

    python benchmarks/keypoint_detectors.py [--size 255] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torchvision.ops import batched_nms

from models.centernet import CenterNet, decode_centers
from models.corner_pooling import corner_pool
from models.cornernet import CornerNet
from models.cornernet_hourglass import CornerNetHourglass
from models.keypoint_hourglass import CenterNetHourglass
from models.object_heatmaps import point_heatmaps


def median_time(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def threshold_and_nms(
    heat: torch.Tensor, sizes: torch.Tensor, offsets: torch.Tensor, threshold: float = 0.05
):
    """A box detector's post-processing of the same maps: all locations above ``threshold``, NMS, top 100."""
    batch, _, height, width = heat.shape
    results = []
    for i in range(batch):
        scores = heat[i].reshape(-1)
        keep = torch.where(scores > threshold)[0]
        labels, cells = keep // (height * width), keep % (height * width)
        ys, xs = (cells // width).float(), (cells % width).float()
        w, h = sizes[i, 0].reshape(-1)[cells], sizes[i, 1].reshape(-1)[cells]
        cx, cy = xs + offsets[i, 0].reshape(-1)[cells], ys + offsets[i, 1].reshape(-1)[cells]
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
        kept = batched_nms(boxes, scores[keep], labels, 0.5)[:100]
        results.append((boxes[kept], scores[keep][kept], labels[kept]))
    return results


def time_decode(repeats: int) -> None:
    generator = torch.Generator().manual_seed(0)
    # a trained network's look: 50 objects' Gaussian bumps (radius 2-6 cells) over low noise (< 0.02)
    points = torch.rand(1, 50, 2, generator=generator) * 128
    classes = torch.randint(0, 80, (1, 50), generator=generator)
    radii = torch.randint(2, 7, (1, 50), generator=generator)
    bumps = point_heatmaps(points, classes, radii, torch.ones(1, 50, dtype=torch.bool), 80, (128, 128))
    heat = torch.maximum(bumps * 0.9, torch.rand(1, 80, 128, 128, generator=generator) * 0.02)
    sizes = torch.rand(1, 2, 128, 128, generator=generator) * 30
    offsets = torch.rand(1, 2, 128, 128, generator=generator)
    ours = median_time(lambda: decode_centers(heat, sizes, offsets, 100), repeats)
    reference = median_time(lambda: threshold_and_nms(heat, sizes, offsets), repeats)
    candidates = int((heat > 0.05).sum())
    print(
        f"decode of 80 x 128 x 128 maps: CenterNet {ours * 1000:.1f} ms, threshold 0.05 + batched_nms "
        f"({candidates} candidate boxes) {reference * 1000:.1f} ms, "
        f"ratio NMS/CenterNet {reference / ours:.2f}x"
    )


def time_inference(size: int, repeats: int) -> None:
    torch.manual_seed(0)
    image = [torch.rand(3, size, size)]
    centernet = CenterNet(CenterNetHourglass(80), num_classes=80, input_size=size + 1).eval()
    cornernet = CornerNet(CornerNetHourglass(80), num_classes=80, input_size=size).eval()
    with torch.no_grad():
        center = median_time(lambda: centernet(image), repeats)
        corner = median_time(lambda: cornernet(image), repeats)
    print(
        f"Hourglass-104 inference at {size} px (CPU, {torch.get_num_threads()} threads): CenterNet "
        f"{center:.2f} s, CornerNet (flip test, soft-NMS) {corner:.2f} s, ratio CornerNet/CenterNet "
        f"{corner / center:.2f}x (paper: 14 / 4.1 = 3.41x fps)"
    )


def naive_scan_pool(vertical: torch.Tensor, horizontal: torch.Tensor) -> torch.Tensor:
    """Top-left pooling as the official extension computes it: a running maximum, one row (column) at a
    time from the far end."""
    down, across = vertical.clone(), horizontal.clone()
    for i in range(down.shape[2] - 2, -1, -1):
        down[:, :, i] = torch.maximum(down[:, :, i], down[:, :, i + 1])
    for j in range(across.shape[3] - 2, -1, -1):
        across[:, :, :, j] = torch.maximum(across[:, :, :, j], across[:, :, :, j + 1])
    return down + across


def time_corner_pooling(repeats: int) -> None:
    generator = torch.Generator().manual_seed(0)
    vertical, horizontal = (torch.randn(2, 128, 128, 128, generator=generator) for _ in range(2))
    assert torch.equal(corner_pool(vertical, horizontal, "top_left"), naive_scan_pool(vertical, horizontal))
    ours = median_time(lambda: corner_pool(vertical, horizontal, "top_left"), repeats)
    loop = median_time(lambda: naive_scan_pool(vertical, horizontal), repeats)
    print(
        f"corner pooling of 2 x 128 x 128 x 128: cummax {ours * 1000:.1f} ms, row-by-row loop "
        f"{loop * 1000:.1f} ms, ratio loop/cummax {loop / ours:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", type=int, default=255, help="CornerNet input side (CenterNet gets size + 1)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    time_decode(args.repeats)
    time_corner_pooling(args.repeats)
    time_inference(args.size, args.repeats)


if __name__ == "__main__":
    main()
