"""Small hand-written COCO instances files (one 48x32 image) for the COCO reader tests."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 32, 48


def rect_polygon(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def annotation(ann_id: int, bbox: list[float], segmentation: Any, **extra: Any) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": 1,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "segmentation": segmentation,
        **extra,
    }


def write_coco(
    tmp_path: Path, annotations: list[dict], edit: Callable[[dict], None] | None = None
) -> tuple[Path, Path]:
    """One real 48x32 PNG (image id 1, 'a.png') and a JSON with these annotations; ``edit`` may change
    the JSON."""
    image_dir = tmp_path / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image_dir / "a.png")
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": HEIGHT, "width": WIDTH}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "thing"}],
    }
    data = json.loads(json.dumps(data))  # edits must not reach the shared annotation dicts
    if edit is not None:
        edit(data)
    annotation_file = tmp_path / "instances.json"
    annotation_file.write_text(json.dumps(data))
    return image_dir, annotation_file


GOOD = annotation(1, [10, 5, 10, 10], [rect_polygon(10, 5, 20, 15)])


def edit_categories(categories: list[dict]) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["categories"] = categories

    return edit
