"""Helpers for tests that run the real ``zoo`` CLI on a tiny synthetic world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from zoo.cli import run_cli

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE_CONFIGS = [
    REPO_ROOT / "experiments" / "mask_rcnn" / "synthetic.yaml",
    REPO_ROOT / "tests" / "configs" / "tiny_mask_rcnn.yaml",
]


def split_arguments(data_dir: Path, images: str, annotations: str) -> list[str]:
    """The DataModule's train/val image folder and annotation file overrides: ``images`` and
    ``annotations`` are paths under ``data_dir`` with ``{split}`` for ``train`` / ``val``."""
    return [
        f"--data.init_args.{split}_{kind}={data_dir / template.format(split=split)}"
        for split in ("train", "val")
        for kind, template in (("images", images), ("annotations", annotations))
    ]


def data_arguments(data_dir: Path) -> list[str]:
    return split_arguments(data_dir, "images/{split}", "annotations/instances_{split}.json")


def zoo_arguments(
    subcommand: str, data_dir: Path, runs_dir: Path, run_id: str | None, *extra: str
) -> list[str]:
    """``run_id=None``: let the CLI resolve it (e.g. from the SLURM job id)."""
    configs = [f"--config={config}" for config in BASE_CONFIGS]
    run = [f"--run_id={run_id}"] if run_id is not None else []
    return [subcommand, *configs, *data_arguments(data_dir), f"--runs_dir={runs_dir}", *run, *extra]


def run_zoo_in_process(subcommand: str, data_dir: Path, runs_dir: Path, run_id: str, *extra: str):
    return run_cli(zoo_arguments(subcommand, data_dir, runs_dir, run_id, *extra))


def run_zoo_subprocess(
    subcommand: str, data_dir: Path, runs_dir: Path, run_id: str, *extra: str, timeout: int = 300
) -> subprocess.CompletedProcess:
    """The Mask R-CNN test configs through the real console script."""
    return run_zoo_command(zoo_arguments(subcommand, data_dir, runs_dir, run_id, *extra), timeout)


def run_zoo_command(arguments: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """The real console script, as a user runs it (needed for DDP: Lightning re-executes argv)."""
    zoo = Path(sys.executable).parent / "zoo"
    subcommand = arguments[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # class paths of test-only modules (``tests.toy_gan.ToyGAN``) resolve as they do in-process
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("WANDB_SERVICE", None)  # its own W&B service, as when a user runs it
    result = subprocess.run(
        [str(zoo), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"zoo {subcommand} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
