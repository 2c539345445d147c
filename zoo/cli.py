"""The ``zoo`` command: LightningCLI for ``fit|validate|test|predict`` plus the project's tools.

``zoo fit --config experiments/mask_rcnn/synthetic.yaml --trainer.devices 8`` trains; configs stack
(``--config a.yaml --config b.yaml``), dotted overrides and ``--print_config`` work as in LightningCLI.
``zoo synthetic ...``, ``zoo check-dataset ...`` are tools that need no Trainer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info

from zoo.cluster.slurm_requeue import RequeueOnSignal, newest_checkpoint, resume_checkpoint
from zoo.compare.published import PublishedResult
from zoo.runs.checkpoints import run_checkpoints
from zoo.runs.config_file import SaveAndLogConfig
from zoo.runs.location import RunLocation, existing_runs, resolve_run_location
from zoo.runs.metrics_file import MetricsFileWriter
from zoo.tools import check_dataset, compare, landmark_comparison, mpii_to_coco, synthetic
from zoo.tracking.wandb_setup import make_wandb_logger
from zoo.training.batch_seeding import BatchSeeding

TOOLS: dict[str, Callable[[list[str]], int]] = {
    "synthetic": synthetic.main,
    "check-dataset": check_dataset.main,
    "compare": compare.main,
    "landmark-comparison": landmark_comparison.main,
    "mpii-to-coco": mpii_to_coco.main,
}


class ZooCLI(LightningCLI):
    """LightningCLI that places every run in ``runs/<experiment>/<run_id>/`` and wires W&B,
    checkpointing on the method's main metric and the metrics file there."""

    run_location: RunLocation

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--experiment",
            type=str | None,
            default=None,
            help="Experiment name: the W&B group and the folder under runs_dir.",
        )
        parser.add_argument(
            "--run_id",
            type=str | None,
            default=None,
            help="Reuse a run (resume with --ckpt_path last). Default: SLURM job id or new.",
        )
        parser.add_argument("--runs_dir", type=str, default="runs", help="Where runs are written.")
        parser.add_argument(
            "--wandb",
            type=bool,
            default=True,
            help="Log to Weights & Biases (offline when no credentials); false: CSV only.",
        )
        parser.add_argument("--wandb_project", type=str, default="vision-zoo")
        parser.add_argument("--tags", type=list[str], default=[], help="W&B tags.")
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int | None,
            default=None,
            help="Also rewrite checkpoints/last.ckpt every N steps (default: at each evaluation).",
        )
        # Dataset metadata reaches the module explicitly once both are built (no trainer.datamodule reach-in)
        parser.link_arguments(
            "data", "model.init_args.metadata", compute_fn=_metadata_of, apply_on="instantiate"
        )
        parser.add_argument(
            "--published",
            type=list[PublishedResult],
            default=[],
            help="The paper's / official code's numbers for this experiment (zoo compare).",
        )

    def _subcommand_config(self):
        return self.config[self.subcommand] if self.subcommand else self.config

    def parse_arguments(self, parser: LightningArgumentParser, args: object) -> None:
        self._command_line = list(sys.argv[1:] if args is None else args if isinstance(args, list) else [])
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """Lightning applies an explicit checkpoint file's saved hyperparameters over the config files
        *and* the command line, so ``zoo validate --ckpt_path run.ckpt --model.init_args.X v`` would
        silently evaluate with the checkpoint's X. Here the checkpoint still overrides the config files,
        but a module argument named on the command line wins."""
        subcommand = self.config.get("subcommand")
        named = _model_arguments_named(self._command_line)
        before = self.config[subcommand].model.get("init_args") if subcommand and named else None
        super()._parse_ckpt_path()
        if before is None:
            return
        after = self.config[subcommand].model.init_args
        for name in named:
            if name in before:
                after[name] = before[name]

    def before_instantiate_classes(self) -> None:
        config = self._subcommand_config()
        experiment = config.experiment or config.model.class_path.rsplit(".", 1)[-1].lower()
        evaluates_the_run = self.subcommand in ("validate", "test", "predict") and config.ckpt_path in (
            None,
            "last",
        )
        if (
            evaluates_the_run and config.run_id
        ):  # (an explicit checkpoint file may be evaluated into a new run)
            _require_existing_run(experiment, config.runs_dir, config.run_id)
        self.run_location = resolve_run_location(experiment, config.runs_dir, config.run_id)
        config.experiment, config.run_id = experiment, self.run_location.run_id
        config.trainer.default_root_dir = str(self.run_location.root)

    def instantiate_trainer(self, **kwargs) -> Trainer:
        config = self._subcommand_config()
        location = self.run_location
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") is None:
            if config.wandb:
                tags = [*config.tags, self.subcommand] if self.subcommand else list(config.tags)
                kwargs["logger"] = make_wandb_logger(location, config.wandb_project, tags)
            else:
                # one version folder per launch: CSVLogger would delete an existing metrics.csv on resume
                kwargs["logger"] = CSVLogger(save_dir=str(location.root), name="csv")
        user_callbacks = list(trainer_config.get("callbacks") or [])
        defaults = [
            LearningRateMonitor(logging_interval="step"),
            MetricsFileWriter(location.root / "metrics.jsonl"),
            BatchSeeding(),
        ]
        writer = self.model.prediction_writer(location.root)
        if writer is not None:
            defaults.append(writer)
        elif self.subcommand == "predict":
            raise ValueError(
                f"{type(self.model).__name__} writes no predictions (its prediction_writer is None)"
            )
        if not any(isinstance(callback, ModelCheckpoint) for callback in user_callbacks):
            defaults += run_checkpoints(
                location.checkpoints,
                self.model.main_metric,
                self.model.main_metric_mode,
                config.checkpoint_every_n_steps,
            )
        if (
            SLURMEnvironment.detect()
        ):  # checkpoint + requeue on SIGUSR1 at a step boundary, not Lightning's way
            defaults.append(RequeueOnSignal())
            if trainer_config.get("plugins") is None:
                kwargs["plugins"] = [SLURMEnvironment(auto_requeue=False)]
        kwargs["callbacks"] = [*user_callbacks, *defaults]
        return super().instantiate_trainer(**kwargs)

    def _report_location(self) -> None:
        location = self.run_location
        rank_zero_info(f"Run directory: {location.root}")
        rank_zero_info(f"  checkpoints: {location.checkpoints}")
        if self._subcommand_config().wandb:
            rank_zero_info(f"  W&B files:   {location.root / 'wandb'}  (run id {location.wandb_id})")
        rank_zero_info(f"  metrics:     {location.root / 'metrics.jsonl'}")

    def before_fit(self) -> None:
        config = self.config_init[self.subcommand]
        resolved = resume_checkpoint(self.run_location, config.ckpt_path, os.environ)
        if resolved != config.ckpt_path:
            rank_zero_info(f"Resuming from {resolved} (the run's newest checkpoint)")
            config.ckpt_path = resolved

    def _evaluate_newest_checkpoint(self) -> None:
        """``--ckpt_path last`` for validate/test/predict: the run's newest checkpoint, which must exist
        (Lightning would warn and evaluate untrained weights)."""
        config = self.config_init[self.subcommand]
        if config.ckpt_path != "last":
            return
        newest = newest_checkpoint(self.run_location)
        if newest is None:
            raise ValueError(f"--ckpt_path last: run {self.run_location.root} has no checkpoint to evaluate")
        config.ckpt_path = str(newest)

    before_validate = before_test = before_predict = _evaluate_newest_checkpoint

    def after_fit(self) -> None:
        self._report_location()

    def after_validate(self) -> None:
        self._report_location()

    def after_test(self) -> None:
        self._report_location()


