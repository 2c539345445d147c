"""COCO panoptic PNGs: a segment id per pixel encoded in RGB as ``id = R + 256 G + 256^2 B`` (0 = void),
the format of COCO panoptic, Cityscapes panoptic and panopticapi's ``rgb2id`` / ``id2rgb``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

MAX_SEGMENT_ID = 256**3 - 1


def read_coco_panoptic_png(path: str | Path) -> Tensor:
    """The (H, W) int64 segment-id map of an RGB-encoded panoptic PNG."""
    with Image.open(path) as image:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        # R, G, B and a zero byte per pixel: read as little-endian int32, that is R + 256 G + 256^2 B
        rgbx = (
            np.frombuffer(rgb.tobytes("raw", "RGBX"), dtype=np.uint8).reshape(rgb.height, rgb.width, 4).copy()
        )
    rgbx[..., 3] = 0
    return torch.from_numpy(rgbx.view("<i4")[..., 0]).long()


def write_coco_panoptic_png(ids: Tensor, path: str | Path) -> None:
    """Writes an (H, W) segment-id map (ids in [0, 256^3)) as an RGB-encoded panoptic PNG."""
    if ids.ndim != 2:
        raise ValueError(f"segment ids must be (H, W), got {tuple(ids.shape)}")
    array = ids.detach().cpu().numpy().astype(np.int64)
    if array.min(initial=0) < 0 or array.max(initial=0) > MAX_SEGMENT_ID:
        raise ValueError(f"segment ids must lie in [0, {MAX_SEGMENT_ID}] to be encoded in RGB: {path}")
    rgb = np.stack([array % 256, array // 256 % 256, array // 256**2], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, mode="RGB").save(path)
