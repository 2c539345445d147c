"""RetinaFace inference time: MobileNet-0.25 against ResNet-50 (the implementation's two configurations) on
the same 640 x 640 image, eval mode; the ratio is ResNet-50 / MobileNet-0.25 seconds per image, both
measured in this run (these machines are noisy). Timed: the network's forward pass (backbone, FPN, SSH,
heads). The decode and NMS that follow depend on how many priors score above 0.02 -- with untrained
weights every one of the 16,800 does, and NMS of them would dominate both timings.

    python benchmarks/retinaface.py [--size 640] [--repeats 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from models.retinaface import RetinaFace
from models.retinaface_network import RetinaFaceNetwork


def seconds_per_image(model: RetinaFaceNetwork, image: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        model(image)  # warm-up
        if image.is_cuda:
            torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(image)
            if image.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    # the implementation's input: BGR minus its mean, on the 0-255 scale
    image = (
        RetinaFace(RetinaFaceNetwork("mobilenet0.25"))
        .to(args.device)
        .transform.eval()([torch.rand(3, args.size, args.size, device=args.device)])
    )
    times = {}
    for backbone in ("mobilenet0.25", "resnet50"):
        model = RetinaFaceNetwork(backbone).eval().to(args.device)
        times[backbone] = seconds_per_image(model, image, args.repeats)
    mobile, resnet = times["mobilenet0.25"], times["resnet50"]
    print(
        f"RetinaFace network at {args.size} x {args.size} on {args.device}: "
        f"MobileNet-0.25 {mobile * 1000:.1f} ms, "
        f"ResNet-50 {resnet * 1000:.1f} ms, ratio ResNet-50/MobileNet-0.25 {resnet / mobile:.2f}x"
    )


if __name__ == "__main__":
    main()
