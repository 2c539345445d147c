"""What ``zoo compare`` knows about a run, read from disk: its experiment, run id, LightningModule
class, the published numbers its config declares, and its evaluations (one dict of metrics per step).

Sources, per run directory ``<runs_dir>/<experiment>/<run_id>/``:
- ``config.yaml`` (saved by the CLI): ``experiment``, ``run_id``, ``model.class_path``, ``published``;
- ``metrics.jsonl`` (``zoo.runs.metrics_file.MetricsFileWriter``): one JSON object per evaluation with
  ``step`` = ``Trainer.global_step``, written by every run, W&B or not.
(W&B's offline ``.wandb`` files are not read: their format is private to W&B, and every run has its
``metrics.jsonl``; ``wandb sync`` uploads them and ``zoo compare --wandb-project`` reads them back.)

A malformed ``metrics.jsonl`` line (a job killed mid-write leaves a torn last line) is skipped and
counted in a warning naming the file and line: one broken run must not hide the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zoo.compare.published import PublishedResult

logger = logging.getLogger(__name__)

EVALUATION_STAGES = ("val", "test")


@dataclass
class RunRecord:
    """One run as the comparison sees it; ``evaluations`` are ordered by step, each ``{"step": int,
    "<stage>/<task>/<metric>": float, ...}``."""

    experiment: str
    run_id: str
    source: str  # where the metrics come from: "metrics.jsonl" or "wandb" (the API)
    location: str  # a path or a URL
    model_class_path: str | None = None
    published: list[PublishedResult] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def published_results(entries: Any, where: str) -> list[PublishedResult]:
    """``published:`` entries of a config; a malformed entry is skipped with a warning."""
    results = []
    for index, entry in enumerate(entries or []):
        try:
            metrics = {str(name): float(value) for name, value in entry["metrics"].items()}
            results.append(PublishedResult(source=str(entry["source"]), metrics=metrics))
        except (TypeError, KeyError, ValueError, AttributeError):
            logger.warning("%s: published entry %d is not {source: str, metrics: {name: number}}; skipped",
                           where, index)
    return results


def record_from_config(config: Mapping[str, Any], experiment: str, run_id: str, source: str, location: str,
                       evaluations: list[dict[str, float]]) -> RunRecord:
    """A record from a run's logged config (config.yaml, a W&B log or the W&B API all hold the CLI's
    config); ``experiment`` and ``run_id`` are the fallbacks for a config without them."""
    model = config.get("model")
    return RunRecord(
        experiment=str(config.get("experiment") or experiment),
        run_id=str(config.get("run_id") or run_id),
        source=source,
        location=location,
        model_class_path=model.get("class_path") if isinstance(model, Mapping) else None,
        published=published_results(config.get("published"), location),
        evaluations=evaluations,
    )


def read_metrics_file(path: Path) -> list[dict[str, float]]:
    """The evaluations in ``metrics.jsonl``; malformed lines are skipped and counted in one warning."""
    evaluations, bad_lines = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("not a JSON object with an integer 'step'")
        except ValueError as error:
            bad_lines.append(f"line {number} ({error})")
            continue
        evaluations.append(
            {name: value for name, value in record.items() if name not in ("stage", "epoch") and is_number(value)}
        )
    if bad_lines:
        logger.warning("%s: skipped %d malformed line(s): %s", path, len(bad_lines), "; ".join(bad_lines))
    return merge_by_step(evaluations)


def merge_by_step(evaluations: Iterable[Mapping[str, float]]) -> list[dict[str, float]]:
    """One evaluation per step (later values win: a resumed run re-evaluating a step), by step."""
    merged: dict[int, dict[str, float]] = {}
    for evaluation in evaluations:
        merged.setdefault(int(evaluation["step"]), {}).update(evaluation)
    return [merged[step] for step in sorted(merged)]


def evaluations_from_history(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Evaluation metrics (``val/...``, ``test/...`` numbers) of W&B history rows, at their step."""
    evaluations = []
    for row in rows:
        metrics = {
            name: float(value)
            for name, value in row.items()
            if name.split("/", 1)[0] in EVALUATION_STAGES and is_number(value)
        }
        step = row.get("trainer/global_step")
        step = row.get("_step") if step is None else step
        if metrics and step is not None:
            evaluations.append({"step": int(step), **metrics})
    return merge_by_step(evaluations)


def read_run_dir(run_dir: Path) -> RunRecord | None:
    """A zoo run directory; None (with a warning) when its config.yaml cannot be read."""
    config: Any = {}
    config_file = run_dir / "config.yaml"
    if config_file.is_file():
        try:
            config = yaml.safe_load(config_file.read_text()) or {}
        except yaml.YAMLError as error:
            logger.warning("%s: not valid YAML (%s); run skipped", config_file, error)
            return None
        if not isinstance(config, Mapping):
            logger.warning("%s: not a mapping; run skipped", config_file)
            return None
    metrics_file = run_dir / "metrics.jsonl"
    evaluations = read_metrics_file(metrics_file) if metrics_file.is_file() else []  # none evaluated yet
    return record_from_config(config, run_dir.parent.name, run_dir.name, "metrics.jsonl", str(run_dir), evaluations)


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() or (path / "metrics.jsonl").is_file()


def find_runs(root: Path) -> list[RunRecord]:
    """Every run under ``root`` (itself a run, an experiment folder or a runs folder), in path order;
    run directories are not searched further."""
    if is_run_dir(root):
        record = read_run_dir(root)
        return [record] if record is not None else []
    children = sorted(child for child in root.iterdir() if child.is_dir() and not child.name.startswith("."))
    return [record for child in children for record in find_runs(child)]
