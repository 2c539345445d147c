"""The landmark experiments run as users run them: `zoo landmark-comparison` trains the three synthetic
experiments (regression, heatmaps with three decoders, hourglass) for a few steps on a tiny synthetic
keypoint world and prints one table; `zoo predict` writes COCO keypoint results that pycocotools loads."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import wandb
from PIL import Image
from pycocotools.coco import COCO

from datamodules.synthetic.coco_writer import write_coco_keypoints
from tests.cli_runs import REPO_ROOT, read_metrics, run_zoo_command, split_arguments
from tests.test_exact_resume import STEPS, assert_identical, final_state
from zoo.cli import main as zoo_main
from zoo.cli import run_cli
from zoo.tools.landmark_comparison import DEFAULT_CONFIGS, last_evaluation, markdown_table, rows_of_run


@pytest.fixture(scope="module")
def star_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stars")
    write_coco_keypoints(out, "train", num_images=24, image_size=128, seed=0)
    write_coco_keypoints(out, "val", num_images=12, image_size=128, seed=0)
    return out


def data_overrides(data_dir: Path) -> list[str]:
    return [
        *split_arguments(data_dir, "images/{split}", "annotations/keypoints_{split}.json"),
        "--data.init_args.batch_size=4",
        "--data.init_args.num_workers=0",
    ]


SHORT = ["--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.enable_progress_bar=false"]


def test_landmark_comparison_trains_each_experiment_and_prints_one_table(
    star_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    markdown = tmp_path / "table.md"
    configs = [str(REPO_ROOT / config) for config in DEFAULT_CONFIGS]
    arguments = ["landmark-comparison", "--configs", *configs, "--runs-dir", str(runs), "--run-id", "t"]
    assert (
        zoo_main(
            [*arguments, "--markdown", str(markdown), "--no-wandb", "--", *data_overrides(star_world), *SHORT]
        )
        == 0
    )
    table = markdown.read_text().splitlines()
    assert table[0].startswith("| experiment | model | decoder | params | NME | PCK@0.05 | PCK@0.1 |")
    body = [line.split(" | ") for line in table[2:]]
    assert [(cells[0].strip("| "), cells[2]) for cells in body] == [
        ("landmarks_synthetic_regression", "-"),
        ("landmarks_synthetic_heatmap", "argmax"),
        ("landmarks_synthetic_heatmap", "dark"),
        ("landmarks_synthetic_heatmap", "soft_argmax"),
        ("hourglass_synthetic", "dark"),
    ]
    assert "landmarks_synthetic_heatmap" in capsys.readouterr().out
    record = last_evaluation(runs / "hourglass_synthetic" / "t" / "metrics.jsonl")
    assert record["step"] == 2 and record["val/keypoints/NME"] >= 0
    assert "val/keypoints/AP" in record  # the synthetic layout has OKS sigmas: COCO keypoint AP too


def test_rows_and_table_from_records() -> None:
    record = {"val/keypoints/NME": 0.1, "val/keypoints/PCK@0.05": 0.5, "val/keypoints/PCK@0.1": 0.75}
    (row,) = rows_of_run("exp", "Model", None, 1234, 12.3, record)
    assert row.decoder == "-" and row.values == {"NME": 0.1, "PCK@0.05": 0.5, "PCK@0.1": 0.75}
    assert (
        markdown_table([row]).splitlines()[2] == "| exp | Model | - | 1,234 | 0.1000 | 0.5000 | 0.7500 | 12 |"
    )


def test_fit_logs_overlays_and_predict_writes_coco_keypoint_results(star_world: Path, tmp_path: Path) -> None:
    """Fit with W&B (offline): 3 keypoint overlays (crop with ground truth, prediction, skeleton and the
    heatmap panel) for the one validation; then predict: one COCO keypoint result per star."""
    config = REPO_ROOT / "experiments" / "landmarks" / "synthetic_heatmap.yaml"
    common = [f"--config={config}", *data_overrides(star_world), f"--runs_dir={tmp_path}", "--run_id=p"]
    try:
        run_cli(["fit", *common, *SHORT, "--model.init_args.overlay_images=3"])
    finally:
        wandb.finish()
    [offline_run] = (tmp_path / "landmarks_synthetic_heatmap" / "p" / "wandb").glob("offline-run-*")
    overlays = sorted((offline_run / "files" / "media" / "images" / "val").glob("predictions_*.png"))
    assert len(overlays) == 3
    with Image.open(overlays[0]) as overlay:
        assert overlay.size == (512, 256)  # the 64 px crop drawn at 256 px, the heatmap panel beside it
    run_cli(["predict", *common, "--ckpt_path=last", "--wandb=false"])
    results = json.loads((tmp_path / "landmarks_synthetic_heatmap" / "p" / "predictions.json").read_text())
    ground_truth_file = star_world / "annotations" / "keypoints_val.json"
    annotations = json.loads(ground_truth_file.read_text())["annotations"]
    stars = [a for a in annotations if a["category_id"] == 4 and not a["iscrowd"]]  # crowds: no items
    assert len(results) == len(stars) and all(len(r["keypoints"]) == 3 * 11 for r in results)
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = COCO(str(ground_truth_file)).loadRes(results)
    assert len(loaded.anns) == len(stars)


def test_ddp_on_two_cpu_processes_gives_the_single_process_keypoint_metrics(star_world: Path, tmp_path: Path):
    """The held-out stars over 2 gloo ranks: DistributedSampler pads a rank with a repeated crop when their
    number is odd, and NME, PCK and COCO keypoint AP must still equal one process scoring each star once."""
    config = REPO_ROOT / "experiments" / "landmarks" / "synthetic_heatmap.yaml"
    common = [f"--config={config}", *data_overrides(star_world), f"--runs_dir={tmp_path}", "--wandb=false"]
    run_cli(["fit", *common, *SHORT, "--run_id=trained"])
    checkpoint = tmp_path / "landmarks_synthetic_heatmap" / "trained" / "checkpoints" / "last.ckpt"
    evaluate = ["validate", *common, f"--ckpt_path={checkpoint}", "--trainer.accelerator=cpu"]
    run_zoo_command([*evaluate, "--run_id=single", "--trainer.devices=1"])
    run_zoo_command([*evaluate, "--run_id=ddp", "--trainer.devices=2", "--trainer.strategy=ddp"])
    [single] = read_metrics(tmp_path / "landmarks_synthetic_heatmap" / "single")
    [distributed] = read_metrics(tmp_path / "landmarks_synthetic_heatmap" / "ddp")
    stars = [
        a
        for a in json.loads((star_world / "annotations" / "keypoints_val.json").read_text())["annotations"]
        if a["category_id"] == 4 and not a["iscrowd"]
    ]
    assert len(stars) % 2 == 1  # so that the sampler pads
    names = [name for name in single if name.startswith("val/keypoints")]
    assert {
        "val/keypoints/NME",
        "val/keypoints/PCK@0.05",
        "val/keypoints/AP",
        "val/keypoints_dark/NME",
    } <= set(names)
    for name in names:
        assert distributed[name] == pytest.approx(single[name], abs=1e-9), name


def test_keypoint_training_resumes_exactly(star_world: Path, tmp_path: Path) -> None:
    """6 steps of the heatmap experiment in one go equal 3 steps, a stop and a resume to 6 (mid-epoch,
    across a validation at step 4): weights, optimizer and schedule bit for bit, the crops' scale and
    flip draws included (``CocoKeypointsDataset.seeded_item``)."""
    config = REPO_ROOT / "experiments" / "landmarks" / "synthetic_heatmap.yaml"
    common = [
        f"--config={config}",
        *data_overrides(star_world),
        f"--runs_dir={tmp_path}",
        "--wandb=false",
        "--trainer.val_check_interval=4",
        "--trainer.enable_progress_bar=false",
    ]
    one_go = run_cli(["fit", *common, "--run_id=one-go", f"--trainer.max_steps={STEPS}"])
    expected = final_state(one_go)
    run_cli(["fit", *common, "--run_id=resumed", "--trainer.max_steps=3"])
    resumed = run_cli(
        ["fit", *common, "--run_id=resumed", f"--trainer.max_steps={STEPS}", "--ckpt_path=last"]
    )
    assert Path(resumed.trainer.ckpt_path).name == "last.ckpt"  # it resumed, rather than starting over
    assert_identical(final_state(resumed), expected)
