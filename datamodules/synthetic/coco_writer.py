"""Writers of the synthetic world (``datamodules.synthetic.world``) in real dataset formats.

Image ``i`` of a split is rendered from ``scene_rng(seed, split, i)``, so it depends on neither the
number of images nor the other split, and the same seed gives byte-identical files.
``write_coco_instances`` writes the COCO instances format (https://cocodataset.org/#format-data):
``out_dir/images/<split>/<image_id:06d>.png`` and ``out_dir/annotations/instances_<split>.json``;
``write_coco_keypoints`` writes the same images and instances JSON and, from the same rendering, the COCO
keypoint format in ``out_dir/annotations/keypoints_<split>.json`` (``datamodules.synthetic.keypoints``);
``write_coco_split(..., panoptic=True)`` adds, from the same rendering, the COCO panoptic format in
``out_dir/annotations/panoptic_<split>.json`` and ``out_dir/annotations/panoptic_<split>/<image_id:06d>.png``
(``datamodules.synthetic.panoptic``), and ``densepose=True`` the DensePose-COCO format: the instances JSON
with each non-crowd thing's DensePose fields in ``out_dir/annotations/densepose_<split>.json``
(``datamodules.synthetic.densepose``).
"""

import json
import re
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from datamodules.synthetic.densepose import densepose_fields
from datamodules.synthetic.keypoints import keypoint_categories, scene_keypoints
from datamodules.synthetic.panoptic import panoptic_categories, write_panoptic_image
from datamodules.synthetic.world import THING_CLASSES, Scene, SceneConfig, render_scene

