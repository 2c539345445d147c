"""Cityscapes-VPS: the synthetic writer's round trip, persistent ids, bad input, the training pairs and
evaluation videos of the DataModule, a hand-written split in the official layout, and the CLI."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.batch import IGNORE_INDEX
from datamodules.cityscapes_vps import CityscapesVPSClips, CityscapesVPSPairs
from datamodules.cityscapes_vps_datamodule import CityscapesVPSDataModule, split_paths
from datamodules.coco_panoptic_png import read_coco_panoptic_png, write_coco_panoptic_png
from datamodules.errors import DatasetFormatError
from datamodules.synthetic.cityscapes_vps_writer import (
    annotation_file,
    crowd_instance,
    frame_name,
    thing_segment_id,
    write_cityscapes_vps_split,
)
from datamodules.synthetic.coco_writer import scene_rng
from datamodules.synthetic.panoptic import void_band
from datamodules.synthetic.video import VideoConfig, render_video
from datamodules.video_clips import frame_image_id, split_frame_image_id
from zoo.tools.synthetic import main as synthetic_main

SIZE, VIDEOS, FRAMES, SEED = 64, 3, 4, 0


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes_vps")
    write_cityscapes_vps_split(root, "train", VIDEOS, FRAMES, SIZE, SEED)
    write_cityscapes_vps_split(root, "val", 2, 3, SIZE, SEED)
    return root


def clips(root: Path, split: str = "train") -> CityscapesVPSClips:
    images, annotations, panoptic = split_paths(root, split)
    return CityscapesVPSClips(images, annotations, panoptic)


def test_writing_then_reading_gives_back_the_rendered_frames_ids_and_classes(written: Path) -> None:
    dataset = clips(written)
    assert len(dataset) == VIDEOS  # whole videos
    assert dataset.stuff_category_ids == [5, 6, 7, 8] and dataset.label_to_category_id == {
        1: 1,
        2: 2,
        3: 3,
        4: 4,
    }
    num_stuff = len(dataset.stuff_category_ids)
    crowds = 0
    for index in range(VIDEOS):
        video = render_video(
            scene_rng(SEED, "cityscapes-vps-train", index), SIZE, VideoConfig(num_frames=FRAMES)
        )
        crowd = crowd_instance(video, index, 3)
        frames, targets = dataset[index]
        assert len(frames) == FRAMES
        for t, (image, target, scene) in enumerate(zip(frames, targets, video.frames, strict=True)):
            assert split_frame_image_id(int(target["image_id"])) == (index + 1, t)
            np.testing.assert_array_equal((image * 255).round().byte().permute(1, 2, 0).numpy(), scene.image)
            on_things = np.zeros((SIZE, SIZE), bool)
            expected = np.zeros((SIZE, SIZE), np.int64)
            for thing in scene.things:
                on_things |= thing.mask
                expected[thing.mask] = thing_segment_id(thing.category_id, thing.instance_id)
            void = void_band(on_things)
            stuff = ~on_things & ~void
            expected[stuff] = scene.stuff_map[stuff]
            panoptic = target["panoptic"].numpy()
            np.testing.assert_array_equal(panoptic, expected)
            assert void.any() and (target["semantic"].numpy()[void] == IGNORE_INDEX).all()
            assert (
                target["semantic"].numpy()[stuff] == scene.stuff_map[stuff] - 5
            ).all()  # stuff 5..8 -> 0..3
            shown = [thing for thing in scene.things if thing.instance_id != crowd]
            crowds += len(scene.things) - len(shown)
            ids = {thing_segment_id(th.category_id, th.instance_id): th for th in shown}
            assert sorted(target["instance_ids"].tolist()) == sorted(ids)
            assert torch.equal(target["instance_ids"], target["annotation_ids"])
            for instance_id, label, mask in zip(
                target["instance_ids"].tolist(), target["labels"].tolist(), target["masks"], strict=True
            ):
                thing = ids[instance_id]
                assert label == thing.category_id  # labels 1..4 are the category ids 1..4
                np.testing.assert_array_equal(mask.numpy().astype(bool), thing.mask)
                assert (target["semantic"].numpy()[thing.mask] == num_stuff + label - 1).all()
            crowd_rows = target["segments"][target["segments"][:, 2] == 1]
            if crowd is not None and crowd in {th.instance_id for th in scene.things}:
                assert crowd_rows[:, 0].tolist() == [int(panoptic[scene.things[0].mask][0])]
    assert crowds > 0  # the crowd path ran


def test_segment_ids_persist_across_the_frames_of_a_video(written: Path) -> None:
    data = json.loads(annotation_file(written, "train").read_text())
    by_image = {ann["image_id"]: ann["segments_info"] for ann in data["annotations"]}
    dataset = clips(written)
    for index in range(VIDEOS):
        _, targets = dataset[index]
        labels: dict[int, int] = {}
        for target in targets:
            for instance_id, label in zip(
                target["instance_ids"].tolist(), target["labels"].tolist(), strict=True
            ):
                assert labels.setdefault(instance_id, label) == label
        seen = [set(target["instance_ids"].tolist()) for target in targets]
        assert set.intersection(*seen)  # some object is in every frame, under one id
        categories: dict[int, int] = {}
        for t in range(FRAMES):
            for segment in by_image[frame_name(index + 1, t, FRAMES)]:
                assert categories.setdefault(segment["id"], segment["category_id"]) == segment["category_id"]


def test_the_writer_is_deterministic(written: Path, tmp_path: Path) -> None:
    write_cityscapes_vps_split(tmp_path, "val", 2, 3, SIZE, SEED)
    assert annotation_file(tmp_path, "val").read_bytes() == annotation_file(written, "val").read_bytes()
    name = frame_name(2, 1, 3) + "_gtFine_color.png"
    assert (tmp_path / "val" / "panoptic_video" / name).read_bytes() == (
        written / "val" / "panoptic_video" / name
    ).read_bytes()


def edited_copy(written: Path, tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "copy"
    shutil.copytree(written, root)
    return root, json.loads(annotation_file(root, "train").read_text())


def save(root: Path, data: dict) -> None:
    annotation_file(root, "train").write_text(json.dumps(data))


def test_a_frame_missing_from_a_sequence_is_named(written: Path, tmp_path: Path) -> None:
    root, data = edited_copy(written, tmp_path)
    missing = frame_name(2, 1, FRAMES)  # frame counter 6 of the split
    data["images"] = [image for image in data["images"] if image["id"] != missing]
    data["annotations"] = [ann for ann in data["annotations"] if ann["image_id"] != missing]
    save(root, data)
    with pytest.raises(DatasetFormatError, match=r"video '0002': frame 6 is missing") as error:
        clips(root)
    assert error.value.kind == "missing_frame" and frame_name(2, 0, FRAMES) in str(error.value)


def test_a_segment_whose_category_changes_over_time_is_named(written: Path, tmp_path: Path) -> None:
    root, data = edited_copy(written, tmp_path)
    frame = frame_name(1, 2, FRAMES)
    ann = next(ann for ann in data["annotations"] if ann["image_id"] == frame)
    segment = next(s for s in ann["segments_info"] if s["category_id"] <= 4 and not s["iscrowd"])
    segment["category_id"] = segment["category_id"] % 4 + 1
    save(root, data)
    with pytest.raises(
        DatasetFormatError, match=f"video '0001', frame '{frame}': segment id {segment['id']} "
    ):
        clips(root)


def test_a_png_id_not_in_segments_info_is_named(written: Path, tmp_path: Path) -> None:
    root, _ = edited_copy(written, tmp_path)
    frame = frame_name(3, 1, FRAMES)
    png = root / "train" / "panoptic_video" / f"{frame}_gtFine_color.png"
    ids = read_coco_panoptic_png(png)
    ids[0, 0] = 777
    write_coco_panoptic_png(ids, png)
    dataset = clips(root)  # the PNGs are read with the items
    with pytest.raises(
        DatasetFormatError, match=f"video '0003', frame '{frame}': .*segment ids 777 are in the PNG"
    ) as e:
        dataset[2]
    assert e.value.kind == "unknown_segment_id"


def test_the_datamodule_yields_reference_target_pairs_and_whole_videos(written: Path) -> None:
    train, val = split_paths(written, "train"), split_paths(written, "val")
    datamodule = CityscapesVPSDataModule(
        train[0], train[1], val[0], val[1], batch_size=4, num_workers=0, val_batch_size=2
    )
    datamodule.setup("fit")
    assert isinstance(datamodule.train_dataset, CityscapesVPSPairs) and len(datamodule.train_dataset) == 12
    assert datamodule.metadata.stuff_names == ("sky", "grass", "wall", "water")
    matched = 0
    for frames, targets in datamodule.train_dataloader():
        for clip_frames, (reference, target) in zip(frames, targets, strict=True):
            assert len(clip_frames) == 2
            (v_ref, t_ref), (v, t) = (split_frame_image_id(int(x["image_id"])) for x in (reference, target))
            assert v_ref == v and abs(t_ref - t) == 1  # the official offsets -1, +1
            labels = dict(zip(reference["instance_ids"].tolist(), reference["labels"].tolist(), strict=True))
            for instance_id, label in zip(
                target["instance_ids"].tolist(), target["labels"].tolist(), strict=True
            ):
                if instance_id in labels:
                    assert labels[instance_id] == label
                    matched += 1
            # the same id in both frames is the same track: its segment id names category and instance
            assert set(reference["instance_ids"].tolist()) & set(target["instance_ids"].tolist())
    assert matched > 0
    frames, targets = next(iter(datamodule.val_dataloader()))
    assert [len(f) for f in frames] == [3, 3]
    assert [int(x["image_id"]) for x in targets[1]] == [frame_image_id(2, t) for t in range(3)]


def test_reference_offsets_are_configurable(written: Path) -> None:
    images, annotations, _ = split_paths(written, "train")
    pairs = CityscapesVPSPairs(images, annotations, reference_offsets=(2,), num_references=2)
    for index, expected in enumerate([2, 3, 2, 3]):  # frames 0..3 of video 1: +2 when it exists, else itself
        frames, targets = pairs.seeded_item(index, seed=index)
        positions = [split_frame_image_id(int(x["image_id"]))[1] for x in targets]
        assert len(frames) == 3 and positions == [expected, expected, index]
    with pytest.raises(ValueError, match="non-zero"):
        CityscapesVPSPairs(images, annotations, reference_offsets=(0,))


def test_a_hand_written_split_in_the_official_layout_reads_correctly(tmp_path: Path) -> None:
    ids = ["0005_0025_frankfurt_000000_001736", "0005_0026_frankfurt_000000_001741"]
    road, person, car = 7, 2_345_678, 16_000_001  # ids as panopticapi's colours make them
    categories = [
        {"id": 0, "name": "road", "supercategory": "flat", "isthing": 0, "color": [128, 64, 128]},
        {"id": 11, "name": "person", "supercategory": "human", "isthing": 1, "color": [220, 20, 60]},
        {"id": 13, "name": "car", "supercategory": "vehicle", "isthing": 1, "color": [0, 0, 142]},
    ]
    (tmp_path / "val" / "img").mkdir(parents=True)
    (tmp_path / "val" / "panoptic_video").mkdir()
    maps, images, annotations = [], [], []
    for t, image_id in enumerate(ids):
        panoptic = np.full((6, 8), road, np.int64)
        panoptic[1:4, 1 + t : 3 + t] = person  # moves right by one pixel
        panoptic[3:6, 5:8] = car
        panoptic[0, 7] = 0  # void
        maps.append(panoptic)
        write_coco_panoptic_png(
            torch.from_numpy(panoptic), tmp_path / "val" / "panoptic_video" / f"{image_id}_gtFine_color.png"
        )
        Image.fromarray(np.full((6, 8, 3), 40 * t, np.uint8)).save(
            tmp_path / "val" / "img" / f"{image_id}_leftImg8bit.png"
        )
        images.append({"id": image_id, "width": 8, "height": 6, "file_name": f"{image_id}_leftImg8bit.png"})
        segments = [
            {"id": road, "category_id": 0, "iscrowd": 0},
            {"id": person, "category_id": 11, "iscrowd": 0},
            {"id": car, "category_id": 13, "iscrowd": 0},
        ]
        annotations.append(
            {"image_id": image_id, "file_name": f"{image_id}_gtFine_color.png", "segments_info": segments}
        )
    (tmp_path / "panoptic_gt_val_city_vps.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    dataset = clips(tmp_path, "val")
    assert [(v.video_id, v.image_ids) for v in dataset.videos] == [(5, tuple(ids))]
    assert dataset.class_names == ["person", "car"] and dataset.stuff_names == ["road"]
    frames, targets = dataset[0]
    for t, (image, target) in enumerate(zip(frames, targets, strict=True)):
        assert int(target["image_id"]) == frame_image_id(5, t) and torch.allclose(
            image, torch.tensor(40 * t / 255)
        )
        np.testing.assert_array_equal(target["panoptic"].numpy(), maps[t])
        semantic = np.where(maps[t] == road, 0, np.where(maps[t] == person, 1, 2))
        semantic[0, 7] = IGNORE_INDEX
        np.testing.assert_array_equal(target["semantic"].numpy(), semantic)
        assert target["instance_ids"].tolist() == [person, car] and target["labels"].tolist() == [1, 2]
        assert target["boxes"].tolist() == [[1 + t, 1, 3 + t, 4], [5, 3, 8, 6]]
        assert target["segments"].tolist() == [[road, 0, 0], [person, 11, 0], [car, 13, 0]]


def test_zoo_synthetic_writes_cityscapes_vps(tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path), "--formats", "cityscapes_vps", "--size", "32"]
    assert synthetic_main([*argv, "--train-videos", "1", "--val-videos", "1", "--video-frames", "2"]) == 0
    root = tmp_path / "cityscapes_vps"
    assert len(clips(root, "train")) == 1 and len(list((root / "val" / "img").iterdir())) == 2
