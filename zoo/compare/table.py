"""The table of ``zoo compare``: each run's main metric and the metrics its experiment's published
results name, beside the published numbers, with the difference run - published.

Metric names follow one convention in every method, so that W&B dashboards, checkpoint monitors,
``metrics.jsonl`` and the ``published:`` blocks of experiments line up: ``<stage>/<task>/<metric>``
  stage   ``train``, ``val`` or ``test``;
  task    what is evaluated: ``bbox``, ``segm``, ``keypoints``, ``panoptic``...;
  metric  the official evaluator's name: ``AP``, ``AP50``, ``APs``, ``PQ``...;
e.g. ``val/segm/AP`` is COCO mask AP on the validation split. Percentages are logged as fractions in
[0, 1]. Each LightningModule declares ``main_metric`` (its headline number, also what checkpoints
monitor) and ``main_metric_mode``; the table imports the run's ``model.class_path`` to read them.

Display: a metric whose values (runs and published) all lie in [0, 1] is shown in points (x100, one
decimal), and so is its difference; other metrics (dB, FID...) as logged. -1 in such a metric is
pycocotools' "no ground truth of this size" and shows as n/a.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from zoo.compare.published import PublishedResult
from zoo.runs.records import RunRecord

logger = logging.getLogger(__name__)

NOT_AVAILABLE = -1.0  # pycocotools' value for an AP without ground truth


@dataclass(frozen=True)
class MainMetric:
    name: str
    mode: str  # "max" or "min"


@dataclass
class Table:
    header: list[str]
    numeric: list[bool]  # right-aligned columns
    rows: list[list[str]]
    notes: list[str]


@functools.cache
def main_metric_of(class_path: str | None) -> MainMetric | None:
    """The ``main_metric`` that the LightningModule at ``class_path`` declares; None (with a
    warning) when it cannot be imported or declares none."""
    if not class_path:
        return None
    module_name, _, class_name = class_path.rpartition(".")
    try:
        module_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        logger.warning("cannot import %s (%s): its runs show no main metric", class_path, error)
        return None
    name = getattr(module_class, "main_metric", None)
    if not isinstance(name, str):
        logger.warning("%s declares no main_metric: its runs show no main metric", class_path)
        return None
    return MainMetric(name, getattr(module_class, "main_metric_mode", "max"))


def last_value(record: RunRecord, metric: str | None) -> float | None:
    """The metric in the run's last evaluation that has it."""
    for evaluation in reversed(record.evaluations):
        if metric in evaluation:
            return evaluation[metric]
    return None


def best_value(record: RunRecord, main: MainMetric | None) -> tuple[float, int] | None:
    """(value, step) of the run's best evaluation of its main metric."""
    if main is None:
        return None
    candidates = [
        (e[main.name], int(e["step"]))
        for e in record.evaluations
        if main.name in e and not math.isnan(e[main.name])
    ]
    if not candidates:
        return None
    return (max if main.mode == "max" else min)(candidates, key=lambda candidate: candidate[0])


def report_step(record: RunRecord, main: MainMetric | None) -> int | None:
    """The step of the evaluation the table reports: the last one with the main metric, else the last."""
    with_main = [e for e in record.evaluations if main is not None and main.name in e]
    evaluations = with_main or record.evaluations
    return int(evaluations[-1]["step"]) if evaluations else None


def fraction_metrics(records: Sequence[RunRecord]) -> set[str]:
    """Metrics whose every value (runs and published, n/a markers aside) lies in [0, 1]."""
    values: dict[str, list[float]] = {}
    for record in records:
        for evaluation in record.evaluations:
            for name, value in evaluation.items():
                values.setdefault(name, []).append(value)
        for published in record.published:
            for name, value in published.metrics.items():
                values.setdefault(name, []).append(value)
    return {
        name
        for name, seen in values.items()
        if name != "step" and all(0.0 <= value <= 1.0 for value in seen if value != NOT_AVAILABLE)
    }


