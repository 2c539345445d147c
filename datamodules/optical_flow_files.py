"""Optical flow files: Middlebury ``.flo`` and numpy ``.npy``, both holding a float32 (H, W, 2) flow.

A flow field gives, per pixel of frame t, the displacement (u, v) = (dx, dy) in pixels to where that pixel's
surface point is in frame t + 1 (x to the right, y down).

``.flo`` is the Middlebury format (Baker et al., "A Database and Evaluation Methodology for Optical Flow",
IJCV 2011; its ``flow-code/README.txt``), little-endian throughout: the float32 magic 202021.25 (the bytes
``PIEH``), the width and the height as int32, then H * W * 2 float32 values, row by row, u and v
interleaved. Middlebury marks unknown flow by values above 1e9; readers here return the values as stored.
``.npy`` is ``numpy.save`` of the (H, W, 2) float32 array.
"""

from pathlib import Path

import numpy as np

from datamodules.errors import DatasetFormatError

FLO_MAGIC = 202021.25
FLO_SUFFIXES = (".flo", ".npy")
_MAX_SIDE = 1 << 16  # a header claiming more is a corrupt file, not a frame


def _check_flow(flow: np.ndarray) -> np.ndarray:
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or not (flow.shape[0] and flow.shape[1]):
        raise ValueError(f"flow must be a non-empty (H, W, 2) array, got shape {flow.shape}")
    return flow.astype(np.float32, copy=False)


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """Write ``flow`` (H, W, 2) as a Middlebury ``.flo`` file."""
    flow = _check_flow(flow)
    height, width = flow.shape[:2]
    with Path(path).open("wb") as f:
        np.array([FLO_MAGIC], "<f4").tofile(f)
        np.array([width, height], "<i4").tofile(f)
        flow.astype("<f4").tofile(f)


def read_flo(path: str | Path) -> np.ndarray:
    """Read a Middlebury ``.flo`` file as float32 (H, W, 2); a missing, truncated or non-``.flo`` file
    raises ``DatasetFormatError`` naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise DatasetFormatError(f"{path}: flow file not found", "missing_flow") from e
    if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != FLO_MAGIC:
        raise DatasetFormatError(
            f"{path}: not a Middlebury .flo file (no magic {FLO_MAGIC} in its first 4 bytes)", "bad_flow"
        )
    width, height = (int(v) for v in np.frombuffer(data[4:12], "<i4"))
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise DatasetFormatError(f"{path}: .flo header gives a {width}x{height} flow", "bad_flow")
    expected = 12 + 4 * 2 * width * height
    if len(data) != expected:
        raise DatasetFormatError(
            f"{path}: a {width}x{height} .flo file has {expected} bytes, this one {len(data)}", "bad_flow"
        )
    return np.frombuffer(data[12:], "<f4").reshape(height, width, 2).astype(np.float32)


def write_flow(path: str | Path, flow: np.ndarray) -> None:
    """Write ``flow`` (H, W, 2) as ``.flo`` or ``.npy``, by the suffix of ``path``."""
    path = Path(path)
    if path.suffix == ".flo":
        write_flo(path, flow)
    elif path.suffix == ".npy":
        np.save(path, _check_flow(flow))
    else:
        raise ValueError(f"{path}: flow files end in one of {FLO_SUFFIXES}")


def read_flow(path: str | Path) -> np.ndarray:
    """Read a ``.flo`` or ``.npy`` flow file as float32 (H, W, 2)."""
    path = Path(path)
    if path.suffix == ".flo":
        return read_flo(path)
    if path.suffix != ".npy":
        raise ValueError(f"{path}: flow files end in one of {FLO_SUFFIXES}")
    try:
        flow = np.load(path, allow_pickle=False)
    except FileNotFoundError as e:
        raise DatasetFormatError(f"{path}: flow file not found", "missing_flow") from e
    except (OSError, ValueError) as e:
        raise DatasetFormatError(f"{path}: cannot read flow file ({e})", "bad_flow") from e
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise DatasetFormatError(f"{path}: flow must be (H, W, 2), got shape {flow.shape}", "bad_flow")
    return flow.astype(np.float32, copy=False)