_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: keyed by (seed, CRC32 of the split name, index)."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def mask_to_segmentation(mask: np.ndarray) -> list[list[float]] | dict[str, Any]:
    """COCO segmentation of a boolean mask: one polygon when the mask is one component without holes and
    the polygon rasterizes back to exactly this mask with pycocotools, else compressed RLE.

    The polygon traces pixel edges: ``cv2.findContours`` on the mask upsampled 2x, whose boundary
    sub-pixel centres ``p`` map to ``(p + 0.5) / 2`` in COCO coordinates."""
    height, width = mask.shape
    upsampled = np.kron(mask.astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(upsampled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) == 1 and len(contours[0]) >= 3:
        polygon = ((contours[0].reshape(-1, 2) + 0.5) / 2).ravel().tolist()
        rasterized = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([polygon], height, width)))
        if np.array_equal(rasterized.astype(bool), mask):
            return [polygon]
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def coco_annotation(
    mask: np.ndarray, annotation_id: int, image_id: int, category_id: int, iscrowd: bool = False
) -> dict[str, Any]:
    """A COCO instances annotation of a boolean mask (crowd regions are always RLE)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    if iscrowd:
        segmentation: Any = {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}
    else:
        segmentation = mask_to_segmentation(mask)
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": segmentation,
        "area": int(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        "iscrowd": int(iscrowd),
    }


def coco_categories() -> list[dict[str, Any]]:
    """The thing categories of the synthetic world in COCO form."""
    return [{"id": c.category_id, "name": c.name, "supercategory": c.supercategory} for c in THING_CLASSES]


def write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def check_arguments(split: str, num_images: int, image_size: int, seed: int) -> None:
    if not _SPLIT_NAME.fullmatch(split):
        raise ValueError(f"split must be a plain name (letters, digits, '_', '-'), got {split!r}")
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 pixels, got {image_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


class CocoSplitFiles(NamedTuple):
    """The annotation files of a written split (``keypoints``, ``panoptic`` and ``densepose`` None when not
    asked for)."""

    instances: Path
    keypoints: Path | None
    panoptic: Path | None = None
    densepose: Path | None = None


def keypoint_annotation(annotation: dict[str, Any], keypoints: np.ndarray) -> dict[str, Any]:
    """A COCO instances ``annotation`` with ``keypoints`` (K, 3) -- continuous pixel coordinates, as the
    world's geometry -- added as COCO's flat [x, y, v] * K list of pixel indices (x - 0.5, to 1/1000 px;
    ``datamodules.coco_keypoints`` adds the half pixel back), v an int, unlabelled points (0, 0, 0), and
    ``num_keypoints`` (how many have v > 0)."""
    flat: list[float | int] = []
    for x, y, v in keypoints.tolist():
        if v > 0:
            flat += [round(x - 0.5, 3), round(y - 0.5, 3), int(v)]
        else:
            flat += [0, 0, 0]
    return {**annotation, "keypoints": flat, "num_keypoints": int((keypoints[:, 2] > 0).sum())}


def _write_dataset(
    path: Path,
    description: str,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    categories: list[dict[str, Any]],
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset = {
        "info": {"description": description, "version": "1"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    path.write_text(json.dumps(dataset, separators=(",", ":")) + "\n")
    return path


def write_coco_split(
    out_dir: Path,
    split: str,
    num_images: int,
    image_size: int = 128,
    seed: int = 0,
    config: SceneConfig | None = None,
    progress: bool = False,
    keypoints: bool = True,
    panoptic: bool = False,
    densepose: bool = False,
) -> CocoSplitFiles:
    """Render ``num_images`` scenes once and write the images, the COCO instances JSON, (with
    ``keypoints``) the COCO keypoint JSON, (with ``panoptic``) the COCO panoptic JSON and PNGs and (with
    ``densepose``) the DensePose-COCO JSON of the split; return the JSON paths.

    Image ids are ``1..num_images``; annotations list each image's things bottom to top, with the same
    ids in the instances and keypoint files. ``progress`` shows a progress bar on a terminal."""
    check_arguments(split, num_images, image_size, seed)
    out_dir = Path(out_dir)
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    annotation_dir = out_dir / "annotations"
    panoptic_dir = annotation_dir / f"panoptic_{split}"
    if panoptic:
        panoptic_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    keypoint_annotations: list[dict[str, Any]] = []
    panoptic_annotations: list[dict[str, Any]] = []
    densepose_annotations: list[dict[str, Any]] = []
    for index in tqdm(
        range(num_images), desc=f"synthetic {split}", unit="img", disable=None if progress else True
    ):
        image_id = index + 1
        scene: Scene = render_scene(scene_rng(seed, split, index), image_size, config)
        file_name = f"{image_id:06d}.png"
        write_png(image_dir / file_name, scene.image)
        images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size})
        if panoptic:
            panoptic_annotations.append(write_panoptic_image(scene, image_id, panoptic_dir / file_name))
        points = scene_keypoints(scene) if keypoints else [None] * len(scene.things)
        dense_rng = scene_rng(seed, f"{split}-densepose", index)
        for thing, thing_points in zip(scene.things, points, strict=True):
            annotation = coco_annotation(
                thing.mask, len(annotations) + 1, image_id, thing.category_id, thing.iscrowd
            )
            annotations.append(annotation)
            if thing_points is not None:
                keypoint_annotations.append(keypoint_annotation(annotation, thing_points))
            if densepose:
                dense = densepose_fields(thing, annotation["bbox"], dense_rng)
                densepose_annotations.append({**annotation, **dense})
    description = f"vision-zoo synthetic world v1, split {split}, seed {seed}"
    instances_file = _write_dataset(
        annotation_dir / f"instances_{split}.json", description, images, annotations, coco_categories()
    )
    keypoints_file = None
    if keypoints:
        keypoints_file = _write_dataset(
            annotation_dir / f"keypoints_{split}.json",
            f"{description}, keypoints",
            images,
            keypoint_annotations,
            keypoint_categories(),
        )
    panoptic_file = None
    if panoptic:
        panoptic_file = _write_dataset(
            annotation_dir / f"panoptic_{split}.json",
            f"{description}, panoptic",
            images,
            panoptic_annotations,
            panoptic_categories(),
        )
    densepose_file = None
    if densepose:
        densepose_file = _write_dataset(
            annotation_dir / f"densepose_{split}.json",
            f"{description}, densepose",
            images,
            densepose_annotations,
            coco_categories(),
        )
    return CocoSplitFiles(instances_file, keypoints_file, panoptic_file, densepose_file)


def write_coco_instances(
    out_dir: Path,
    split: str,
    num_images: int,
    image_size: int = 128,
    seed: int = 0,
    config: SceneConfig | None = None,
    progress: bool = False,
) -> Path:
    """Render ``num_images`` scenes and write them as a COCO instances split; return the JSON path.

    Image ids are ``1..num_images``; annotations list each image's things bottom to top. ``progress``
    shows a progress bar on a terminal."""
    return write_coco_split(
        out_dir, split, num_images, image_size, seed, config, progress, keypoints=False
    ).instances


def write_coco_keypoints(
    out_dir: Path,
    split: str,
    num_images: int,
    image_size: int = 128,
    seed: int = 0,
    config: SceneConfig | None = None,
    progress: bool = False,
) -> Path:
    """``write_coco_instances`` plus, from the same rendering, the COCO keypoint JSON
    ``annotations/keypoints_<split>.json``; return its path."""
    files = write_coco_split(out_dir, split, num_images, image_size, seed, config, progress, keypoints=True)
    assert files.keypoints is not None
    return files.keypoints
