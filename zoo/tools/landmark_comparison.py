"""``zoo landmark-comparison``: coordinate regression vs Gaussian heatmaps vs Stacked Hourglass, trained
one after the other on the same data with the same budget, and one table of the result.

Each experiment is an ordinary ``zoo fit`` run (``runs/<experiment>/<run_id>/``, W&B as usual); the table
reads each run's last evaluation from its ``metrics.jsonl``. A heatmap experiment with
``compare_decoders`` gives one row per decoder (argmax + quarter offset, DARK, soft-argmax: the same
trained network decoded three ways). Columns: NME (box-normalised unless the dataset names normalising
keypoints), PCK@0.05 and PCK@0.1 (box-normalised), parameters, and the wall-clock time of the whole
``zoo fit`` (training and its evaluations, on this machine, one run at a time).

    zoo landmark-comparison                                  # the three synthetic experiments
    zoo landmark-comparison --markdown report.md -- --trainer.max_steps 100
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from models.heatmaps import DECODERS

DEFAULT_CONFIGS = (
    Path("experiments/landmarks/synthetic_regression.yaml"),
    Path("experiments/landmarks/synthetic_heatmap.yaml"),
    Path("experiments/hourglass/synthetic.yaml"),
)
COLUMNS = ("NME", "PCK@0.05", "PCK@0.1")


@dataclass(frozen=True)
class ComparisonRow:
    experiment: str
    model: str
    decoder: str
    parameters: int
    fit_seconds: float
    values: dict[str, float]


def last_evaluation(metrics_file: Path) -> dict[str, float]:
    """The last record of a run's ``metrics.jsonl`` that holds the keypoint metrics."""
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{metrics_file} not found: the run wrote no evaluation")
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    evaluations = [record for record in records if "val/keypoints/NME" in record]
    if not evaluations:
        raise ValueError(f"{metrics_file} has no val/keypoints/NME: did the run validate?")
    return evaluations[-1]


def rows_of_run(
    experiment: str, model: str, decoder: str | None, parameters: int, seconds: float, record: dict
) -> list[ComparisonRow]:
    """One row for the run's own prediction, or one per decoder when it logged each decoder's metrics."""
    decoded = [name for name in DECODERS if f"val/keypoints_{name}/NME" in record]
    tasks = [(name, f"val/keypoints_{name}") for name in decoded] or [(decoder or "-", "val/keypoints")]
    return [
        ComparisonRow(
            experiment,
            model,
            name,
            parameters,
            seconds,
            {column: float(record[f"{task}/{column}"]) for column in COLUMNS},
        )
        for name, task in tasks
    ]


def markdown_table(rows: list[ComparisonRow]) -> str:
    header = ["experiment", "model", "decoder", "params", *COLUMNS, "fit time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [f"{row.values[column]:.4f}" for column in COLUMNS]
        cells = [
            row.experiment,
            row.model,
            row.decoder,
            f"{row.parameters:,}",
            *values,
            f"{row.fit_seconds:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_experiment(config: Path, runs_dir: Path, run_id: str, wandb: bool, overrides: list[str]):
    """``zoo fit`` of one experiment; returns its rows."""
    from zoo.cli import run_cli  # the CLI imports this tool: import it only when running

    if not config.is_file():
        raise FileNotFoundError(f"experiment {config} not found")
    started = time.perf_counter()
    fixed = [f"--config={config}", f"--runs_dir={runs_dir}", f"--run_id={run_id}", f"--wandb={wandb}"]
    cli = run_cli(["fit", *fixed, *overrides])
    seconds = time.perf_counter() - started
    module = cli.model
    codec = getattr(module, "codec", None)
    return rows_of_run(
        cli.run_location.experiment,
        type(module.model).__name__,
        codec.decoder if codec is not None else None,
        sum(parameter.numel() for parameter in module.model.parameters()),
        seconds,
        last_evaluation(cli.run_location.root / "metrics.jsonl"),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo landmark-comparison",
        description="Train regression, heatmap and hourglass keypoint experiments one after the other on "
        "the same data and print NME, PCK@0.05/0.1 and fit time for each (arguments after -- go to every "
        "zoo fit).",
    )
    parser.add_argument("--configs", type=Path, nargs="+", default=list(DEFAULT_CONFIGS))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--run-id", default=None, help="run id of every run (default: comparison-<time>)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    parser.add_argument("--wandb", action=argparse.BooleanOptionalAction, default=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = build_parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    run_id = args.run_id or time.strftime("comparison-%Y%m%d-%H%M%S")
    rows: list[ComparisonRow] = []
    for config in args.configs:
        rows += run_experiment(config, args.runs_dir, run_id, args.wandb, overrides)
    table = markdown_table(rows)
    print(table)
    markdown = args.markdown or args.runs_dir / "landmark_comparison.md"
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(table + "\n")
    print(f"\nwritten to {markdown}")
    return 0
