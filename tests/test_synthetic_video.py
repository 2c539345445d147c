"""The synthetic world in motion: motion model, ground-truth flow, flow files and the YouTube-VIS writer."""

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from datamodules.errors import DatasetFormatError
from datamodules.optical_flow_files import read_flo, read_flow, write_flo, write_flow
from datamodules.synthetic.coco_writer import scene_rng
from datamodules.synthetic.video import VideoConfig, frame_flow, render_video
from datamodules.synthetic.youtube_vis_writer import uncompressed_rle, write_youtube_vis_split
from zoo.tools import synthetic

FAST = VideoConfig(num_frames=12, speed_range=(0.04, 0.08), max_pan_speed=0.02)


def test_videos_are_deterministic_per_seed() -> None:
    a, b = (render_video(np.random.default_rng(3), 64, FAST) for _ in range(2))
    c = render_video(np.random.default_rng(4), 64, FAST)
    for fa, fb in zip(a.frames, b.frames, strict=True):
        assert np.array_equal(fa.image, fb.image) and np.array_equal(fa.stuff_map, fb.stuff_map)
        assert [(t.instance_id, t.mask.tobytes()) for t in fa.things] == [
            (t.instance_id, t.mask.tobytes()) for t in fb.things
        ]
    assert not np.array_equal(a.frames[0].image, c.frames[0].image)


def test_things_keep_their_ids_move_enter_leave_and_occlude() -> None:
    entered = left = hidden = 0
    for seed in range(8):
        video = render_video(np.random.default_rng(seed), 64, FAST)
        track_ids = [track.instance_id for track in video.tracks]
        shown = [[thing.instance_id for thing in frame.things] for frame in video.frames]
        for t, (frame, ids) in enumerate(zip(video.frames, shown, strict=True)):
            assert ids == sorted(ids) and set(ids) <= set(track_ids)  # bottom to top, ids of the tracks
            for thing in frame.things:  # a thing's shape in a frame is its track's
                assert thing.shape == video.tracks[thing.instance_id - 1].shape_at(t)
            masks = [thing.mask for thing in frame.things]
            assert sum(m.sum() for m in masks) == np.logical_or.reduce(masks, initial=False).sum()  # disjoint
        for track in track_ids:
            present = [track in ids for ids in shown]
            first, last = present.index(True) if any(present) else 0, len(present) - present[::-1].index(True)
            entered += not present[0] and any(present)
            left += not present[-1] and any(present)
            hidden += any(not p for p in present[first:last])
    assert entered and left and hidden


def test_stuff_pans_by_whole_pixels_and_its_flow_is_exact() -> None:
    video = render_video(np.random.default_rng(1), 64, FAST)
    for t in range(video.num_frames - 1):
        flow = frame_flow(video, t)
        assert flow.shape == (64, 64, 2) and flow.dtype == np.float32
        dx, dy = (video.pan_offsets[t] - video.pan_offsets[t + 1]).tolist()
        on_things = np.logical_or.reduce([thing.mask for thing in video.frames[t].things], initial=False)
        assert np.array_equal(flow[~on_things], np.broadcast_to([dx, dy], flow[~on_things].shape))
        # where frame t + 1 shows stuff at p + flow, it shows what frame t shows at p
        ys, xs = np.nonzero(~on_things)
        x2, y2 = xs + dx, ys + dy
        inside = (x2 >= 0) & (x2 < 64) & (y2 >= 0) & (y2 < 64)
        nxt = video.frames[t + 1]
        next_things = np.logical_or.reduce([thing.mask for thing in nxt.things], initial=False)
        keep = inside.copy()
        keep[inside] = ~next_things[y2[inside], x2[inside]]
        assert keep.sum() > 1000
        frame = video.frames[t]
        assert np.array_equal(frame.image[ys[keep], xs[keep]], nxt.image[y2[keep], x2[keep]])
        assert np.array_equal(frame.stuff_map[ys[keep], xs[keep]], nxt.stuff_map[y2[keep], x2[keep]])


def _outline_distances(outline: np.ndarray, points: np.ndarray) -> np.ndarray:
    contour = outline.astype(np.float32)
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points])


def test_thing_flow_is_the_things_rigid_motion() -> None:
    hits = total = 0
    for seed in range(3):
        video = render_video(np.random.default_rng(seed), 64, FAST)
        for t in range(video.num_frames - 1):
            flow = frame_flow(video, t)
            for thing in video.frames[t].things:
                ys, xs = np.nonzero(thing.mask)
                centres = np.stack([xs, ys], axis=1) + 0.5
                moved = centres + flow[ys, xs]
                after = video.tracks[thing.instance_id - 1].shape_at(t + 1)
                # the same surface point: its signed distance to the outline scales with the thing
                before_distance = _outline_distances(thing.shape.outline(), centres)
                after_distance = _outline_distances(after.outline(), moved)
                scale = after.size / thing.shape.size
                np.testing.assert_allclose(after_distance, before_distance * scale, atol=1e-4)
                x2, y2 = np.floor(moved).astype(int).T
                inside = (x2 >= 0) & (x2 < 64) & (y2 >= 0) & (y2 < 64)
                hits += int(after.full_mask(64)[y2[inside], x2[inside]].sum())
                total += int(inside.sum())
    assert total > 1000 and hits / total > 0.95  # misses: pixels on the rasterized outline


