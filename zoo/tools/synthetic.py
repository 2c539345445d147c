"""``zoo synthetic``: write the synthetic world as a COCO instances and keypoints dataset (train and val
splits).

Layout under ``--out``: ``images/{train,val}/<image_id:06d>.png``,
``annotations/instances_{train,val}.json`` and, from the same rendering,
``annotations/keypoints_{train,val}.json`` (COCO keypoint format; the keypoints of each class are defined in
``datamodules.synthetic.keypoints``). The val split uses its own seed stream, so it never repeats train
images; the same arguments always give byte-identical files.
"""

import argparse
from pathlib import Path

from datamodules.synthetic.coco_writer import write_coco_split
from datamodules.synthetic.world import SceneConfig


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo synthetic",
        description="Write the synthetic world as COCO instances and keypoints (train and val splits).",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--train-images", type=_non_negative, default=1000, help="number of train images")
    parser.add_argument("--val-images", type=_non_negative, default=200, help="number of val images")
    parser.add_argument("--size", type=int, default=128, help="image width and height in pixels (>= 32)")
    parser.add_argument("--seed", type=_non_negative, default=0, help="random seed")
    parser.add_argument(
        "--crowd-prob",
        type=_probability,
        default=SceneConfig.crowd_prob,
        help="probability that an image gets one iscrowd region",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.size < 32:
        build_parser().error(f"--size must be >= 32, got {args.size}")
    config = SceneConfig(crowd_prob=args.crowd_prob)
    for split, count in (("train", args.train_images), ("val", args.val_images)):
        files = write_coco_split(
            args.out, split, count, image_size=args.size, seed=args.seed, config=config, progress=True
        )
        print(
            f"{split}: {count} images in {args.out / 'images' / split}, "
            f"annotations {files.instances} and {files.keypoints}"
        )
    return 0
