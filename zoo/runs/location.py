"""Where a run lives on disk: ``<runs_dir>/<experiment>/<run_id>/`` with ``config.yaml``,
``checkpoints/`` and ``wandb/`` inside.

The run id must be the same in every process of a run (DDP children re-execute the command line)
and across SLURM requeues, so it is resolved once and exported as ``ZOO_RUN_ID``.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

RUN_ID_ENV = "ZOO_RUN_ID"


@dataclass(frozen=True)
class RunLocation:
    experiment: str
    run_id: str
    runs_dir: Path

    @property
    def root(self) -> Path:
        return self.runs_dir / self.experiment / self.run_id

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def wandb_id(self) -> str:
        """W&B run ids must be unique within a project: qualify the run id with the experiment."""
        return re.sub(r"[^A-Za-z0-9_-]", "-", f"{self.experiment}-{self.run_id}")


def slurm_job_id(environ: dict[str, str]) -> str | None:
    """The SLURM job id as ``scontrol`` names it (``<array job>_<task>`` for array jobs); a requeued
    job keeps it."""
    if "SLURM_ARRAY_JOB_ID" in environ and "SLURM_ARRAY_TASK_ID" in environ:
        return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    return environ.get("SLURM_JOB_ID")


def slurm_run_id(environ: dict[str, str]) -> str | None:
    """``slurm-<job id>``: stable across requeues."""
    job_id = slurm_job_id(environ)
    return f"slurm-{job_id}" if job_id else None


def resolve_run_id(explicit: str | None, environ: dict[str, str] | None = None) -> str:
    """Explicit ``--run_id`` first, then, in a process Lightning's launcher started (``LOCAL_RANK``
    set), the id its parent exported, then the SLURM job id; a new local run gets a readable time
    stamp plus a random suffix. (A second run in the same Python process, e.g. a notebook, does not
    inherit the first one's exported id.)"""
    environ = os.environ if environ is None else environ
    if explicit:
        return explicit
    if environ.get(RUN_ID_ENV) and "LOCAL_RANK" in environ:
        return environ[RUN_ID_ENV]
    from_slurm = slurm_run_id(environ)
    if from_slurm:
        return from_slurm
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def existing_runs(experiment: str, runs_dir: str | Path) -> list[str]:
    """The run ids of ``experiment`` that have a directory under ``runs_dir``."""
    experiment_dir = Path(runs_dir) / experiment
    return sorted(path.name for path in experiment_dir.iterdir() if path.is_dir()) if experiment_dir.is_dir() else []


def resolve_run_location(experiment: str, runs_dir: str | Path, run_id: str | None) -> RunLocation:
    """Resolve the run and export its id so that every process started from this one agrees."""
    location = RunLocation(experiment=experiment, run_id=resolve_run_id(run_id), runs_dir=Path(runs_dir))
    os.environ[RUN_ID_ENV] = location.run_id
    return location
