"""Straightforward per-keypoint versions of ``models.heatmaps`` (numpy, one keypoint at a time), written
the way the official Stacked Hourglass and DARK code are: the reference the vectorised codec is tested
against (``tests/test_heatmaps.py``) and timed against (``benchmarks/heatmaps.py``). Not for training."""

from __future__ import annotations

import math

import numpy as np

from models.heatmaps import GaussianHeatmapCodec, opencv_gaussian_sigma


def _cell(value: float, codec: GaussianHeatmapCodec, stride: float) -> float:
    cell = value / stride - 0.5 if codec.convention == "corners" else value / stride
    if codec.placement == "truncated":
        return float(int(cell))
    if codec.placement == "rounded":
        return float(math.floor(cell + 0.5))
    return cell


def encode_loop(keypoints: np.ndarray, codec: GaussianHeatmapCodec) -> tuple[np.ndarray, np.ndarray]:
    """(B, N, K, 3) -> heatmaps (B, K, h, w), weights (B, K): for each keypoint, paste its Gaussian into
    its channel by max."""
    width, height = codec.heatmap_size
    stride_x, stride_y = codec.input_size[0] / width, codec.input_size[1] / height
    batch, instances, count = keypoints.shape[:3]
    heatmaps = np.zeros((batch, count, height, width), np.float32)
    weights = np.zeros((batch, count), np.float32)
    xs, ys = np.arange(width), np.arange(height)
    for b in range(batch):
        for n in range(instances):
            for k in range(count):
                x, y, visibility = keypoints[b, n, k]
                if visibility <= 0:
                    continue
                cx, cy = _cell(x, codec, stride_x), _cell(y, codec, stride_y)
                if codec.placement == "unbiased":
                    inside = -0.5 <= cx < width - 0.5 and -0.5 <= cy < height - 0.5
                else:
                    inside = 0 <= cx <= width - 1 and 0 <= cy <= height - 1
                if not inside:
                    continue
                gaussian = np.exp(-((xs[None] - cx) ** 2 + (ys[:, None] - cy) ** 2) / (2 * codec.sigma**2))
                if codec.window_radius is not None:
                    window = (np.abs(xs[None] - cx) <= codec.window_radius) & (
                        np.abs(ys[:, None] - cy) <= codec.window_radius
                    )
                    gaussian = gaussian * window
                heatmaps[b, k] = np.maximum(heatmaps[b, k], gaussian)
                weights[b, k] = 1.0
    return heatmaps, weights


def _blur(heatmap: np.ndarray, kernel_size: int) -> np.ndarray:
    sigma = opencv_gaussian_sigma(kernel_size)
    offsets = np.arange(kernel_size) - kernel_size // 2
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    border = kernel_size // 2
    padded = np.pad(heatmap.astype(np.float64), border)
    rows = np.stack([np.convolve(row, kernel, mode="valid") for row in padded])
    blurred = np.stack([np.convolve(column, kernel, mode="valid") for column in rows.T]).T
    return blurred * heatmap.max() / blurred.max()


def _dark_step(log_map: np.ndarray, x: int, y: int) -> tuple[float, float]:
    padded = np.pad(log_map, 2, mode="edge")

    def at(dx: int, dy: int) -> float:
        return float(padded[y + 2 + dy, x + 2 + dx])

    gx, gy = 0.5 * (at(1, 0) - at(-1, 0)), 0.5 * (at(0, 1) - at(0, -1))
    hxx = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    hyy = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    hessian = np.array([[hxx, hxy], [hxy, hyy]])
    if abs(np.linalg.det(hessian)) <= np.finfo(np.float32).eps:
        return 0.0, 0.0
    step = -np.linalg.solve(hessian, np.array([gx, gy]))
    return (float(step[0]), float(step[1])) if np.abs(step).max() <= 1 else (0.0, 0.0)


def decode_loop(heatmaps: np.ndarray, codec: GaussianHeatmapCodec) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, h, w) -> keypoints (B, K, 2) in input pixels, scores (B, K), one map at a time."""
    batch, count, height, width = heatmaps.shape
    stride = np.array([codec.input_size[0] / width, codec.input_size[1] / height])
    cells = np.zeros((batch, count, 2))
    scores = np.zeros((batch, count))
    for b in range(batch):
        for k in range(count):
            heatmap = heatmaps[b, k]
            y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
            scores[b, k] = heatmap[y, x]
            if codec.decoder == "argmax":
                px, py = float(x), float(y)
                if 0 < x < width - 1:
                    px += 0.25 * np.sign(heatmap[y, x + 1] - heatmap[y, x - 1])
                if 0 < y < height - 1:
                    py += 0.25 * np.sign(heatmap[y + 1, x] - heatmap[y - 1, x])
            elif codec.decoder == "dark":
                modulated = _blur(heatmap, codec.dark_kernel_size) if codec.dark_kernel_size else heatmap
                step_x, step_y = _dark_step(np.log(np.maximum(modulated, 1e-10)), x, y)
                px, py = x + step_x, y + step_y
            else:
                logits = codec.soft_argmax_beta * heatmap.astype(np.float64)
                probabilities = np.exp(logits - logits.max())
                probabilities /= probabilities.sum()
                px = float((probabilities.sum(0) * np.arange(width)).sum())
                py = float((probabilities.sum(1) * np.arange(height)).sum())
            cells[b, k] = px, py
    if codec.placement == "truncated":  # the official ``adjust``'s half cell
        cells = cells + 0.5
    points = (cells + 0.5) * stride if codec.convention == "corners" else cells * stride
    return points, scores