def test_flo_files_round_trip_in_the_middlebury_layout(tmp_path: Path) -> None:
    flow = np.random.default_rng(0).normal(size=(5, 7, 2)).astype(np.float32)
    write_flo(tmp_path / "a.flo", flow)
    data = (tmp_path / "a.flo").read_bytes()
    assert data[:4] == b"PIEH" and np.frombuffer(data[4:12], "<i4").tolist() == [7, 5]
    assert len(data) == 12 + 5 * 7 * 2 * 4
    assert np.array_equal(np.frombuffer(data[12:], "<f4")[:2], flow[0, 0])  # u, v interleaved, row-major
    assert np.array_equal(read_flo(tmp_path / "a.flo"), flow)
    write_flow(tmp_path / "a.npy", flow)
    assert np.array_equal(read_flow(tmp_path / "a.npy"), flow)
    (tmp_path / "bad.flo").write_bytes(b"XXXX" + data[4:])
    with pytest.raises(DatasetFormatError, match=r"bad\.flo: not a Middlebury"):
        read_flo(tmp_path / "bad.flo")
    (tmp_path / "short.flo").write_bytes(data[:-4])
    with pytest.raises(DatasetFormatError, match=r"short\.flo: a 7x5 \.flo file has"):
        read_flow(tmp_path / "short.flo")
    with pytest.raises(DatasetFormatError, match="not found"):
        read_flow(tmp_path / "missing.flo")


def test_uncompressed_rle_decodes_to_the_mask() -> None:
    mask = np.random.default_rng(0).random((9, 7)) > 0.5
    mask[0, 0] = True  # starts with an empty run of zeros
    rle = uncompressed_rle(mask)
    assert rle["counts"][0] == 0 and sum(rle["counts"]) == 63
    assert np.array_equal(mask_utils.decode(mask_utils.frPyObjects(rle, 9, 7)).astype(bool), mask)


def test_writer_writes_the_youtube_vis_layout_and_flow(tmp_path: Path) -> None:
    config = replace(FAST, num_frames=5)
    path = write_youtube_vis_split(tmp_path, "train", 2, 5, 64, seed=7, config=config, flow="flo")
    data = json.loads(path.read_text())
    assert path == tmp_path / "annotations" / "instances_train.json"
    assert set(data) == {"info", "licenses", "videos", "categories", "annotations"}
    video = data["videos"][0]
    assert video["file_names"] == [f"000001/{t:05d}.jpg" for t in range(5)]
    assert (video["id"], video["length"], video["width"], video["height"]) == (1, 5, 64, 64)
    assert all((tmp_path / "train" / "JPEGImages" / name).is_file() for name in video["file_names"])
    rendered = render_video(scene_rng(7, "video-train", 0), 64, config)
    ann = data["annotations"][0]
    assert ann["id"] == 1 and ann["video_id"] == 1 and ann["iscrowd"] == 0 and ann["length"] == 5
    for t in range(5):
        thing = next((th for th in rendered.frames[t].things if th.instance_id == 1), None)
        segmentation = ann["segmentations"][t]
        assert (segmentation is None) == (thing is None) == (ann["bboxes"][t] is None)
        if thing is not None:
            assert isinstance(segmentation["counts"], list)
            assert np.array_equal(mask_utils.decode(mask_utils.frPyObjects(segmentation, 64, 64)), thing.mask)
            assert ann["areas"][t] == thing.mask.sum()
    for t in range(4):
        flow = read_flow(tmp_path / "train" / "Flow" / "000001" / f"{t:05d}.flo")
        assert np.array_equal(flow, frame_flow(rendered, t))
    assert not (tmp_path / "train" / "Flow" / "000001" / "00004.flo").exists()
    again = write_youtube_vis_split(tmp_path / "again", "train", 2, 5, 64, seed=7, config=config)
    assert again.read_bytes() == path.read_bytes()
    frame = Path("train/JPEGImages/000002/00003.jpg")
    assert (tmp_path / "again" / frame).read_bytes() == (tmp_path / frame).read_bytes()


def test_zoo_synthetic_writes_ytvis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["--out", str(tmp_path), "--formats", "ytvis", "--size", "48", "--video-frames", "3"]
    arguments += ["--train-videos", "2", "--val-videos", "1", "--flow", "npy"]
    assert synthetic.main(arguments) == 0
    val = json.loads((tmp_path / "ytvis" / "annotations" / "instances_val.json").read_text())
    assert len(val["videos"]) == 1 and val["videos"][0]["length"] == 3
    assert (tmp_path / "ytvis" / "train" / "Flow" / "000002" / "00001.npy").is_file()
    assert not (tmp_path / "images").exists()  # only the format asked for
    assert "ytvis train: 2 videos of 3 frames" in capsys.readouterr().out
