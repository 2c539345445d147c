"""``zoo compare``: a table of runs with their main metrics beside the published numbers that each
paper-reproduction experiment declares (``published:`` in its YAML), printed and written as Markdown.

Runs come from local run directories (``runs/`` by default, or the run, experiment or W&B run
directories given as arguments; see ``zoo.runs.records``) and, with ``--wandb-project`` and
W&B credentials, from a W&B project (``zoo.tracking.wandb_project_runs``). Metric names and display
rules: ``zoo.compare.table``. The Markdown table goes to ``<runs-dir>/compare.md`` unless
``--markdown FILE`` or ``--no-markdown`` says otherwise.

  zoo compare                                      # every run under runs/
  zoo compare --experiment mask_rcnn_coco_r50_fpn_1x --wandb-project my-team/vision-zoo
  zoo compare runs/mask_rcnn_synthetic/20250101-120000-ab12 --markdown report.md
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from zoo.compare.table import build_table, format_markdown, format_plain
from zoo.runs.records import RunRecord, find_runs
from zoo.tracking.wandb_project_runs import fetch_wandb_project_runs
from zoo.tracking.wandb_setup import wandb_credentials_available

DEFAULT_RUNS_DIR = Path("runs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo compare",
        description="Compare runs' main metrics with the published numbers their experiments declare.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="run directories, experiment directories or W&B run directories (default: --runs-dir)",
    )
    parser.add_argument(
        "--runs-dir", type=Path, default=None, help=f"where runs live (default: {DEFAULT_RUNS_DIR})"
    )
    parser.add_argument(
        "--experiment", action="append", default=[], metavar="NAME", help="only this experiment (repeatable)"
    )
    parser.add_argument(
        "--wandb-project",
        metavar="ENTITY/PROJECT",
        help="also compare the runs of this W&B project (needs W&B credentials)",
    )
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME",
        help="an extra metric column, e.g. val/segm/AP50 (repeatable)",
    )
    markdown = parser.add_mutually_exclusive_group()
    markdown.add_argument(
        "--markdown",
        type=Path,
        metavar="FILE",
        help="write the Markdown table here (default: <runs-dir>/compare.md)",
    )
    markdown.add_argument("--no-markdown", action="store_true", help="only print the table")
    return parser


def local_records(
    parser: argparse.ArgumentParser, args: argparse.Namespace, runs_dir: Path
) -> list[RunRecord]:
    roots = args.paths or [runs_dir]
    missing = [str(root) for root in roots if not root.is_dir()]
    if missing and (args.paths or args.runs_dir is not None):
        parser.error(f"not a directory: {', '.join(missing)}")
    return [record for root in roots if root.is_dir() for record in find_runs(root)]


def wandb_records(project: str, experiments: list[str]) -> list[RunRecord]:
    if not wandb_credentials_available():
        print(
            f"W&B project {project} skipped: no W&B credentials (set WANDB_API_KEY or run `wandb login`); "
            "comparing local runs only.",
            file=sys.stderr,
        )
        return []
    try:
        return fetch_wandb_project_runs(project, experiments)
    except Exception as error:  # the W&B client raises many types (network, auth, unknown project)
        print(
            f"W&B project {project} could not be read ({type(error).__name__}: {error}); "
            "comparing local runs only.",
            file=sys.stderr,
        )
        return []


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s: %(message)s")  # warnings about skipped lines and runs
    parser = build_parser()
    args = parser.parse_args(argv)
    runs_dir = args.runs_dir if args.runs_dir is not None else DEFAULT_RUNS_DIR
    records = local_records(parser, args, runs_dir)
    if args.wandb_project:
        records += wandb_records(args.wandb_project, args.experiment)
    if args.experiment:
        records = [record for record in records if record.experiment in args.experiment]
    if not records:
        where = ", ".join(map(str, args.paths or [runs_dir]))
        print(
            f"No runs found in {where}"
            + (f" for experiment(s) {', '.join(args.experiment)}" if args.experiment else ""),
            file=sys.stderr,
        )
        return 1
    table = build_table(records, args.metric)
    print(format_plain(table), end="")
    if not args.no_markdown:
        markdown_file = args.markdown or runs_dir / "compare.md"
        markdown_file.parent.mkdir(parents=True, exist_ok=True)
        markdown_file.write_text(format_markdown(table))
        print(f"\nMarkdown table written to {markdown_file}")
    return 0
