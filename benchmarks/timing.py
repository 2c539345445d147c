"""Wall-clock timing shared by the benchmark scripts (run as ``python benchmarks/<name>.py``, which puts
this folder on the import path)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def timed(function: Callable[[], object], device: str) -> float:
    """Seconds ``function()`` takes, with the CUDA queue drained before and after on a CUDA ``device``."""
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    function()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started
