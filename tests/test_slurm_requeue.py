"""SLURM requeue and resume, simulated on the CPU: SLURM's environment variables, ``scontrol`` replaced by a
stub on PATH that records its call, SIGUSR1 sent to every process of the "job step" (as SLURM does), then
the "requeued" process started again with the same job id and SLURM_RESTART_COUNT=1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.cli_runs import REPO_ROOT, read_metrics, run_zoo_subprocess, zoo_arguments
from zoo.cluster.slurm_requeue import (
    newest_checkpoint,
    next_requeue_checkpoint,
    requeue_slurm_job,
    resume_checkpoint,
)
from zoo.runs.location import RunLocation

JOB_ID = "4242"
EXPERIMENT = "mask_rcnn_synthetic"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _slurm_environment(bin_dir: Path, rank: int, ranks: int, port: int, **extra: str) -> dict[str, str]:
    """What srun gives task ``rank`` of a 1-node job with ``ranks`` tasks (Lightning's SLURMEnvironment
    reads these)."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("SLURM_")}
    environ.pop("ZOO_RUN_ID", None)
    # a requeued job is a new process tree with its own W&B service, not the one this pytest process started
    environ.pop("WANDB_SERVICE", None)
    return {
        **environ,
        "PATH": f"{bin_dir}{os.pathsep}{environ['PATH']}",
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "SLURM_JOB_ID": JOB_ID,
        "SLURM_JOB_NAME": "train",
        "SLURM_NTASKS": str(ranks),
        "SLURM_NTASKS_PER_NODE": str(ranks),
        "SLURM_NNODES": "1",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NODELIST": "localhost",
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(rank),
        "SLURM_NODEID": "0",
        **extra,
    }


def _start_job_step(
    tmp_path: Path, name: str, ranks: int, arguments: list[str], **extra: str
) -> list[tuple[subprocess.Popen, Path]]:
    """Start ``ranks`` tasks as srun does (one process group each, so that a signal reaches the task's
    DataLoader workers too)."""
    bin_dir, port = tmp_path / "bin", _free_port()
    zoo = str(Path(sys.executable).parent / "zoo")
    tasks = []
    for rank in range(ranks):
        log = tmp_path / f"{name}-rank{rank}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                [zoo, *arguments],
                env=_slurm_environment(bin_dir, rank, ranks, port, **extra),
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        tasks.append((process, log))
    return tasks


