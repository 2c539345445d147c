"""Runs of a W&B project as comparison records: ``record_from_wandb_api_run`` converts one public-API
run (anything with ``.id``, ``.name``, ``.group``, ``.config``, ``.summary``) and is pure;
``fetch_wandb_project_runs`` is the thin wrapper that talks to the server through ``wandb.Api``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from zoo.runs.records import (
    EVALUATION_STAGES,
    RunRecord,
    evaluations_from_history,
    is_number,
    record_from_config,
)

STEP_KEY = "trainer/global_step"


def evaluation_keys(summary: Mapping[str, Any]) -> list[str]:
    """The evaluation numbers a run's summary holds (``val/...``, ``test/...``; not images): the history
    keys to scan."""
    names = summary.keys()  # the API's summary object has keys() but no __iter__
    return sorted(
        name for name in names if name.split("/", 1)[0] in EVALUATION_STAGES and is_number(summary.get(name))
    )


def record_from_wandb_api_run(run: Any, history: Iterable[Mapping[str, Any]] = ()) -> RunRecord:
    """A record from a W&B API run and its evaluation history rows; without rows, the summary (the last
    logged values) is the one evaluation."""
    summary = {name: run.summary.get(name) for name in [STEP_KEY, "_step", *evaluation_keys(run.summary)]}
    evaluations = evaluations_from_history(history) or evaluations_from_history([summary])
    location = getattr(run, "url", None) or f"wandb:{run.id}"
    return record_from_config(
        dict(run.config), run.group or "", run.name or run.id, "wandb", location, evaluations
    )


def fetch_wandb_project_runs(
    project: str, experiments: Sequence[str] = (), api: Any = None
) -> list[RunRecord]:
    """Every run of ``project`` (``entity/project`` or ``project``), optionally only the given
    experiments (W&B groups), with their evaluation history (one server query per run)."""
    if api is None:
        import wandb

        api = wandb.Api()
    filters = {"group": {"$in": list(experiments)}} if experiments else None
    records = []
    for run in api.runs(project, filters=filters):
        keys = evaluation_keys(run.summary)
        history = run.scan_history(keys=[STEP_KEY, *keys]) if keys else []
        records.append(record_from_wandb_api_run(run, history))
    return records
