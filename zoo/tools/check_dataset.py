"""``zoo check-dataset``: check a COCO instances dataset before training on it.

Loads every annotation (the same checks as ``CocoInstancesDataset``, plus rasterizing every mask's
RLE to find masks with no pixel and boxes that disagree with their mask) and decodes every image
(file present, readable to the last pixel, size as in the JSON; ``--fast``: headers only), then
prints counts per problem type with examples. ``--for-evaluation`` adds what would make COCO
evaluation fail (a val/test file). Exit status 1 if there are hard errors (the dataset would raise
``DatasetFormatError``) or no annotation at all becomes a target, else 0; counted skips and notes
alone do not fail the check.
"""

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from tqdm import tqdm

from datamodules.coco_instances import (
    MIN_BOX_MASK_IOU,
    InstanceIndex,
    box_mask_iou,
    category_labels,
    index_coco,
    index_instances,
    read_image,
)
from datamodules.coco_json_checks import (
    FormatProblem,
    evaluation_problems,
    read_coco_json,
    structure_problems,
)
from datamodules.errors import DatasetFormatError

EXAMPLES_PER_KIND = 5


def image_problems(coco: COCO, image_dir: Path, decode: bool = True) -> list[FormatProblem]:
    """Missing, unreadable or wrongly sized image files: the dataset's own checks. ``decode`` reads
    every pixel, as training will (a truncated or corrupt file passes a header check and kills the run
    mid-epoch); without it only headers are read."""
    problems = []
    what = "images" if decode else "image headers"
    for image_id, info in tqdm(sorted(coco.imgs.items()), desc=what, unit="img", disable=None):
        try:
            read_image(image_dir / info["file_name"], image_id, info["height"], info["width"], decode=decode)
        except DatasetFormatError as error:
            problems.append(FormatProblem(error.kind, str(error)))
    return problems


def rasterize_masks(coco: COCO, index: InstanceIndex) -> None:
    """Rasterize every target instance's RLE (``COCO.annToRLE``), as reading the items will: masks
    without a pixel are skips, boxes that disagree with their mask are notes (the dataset's rules)."""
    for image_id, instances in tqdm(list(index.instances.items()), desc="masks", unit="img", disable=None):
        kept = []
        for instance in instances:
            rle = coco.annToRLE({"image_id": image_id, "segmentation": instance.segmentation})
            if mask_utils.area(rle) == 0:
                index.skip("empty_mask", instance.annotation_id)
                continue
            x, y, w, h = mask_utils.toBbox(rle).tolist()
            if box_mask_iou(instance.box, (x, y, x + w, y + h)) < MIN_BOX_MASK_IOU:
                index.note("box_mask_mismatch", instance.annotation_id)
            kept.append(instance)
        index.instances[image_id] = kept


def format_problems(problems: list[FormatProblem]) -> list[str]:
    by_kind: dict[str, list[str]] = defaultdict(list)
    for problem in problems:
        by_kind[problem.kind].append(problem.message)
    lines = [f"hard errors: {len(problems)}"]
    for kind, messages in sorted(by_kind.items()):
        lines.append(f"  {kind}: {len(messages)}")
        lines.extend(f"    {message}" for message in messages[:EXAMPLES_PER_KIND])
        if len(messages) > EXAMPLES_PER_KIND:
            lines.append(f"    ... and {len(messages) - EXAMPLES_PER_KIND} more")
    return lines


def format_skips(skipped: Counter[str], skipped_ids: dict[str, list[int]], title: str) -> list[str]:
    lines = [f"{title}: {sum(skipped.values())}"]
    for reason, count in sorted(skipped.items()):
        ids = ", ".join(str(i) for i in skipped_ids[reason][:EXAMPLES_PER_KIND])
        more = ", ..." if count > EXAMPLES_PER_KIND else ""
        lines.append(f"  {reason}: {count} (annotation ids {ids}{more})")
    return lines


def check(
    image_dir: Path, annotation_file: Path, decode: bool = True, for_evaluation: bool = False
) -> tuple[list[str], bool]:
    """The report's lines and whether the dataset is free of hard errors."""
    lines = [f"annotations: {annotation_file}", f"images: {image_dir}"]
    try:
        data = read_coco_json(annotation_file)
    except DatasetFormatError as e:
        return [*lines, *format_problems([FormatProblem("bad_file", str(e))])], False
    problems = structure_problems(data, annotation_file)
    evaluation = evaluation_problems(data, annotation_file)
    if for_evaluation:
        problems += evaluation
    elif evaluation:
        lines.append(
            f"note: {len(evaluation)} problems would fail COCO evaluation if this file were a val/test split "
            "(--for-evaluation lists them as errors)"
        )
    lines.append(
        f"{len(data['images'])} images, {len(data['categories'])} categories, "
        f"{len(data['annotations'])} annotations"
    )
    if problems:
        return [
            *lines,
            *format_problems(problems),
            "(fix these first: the per-annotation checks need valid ids)",
        ], False
    coco = index_coco(data)
    index = index_instances(coco, annotation_file, category_labels(coco, annotation_file))
    rasterize_masks(coco, index)
    problems = index.errors + image_problems(coco, image_dir, decode)
    num_targets = sum(len(instances) for instances in index.instances.values())
    without = sum(1 for image_id in coco.imgs if not index.instances.get(image_id))
    lines.append(f"target instances: {num_targets}; images without any: {without}")
    if not num_targets:
        problems.append(
            FormatProblem("no_targets", f"{annotation_file}: no annotation becomes a target instance")
        )
    lines.extend(
        format_skips(
            index.skipped,
            index.skipped_ids,
            "skipped from the targets (kept in the JSON for COCO evaluation)",
        )
    )
    lines.extend(format_skips(index.noted, index.noted_ids, "kept in the targets with a note"))
    lines.extend(format_problems(problems))
    return lines, not problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="zoo check-dataset",
        description="Check a COCO instances dataset: every annotation and every image (decoded). "
        "Exit status 1 if there are hard errors.",
    )
    parser.add_argument(
        "--fast", action="store_true", help="Read image headers only (misses truncated files)."
    )
    parser.add_argument(
        "--for-evaluation",
        action="store_true",
        help="The file is a val/test split: what would make COCO evaluation fail (a missing 'area' or "
        "'iscrowd', polygons of fewer than 3 points) is an error, as it is for the DataModule.",
    )
    parser.add_argument(
        "--images", type=Path, required=True, help="Folder the JSON's file_name entries are relative to."
    )
    parser.add_argument("--annotations", type=Path, required=True, help="COCO instances JSON file.")
    args = parser.parse_args(argv)
    lines, ok = check(args.images, args.annotations, decode=not args.fast, for_evaluation=args.for_evaluation)
    print("\n".join([*lines, "OK" if ok else "FAILED: hard errors above"]))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
