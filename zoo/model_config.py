"""A network built from a model block file (``class_path`` + ``init_args``, nested blocks and file
references resolved as ``zoo fit`` resolves them), for benchmarks and tests that need an experiment's
preset without a run."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser
from torch import nn


def build_model(config: str | Path) -> nn.Module:
    """The ``nn.Module`` a model block file describes (e.g. ``experiments/vpsnet/synthetic_model.yaml``)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(nn.Module, "model")
    return parser.instantiate_classes(parser.parse_args([f"--model={config}"])).model
