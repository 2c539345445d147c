"""VPSNet's feature warp aligns real synthetic frames given the synthetic world's ground-truth flow.

On the synthetic world the ground-truth flow is available to test the warping: ``frame_flow(video, t)``
says, per pixel of frame t, where its surface point is in frame t + 1, and ``warp_by_flow`` is a backward
warp, so warping frame t + 1 by that flow must reproduce frame t wherever the point stays visible. This
checks the whole convention chain -- (u, v) order, direction, pixel-centre coordinates -- at the image
resolution and, through ``resize_flow``, at the stride-4 grid VPSNet fuses at.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.synthetic.video import Video, VideoConfig, frame_flow, render_video
from models.vps_fuse import resize_flow, warp_by_flow

SIZE = 128
STRIDE = 4
# Two frames with real motion: things move 5-10 px per frame, the camera pans up to ~2.5 px per axis.
CONFIG = VideoConfig(num_frames=2, speed_range=(0.04, 0.08), max_pan_speed=0.02)


def _labels(video: Video, t: int) -> np.ndarray:
    """(H, W) int64: 0 on stuff, the instance id on each shown thing's visible mask."""
    labels = np.zeros((SIZE, SIZE), np.int64)
    for thing in video.frames[t].things:
        labels[thing.mask] = thing.instance_id
    return labels


def _visible_in_next_frame(video: Video, flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of frame 0 whose target (x + u, y + v) lies inside frame 1 and is not occluded.

    The video module has no occlusion map, but its annotations give one exactly: a pixel is kept when
    all (up to 4) pixels the bilinear warp reads around its target are inside the image and carry the
    same label in frame 1 as the pixel in frame 0 (stuff stays stuff: the pan moves the whole canvas;
    a thing stays the same thing). This drops pixels that leave the image, stuff covered by a thing in
    frame 1, thing pixels hidden or off the rasterized outline in frame 1 -- nothing else, so the
    error below is measured on every pixel where the warp can be right, boundaries of moving things
    included as far as they stay visible."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    tx, ty = xs + flow[..., 0].astype(np.float64), ys + flow[..., 1].astype(np.float64)
    x0, x1, y0, y1 = np.floor(tx), np.ceil(tx), np.floor(ty), np.ceil(ty)
    inside = (x0 >= 0) & (x1 <= SIZE - 1) & (y0 >= 0) & (y1 <= SIZE - 1)
    before, after = _labels(video, 0), _labels(video, 1)
    keep = inside.copy()
    for cx, cy in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):
        cx_i = np.clip(cx, 0, SIZE - 1).astype(np.int64)
        cy_i = np.clip(cy, 0, SIZE - 1).astype(np.int64)
        keep &= after[cy_i, cx_i] == before
    return keep


def _image(video: Video, t: int) -> Tensor:
    return torch.from_numpy(video.frames[t].image).permute(2, 0, 1)[None].float() / 255.0


def _masked_error(a: Tensor, b: Tensor, mask: Tensor) -> float:
    """Mean absolute difference over the channels and the pixels of ``mask`` (H, W)."""
    return float((a - b).abs().mean(dim=1)[0][mask].mean())


# Seeds whose camera pans (seed 0 does not: its mean flow where compared is 0.96 px, below the motion
# bound). Measured mean |error| at the image resolution: unwarped 0.038 / 0.030, warped 0.0000 / 0.0000;
# on the stride-4 cells of moving things: unwarped 0.113 / 0.053, warped 0.013 / 0.005.
@pytest.mark.parametrize("seed", [1, 2])
def test_ground_truth_flow_warps_the_next_frame_onto_this_one(seed: int) -> None:
    video = render_video(np.random.default_rng(seed), SIZE, CONFIG)
    flow_np = frame_flow(video, 0)
    frame0, frame1 = _image(video, 0), _image(video, 1)
    flow = torch.from_numpy(flow_np).permute(2, 0, 1)[None]  # (1, 2, H, W), (u, v) in pixels
    valid = torch.from_numpy(_visible_in_next_frame(video, flow_np))

    magnitude = flow[0].norm(dim=0)
    assert float(valid.float().mean()) > 0.5  # most of the frame is compared, not a hand-picked patch
    assert float(magnitude[valid].mean()) > 1.0  # real motion where compared: no trivial pass

    # image resolution: the warp is near exact (stuff moves by whole pixels, things are flat colour)
    unwarped = _masked_error(frame1, frame0, valid)
    warped = _masked_error(warp_by_flow(frame1, flow), frame0, valid)
    reversed_ = _masked_error(warp_by_flow(frame1, -flow), frame0, valid)
    assert warped <= 0.5 * unwarped and warped < 0.5 / 255  # under half a grey level on average
    assert reversed_ > 2 * warped  # the direction matters: the forward-warp reading does not align

    # the stride-4 grid: average-pooled frames, flow resized (and scaled) by resize_flow
    small0, small1 = F.avg_pool2d(frame0, STRIDE), F.avg_pool2d(frame1, STRIDE)
    small_flow = resize_flow(flow, small0.shape[-2:])
    # a cell is compared when all its pixels are (pooling then mixes only pixels that move consistently)
    # and its target lies inside the coarse grid
    small_valid = -F.max_pool2d(-valid[None, None].float(), STRIDE)[0, 0] > 0.5
    cells = SIZE // STRIDE
    grid = torch.arange(cells, dtype=torch.float32)
    target_x, target_y = grid[None, :] + small_flow[0, 0], grid[:, None] + small_flow[0, 1]
    small_valid &= (target_x >= 0) & (target_x <= cells - 1) & (target_y >= 0) & (target_y <= cells - 1)
    # Compared where the flow moves a cell by at least one cell (the moving things here: the pan stays
    # under 3 px). A sub-cell shift of pooled background texture is not what the stride-4 warp recovers:
    # pooling already averages most of that texture away, and bilinear reading between pooled cells is
    # not the pool of the shifted pixels, so there the warp neither helps nor hurts much.
    moving = small_valid & (small_flow[0].norm(dim=0) >= 1.0)
    small_unwarped = _masked_error(small1, small0, moving)
    small_warped = _masked_error(warp_by_flow(small1, small_flow), small0, moving)
    assert int(moving.sum()) >= 16  # 25 / 61 cells
    assert small_warped <= 0.6 * small_unwarped
