"""``zoo compare``: runs read from run directories (a real tiny fit and hand-written ones) and from
W&B API runs, set beside their published numbers, printed and as Markdown."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import wandb
import yaml

from tests.cli_runs import read_metrics, run_zoo_in_process
from zoo.cli import main as zoo_main
from zoo.compare.table import build_table, format_plain
from zoo.runs.location import RUN_ID_ENV
from zoo.runs.records import find_runs, read_metrics_file
from zoo.tools import compare
from zoo.tracking.wandb_project_runs import fetch_wandb_project_runs, record_from_wandb_api_run

MASK_RCNN = "lightning_modules.detection.InstanceSegmentationModule"
DETECTRON2 = "detectron2 model zoo, mask_rcnn_R_50_FPN_1x (COCO val2017)"
TORCHVISION = "torchvision maskrcnn_resnet50_fpn COCO_V1 weights (COCO val2017)"
PUBLISHED = [
    {"source": DETECTRON2, "metrics": {"val/bbox/AP": 0.386, "val/segm/AP": 0.352}},
    {"source": TORCHVISION, "metrics": {"val/bbox/AP": 0.379, "val/segm/AP": 0.346}},
]


class GenerativeModule:
    """A method whose main metric is not a fraction and is minimised (as FID is)."""

    main_metric = "val/generation/FID"
    main_metric_mode = "min"


@pytest.fixture(scope="module")
def real_run(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real tiny fit with offline W&B: ``<runs>/mask_rcnn_synthetic/real`` (read-only for tests)."""
    runs_dir = tmp_path_factory.mktemp("real-runs")
    with pytest.MonkeyPatch.context() as patch:  # the autouse fixture is per test: repeat it here
        for name in ("WANDB_API_KEY", "WANDB_MODE"):
            patch.delenv(name, raising=False)
        patch.setenv(RUN_ID_ENV, "")
        patch.setenv("NETRC", str(runs_dir / "no-netrc"))
        patch.setenv("WANDB_CONFIG_DIR", str(runs_dir / "wandb-config"))
        patch.setenv("WANDB_SILENT", "true")
        try:
            run_zoo_in_process("fit", tiny_synthetic, runs_dir, "real")
        finally:
            wandb.finish()
    return runs_dir / "mask_rcnn_synthetic" / "real"


