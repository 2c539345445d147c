"""Slow: VPSNet's two synthetic stages, exactly as their YAMLs run, on the synthetic world in motion in the
Cityscapes-VPS layout (100 training videos and 10 validation videos of 20 frames, 128 px): the image
network (``experiments/vpsnet/synthetic_upsnet.yaml``), scored frame by frame with ids linked by mask IoU
between consecutive frames (the issue's baseline), then VPSNet fine-tuned from it (``synthetic.yaml``),
scored with its track head's ids; then the same VPSNet checkpoint validated with fusion off (the fuse
module's effect).

Asserted (the issue's "Must show"): VPSNet's VPQ beats the baseline's and its id switches are fewer.
The fuse ablation is measured and printed, not asserted. The test prints every number.

Measured (2 cores, 21 min 12 s in all; the runs are deterministic: stage 1 gave the same numbers to the
last digit in three runs): the baseline (300 steps) VPQ 0.688 (k0-k3 0.724, 0.689, 0.678, 0.663), frame PQ
0.724, 16 id switches over 329 matched ground-truth segments of 24 tracks; VPSNet (400 more steps) VPQ 0.730
(0.766, 0.731, 0.722, 0.701), frame PQ 0.766, 9 id switches over 351; VPSNet's frames linked by mask IoU
instead of its track head VPQ 0.727 with 17 switches; fusion off on the same checkpoint VPQ 0.738 (frame PQ
0.770), 6 switches. Of the +0.042, the track head's ids give 0.003 (and half the switches); fusion's effect
is within what small changes move (-0.008 here, +0.007 before UPSNet's thing-logit crop changed); the rest is
better frames after the longer training. With 200 fine-tuning steps the lead was 0.004 (VPQ 0.673, 4
switches; before the crop change).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from datamodules.synthetic.cityscapes_vps_writer import write_cityscapes_vps_split
from tests.cli_runs import REPO_ROOT, read_metrics, split_arguments
from zoo.cli import run_cli

EXPERIMENTS = REPO_ROOT / "experiments" / "vpsnet"
TIME_LIMIT_S = 30 * 60


def final_record(run_dir: Path) -> dict:
    return [r for r in read_metrics(run_dir) if "val/VPQ" in r][-1]


def summary(name: str, record: dict, prefix: str = "val") -> str:
    per_k = ", ".join(f"k{k} {record[f'{prefix}/k{k}/PQ']:.3f}" for k in range(4))
    return (
        f"{name}: VPQ {record[f'{prefix}/VPQ']:.3f} (things {record[f'{prefix}/VPQ_things']:.3f}, stuff "
        f"{record[f'{prefix}/VPQ_stuff']:.3f}; {per_k}), id switches {record[f'{prefix}/id_switches']:.0f} "
        f"of {record[f'{prefix}/matches']:.0f} matches on {record[f'{prefix}/tracks']:.0f} tracks"
    )


@pytest.mark.slow
def test_vpsnet_beats_upsnet_frame_by_frame_with_fewer_id_switches(tmp_path: Path) -> None:
    data = tmp_path / "cityscapes_vps"
    write_cityscapes_vps_split(data, "train", 100, 20, 128, 0)
    write_cityscapes_vps_split(data, "val", 10, 20, 128, 0)
    runs = tmp_path / "runs"
    common = [
        *split_arguments(data, "{split}/img", "panoptic_gt_{split}_city_vps.json"),
        f"--runs_dir={runs}",
        "--wandb=false",
    ]
    started = time.perf_counter()
    run_cli(["fit", f"--config={EXPERIMENTS / 'synthetic_upsnet.yaml'}", *common, "--run_id=image"])
    image_dir = runs / "vpsnet_synthetic_upsnet" / "image"
    baseline = final_record(image_dir)
    print(summary("UPSNet frame by frame, mask-IoU ids", baseline))
    print(f"  frame PQ {baseline['val/panoptic/PQ']:.3f}; {time.perf_counter() - started:.0f} s so far")

    checkpoint = image_dir / "checkpoints" / "last.ckpt"
    video = [f"--config={EXPERIMENTS / 'synthetic.yaml'}", *common, "--run_id=video"]
    run_cli(["fit", *video, f"--model.init_args.checkpoint={checkpoint}"])
    video_dir = runs / "vpsnet_synthetic" / "video"
    vpsnet = final_record(video_dir)
    print(summary("VPSNet, track head ids", vpsnet))
    print(summary("VPSNet's frames, mask-IoU ids", vpsnet, "val/mask_iou"))
    print(f"  frame PQ {vpsnet['val/panoptic/PQ']:.3f}; {time.perf_counter() - started:.0f} s so far")

    run_cli(["validate", *video, "--ckpt_path=last", "--model.init_args.model.init_args.fusion=false"])
    unfused = final_record(video_dir)
    print(summary("VPSNet without fusion (same checkpoint), track head ids", unfused))
    print(f"  frame PQ {unfused['val/panoptic/PQ']:.3f}; {time.perf_counter() - started:.0f} s in all")

    assert vpsnet["val/VPQ"] > baseline["val/VPQ"]
    assert vpsnet["val/id_switches"] < baseline["val/id_switches"]
    assert time.perf_counter() - started <= TIME_LIMIT_S
