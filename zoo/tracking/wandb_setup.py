"""Weights & Biases by default: online when credentials exist, offline otherwise (sync later)."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from zoo.runs.location import RunLocation

WANDB_HOST = "api.wandb.ai"


def wandb_credentials_available(environ: dict[str, str] | None = None) -> bool:
    """True when an API key is in the environment or in ``~/.netrc`` (what ``wandb login`` writes)."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(environ.get("NETRC", Path.home() / ".netrc"))
    if not netrc_path.is_file():
        return False
    try:
        host = environ.get("WANDB_BASE_URL", WANDB_HOST).split("://")[-1]
        return netrc.netrc(netrc_path).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def wandb_mode(environ: dict[str, str] | None = None) -> str:
    """A mode the user set (``WANDB_MODE``) wins; otherwise online iff credentials exist."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"]
    return "online" if wandb_credentials_available(environ) else "offline"


def make_wandb_logger(location: RunLocation, project: str, tags: list[str]) -> WandbLogger:
    """One W&B run per zoo run: id derived from the run location, so a resumed or requeued job
    appends to the same run; grouped by experiment so the dashboard lines up repeats."""
    mode = wandb_mode()
    location.root.mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(
        project=project,
        name=f"{location.experiment}/{location.run_id}",
        id=location.wandb_id,
        group=location.experiment,
        tags=tags,
        save_dir=str(location.root),
        mode=mode,
        resume="allow",
        log_model=False,
    )
    if mode == "offline":
        rank_zero_info(
            f"W&B is offline (no credentials found). Sync this run later with:\n"
            f"  wandb sync {location.root / 'wandb'}/offline-run-*"
        )
    return logger
