"""Slow: YolactEdge's three synthetic stages, exactly as their YAMLs run, on the synthetic world in motion
(100 training videos and 20 validation videos of 20 frames, 128 px): the image stage, the transform stage
(FeatFlowNet + SPA by feature matching) and joint fine-tuning, each from the previous stage's checkpoint.
Validated in clips of 5 (a keyframe, then 4 non-keyframes), on the last stage's checkpoint:

- non-keyframe mask AP50 stays within ``MAX_KEYFRAME_GAP`` of keyframe AP50 (the issue's "Must show");
- warping the keyframe's P4, P5 with the estimated flow beats reusing them unwarped (``non_keyframes=copy``,
  the same checkpoint) by at least ``MIN_WARP_GAIN_AP`` non-keyframe mask AP and by some AP50.

Measured (2 cores, 10 min): image stage mask AP50 0.761 (every frame through the full network). Transform
stage: warped non-keyframes AP50 0.599 against 0.684 unwarped -- warping *loses* there: the cosine
feature-matching loss (official ``feature_matching_loss='cosine'``) constrains the direction of the warped
features, not their magnitude, which scale/bias and SPA are free to change (the official stage 2 trains only
the flow, on FlyingChairs' ground truth). Fine-tuning, which trains the heads on warped features with
YOLACT's losses too, closes it: keyframe AP50 0.797, warped non-keyframes 0.727 (gap 0.070), unwarped
0.700; mask AP 0.444 warped against 0.400 unwarped (+0.044). The test prints every number."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from datamodules.synthetic.youtube_vis_writer import write_youtube_vis_split
from tests.cli_runs import REPO_ROOT, read_metrics, split_arguments
from zoo.cli import run_cli

EXPERIMENTS = REPO_ROOT / "experiments" / "yolact_edge"
STAGES = ("synthetic_image", "synthetic_flow", "synthetic_finetune")
MAX_KEYFRAME_GAP = 0.1
MIN_WARP_GAIN_AP = 0.02


def final_record(run_dir: Path) -> dict:
    return [r for r in read_metrics(run_dir) if "val/non_keyframe/segm/AP50" in r][-1]


def validate_unwarped(stage: str, checkpoint: Path, runs: Path, common: list[str]) -> dict:
    """The stage's checkpoint validated with the keyframe's P4, P5 reused as they are."""
    run_cli(
        [
            "validate",
            f"--config={EXPERIMENTS / f'{stage}.yaml'}",
            *common,
            "--run_id=copy",
            f"--ckpt_path={checkpoint}",
            "--model.init_args.non_keyframes=copy",
        ]
    )
    return final_record(runs / f"yolact_edge_{stage}" / "copy")


@pytest.mark.slow
def test_warped_non_keyframes_keep_up_with_keyframes_and_beat_no_warping(tmp_path: Path) -> None:
    data = tmp_path / "ytvis"
    write_youtube_vis_split(data, "train", 100, num_frames=20, image_size=128, seed=0)
    write_youtube_vis_split(data, "val", 20, num_frames=20, image_size=128, seed=0)
    runs = tmp_path / "runs"
    common = [
        *split_arguments(data, "{split}/JPEGImages", "annotations/instances_{split}.json"),
        f"--runs_dir={runs}",
        "--wandb=false",
    ]
    started = time.perf_counter()
    checkpoint = None
    for stage in STAGES:
        previous = [] if checkpoint is None else [f"--model.init_args.checkpoint={checkpoint}"]
        run_cli(["fit", f"--config={EXPERIMENTS / f'{stage}.yaml'}", *common, "--run_id=stage", *previous])
        run_dir = runs / f"yolact_edge_{stage}" / "stage"
        checkpoint = run_dir / "checkpoints" / "last.ckpt"
        warped = final_record(run_dir)
        line = (
            f"{stage}: step {warped['step']}, mask AP50 keyframe {warped['val/keyframe/segm/AP50']:.3f}, "
            f"non-keyframe {warped['val/non_keyframe/segm/AP50']:.3f}"
        )
        if stage != "synthetic_image":  # the image stage runs every frame through the full network
            unwarped = validate_unwarped(stage, checkpoint, runs, common)
            assert unwarped["val/keyframe/segm/AP50"] == pytest.approx(warped["val/keyframe/segm/AP50"])
            line += (
                f" warped, {unwarped['val/non_keyframe/segm/AP50']:.3f} unwarped; non-keyframe mask AP "
                f"{warped['val/non_keyframe/segm/AP']:.3f} warped, "
                f"{unwarped['val/non_keyframe/segm/AP']:.3f} unwarped"
            )
        print(f"{line}; {time.perf_counter() - started:.0f} s so far")
    keyframe_ap50 = warped["val/keyframe/segm/AP50"]
    assert keyframe_ap50 - warped["val/non_keyframe/segm/AP50"] <= MAX_KEYFRAME_GAP
    assert warped["val/non_keyframe/segm/AP"] - unwarped["val/non_keyframe/segm/AP"] >= MIN_WARP_GAIN_AP
    assert warped["val/non_keyframe/segm/AP50"] > unwarped["val/non_keyframe/segm/AP50"]
