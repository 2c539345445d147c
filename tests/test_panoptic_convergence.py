"""Slow: UPSNet's synthetic experiment, exactly as its YAML runs (600 training and 100 val images of 128 px,
2-core CPU): the first validation with PQ >= 0.5 comes within 15 minutes of the start, and at the end of the
schedule the panoptic head beats the heuristic merge scored on the same trained network (``val/panoptic/PQ``
against ``val/heuristic/PQ``, both logged at every validation).

Measured (2 cores; the whole fit 1409 s; the same numbers in two runs; 1000 steps of 4 images, learning rate
/10 at 760 and 920):

| step | panoptic head PQ (things / stuff) | heuristic merge PQ (things / stuff) |
|---|---|---|
| 250 | 0.681 (0.650 / 0.711) | 0.711 (0.705 / 0.716) |
| 500 | 0.807 (0.763 / 0.851) | 0.810 (0.769 / 0.852) |
| 750 | 0.870 (0.850 / 0.890) | 0.864 (0.838 / 0.889) |
| 875 | 0.888 (0.864 / 0.912) | 0.883 (0.854 / 0.912) |
| 1000 | **0.891** (0.872 / 0.911) | 0.889 (0.868 / 0.910) |

PQ first passes 0.5 at step 250, 362 s after the start. The head trails while the learning rate is high
and leads after its first drop; the lead is small (+0.002 at the end, from things: RQ 0.941 vs 0.937, SQ
0.927 vs 0.926). On the same checkpoint, "unknown" is worth +0.004 (0.887 without it), and the official
``SegTerm``'s one-pixel-wider crop (``models/panoptic_head.logits_in_boxes``) would give 0.888, behind the
heuristic. With training seed 1 instead of 0 (same data) the head ends ahead again, by more: 0.883 (things
0.869, stuff 0.898) vs 0.877 (0.859 / 0.895), after trailing by 0.013 at step 750. The earlier 250-step
schedule ended with the head behind (0.749 vs 0.773): there the semantic head's coarse (stride-4) thing
logits blur the instances' pointed shapes (stars, triangles) more than the heuristic's mask-only
boundaries.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from datamodules.synthetic.coco_writer import write_coco_split
from tests.cli_runs import REPO_ROOT, read_metrics
from tests.test_upsnet_experiments import panoptic_data_arguments
from zoo.cli import run_cli

TARGET_PQ = 0.5
BUDGET_S = 15 * 60


class EvaluationClock:
    """Seconds from ``start`` at which each line of a run's ``metrics.jsonl`` appeared (polled in a thread
    while the fit runs in this one)."""

    def __init__(self, metrics_file: Path, interval_s: float = 0.5) -> None:
        self.metrics_file, self.interval_s = metrics_file, interval_s
        self.seen_at: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> EvaluationClock:
        self.start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._record()

    def _record(self) -> None:
        lines = self.metrics_file.read_text().count("\n") if self.metrics_file.exists() else 0
        now = time.perf_counter() - self.start
        self.seen_at.extend([now] * (lines - len(self.seen_at)))

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._record()


@pytest.mark.slow
def test_upsnet_reaches_pq_in_time_and_its_panoptic_head_beats_the_heuristic_merge(tmp_path: Path) -> None:
    data = tmp_path / "synthetic"
    for split, count in (("train", 600), ("val", 100)):
        write_coco_split(data, split, count, image_size=128, seed=0, keypoints=False, panoptic=True)
    run_dir = tmp_path / "runs" / "upsnet_synthetic" / "convergence"
    with EvaluationClock(run_dir / "metrics.jsonl") as clock:
        run_cli(
            [
                "fit",
                f"--config={REPO_ROOT / 'experiments' / 'upsnet' / 'synthetic.yaml'}",
                *panoptic_data_arguments(data),
                f"--runs_dir={tmp_path / 'runs'}",
                "--run_id=convergence",
                "--wandb=false",
            ]
        )
    evaluations = [
        (r, at) for r, at in zip(read_metrics(run_dir), clock.seen_at, strict=True) if r["stage"] == "val"
    ]
    for record, at in evaluations:
        print(
            f"UPSNet synthetic, step {record['step']} ({at:.0f} s): "
            + ", ".join(
                f"{merge} PQ {record[f'val/{merge}/PQ']:.3f} (things {record[f'val/{merge}/PQ_things']:.3f}, "
                f"stuff {record[f'val/{merge}/PQ_stuff']:.3f})"
                for merge in ("panoptic", "heuristic")
            )
        )
    reached = [at for record, at in evaluations if record["val/panoptic/PQ"] >= TARGET_PQ]
    assert reached and reached[0] <= BUDGET_S, f"PQ {TARGET_PQ} not reached within {BUDGET_S} s"
    final = evaluations[-1][0]
    assert final["val/panoptic/PQ"] > final["val/heuristic/PQ"]
