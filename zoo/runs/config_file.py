"""Save the resolved config beside the run's checkpoints (``<run>/config.yaml`` for ``fit``,
``config-<stage>.yaml`` for validate/test/predict, whatever the logger) and log it, with the git commit and the parameter count, to every logger (W&B shows them
in the run's config panel)."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.trainer.states import TrainerFn

from zoo.runs.metadata import git_commit, parameter_counts


class SaveAndLogConfig(SaveConfigCallback):
    """Called on global rank zero only (``SaveConfigCallback.setup``)."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        run_dir = Path(trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        # `zoo validate` / `test` in the same run must not replace the training config
        stage = TrainerFn(stage).value  # "validate", not "TrainerFn.VALIDATING"
        filename = self.config_filename if stage == "fit" else f"config-{stage}.yaml"
        self.parser.save(self.config, run_dir / filename, skip_none=False, overwrite=True)
        run_info = {"git_commit": git_commit(), **parameter_counts(pl_module)}
        config = self.config.clone()
        for key in ("config", "print_config"):
            if key in config:
                del config[key]
        for logger in trainer.loggers:
            logger.log_hyperparams({**config.as_dict(), "run": run_info})
