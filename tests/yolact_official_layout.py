"""The official YOLACT checkpoints' layout (dbolya/yolact ``Yolact().state_dict()`` names and shapes for
``yolact_base`` and ``yolact_resnet50``, read off the official code) and a deterministic state dict in
that layout, standing in for the released ``.pth`` files, which can't be downloaded here.

``tests/fixtures/yolact_official.json`` holds, per config, the ``[name, shape]`` list and, for
``yolact_resnet50``, what the official network computed (training-mode outputs, BatchNorm frozen) on
``reference_input()`` with ``official_state_dict(...)`` loaded: sums and a fixed sample of values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

FIXTURE = Path(__file__).parent / "fixtures" / "yolact_official.json"
SAMPLED_VALUES = 64


def official_layout(config: str) -> list[tuple[str, tuple[int, ...]]]:
    entries = json.loads(FIXTURE.read_text())[config]["state_dict"]
    return [(name, tuple(shape)) for name, shape in entries]


def official_reference(config: str) -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())[config]["reference_outputs"]


def official_state_dict(layout: list[tuple[str, tuple[int, ...]]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Values that keep a 100-layer network's activations in range: He-scaled conv weights, BatchNorm
    scales in [0.5, 1] and variances in [0.5, 1.5], small biases and means -- one generator per key."""
    state = {}
    for index, (name, shape) in enumerate(layout):
        generator = torch.Generator().manual_seed(seed * 100_003 + index)
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(0)
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(shape, generator=generator)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[name] = torch.randn(shape, generator=generator) * (1.0 / fan_in) ** 0.5
        elif name.endswith("weight"):  # BatchNorm scale
            state[name] = 0.5 + 0.5 * torch.rand(shape, generator=generator)
        else:  # biases, BatchNorm shifts and running means
            state[name] = 0.05 * torch.randn(shape, generator=generator)
    return state


def reference_input(size: int = 550) -> torch.Tensor:
    """A normalised network input (what the official FastBaseTransform hands the network)."""
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2019))


def summarize(outputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Sums, absolute sums and ``SAMPLED_VALUES`` values at fixed positions of each output."""
    summary = {}
    for key, value in outputs.items():
        flat = value.detach().double().reshape(-1)
        positions = torch.linspace(0, flat.numel() - 1, SAMPLED_VALUES).long()
        summary[key] = {
            "shape": list(value.shape),
            "sum": float(flat.sum()),
            "abs_sum": float(flat.abs().sum()),
            "positions": positions.tolist(),
            "values": flat[positions].tolist(),
        }
    return summary
