"""COCO JSON checks: every malformed-JSON case raises naming the file and the annotation."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from datamodules.coco_instances import CocoInstancesDataset
from datamodules.coco_json_checks import compressed_rle_counts
from datamodules.errors import DatasetFormatError
from tests.coco_files import GOOD, HEIGHT, WIDTH, annotation, rect_polygon, write_coco

# pycocotools 2.0.x under numpy 2 warns inside its own decode; nothing this project can change
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def test_compressed_rle_parser_matches_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for density in (0.0, 0.02, 0.5, 1.0):
        mask = (rng.random((HEIGHT, WIDTH)) < density).astype(np.uint8)
        counts = mask_utils.encode(np.asfortranarray(mask))["counts"].decode()
        runs = compressed_rle_counts(counts)
        assert runs is not None and sum(runs) == HEIGHT * WIDTH
        values = np.arange(len(runs)) % 2  # runs alternate 0, 1, 0, ... in column-major order
        np.testing.assert_array_equal(np.repeat(values, runs).reshape(WIDTH, HEIGHT).T, mask)
    assert compressed_rle_counts("0") == [0]  # parses; that its sum is not H*W is checked by the reader
    for malformed in ("zzzz", "\x7f", "P"):  # characters out of range, a continuation bit at the end
        assert compressed_rle_counts(malformed) is None


def test_unknown_category_names_annotation_and_category(tmp_path: Path) -> None:
    image_dir, annotation_file = write_coco(
        tmp_path, [annotation(42, [1, 1, 5, 5], [rect_polygon(1, 1, 6, 6)], category_id=9)]
    )
    with pytest.raises(DatasetFormatError, match=r"instances\.json: annotation id 42 has category id 9"):
        CocoInstancesDataset(image_dir, annotation_file)


def test_unknown_image_names_annotation_and_image(tmp_path: Path) -> None:
    image_dir, annotation_file = write_coco(
        tmp_path, [annotation(42, [1, 1, 5, 5], [rect_polygon(1, 1, 6, 6)], image_id=3)]
    )
    with pytest.raises(DatasetFormatError, match=r"instances\.json: annotation id 42 refers to image id 3"):
        CocoInstancesDataset(image_dir, annotation_file)


def set_key(path: tuple[str | int, ...], value: Any) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def delete_key(path: tuple[str | int, ...]) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (delete_key(("images",)), "needs a list 'images'"),
        (set_key(("annotations", 1, "id"), 1), "annotation id 1 appears twice"),
        (delete_key(("annotations", 0, "id")), r"annotation id None \(#0\) needs an integer 'id'"),
        (delete_key(("images", 0, "file_name")), r"image #0 \(id 1\) needs a string 'file_name'"),
        (set_key(("annotations", 1, "bbox"), [1, 2, 3]), r"annotation id 2 has 'bbox' \[1, 2, 3\]"),
        (
            set_key(("annotations", 1, "segmentation"), {"size": [10, 10], "counts": [100]}),
            r"annotation id 2 has an RLE of size \[10, 10\] for an image of size \[32, 48\]",
        ),
        (
            set_key(("annotations", 1, "segmentation"), {"size": [HEIGHT, WIDTH], "counts": [5, 5]}),
            "annotation id 2 has uncompressed RLE counts that are not",
        ),
        (
            set_key(("annotations", 1, "segmentation"), "polygon"),
            "annotation id 2 has a 'segmentation' of type str",
        ),
        (
            delete_key(("annotations", 1, "segmentation")),
            "annotation id 2 has a 'segmentation' of type NoneType",
        ),
        # coordinates that would crash pycocotools or make it allocate gigabytes
        (
            set_key(("annotations", 1, "segmentation"), [[None, 1, 6, 1, 6, 6]]),
            "annotation id 2 has a polygon",
        ),
        (
            set_key(("annotations", 1, "segmentation"), [[float("nan"), 1, 6, 1, 6, 6]]),
            "annotation id 2 has a polygon",
        ),
        (
            set_key(("annotations", 1, "segmentation"), [["a", 1, 6, 1, 6, 6]]),
            "annotation id 2 has a polygon",
        ),
        (
            set_key(("annotations", 1, "segmentation"), [[[1, 1], [6, 1], [6, 6]]]),
            "annotation id 2 has a polygon",
        ),
        (
            set_key(("annotations", 1, "segmentation"), [[1e9, 1, 6, 1, 6, 6]]),
            "annotation id 2 has a polygon reaching more than an image size outside the 48x32 image",
        ),
        (
            set_key(("annotations", 1, "segmentation"), {"size": [HEIGHT, WIDTH], "counts": "zzzz"}),
            "annotation id 2 has compressed RLE counts that are not",
        ),
        (
            set_key(("annotations", 1, "segmentation"), {"size": [HEIGHT, WIDTH], "counts": "0"}),
            "annotation id 2 has compressed RLE counts that are not",
        ),
    ],
)
def test_malformed_json_names_file_and_annotation(
    tmp_path: Path, edit: Callable[[dict], None], message: str
) -> None:
    image_dir, annotation_file = write_coco(
        tmp_path, [GOOD, annotation(2, [1, 1, 5, 5], [rect_polygon(1, 1, 6, 6)])], edit
    )
    with pytest.raises(DatasetFormatError, match=r"instances\.json: .*" + message):
        CocoInstancesDataset(image_dir, annotation_file)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    image_dir, annotation_file = write_coco(tmp_path, [GOOD])
    annotation_file.write_text('{"images": [')
    with pytest.raises(DatasetFormatError, match=r"instances\.json: not valid JSON"):
        CocoInstancesDataset(image_dir, annotation_file)
    with pytest.raises(DatasetFormatError, match=r"nope\.json: annotation file not found"):
        CocoInstancesDataset(image_dir, tmp_path / "nope.json")


def test_several_problems_are_counted_in_the_message(tmp_path: Path) -> None:
    anns = [annotation(1, [1, 1, 5, 5], [], category_id=9), annotation(2, [1, 1, 5, 5], [], image_id=3)]
    image_dir, annotation_file = write_coco(tmp_path, anns)
    with pytest.raises(
        DatasetFormatError, match=r"annotation id 1 .*and 1 more problems; `zoo check-dataset`"
    ):
        CocoInstancesDataset(image_dir, annotation_file)
