"""SLURM requeue at an optimizer-step boundary, and the checkpoint a requeued job resumes from.

SLURM sends SIGUSR1 ``--signal=SIGUSR1@90`` seconds before the time limit (experiments/slurm/train.sbatch).
Lightning's own handler (``SLURMEnvironment(auto_requeue=True)``) writes its checkpoint inside the signal
handler, wherever the main thread happens to be -- possibly between two parameter updates of one optimizer
step (Lightning-AI/pytorch-lightning#21406) -- and forked DataLoader workers, which SLURM signals too and
which inherit the handler, run it as well: each writes its stale copy of the model to the same file and
calls ``scontrol requeue``. Here the handler only sets a flag (in a worker, the worker's own copy, which
nothing reads); the checkpoint is written after the optimizer step, at the same step on every rank, under
Lightning's name (``<run>/hpc_ckpt_<n>.ckpt``) so that Lightning's own SLURM restore finds it too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from zoo.runs.location import RunLocation, slurm_job_id

_REQUEUE_CHECKPOINT = re.compile(r"hpc_ckpt_(\d+)\.ckpt")


def _checkpoint_number(path: Path) -> int:
    match = _REQUEUE_CHECKPOINT.fullmatch(path.name)
    return int(match.group(1)) if match else -1


def requeue_checkpoints(run_dir: Path) -> list[Path]:
    """The run's requeue checkpoints, in the order they were written."""
    return sorted(
        (path for path in run_dir.glob("hpc_ckpt_*.ckpt") if _checkpoint_number(path) >= 0),
        key=_checkpoint_number,
    )


def next_requeue_checkpoint(run_dir: Path) -> Path:
    existing = requeue_checkpoints(run_dir)
    return run_dir / f"hpc_ckpt_{_checkpoint_number(existing[-1]) + 1 if existing else 1}.ckpt"


def newest_checkpoint(location: RunLocation) -> Path | None:
    """The run's most recently written checkpoint: a requeue checkpoint, or ``last.ckpt`` (``last-v<n>.ckpt``)
    when the job was stopped without warning (node failure, preemption without a signal)."""
    candidates = [*requeue_checkpoints(location.root), *location.checkpoints.glob("last*.ckpt")]
    return max(
        (path for path in candidates if path.is_file()),
        key=lambda path: path.stat().st_mtime_ns,
        default=None,
    )


def resume_checkpoint(location: RunLocation, ckpt_path: str | None, environ: Mapping[str, str]) -> str | None:
    """What ``fit`` resumes from. ``last`` means the run's newest checkpoint, requeue checkpoints included
    (Lightning's ``last`` knows only ``last.ckpt``); a restarted SLURM job (``SLURM_RESTART_COUNT`` > 0)
    resumes from it unasked, and so does any run whose directory holds requeue checkpoints -- Lightning
    would otherwise load its newest ``hpc_ckpt`` even where ``last.ckpt`` is newer. Any other value is
    the user's choice and is kept."""
    restarted = int(environ.get("SLURM_RESTART_COUNT") or 0) > 0
    if ckpt_path == "last" or (ckpt_path is None and (restarted or requeue_checkpoints(location.root))):
        newest = newest_checkpoint(location)
        if newest is not None:
            return str(newest)
    return ckpt_path


def requeue_slurm_job(environ: Mapping[str, str] | None = None) -> bool:
    """``scontrol requeue <job id>``: SLURM stops the job and queues it again under the same id."""
    job_id = slurm_job_id(dict(os.environ if environ is None else environ))
    if job_id is None:
        rank_zero_warn("Cannot requeue: SLURM_JOB_ID is not set.")
        return False
    command = ["scontrol", "requeue", job_id]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        rank_zero_warn(f"`{' '.join(command)}` failed: {error}")
        return False
    if result.returncode != 0:
        rank_zero_warn(f"`{' '.join(command)}` failed ({result.returncode}): {result.stderr.strip()}")
        return False
    return True


class RequeueOnSignal(Callback):
    """On SIGUSR1 (SLURM's warning before the time limit): after the current optimizer step, write a
    checkpoint, ``scontrol requeue`` the job and stop. The requeued job (same job id, so the same run
    directory and W&B run) resumes from that checkpoint. If the requeue fails, training goes on."""

    def __init__(self, requeue_signal: signal.Signals = signal.SIGUSR1) -> None:
        self.requeue_signal = requeue_signal
        self._signalled = False
        self._registered = False
        self._previous_handler: Any = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or threading.current_thread() is not threading.main_thread():
            return
        self._signalled = False
        self._previous_handler = signal.signal(self.requeue_signal, self._record_signal)
        self._registered = True

    def _record_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signalled = True

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._registered or (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        if not trainer.strategy.reduce_boolean_decision(self._signalled, all=False):
            return
        self._signalled = False
        path = trainer.strategy.broadcast(next_requeue_checkpoint(Path(trainer.default_root_dir)))
        trainer.save_checkpoint(path)
        requeued = trainer.strategy.broadcast(requeue_slurm_job() if trainer.is_global_zero else False)
        if not requeued:
            rank_zero_warn(f"Training goes on; the checkpoint at step {trainer.global_step} is {path}.")
            return
        rank_zero_info(
            f"Requeued SLURM job {slurm_job_id(dict(os.environ))} at step {trainer.global_step} "
            f"(checkpoint {path}); stopping. The job restarts in {trainer.default_root_dir}."
        )
        raise SIGTERMException

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._restore_handler()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore_handler()  # Lightning skips the teardown hooks when fit raises

    def _restore_handler(self) -> None:
        if self._registered:
            previous = self._previous_handler
            signal.signal(self.requeue_signal, signal.SIG_DFL if previous is None else previous)
        self._registered = False