def _metadata_of(datamodule: object) -> object:
    if not hasattr(datamodule, "metadata"):
        raise TypeError(
            f"{type(datamodule).__name__} has no `metadata` (a datamodules.metadata.DatasetMetadata)"
        )
    return datamodule.metadata


def _require_existing_run(experiment: str, runs_dir: str, run_id: str) -> None:
    """``zoo validate|test|predict --run_id RUN [--ckpt_path last]`` names a run to evaluate: a typo
    must not evaluate random weights in a new, stray run."""
    runs = existing_runs(experiment, runs_dir)
    if run_id not in runs:
        known = ", ".join(runs) if runs else "none"
        raise ValueError(
            f"no run {run_id!r} of experiment {experiment!r} in {runs_dir}/ (runs there: {known})"
        )


def _model_arguments_named(command_line: list[str]) -> set[str]:
    """The module init arguments set on ``command_line`` (``--model.init_args.NAME[.sub]=v``,
    ``--model.init_args.NAME v`` or ``--model.NAME``)."""
    named = set()
    for item in command_line:
        if not item.startswith("--model."):
            continue
        path = item[len("--model.") :].split("=", 1)[0].split(".")
        if path[0] == "init_args":
            path = path[1:]
        if path and path[0] not in ("", "class_path", "dict_kwargs"):
            named.add(path[0])
    return named


def run_cli(args: list[str] | None = None) -> ZooCLI:
    return ZooCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=SaveAndLogConfig,
        save_config_kwargs={"save_to_log_dir": False},
        args=args,
    )


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments and arguments[0] in TOOLS:
        return TOOLS[arguments[0]](arguments[1:])
    if not arguments or arguments[0] in ("-h", "--help"):
        print(f"zoo tools (no Trainer): {', '.join(TOOLS)}  -- `zoo <tool> --help` for their options.\n")
    run_cli(argv)  # None: LightningCLI reads sys.argv itself
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