def write_run(
    runs_dir: Path,
    experiment: str,
    run_id: str,
    evaluations: list[dict],
    class_path: str = MASK_RCNN,
    published: list[dict] | None = None,
) -> Path:
    run_dir = runs_dir / experiment / run_id
    run_dir.mkdir(parents=True)
    config = {
        "experiment": experiment,
        "run_id": run_id,
        "model": {"class_path": class_path, "init_args": {}},
        "published": published or [],
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [json.dumps({"stage": "val", "epoch": 0, **evaluation}) for evaluation in evaluations]
    (run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    return run_dir


def markdown_rows(path: Path) -> list[list[str]]:
    """The cells of a Markdown table, header first (the alignment line left out)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if "---" not in line]


def by_column(header: list[str], row: list[str]) -> dict[str, str]:
    """Cells by header name; repeated names (published, Δ) get the name of the metric before them."""
    named, metric = {}, ""
    for name, cell in zip(header, row, strict=True):
        if name in ("published", "Δ"):
            named[f"{metric} {name}"] = cell
        else:
            metric = name if name.startswith(("val/", "test/")) else "main"
            named[name] = cell
    return named


def test_table_of_a_real_run_and_a_reproduction_beside_its_published_numbers(
    real_run: Path, tmp_path: Path, capsys
):
    runs_dir = tmp_path / "runs"
    shutil.copytree(real_run, runs_dir / "mask_rcnn_synthetic" / "real")
    write_run(
        runs_dir,
        "mask_rcnn_coco_r50_fpn_1x",
        "slurm-7",
        [
            {"step": 60000, "val/bbox/AP": 0.35, "val/segm/AP": 0.356, "val/segm/AP50": 0.55},
            {"step": 90000, "val/bbox/AP": 0.381, "val/segm/AP": 0.3501, "val/segm/AP50": 0.571},
        ],
        published=PUBLISHED,
    )

    assert zoo_main(["compare", f"--runs-dir={runs_dir}", "--metric=val/segm/AP50"]) == 0
    printed = capsys.readouterr().out
    assert f"[1] {DETECTRON2}" in printed and f"[2] {TORCHVISION}" in printed
    assert f"Markdown table written to {runs_dir / 'compare.md'}" in printed

    header, *rows = markdown_rows(runs_dir / "compare.md")
    assert header[:9] == [
        "experiment",
        "run",
        "source",
        "step",
        "main metric",
        "value",
        "best (step)",
        "published",
        "Δ",
    ]
    assert header[9:] == ["val/bbox/AP", "published", "Δ", "val/segm/AP50", "ref"]  # no published AP50: no Δ
    detectron2, torchvision, real = (by_column(header, row) for row in rows)
    assert (detectron2["main published"], detectron2["main Δ"]) == ("35.2", "-0.2")
    assert detectron2["experiment"] == "mask_rcnn_coco_r50_fpn_1x" and detectron2["run"] == "slurm-7"
    assert (detectron2["step"], detectron2["main metric"], detectron2["value"]) == (
        "90000",
        "val/segm/AP",
        "35.0",
    )
    assert detectron2["best (step)"] == "35.6 (60000)"  # the best evaluation is not the last one
    assert (detectron2["val/bbox/AP"], detectron2["val/bbox/AP published"], detectron2["val/bbox/AP Δ"]) == (
        "38.1",
        "38.6",
        "-0.5",
    )
    assert detectron2["val/segm/AP50"] == "57.1" and detectron2["ref"] == "[1]"
    # the second published result: a continuation row with the same run's differences
    assert torchvision["experiment"] == "" and torchvision["value"] == ""
    assert (torchvision["main published"], torchvision["main Δ"], torchvision["val/bbox/AP Δ"]) == (
        "34.6",
        "+0.4",
        "+0.2",
    )
    assert torchvision["ref"] == "[2]"

    [logged] = read_metrics(real_run)
    assert (real["experiment"], real["run"], real["source"], real["step"]) == (
        "mask_rcnn_synthetic",
        "real",
        "metrics.jsonl",
        "4",
    )
    assert real["value"] == f"{100 * logged['val/segm/AP']:.1f}"
    assert real["val/bbox/AP"] == f"{100 * logged['val/bbox/AP']:.1f}"
    assert real["main published"] == "-" and real["ref"] == ""


def test_a_run_that_never_evaluated_is_listed_without_values(real_run: Path, tmp_path: Path):
    """A run stopped before its first evaluation has a config but no metrics.jsonl (W&B's private
    offline logs are not read): it is listed, with no values, rather than hidden."""
    run_dir = tmp_path / "mask_rcnn_synthetic" / "real"
    shutil.copytree(real_run, run_dir)
    (run_dir / "metrics.jsonl").unlink()
    [record] = find_runs(tmp_path)
    assert (record.experiment, record.run_id, record.model_class_path) == (
        "mask_rcnn_synthetic",
        "real",
        MASK_RCNN,
    )
    assert record.evaluations == []
    [row] = build_table([record]).rows
    assert row[3:7] == ["-", "val/segm/AP", "-", "-"]


def test_a_malformed_metrics_line_is_skipped_with_a_warning_naming_file_and_line(
    tmp_path: Path, caplog, capsys
):
    run_dir = write_run(tmp_path, "mask_rcnn_synthetic", "torn", [{"step": 4, "val/segm/AP": 0.25}])
    metrics_file = run_dir / "metrics.jsonl"
    with metrics_file.open("a") as file:
        file.write(
            '["not", "a", "record"]\n{"stage": "val", "step": 8, "val/segm/AP": 0.3'
        )  # killed mid-write
    with caplog.at_level(logging.WARNING):
        evaluations = read_metrics_file(metrics_file)
    assert evaluations == [{"step": 4, "val/segm/AP": 0.25}]
    assert f"{metrics_file}: skipped 2 malformed line(s): line 2 (not a JSON object" in caplog.text
    assert "line 3 (" in caplog.text

    assert compare.main([f"--runs-dir={tmp_path}", "--no-markdown"]) == 0
    assert "torn" in capsys.readouterr().out  # the run is still compared, from its good lines


def test_metrics_that_are_not_fractions_are_shown_as_logged_and_min_mode_picks_the_lowest(tmp_path: Path):
    write_run(
        tmp_path,
        "gan_synthetic",
        "a",
        [
            {"step": 100, "val/generation/FID": 12.5},
            {"step": 200, "val/generation/FID": 14.0},
        ],
        class_path=f"{__name__}.GenerativeModule",
        published=[{"source": "paper, Table 1", "metrics": {"val/generation/FID": 13.5}}],
    )
    table = build_table(find_runs(tmp_path))
    [row] = table.rows
    cells = by_column(table.header, row)
    assert (cells["main metric"], cells["value"], cells["best (step)"]) == (
        "val/generation/FID",
        "14",
        "12.5 (100)",
    )
    assert (cells["main published"], cells["main Δ"]) == ("13.5", "+0.5")


def test_runs_whose_module_cannot_be_imported_are_listed_without_a_main_metric(tmp_path: Path, caplog):
    write_run(
        tmp_path, "gone", "a", [{"step": 1, "val/segm/AP": 0.5}], class_path="lightning_modules.gone.Module"
    )
    with caplog.at_level(logging.WARNING):
        table = build_table(find_runs(tmp_path))
    assert "cannot import lightning_modules.gone.Module" in caplog.text
    cells = by_column(table.header, table.rows[0])
    assert (cells["run"], cells["main metric"], cells["value"], cells["best (step)"]) == ("a", "-", "-", "-")


def test_experiment_filter_positional_paths_and_no_runs(tmp_path: Path, capsys):
    write_run(tmp_path, "exp_a", "1", [{"step": 1, "val/segm/AP": 0.1}])
    write_run(tmp_path, "exp_b", "2", [{"step": 1, "val/segm/AP": 0.2}])
    markdown = tmp_path / "out" / "table.md"
    assert compare.main([str(tmp_path), "--experiment=exp_b", f"--markdown={markdown}"]) == 0
    assert [row[0] for row in markdown_rows(markdown)[1:]] == ["exp_b"]
    assert compare.main([str(tmp_path / "exp_a" / "1"), "--no-markdown"]) == 0
    assert "exp_a" in capsys.readouterr().out

    assert compare.main([f"--runs-dir={tmp_path}", "--experiment=exp_c"]) == 1
    assert "No runs found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        compare.main([str(tmp_path / "missing")])
    assert exit_info.value.code == 2


class FakeApiRun(SimpleNamespace):
    """Duck-typed ``wandb.apis.public.Run``: id, name, group, config, summary, url, scan_history."""

    def scan_history(self, keys: list[str]):
        self.scanned_keys = keys
        return [row for row in self.rows if all(key in row for key in keys)]


def api_run(**overrides) -> FakeApiRun:
    fields = {
        "id": "mask_rcnn_coco_r50_fpn_1x-slurm-9",
        "name": "mask_rcnn_coco_r50_fpn_1x/slurm-9",
        "group": "mask_rcnn_coco_r50_fpn_1x",
        "url": "https://wandb.ai/team/zoo/runs/mask_rcnn_coco_r50_fpn_1x-slurm-9",
        "config": {
            "experiment": "mask_rcnn_coco_r50_fpn_1x",
            "run_id": "slurm-9",
            "model": {"class_path": MASK_RCNN},
            "published": PUBLISHED,
        },
        "summary": {
            "trainer/global_step": 89999,
            "_step": 500,
            "val/segm/AP": 0.349,
            "val/bbox/AP": 0.383,
            "train/loss": 0.7,
            "val/predictions": {"_type": "images/separated"},
        },
        "rows": [
            {"trainer/global_step": 9999, "_step": 10, "val/segm/AP": 0.2, "val/bbox/AP": 0.21},
            {"trainer/global_step": 10000, "_step": 11, "train/loss": 1.0},
            {"trainer/global_step": 89999, "_step": 500, "val/segm/AP": 0.349, "val/bbox/AP": 0.383},
        ],
    }
    return FakeApiRun(**{**fields, **overrides})


def test_wandb_api_runs_become_records_with_their_evaluation_history():
    run = api_run()
    record = record_from_wandb_api_run(run, run.rows)
    assert (record.experiment, record.run_id, record.source, record.location) == (
        "mask_rcnn_coco_r50_fpn_1x",
        "slurm-9",
        "wandb",
        run.url,
    )
    assert record.model_class_path == MASK_RCNN
    assert [p.source for p in record.published] == [DETECTRON2, TORCHVISION]
    assert record.evaluations == [
        {"step": 9999, "val/segm/AP": 0.2, "val/bbox/AP": 0.21},
        {"step": 89999, "val/segm/AP": 0.349, "val/bbox/AP": 0.383},
    ]
    # without history, the summary (last logged values) is the one evaluation
    assert record_from_wandb_api_run(run).evaluations == [
        {"step": 89999, "val/bbox/AP": 0.383, "val/segm/AP": 0.349}
    ]
    # a run logged without the zoo config falls back to its W&B group and name
    bare = record_from_wandb_api_run(api_run(config={}, url=None))
    assert (bare.experiment, bare.run_id, bare.location, bare.model_class_path) == (
        "mask_rcnn_coco_r50_fpn_1x",
        "mask_rcnn_coco_r50_fpn_1x/slurm-9",
        f"wandb:{run.id}",
        None,
    )


def test_fetching_a_project_scans_the_evaluation_keys_of_each_run():
    runs = [api_run()]
    calls = []
    api = SimpleNamespace(runs=lambda path, filters=None: calls.append((path, filters)) or runs)
    [record] = fetch_wandb_project_runs("team/zoo", ["mask_rcnn_coco_r50_fpn_1x"], api=api)
    assert calls == [("team/zoo", {"group": {"$in": ["mask_rcnn_coco_r50_fpn_1x"]}})]
    assert runs[0].scanned_keys == ["trainer/global_step", "val/bbox/AP", "val/segm/AP"]
    assert [evaluation["step"] for evaluation in record.evaluations] == [9999, 89999]
    table = build_table([record])
    cells = by_column(table.header, table.rows[0])
    assert (cells["value"], cells["main Δ"], cells["val/bbox/AP Δ"]) == ("34.9", "-0.3", "-0.3")


def test_wandb_project_without_credentials_says_so_and_compares_local_runs(
    tmp_path: Path, capsys, monkeypatch
):
    write_run(tmp_path, "mask_rcnn_synthetic", "local-1", [{"step": 4, "val/segm/AP": 0.1}])

    def no_network(*args, **kwargs):
        raise AssertionError("the W&B API must not be called without credentials")

    monkeypatch.setattr(compare, "fetch_wandb_project_runs", no_network)
    assert compare.main([f"--runs-dir={tmp_path}", "--wandb-project=team/zoo", "--no-markdown"]) == 0
    captured = capsys.readouterr()
    assert "W&B project team/zoo skipped: no W&B credentials" in captured.err
    assert "local-1" in captured.out


def test_wandb_project_with_credentials_adds_its_runs_and_survives_api_errors(
    tmp_path: Path, capsys, monkeypatch
):
    write_run(tmp_path, "mask_rcnn_synthetic", "local-1", [{"step": 4, "val/segm/AP": 0.1}])
    monkeypatch.setenv("WANDB_API_KEY", "not-a-real-key")
    requested = []

    def fake_fetch(project, experiments):
        requested.append((project, experiments))
        return [record_from_wandb_api_run(api_run())]

    monkeypatch.setattr(compare, "fetch_wandb_project_runs", fake_fetch)
    assert compare.main([f"--runs-dir={tmp_path}", "--wandb-project=team/zoo", "--no-markdown"]) == 0
    out = capsys.readouterr().out
    assert requested == [("team/zoo", [])]
    assert "slurm-9" in out and "local-1" in out and "wandb " in out

    def failing_fetch(project, experiments):
        raise RuntimeError("project team/zoo not found")

    monkeypatch.setattr(compare, "fetch_wandb_project_runs", failing_fetch)
    assert compare.main([f"--runs-dir={tmp_path}", "--wandb-project=team/zoo", "--no-markdown"]) == 0
    captured = capsys.readouterr()
    assert "could not read" not in captured.out and "local-1" in captured.out
    assert "W&B project team/zoo could not be read (RuntimeError: project team/zoo not found)" in captured.err


def test_plain_table_columns_line_up(tmp_path: Path):
    write_run(
        tmp_path,
        "mask_rcnn_coco_r50_fpn_1x",
        "long-run-name",
        [{"step": 90000, "val/segm/AP": 0.35}],
        published=PUBLISHED,
    )
    text = format_plain(build_table(find_runs(tmp_path)))
    header, rule, first, second = text.splitlines()[:4]
    assert set(rule) == {"-", " "} and header.index("run") == first.index("long-run-name")
    assert header.index("ref") == first.index("[1]") == second.index("[2]")  # continuation rows line up
    # numbers are right-aligned under their header: "step" ends where "90000" ends
    assert header.index("step") + len("step") == first.index("90000") + len("90000")
