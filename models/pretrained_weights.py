"""The one rule for pretrained networks whose weights come from outside (VGG perceptual features, the FID
Inception-v3, LPIPS backbones): nothing is downloaded -- clusters have no internet -- so every such network
takes a LOCAL weights file, a missing one is an error saying which file and where users get it, and random
weights are given only when explicitly asked for (``random_weights_for_tests=True``), with a loud warning."""

from __future__ import annotations

import warnings
from pathlib import Path


def local_weights_file(
    weights_path: str | Path | None,
    *,
    network: str,
    source: str,
    random_weights_for_tests: bool = False,
) -> Path | None:
    """The checked local weights file of `network`, or None when random weights were asked for (after a
    warning that every number computed with them is meaningless).

    `source` says where users get the file (e.g. torchvision's URL); it goes into the error message. Raises
    FileNotFoundError when no path is given or the file does not exist, ValueError when both a path and
    ``random_weights_for_tests`` are given."""
    given = weights_path is not None and str(weights_path) not in ("", "None")
    if random_weights_for_tests:
        if given:
            raise ValueError(
                f"{network}: got both weights_path={weights_path} and random_weights_for_tests=True; pass one"
            )
        warnings.warn(
            f"{network} has RANDOM weights (random_weights_for_tests=True): its features, and every loss or "
            "metric computed from them, are meaningless. Use this only in tests.",
            UserWarning,
            stacklevel=3,
        )
        return None
    if not given:
        # jsonargparse can turn a nested `null` into the string "None" (see models.backbones.resnet_body).
        raise FileNotFoundError(
            f"{network} needs a local weights file and got weights_path={weights_path!r}: download {source} "
            "and pass its path (nothing is downloaded here); random weights only with "
            "random_weights_for_tests=True"
        )
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{network} weights {path} not found: download {source} and pass its local path as weights_path"
        )
    return path


def read_state_dict(path: str | Path, *, network: str, source: str) -> dict:
    """A released checkpoint's state dict from a local file (tensors only: ``weights_only`` loading), for
    a network's ``official_weights`` argument; a missing file is an error naming it and its source."""
    checked = local_weights_file(path, network=network, source=source)
    import torch  # here: the module above is import-light for the CLI's tools

    return torch.load(checked, map_location="cpu", weights_only=True)


def read_official_state_dict(path: str | Path, *, network: str, source: str) -> dict:
    """``read_state_dict`` of a released training checkpoint: ``{"state_dict": ...}`` (optionally with
    epoch and optimizer entries) or a bare state dict; a file holding other objects (which
    ``weights_only`` loading refuses) or anything but tensors is an error that says what to do."""
    import pickle
    from collections.abc import Mapping

    from torch import Tensor

    try:
        checkpoint = read_state_dict(path, network=network, source=source)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} holds objects other than tensors, so it is not read with weights_only=True ({error}); "
            "if you trust the file, re-save its state dict: torch.save(torch.load(path, weights_only=False)"
            "['state_dict'], new_path)"
        ) from error
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
    if not isinstance(state, Mapping) or not all(isinstance(value, Tensor) for value in state.values()):
        raise ValueError(f"{path} is neither a {network} state dict nor a {{'state_dict': ...}} checkpoint")
    return dict(state)
