"""``zoo synthetic``: write the synthetic world in real dataset formats (train and val splits).

``--formats`` picks them (comma list, default ``coco``); under ``--out``:

- ``coco``: ``images/{train,val}/<image_id:06d>.png``, ``annotations/instances_{train,val}.json`` and, from
  the same rendering, ``annotations/keypoints_{train,val}.json`` (COCO keypoint format; the keypoints of
  each class are defined in ``datamodules.synthetic.keypoints``);
- ``panoptic``: the same ``images`` and ``instances`` files and, from the same rendering,
  ``annotations/panoptic_{train,val}.json`` and ``annotations/panoptic_{train,val}/<image_id:06d>.png``
  (COCO panoptic format: things and stuff segments, a void band around things; rules in
  ``datamodules.synthetic.panoptic``); with ``coco`` too, each scene is rendered once for both;
- ``densepose``: the same ``images`` and ``instances`` files and ``annotations/densepose_{train,val}.json``,
  the instances with DensePose-COCO fields (4 chart parts per thing: ``datamodules.synthetic.densepose``);
- ``pix2pix``: ``pix2pix/{train,val}/<id>.png`` A|B pairs, label map | photo;
- ``cyclegan``: ``cyclegan/{trainA,trainB,testA,testB}/<id>.png``, two unpaired colour styles (test = the
  val count);
- ``sr``: ``sr/{train,val}/<id>.png`` high-resolution renders;
- ``style``: ``style/{train,val}/<id>.png`` content renders and ``style/style.png``;
- ``classes``: ``classes/{train,val}/<class_name>/<id>.png``, one centred 32 x 32 thing per image, the
  train and val counts split evenly over the classes
(``datamodules.synthetic.image_layouts``);
- ``faces``: ``faces/{train,val}/images/<id>.png`` and ``faces/{train,val}/label.txt``, 1-5 faces with 5
  landmarks per image in RetinaFace's WIDER FACE layout (``datamodules.synthetic.faces``);
- ``ytvis``: the world in motion (``datamodules.synthetic.video``) in the YouTube-VIS layout:
  ``ytvis/{train,val}/JPEGImages/<video_id:06d>/<t:05d>.jpg`` and
  ``ytvis/annotations/instances_{train,val}.json``
  (``--train-videos``/``--val-videos`` videos of ``--video-frames`` frames; ``--flow flo|npy`` adds the
  ground-truth optical flow ``ytvis/{train,val}/Flow/<video_id:06d>/<t:05d>.<flo|npy>`` of frame t -> t + 1;
  ``datamodules.synthetic.youtube_vis_writer``);
- ``cityscapes_vps``: the world in motion as video panoptic segmentation in the Cityscapes-VPS layout:
  ``cityscapes_vps/{train,val}/img/<image_id>_leftImg8bit.png``,
  ``cityscapes_vps/{train,val}/panoptic_video/<image_id>_gtFine_color.png`` and
  ``cityscapes_vps/panoptic_gt_{train,val}_city_vps.json`` (segment ids persist over a video's frames;
  ``--train-videos``/``--val-videos`` videos of ``--video-frames`` frames;
  ``datamodules.synthetic.cityscapes_vps_writer``).
Every split and layout uses its own seed stream, so val never repeats train images; the same arguments
always give byte-identical files.
"""

import argparse
from pathlib import Path

from datamodules.synthetic.cityscapes_vps_writer import write_cityscapes_vps_split
from datamodules.synthetic.coco_writer import write_coco_split
from datamodules.synthetic.faces import write_face_split
from datamodules.synthetic.image_layouts import (
    write_class_images_split,
    write_cyclegan_split,
    write_pix2pix_split,
    write_style_transfer,
    write_super_resolution_split,
)
from datamodules.synthetic.world import THING_CLASSES, SceneConfig
from datamodules.synthetic.youtube_vis_writer import FLOW_FORMATS, write_youtube_vis_split

FORMATS = (
    "coco",
    "panoptic",
    "densepose",
    "pix2pix",
    "cyclegan",
    "sr",
    "style",
    "classes",
    "faces",
    "ytvis",
    "cityscapes_vps",
)
COCO_FORMATS = ("coco", "panoptic", "densepose")  # written together by ``write_coco_split``


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


def _formats(text: str) -> list[str]:
    formats = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(FORMATS)}, got {text!r}")
    return list(dict.fromkeys(formats))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo synthetic",
        description="Write the synthetic world in real dataset formats (train and val splits).",
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
        help="probability that an image gets one iscrowd region (coco, panoptic)",
    )
    parser.add_argument(
        "--train-videos",
        type=_non_negative,
        default=100,
        help="number of train videos (ytvis, cityscapes_vps)",
    )
    parser.add_argument(
        "--val-videos", type=_non_negative, default=20, help="number of val videos (ytvis, cityscapes_vps)"
    )
    parser.add_argument(
        "--video-frames", type=int, default=20, help="frames per video (ytvis, cityscapes_vps, >= 1)"
    )
    parser.add_argument(
        "--flow", choices=FLOW_FORMATS, default=None, help="also write ground-truth optical flow (ytvis)"
    )
    parser.add_argument(
        "--formats",
        type=_formats,
        default=["coco"],
        help=f"comma list of formats to write, from {','.join(FORMATS)} (default: coco)",
    )
    return parser


