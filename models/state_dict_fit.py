"""The one check every official-weights loader makes before ``load_state_dict``: which names are missing,
unexpected or of another shape, listed in an error that names them (``load_state_dict`` would stop at
the first shape mismatch, with our names only)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor, nn


def state_dict_problems(
    model: nn.Module,
    converted: Mapping[str, Tensor],
    official_name: Callable[[str], str] = lambda name: name,
    shown: int = 5,
) -> list[str]:
    """What keeps ``converted`` (in our names) from loading into ``model`` strictly; empty when it fits.

    A missing BatchNorm ``num_batches_tracked`` is allowed (checkpoints from before PyTorch 0.4 have none;
    it is unused in eval mode and with the default momentum). ``official_name`` maps our names to the
    checkpoint's, for the message."""
    expected = model.state_dict()

    def named(name: str) -> str:
        official = official_name(name)
        return name if official == name else f"{official} (ours {name})"

    missing = [named(n) for n in expected if n not in converted and not n.endswith("num_batches_tracked")]
    unexpected = [named(n) for n in converted if n not in expected]
    wrong_shape = [
        f"{official_name(n)} {tuple(v.shape)} (ours {'' if official_name(n) == n else n + ' '}"
        f"{tuple(expected[n].shape)})"
        for n, v in converted.items()
        if n in expected and v.shape != expected[n].shape
    ]
    return [
        f"{len(names)} {kind}: {', '.join(names[:shown])}"
        for kind, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("with other shapes", wrong_shape),
        )
        if names
    ]


def load_fitting_state_dict(model: nn.Module, converted: Mapping[str, Tensor], problems: list[str]) -> None:
    """``load_state_dict`` once ``state_dict_problems`` found none (strict unless only
    ``num_batches_tracked`` entries are absent)."""
    if problems:
        raise ValueError("; ".join(problems))
    model.load_state_dict(converted, strict=all(name in converted for name in model.state_dict()))