def _kill(tasks: list[tuple[subprocess.Popen, Path]]) -> None:
    for process, _ in tasks:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for(condition, tasks: list[tuple[subprocess.Popen, Path]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        exited = [(process, log) for process, log in tasks if process.poll() is not None]
        if exited or time.monotonic() > deadline:
            _kill(tasks)
            process, log = exited[0] if exited else tasks[0]
            raise AssertionError(
                f"waiting for {what}: exited {process.returncode}\n{log.read_text()[-6000:]}"
            )
        time.sleep(0.1)


def _finish(tasks: list[tuple[subprocess.Popen, Path]], timeout: float) -> str:
    """Wait for every task to exit by itself; their output, rank 0 first."""
    try:
        for process, _ in tasks:
            process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(tasks)
        raise AssertionError("a task did not stop:\n" + tasks[0][1].read_text()[-6000:]) from None
    outputs = [log.read_text() for _, log in tasks]
    for (process, _), output in zip(tasks, outputs, strict=True):
        assert process.returncode == 0, output[-6000:]
    return "\n".join(outputs)


@pytest.mark.parametrize(
    "ranks", [1, pytest.param(2, marks=pytest.mark.slow, id="2-ddp-ranks")], ids=lambda ranks: f"{ranks}-rank"
)
def test_sigusr1_checkpoints_requeues_and_the_requeued_job_resumes_in_the_same_run(
    tiny_synthetic: Path, tmp_path: Path, ranks: int
) -> None:
    (tmp_path / "bin").mkdir()
    scontrol_calls = tmp_path / "scontrol-calls"
    scontrol = tmp_path / "bin" / "scontrol"
    scontrol.write_text(f'#!/bin/bash\necho "$@" >> "{scontrol_calls}"\n')
    scontrol.chmod(0o755)
    runs = tmp_path / "runs"
    run_dir = runs / EXPERIMENT / f"slurm-{JOB_ID}"  # from the job id: no --run_id is given
    # One DataLoader worker per task: a process of the job step too, so it gets the signal as well.
    common = ["--trainer.accelerator=cpu", f"--trainer.devices={ranks}", "--data.init_args.num_workers=1"]
    if ranks > 1:
        common.append("--trainer.strategy=ddp")

    # First start: long enough to be still training when the signal comes.
    first = _start_job_step(
        tmp_path,
        "first",
        ranks,
        zoo_arguments(
            "fit",
            tiny_synthetic,
            runs,
            None,
            *common,
            "--trainer.max_steps=1000",
            "--trainer.val_check_interval=2",
        ),
    )
    metrics_file = run_dir / "metrics.jsonl"
    _wait_for(
        lambda: metrics_file.is_file() and metrics_file.read_text().strip(),
        first,
        180,
        "the first evaluation",
    )
    for process, _ in first:
        os.killpg(process.pid, signal.SIGUSR1)  # SLURM signals every process of the job step
    first_output = _finish(first, timeout=90)  # each task stops by itself once the job is requeued
    assert "SLURM auto-requeueing enabled" not in first_output  # Lightning's in-handler checkpoint is off
    assert scontrol_calls.read_text().splitlines() == [f"requeue {JOB_ID}"]  # once: rank 0, not a worker
    [checkpoint] = run_dir.glob("hpc_ckpt_*.ckpt")
    saved_step = torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]
    assert saved_step > 2, "the signal came after the first evaluation (step 2)"
    first_steps = [record["step"] for record in read_metrics(run_dir)]
    assert max(first_steps) <= saved_step

    # The requeued job: same job id, SLURM_RESTART_COUNT=1, the same command (shorter here).
    second = _start_job_step(
        tmp_path,
        "second",
        ranks,
        zoo_arguments(
            "fit",
            tiny_synthetic,
            runs,
            None,
            *common,
            f"--trainer.max_steps={saved_step + 2}",
            "--trainer.val_check_interval=1",
        ),
        SLURM_RESTART_COUNT="1",
    )
    second_output = _finish(second, timeout=180)
    assert f"Resuming from {checkpoint}" in second_output
    second_steps = [record["step"] for record in read_metrics(run_dir)][len(first_steps) :]
    # Validation after every step: a restart from step 0 would evaluate at steps 1, 2, ...
    assert second_steps == [saved_step + 1, saved_step + 2]

    assert [path.name for path in (runs / EXPERIMENT).iterdir()] == [f"slurm-{JOB_ID}"]
    wandb_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2, wandb_runs  # one per start, one W&B run id: `wandb sync` appends
    assert {path.name.split("-", 3)[-1] for path in wandb_runs} == {f"{EXPERIMENT}-slurm-{JOB_ID}"}
    assert scontrol_calls.read_text().splitlines() == [f"requeue {JOB_ID}"]

    if ranks == 1:
        # Exact: the same weights as a job never interrupted (resumed from a batch-end checkpoint, whose
        # step depended on when the signal came), both with one thread per process.
        run_zoo_subprocess(
            "fit",
            tiny_synthetic,
            tmp_path / "reference",
            "uninterrupted",
            "--trainer.accelerator=cpu",
            "--data.init_args.num_workers=1",
            f"--trainer.max_steps={saved_step + 2}",
            "--wandb=false",
        )
        reference = tmp_path / "reference" / EXPERIMENT / "uninterrupted" / "checkpoints" / "last.ckpt"
        resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        expected = torch.load(reference, map_location="cpu", weights_only=False)
        assert resumed["global_step"] == expected["global_step"] == saved_step + 2
        for name, value in expected["state_dict"].items():
            assert torch.equal(resumed["state_dict"][name], value), name


def _touch(path: Path, mtime_ns: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_a_restarted_job_resumes_from_the_newest_checkpoint(tmp_path: Path) -> None:
    location = RunLocation(EXPERIMENT, f"slurm-{JOB_ID}", tmp_path)
    restarted = {"SLURM_RESTART_COUNT": "1"}
    assert resume_checkpoint(location, None, restarted) is None  # killed before any checkpoint: from scratch
    assert resume_checkpoint(location, "last", {}) == "last"  # Lightning warns and starts from scratch

    last = _touch(location.checkpoints / "last.ckpt", 1_000)
    # Killed without warning (no SIGUSR1, so no requeue checkpoint): last.ckpt.
    assert resume_checkpoint(location, None, restarted) == str(last)
    assert resume_checkpoint(location, None, {"SLURM_RESTART_COUNT": "0"}) is None  # a first start

    assert next_requeue_checkpoint(location.root).name == "hpc_ckpt_1.ckpt"
    requeue_1 = _touch(location.root / "hpc_ckpt_1.ckpt", 2_000)
    requeue_10 = _touch(location.root / "hpc_ckpt_10.ckpt", 3_000)
    assert next_requeue_checkpoint(location.root).name == "hpc_ckpt_11.ckpt"
    assert newest_checkpoint(location) == requeue_10 != requeue_1
    assert resume_checkpoint(location, None, restarted) == str(requeue_10)
    assert resume_checkpoint(location, "last", {}) == str(requeue_10)  # `last` includes requeue checkpoints

    # Trained on after the last requeue, then lost the node: last.ckpt is newer than every requeue checkpoint.
    _touch(last, 4_000)
    assert resume_checkpoint(location, None, restarted) == str(last)
    # Resubmitted by hand as a new job naming the run: Lightning alone would load hpc_ckpt_10.
    assert resume_checkpoint(location, None, {}) == str(last)
    # An explicit checkpoint is the user's choice.
    assert resume_checkpoint(location, "/some/where.ckpt", restarted) == "/some/where.ckpt"
    assert resume_checkpoint(location, "best", restarted) == "best"


@pytest.mark.parametrize("environ", [{}, {"SLURM_RESTART_COUNT": ""}])
def test_without_a_restart_nothing_is_resumed_unasked(tmp_path: Path, environ: dict[str, str]) -> None:
    location = RunLocation(EXPERIMENT, "local", tmp_path)
    _touch(location.checkpoints / "last.ckpt", 1_000)
    assert resume_checkpoint(location, None, environ) is None


def test_scontrol_requeues_the_job_id_slurm_knows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/bash\necho "$@" >> "{calls}"\nexit "${{SCONTROL_EXIT:-0}}"\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    array_task = {"SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "2"}
    assert requeue_slurm_job(array_task)
    assert calls.read_text().splitlines() == ["requeue 7_2"]  # the task, not the whole array
    monkeypatch.setenv("SCONTROL_EXIT", "1")
    assert not requeue_slurm_job({"SLURM_JOB_ID": "9"})  # refused: the caller trains on
    assert not requeue_slurm_job({})
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not requeue_slurm_job({"SLURM_JOB_ID": "9"})  # no scontrol (e.g. inside a container)
