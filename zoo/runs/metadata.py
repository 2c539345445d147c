"""What a run records about itself besides the config: the code version and the model size."""

from __future__ import annotations

import subprocess
from pathlib import Path

from torch import nn


def git_commit(repo_dir: str | Path = ".") -> str | None:
    """``<sha>`` or ``<sha>-dirty``; None outside a git checkout (e.g. an installed Docker image)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo_dir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def parameter_counts(module: nn.Module) -> dict[str, int]:
    return {
        "parameters": sum(p.numel() for p in module.parameters()),
        "trainable_parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),
    }
