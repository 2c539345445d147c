"""Hard-error checks of a YouTube-VIS JSON (``datamodules.youtube_vis``), each naming the file, the video id,
the annotation id and, for a per-frame entry, the frame index.

The layout (YouTube-VIS 2019/2021, https://youtube-vos.org/dataset/vis/): top-level ``videos`` [{``id``,
``width``, ``height``, ``length``, ``file_names``: one path per frame}], ``categories`` [{``id``, ``name``}]
and ``annotations`` [{``id``, ``video_id``, ``category_id``, ``iscrowd``, and per frame ``segmentations``
(an RLE -- ``counts`` a list (uncompressed, as in the official train JSON) or a string (compressed) -- or
null), ``bboxes`` ([x, y, w, h] or null) and ``areas`` (a number or null)}]. The official valid and test
JSONs have ``annotations`` null: they can only be read with ``require_annotations=False``.
"""

from pathlib import Path
from typing import Any

from datamodules.coco_json_checks import (
    FormatProblem,
    is_int,
    is_number,
    read_annotation_json,
    segmentation_problem,
)

PER_FRAME_KEYS = ("segmentations", "bboxes", "areas")


def read_youtube_vis_json(annotation_file: str | Path, require_annotations: bool = True) -> dict[str, Any]:
    """Read a YouTube-VIS JSON; a missing file, invalid JSON or missing ``videos``/``categories`` lists
    raise. A null or missing ``annotations`` is an empty list when not ``require_annotations``."""
    return read_annotation_json(
        annotation_file,
        ("videos", "categories"),
        require_annotations,
        "the official valid/test files have none:",
    )


def _video_problems(
    data: dict[str, Any], annotation_file: Path
) -> tuple[list[FormatProblem], dict[int, dict]]:
    problems: list[FormatProblem] = []
    videos: dict[int, dict] = {}
    for position, video in enumerate(data["videos"]):
        video_id = video.get("id") if isinstance(video, dict) else None
        what = f"{annotation_file}: video #{position} (video id {video_id})"
        if not is_int(video_id):
            problems.append(FormatProblem("bad_video_entry", f"{what} needs an integer 'id'"))
            continue
        if video_id in videos:
            problems.append(FormatProblem("duplicate_id", f"{what}: video id {video_id} appears twice"))
            continue
        if not all(is_int(video.get(k)) and video[k] > 0 for k in ("width", "height", "length")):
            problems.append(
                FormatProblem(
                    "bad_video_entry", f"{what} needs positive integer 'width', 'height' and 'length'"
                )
            )
            continue
        names = video.get("file_names")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            problems.append(FormatProblem("bad_video_entry", f"{what} needs a list of strings 'file_names'"))
            continue
        if len(names) != video["length"]:
            problems.append(
                FormatProblem(
                    "length_mismatch",
                    f"{what} has {len(names)} 'file_names' but 'length' {video['length']}",
                )
            )
            continue
        videos[video_id] = video
    return problems, videos


def _frame_problem(ann: dict[str, Any], frame: int, video: dict) -> str | None:
    segmentation, bbox, area = (ann[key][frame] for key in PER_FRAME_KEYS)
    if segmentation is not None:
        problem = segmentation_problem(segmentation, video["height"], video["width"])
        if problem is not None:
            return problem.replace("'segmentation'", "segmentation")
    if bbox is not None and not (isinstance(bbox, list) and len(bbox) == 4 and all(map(is_number, bbox))):
        return f"has bbox {bbox!r}, need [x, y, width, height] or null"
    if area is not None and not is_number(area):
        return f"has area {area!r}, need a number or null"
    return None


def youtube_vis_problems(data: dict[str, Any], annotation_file: str | Path) -> list[FormatProblem]:
    """Every hard error of a YouTube-VIS JSON read by ``read_youtube_vis_json``: malformed or duplicate
    videos, categories and annotations, a ``file_names`` or per-frame list whose length differs from the
    video's ``length``, an annotation of an unknown video or category, a malformed per-frame entry."""
    annotation_file = Path(annotation_file)
    problems, videos = _video_problems(data, annotation_file)
    category_ids: set[int] = set()
    for position, category in enumerate(data["categories"]):
        category_id = category.get("id") if isinstance(category, dict) else None
        if (
            not is_int(category_id)
            or not isinstance(category.get("name"), str)
            or category_id in category_ids
        ):
            problems.append(
                FormatProblem(
                    "bad_category_entry",
                    f"{annotation_file}: category #{position} (id {category_id}) needs a unique integer 'id' "
                    "and a string 'name'",
                )
            )
        else:
            category_ids.add(category_id)
    annotation_ids: set[int] = set()
    for position, ann in enumerate(data["annotations"]):
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        if not is_int(ann_id) or ann_id in annotation_ids:
            what = f"{annotation_file}: annotation #{position} (annotation id {ann_id})"
            message = f"{what} needs a unique integer 'id'"
            problems.append(FormatProblem("bad_annotation_entry", message))
            continue
        annotation_ids.add(ann_id)
        video_id = ann.get("video_id")
        what = f"{annotation_file}: annotation id {ann_id} (video id {video_id!r})"
        video = videos.get(video_id) if is_int(video_id) else None
        if video is None:
            problems.append(FormatProblem("unknown_video_id", f"{what} refers to a video id not in 'videos'"))
            continue
        if ann.get("category_id") not in category_ids or not is_int(ann.get("category_id")):
            problems.append(
                FormatProblem(
                    "unknown_category_id",
                    f"{what} has category id {ann.get('category_id')!r}, not in 'categories'",
                )
            )
        if ann.get("iscrowd", 0) not in (0, 1):
            problems.append(FormatProblem("bad_annotation_entry", f"{what} needs 'iscrowd' 0 or 1"))
        lengths = {key: len(ann[key]) if isinstance(ann.get(key), list) else None for key in PER_FRAME_KEYS}
        wrong = {key: n for key, n in lengths.items() if n != video["length"]}
        if wrong:
            given = ", ".join(f"'{key}': {'no list' if n is None else n}" for key, n in wrong.items())
            problems.append(
                FormatProblem(
                    "length_mismatch",
                    f"{what}: per-frame lists need one entry per frame (video length {video['length']}), "
                    f"got {given}",
                )
            )
            continue
        for frame in range(video["length"]):
            problem = _frame_problem(ann, frame, video)
            if problem is not None:
                problems.append(FormatProblem("bad_frame_entry", f"{what}, frame index {frame}: {problem}"))
                break
    return problems
