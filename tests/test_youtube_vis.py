"""YouTube-VIS reading: the synthetic round trip, a hand-written file in the real layout, bad input, clips
(augmentation identical on every frame, exact resume) and the DataModule."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from datamodules.errors import DatasetFormatError
from datamodules.instance_transforms import train_transforms
from datamodules.synthetic.coco_writer import scene_rng
from datamodules.synthetic.video import VideoConfig, render_video
from datamodules.synthetic.youtube_vis_writer import write_youtube_vis_split
from datamodules.video_clips import clip_frame_indices, collate_clips, frame_image_id, split_frame_image_id
from datamodules.youtube_vis import YouTubeVISDataset
from datamodules.youtube_vis_datamodule import YouTubeVISDataModule
from zoo.training.resumable_loader import ResumableDataLoader, resumable_train_loader

CONFIG = VideoConfig(num_frames=6, speed_range=(0.03, 0.06))
H, W = 6, 8  # the hand-written videos' frame size
# a 3x3 box at x 2..4, y 1..3 of a 6x8 frame, as uncompressed RLE (column-major runs, zeros first)
BOX_COUNTS = [13, 3, 3, 3, 3, 3, 20]


@pytest.fixture(scope="module")
def synthetic_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ytvis")
    write_youtube_vis_split(out, "train", 3, 6, 64, seed=2, config=CONFIG)
    return out


def test_writing_then_reading_gives_back_the_rendered_masks_and_ids(synthetic_videos: Path) -> None:
    dataset = YouTubeVISDataset(
        synthetic_videos / "train" / "JPEGImages",
        synthetic_videos / "annotations" / "instances_train.json",
        6,
    )
    assert len(dataset) == 3 and [clip.frame_indices for clip in dataset.clips] == [tuple(range(6))] * 3
    next_annotation_id, checked = 1, 0
    for index in range(3):
        video = render_video(scene_rng(2, "video-train", index), 64, CONFIG)
        shown = {thing.instance_id for frame in video.frames for thing in frame.things}
        annotation_of = {}
        for instance_id in sorted(shown):  # the writer's ids: by video, then by instance id
            annotation_of[instance_id], next_annotation_id = next_annotation_id, next_annotation_id + 1
        frames, targets = dataset[index]
        for t, (image, target, rendered) in enumerate(zip(frames, targets, video.frames, strict=True)):
            assert image.shape == (3, 64, 64) and image.dtype == torch.float32
            assert split_frame_image_id(int(target["image_id"])) == (index + 1, t)
            expected_ids = [annotation_of[thing.instance_id] for thing in rendered.things]
            assert target["instance_ids"].tolist() == expected_ids == target["annotation_ids"].tolist()
            assert target["labels"].tolist() == [thing.category_id for thing in rendered.things]
            expected_masks = np.stack([thing.mask for thing in rendered.things]).astype(np.uint8)
            assert np.array_equal(target["masks"].numpy(), expected_masks)
            rows, columns = np.nonzero(expected_masks[0])
            tight = [columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]
            assert target["boxes"][0].tolist() == tight
            # JPEG is lossy, but not by much
            assert np.abs(image.permute(1, 2, 0).numpy() * 255 - rendered.image).mean() < 6
            checked += len(expected_ids)
    assert checked > 20


def _box_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def _compressed(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def write_hand_written(tmp_path: Path, edit: Callable[[dict], None] | None = None) -> tuple[Path, Path]:
    """Two videos in the official YouTube-VIS 2019 layout (frames every 5th of the source video, as there)."""
    image_dir = tmp_path / "train" / "JPEGImages"
    rng = np.random.default_rng(0)
    videos = []
    for video_id, folder, length in ((1, "0043f083b5", 3), (2, "0065b171f9", 1)):
        (image_dir / folder).mkdir(parents=True, exist_ok=True)
        names = [f"{folder}/{5 * t:05d}.jpg" for t in range(length)]
        for name in names:
            Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(image_dir / name)
        videos.append(
            {
                "license": 1,
                "coco_url": "",
                "height": H,
                "width": W,
                "length": length,
                "date_captured": "2019-04-11 00:55:41.903902",
                "file_names": names,
                "flickr_url": "",
                "id": video_id,
            }
        )
    base = {"height": H, "width": W, "iscrowd": 0}
    annotations = [
        {  # uncompressed RLE (the official train JSON's), absent in frame 1
            **base,
            "length": 3,
            "category_id": 7,
            "segmentations": [
                {"counts": BOX_COUNTS, "size": [H, W]},
                None,
                _compressed(_box_mask(3, 2, 7, 5)),
            ],
            "bboxes": [[2.0, 1.0, 3.0, 3.0], None, None],  # a null box beside a mask: the mask's box
            "video_id": 1,
            "id": 10,
            "areas": [9, None, 12],
        },
        {**base, "length": 3, "category_id": 3, "video_id": 1, "id": 11}
        | {"segmentations": [None, _compressed(_box_mask(0, 0, 4, 2)), None]}
        | {"bboxes": [None, [0.0, 0.0, 4.0, 2.0], None], "areas": [None, 8, None]},
        {**base, "length": 3, "category_id": 3, "video_id": 1, "id": 12, "iscrowd": 1}
        | {"segmentations": [_compressed(_box_mask(5, 3, 8, 6)), None, None]}
        | {"bboxes": [[5.0, 3.0, 3.0, 3.0], None, None], "areas": [9, None, None]},
    ]
    data = {
        "info": {"description": "YouTube-VOS", "version": "1.0"},
        "licenses": [{"url": "https://creativecommons.org/licenses/by/4.0/", "id": 1, "name": "CC BY 4.0"}],
        "videos": videos,
        "categories": [
            {"supercategory": "object", "id": 3, "name": "cat"},
            {"supercategory": "object", "id": 7, "name": "dog"},
        ],
        "annotations": annotations,
    }
    if edit is not None:
        edit(data)
    annotation_file = tmp_path / "train.json"
    annotation_file.write_text(json.dumps(data))
    return image_dir, annotation_file


def test_a_hand_written_file_in_the_real_layout(tmp_path: Path) -> None:
    dataset = YouTubeVISDataset(*write_hand_written(tmp_path), clip_length=3)
    assert dataset.class_names == ["cat", "dog"] and dataset.label_to_category_id == {1: 3, 2: 7}
    assert [tuple(clip) for clip in dataset.clips] == [(1, (0, 1, 2)), (2, (0, 0, 0))]
    assert dataset.skipped == {"crowd": 1}
    frames, targets = dataset[0]
    assert [tuple(f.shape) for f in frames] == [(3, H, W)] * 3
    assert [t["image_id"].item() for t in targets] == [100000, 100001, 100002]
    assert [t["instance_ids"].tolist() for t in targets] == [[10], [11], [10]]
    assert [t["labels"].tolist() for t in targets] == [[2], [1], [2]]
    assert [t["boxes"].tolist() for t in targets] == [[[2, 1, 5, 4]], [[0, 0, 4, 2]], [[3, 2, 7, 5]]]
    expected = [_box_mask(2, 1, 5, 4), _box_mask(0, 0, 4, 2), _box_mask(3, 2, 7, 5)]
    for target, mask in zip(targets, expected, strict=True):
        assert np.array_equal(target["masks"][0].numpy(), mask)
    frames, targets = dataset[1]  # a video shorter than a clip repeats its last frame
    assert all(t["masks"].shape == (0, H, W) and t["image_id"].item() == 200000 for t in targets)


def _set(path: str, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        *keys, last = path.split(".")
        node = data
        for key in keys:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _set("annotations.0.segmentations", [None, None]),
            r"annotation id 10 \(video id 1\): per-frame .*3.*2",
        ),
        (_set("annotations.1.bboxes", [None]), r"annotation id 11 \(video id 1\).*'bboxes': 1"),
        (_set("annotations.1.video_id", 9), r"annotation id 11 \(video id 9\) refers to a video id not in"),
        (
            _set("annotations.0.segmentations.2.size", [5, 8]),
            r"annotation id 10 \(video id 1\), frame index 2",
        ),
        (_set("annotations.0.segmentations.0.counts", [13, 3]), r"annotation id 10 .*frame index 0: .*RLE"),
        (_set("annotations.1.category_id", 4), r"annotation id 11 \(video id 1\) has category id 4"),
        (_set("videos.0.length", 4), r"video id 1\) has 3 'file_names' but 'length' 4"),
    ],
)
def test_bad_input_names_the_video_the_annotation_and_the_frame(
    tmp_path: Path, edit: Callable[[dict], None], message: str
) -> None:
    with pytest.raises(DatasetFormatError, match=message):
        YouTubeVISDataset(*write_hand_written(tmp_path, edit))


def test_a_missing_frame_file_names_the_video_and_the_frame(tmp_path: Path) -> None:
    image_dir, annotation_file = write_hand_written(tmp_path)
    (image_dir / "0043f083b5" / "00010.jpg").unlink()
    dataset = YouTubeVISDataset(image_dir, annotation_file, clip_length=2)
    dataset[0]  # frames 0 and 1 are there
    with pytest.raises(
        DatasetFormatError, match=r"video id 1, frame index 2: .*0043f083b5/00010\.jpg.*not found"
    ):
        dataset[1]


def test_clips_and_frame_ids() -> None:
    assert clip_frame_indices(5, 2, 2, 1) == [(0, 2), (1, 3), (2, 4)]
    assert clip_frame_indices(7, 3, 1, 3) == [(0, 1, 2), (3, 4, 5)]
    assert clip_frame_indices(2, 3, 2, 1) == [(0, 1, 1)]
    assert split_frame_image_id(frame_image_id(12, 34)) == (12, 34)
    frames, targets = collate_clips([([torch.zeros(1)], [{"a": 1}]), ([torch.ones(1)], [{"a": 2}])])
    assert len(frames) == len(targets) == 2 and targets[1][0]["a"] == 2


def test_augmentation_is_the_same_on_every_frame_of_a_clip(synthetic_videos: Path, tmp_path: Path) -> None:
    annotations = synthetic_videos / "annotations" / "instances_train.json"
    image_dir = synthetic_videos / "train" / "JPEGImages"
    plain = YouTubeVISDataset(image_dir, annotations, clip_length=3)
    augmented = YouTubeVISDataset(image_dir, annotations, 3, transforms=train_transforms(0.5, 0.3))
    flips = set()
    for seed in range(6):
        _, raw = plain[seed % len(plain)]
        frames, targets = augmented.seeded_item(seed % len(plain), seed)
        flipped = [torch.equal(t["masks"], r["masks"].flip(-1)) for t, r in zip(targets, raw, strict=True)]
        kept = [torch.equal(t["masks"], r["masks"]) for t, r in zip(targets, raw, strict=True)]
        assert all(flipped) or all(kept)
        flips.add(all(flipped))
        again, _ = augmented.seeded_item(seed % len(plain), seed)
        assert all(torch.equal(a, b) for a, b in zip(frames, again, strict=True))
    assert flips == {True, False}
    # identical input frames (a one-frame video's clip) come out identical, colour jitter included
    still = YouTubeVISDataset(*write_hand_written(tmp_path), 3, transforms=train_transforms(0.5, 0.5))
    for seed in range(4):
        frames, _ = still.seeded_item(1, seed)
        assert all(torch.equal(frames[0], frame) for frame in frames)


def test_the_training_loader_resumes_clips_exactly(synthetic_videos: Path) -> None:
    dataset = YouTubeVISDataset(
        synthetic_videos / "train" / "JPEGImages",
        synthetic_videos / "annotations" / "instances_train.json",
        clip_length=2,
        clip_step=2,
        transforms=train_transforms(0.5, 0.3),
    )

    def loader() -> ResumableDataLoader:
        return resumable_train_loader(dataset, batch_size=2, collate_fn=collate_clips, seed=5)

    whole = [frames for frames, _ in (batch for _ in range(2) for batch in loader())][:5]
    first = loader()
    batches = iter(first)
    part = [next(batches)[0] for _ in range(2)]
    resumed = loader()
    resumed.load_state_dict(first.state_dict())
    part += [frames for frames, _ in resumed][:3]
    for expected, got in zip(whole, part, strict=True):
        assert all(
            torch.equal(a, b)
            for ca, cb in zip(expected, got, strict=True)
            for a, b in zip(ca, cb, strict=True)
        )


def test_datamodule(synthetic_videos: Path) -> None:
    images = synthetic_videos / "train" / "JPEGImages"
    annotations = synthetic_videos / "annotations" / "instances_train.json"
    datamodule = YouTubeVISDataModule(images, annotations, images, annotations, clip_length=3, num_workers=0)
    assert datamodule.metadata.class_names == ("circle", "square", "triangle", "star")
    datamodule.setup("fit")
    frames, targets = next(iter(datamodule.train_dataloader()))
    assert len(frames) == len(targets) == 2 and all(len(clip) == 3 for clip in frames)
    assert all(
        set(t) >= {"boxes", "labels", "masks", "instance_ids", "image_id"} for clip in targets for t in clip
    )
    assert len(datamodule.val_dataset) == 6  # non-overlapping clips: keyframes 0 and 3 of each video
    frames, _ = next(iter(datamodule.val_dataloader()))
    assert len(frames) == 2