def _write_coco(args: argparse.Namespace) -> None:
    """The COCO formats asked for (``COCO_FORMATS``), each scene rendered once for all of them."""
    config = SceneConfig(crowd_prob=args.crowd_prob)
    keypoints, panoptic, densepose = (name in args.formats for name in ("coco", "panoptic", "densepose"))
    for split, count in (("train", args.train_images), ("val", args.val_images)):
        files = write_coco_split(
            args.out,
            split,
            count,
            image_size=args.size,
            seed=args.seed,
            config=config,
            progress=True,
            keypoints=keypoints,
            panoptic=panoptic,
            densepose=densepose,
        )
        written = [str(path) for path in files if path is not None]
        print(f"{split}: {count} images in {args.out / 'images' / split}, annotations {', '.join(written)}")
        if files.panoptic is not None:
            print(f"{split}: panoptic PNGs in {files.panoptic.with_suffix('')}")


def _write_image_layout(layout: str, args: argparse.Namespace) -> None:
    """One of the generative family's layouts under ``--out/<layout>``, with one summary line per split."""
    root, size, seed = args.out / layout, args.size, args.seed
    if layout == "style":
        style = write_style_transfer(root, args.train_images, args.val_images, size, seed, progress=True)
        print(
            f"style: {args.train_images} train and {args.val_images} val content images in "
            f"{root / 'train'} and {root / 'val'}, style image {style}"
        )
        return
    for split, count in (("train", args.train_images), ("val", args.val_images)):
        if layout == "pix2pix":
            folder = write_pix2pix_split(root, split, count, size, seed, progress=True)
            print(f"pix2pix {split}: {count} A|B pairs (label map | photo) in {folder}")
        elif layout == "cyclegan":
            phase = "train" if split == "train" else "test"
            a, b = write_cyclegan_split(root, phase, count, count, size, seed, progress=True)
            print(f"cyclegan {phase}: {count} domain A images in {a}, {count} domain B images in {b}")
        elif layout == "faces":
            label_file = write_face_split(root, split, count, size, seed)
            print(
                f"faces {split}: {count} images in {label_file.parent / 'images'}, annotations {label_file}"
            )
        elif layout == "sr":
            folder = write_super_resolution_split(root, split, count, size, seed, progress=True)
            print(f"sr {split}: {count} high-resolution images in {folder}")
        else:
            per_class = count // len(THING_CLASSES)
            folder = write_class_images_split(root, split, per_class, seed=seed, progress=True)
            print(f"classes {split}: {per_class} images per class ({len(THING_CLASSES)} classes) in {folder}")


def _write_youtube_vis(args: argparse.Namespace) -> None:
    """The world in motion under ``--out/ytvis``, with one summary line per split."""
    root = args.out / "ytvis"
    for split, count in (("train", args.train_videos), ("val", args.val_videos)):
        path = write_youtube_vis_split(
            root, split, count, args.video_frames, args.size, args.seed, flow=args.flow, progress=True
        )
        flow = f", flow in {root / split / 'Flow'}" if args.flow else ""
        print(
            f"ytvis {split}: {count} videos of {args.video_frames} frames in {root / split / 'JPEGImages'}, "
            f"annotations {path}{flow}"
        )


def _write_cityscapes_vps(args: argparse.Namespace) -> None:
    """The world in motion as video panoptic segmentation under ``--out/cityscapes_vps``."""
    root = args.out / "cityscapes_vps"
    for split, count in (("train", args.train_videos), ("val", args.val_videos)):
        path = write_cityscapes_vps_split(
            root, split, count, args.video_frames, args.size, args.seed, progress=True
        )
        print(
            f"cityscapes_vps {split}: {count} videos of {args.video_frames} frames in "
            f"{root / split / 'img'}, panoptic PNGs in {root / split / 'panoptic_video'}, annotations {path}"
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.size < 32:
        build_parser().error(f"--size must be >= 32, got {args.size}")
    if args.video_frames < 1:
        build_parser().error(f"--video-frames must be >= 1, got {args.video_frames}")
    if set(COCO_FORMATS) & set(args.formats):
        _write_coco(args)
    for layout in args.formats:
        if layout == "ytvis":
            _write_youtube_vis(args)
        elif layout == "cityscapes_vps":
            _write_cityscapes_vps(args)
        elif layout not in COCO_FORMATS:
            _write_image_layout(layout, args)
    return 0
