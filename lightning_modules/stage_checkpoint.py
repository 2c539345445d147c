"""Starting a run from a previous run's weights: methods trained in stages (YolactEdge's image, flow and
fine-tuning stages; VPSNet from an image panoptic run) load the ``model.*`` weights of the previous stage's
Lightning checkpoint, as the official code's ``--resume`` / ``load_from`` do."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


def load_stage_checkpoint(
    model: nn.Module, path: str | Path, strict: bool = True
) -> tuple[list[str], list[str]]:
    """Load the ``model.*`` weights of a Lightning checkpoint (a previous stage's run) into ``model`` (the
    whole network, or the part of it the previous stage trained, e.g. a VPSNet's ``upsnet``); returns and
    logs the missing and unexpected parameter names. ``strict`` raises when there are any; shapes must
    match either way."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    weights = {
        k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")
    }
    result = model.load_state_dict(weights, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    log.info(
        "%s: loaded %d tensors; missing %s; unexpected %s",
        path, len(weights) - len(unexpected), missing or "none", unexpected or "none",
    )  # fmt: skip
    if strict and (missing or unexpected):
        raise ValueError(f"{path}: missing {missing}, unexpected {unexpected} (checkpoint_strict=true)")
    return missing, unexpected