class _Formatter:
    def __init__(self, fractions: set[str]) -> None:
        self.fractions = fractions

    def value(self, metric: str | None, value: float | None) -> str:
        if value is None or metric is None:
            return "-"
        if metric in self.fractions:
            return "n/a" if value == NOT_AVAILABLE else f"{100 * value:.1f}"
        return f"{value:.4g}"

    def published(
        self, metric: str | None, run_value: float | None, published: PublishedResult | None
    ) -> list[str]:
        """[published value, run - published] cells."""
        reference = published.metrics.get(metric) if published is not None and metric else None
        if (
            reference is None
            or run_value is None
            or (metric in self.fractions and run_value == NOT_AVAILABLE)
        ):
            return [self.value(metric, reference), "-"]
        difference = run_value - reference
        scaled = f"{100 * difference:+.1f}" if metric in self.fractions else f"{difference:+.4g}"
        return [self.value(metric, reference), scaled]


def extra_metrics(
    records: Sequence[RunRecord], mains: Sequence[MainMetric | None], requested: Sequence[str]
) -> list[str]:
    """Columns besides the main metric: what the published results name, then ``requested``; a metric
    that is every run's main metric already has its column."""
    published = [name for record in records for result in record.published for name in result.metrics]
    names = list(dict.fromkeys([*published, *requested]))
    return [name for name in names if not all(main is not None and main.name == name for main in mains)]


def build_table(records: Sequence[RunRecord], metrics: Sequence[str] = ()) -> Table:
    """One row per run and published result (a run without published results gets one row)."""
    records = sorted(records, key=lambda record: (record.experiment, record.run_id, record.source))
    mains = [main_metric_of(record.model_class_path) for record in records]
    extra = extra_metrics(records, mains, metrics)
    formatter = _Formatter(fraction_metrics(records))
    sources = list(dict.fromkeys(p.source for record in records for p in record.published))

    header = ["experiment", "run", "source", "step", "main metric", "value", "best (step)", "published", "Δ"]
    numeric = [False, False, False, True, False, True, True, True, True]
    published_names = {
        name for record in records for published in record.published for name in published.metrics
    }
    for name in extra:
        columns = [name, "published", "Δ"] if name in published_names else [name]
        header += columns
        numeric += [True] * len(columns)
    header.append("ref")
    numeric.append(False)

    rows = []
    for record, main in zip(records, mains, strict=True):
        main_name = main.name if main is not None else None
        value = last_value(record, main_name)
        best = best_value(record, main)
        step = report_step(record, main)
        run_cells = [
            record.experiment,
            record.run_id,
            record.source,
            "-" if step is None else str(step),
            main_name or "-",
            formatter.value(main_name, value),
            "-" if best is None else f"{formatter.value(main_name, best[0])} ({best[1]})",
        ]
        for index, published in enumerate(record.published or [None]):
            first = index == 0
            cells = run_cells if first else [""] * len(run_cells)
            cells = [*cells, *formatter.published(main_name, value, published)]
            for name in extra:
                run_value = last_value(record, name)
                cells.append(formatter.value(name, run_value) if first else "")
                if name in published_names:
                    cells += formatter.published(name, run_value, published)
            cells.append(f"[{sources.index(published.source) + 1}]" if published is not None else "")
            rows.append(cells)

    notes = [
        "value: the run's last evaluation; best: its best evaluation of the main metric (at step).",
        "Δ = run - published. Metrics on the [0, 1] scale are in points (x100); "
        "n/a: no ground truth of that size.",
        *(f"[{number}] {source}" for number, source in enumerate(sources, start=1)),
    ]
    if any(record.source == "wandb" for record in records):
        notes.insert(
            1,
            "step: Trainer.global_step from metrics.jsonl; W&B rows show Lightning's logging step "
            "(trainer/global_step), one less for a validation during fit.",
        )
    return Table(header=header, numeric=numeric, rows=rows, notes=notes)


def format_plain(table: Table) -> str:
    """Fixed-width text for the terminal."""
    widths = [max(len(cell) for cell in column) for column in zip(table.header, *table.rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if numeric else cell.ljust(width)
            for cell, width, numeric in zip(cells, widths, table.numeric, strict=True)
        ).rstrip()

    rule = ["-" * width for width in widths]
    return "\n".join([line(table.header), line(rule), *map(line, table.rows), "", *table.notes]) + "\n"


def format_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table and its notes as a list."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    alignment = "|" + "|".join("---:" if numeric else "---" for numeric in table.numeric) + "|"
    notes = [f"- {note}" for note in table.notes]
    return "\n".join([line(table.header), alignment, *map(line, table.rows), "", *notes]) + "\n"
