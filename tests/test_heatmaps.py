"""The Gaussian-heatmap codec: encoding against the per-keypoint loop, the official Hourglass target,
invisible / out-of-frame keypoints, max-merging, flips, and each decoder's round-trip error."""

import numpy as np
import pytest
import torch

from models.heatmap_loops import decode_loop, encode_loop
from models.heatmaps import (
    GaussianHeatmapCodec,
    argmax_quarter_offset,
    dark_refine,
    flip_heatmaps,
    flip_shift,
    gaussian_heatmaps,
    soft_argmax,
)

INPUT, HEATMAP = (256, 256), (64, 64)


def random_keypoints(batch: int, count: int, seed: int = 0, margin: float = 32.0) -> torch.Tensor:
    """(B, K, 3) visible keypoints at random sub-pixel positions at least ``margin`` px inside the input."""
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, count, 2, generator=generator) * (INPUT[0] - 2 * margin) + margin
    return torch.cat([xy, torch.full((batch, count, 1), 2.0)], dim=-1)


@pytest.mark.parametrize(
    ("convention", "placement", "window_radius"),
    [("corners", "unbiased", None), ("corners", "rounded", 6.0), ("centres", "truncated", 4.0)],
)
def test_encode_equals_the_per_keypoint_loop(convention, placement, window_radius):
    keypoints = random_keypoints(3, 5, margin=-8.0)  # some fall outside the input
    keypoints[0, 1, 2] = 0  # not annotated
    keypoints = torch.stack([keypoints, random_keypoints(3, 5, seed=1)], dim=1)  # N = 2 instances
    codec = GaussianHeatmapCodec(INPUT, HEATMAP, 2.0, convention, placement, window_radius)
    heatmaps, weights = codec.encode(keypoints)
    expected_heatmaps, expected_weights = encode_loop(keypoints.numpy(), codec)
    np.testing.assert_allclose(heatmaps.numpy(), expected_heatmaps, atol=1e-6)
    np.testing.assert_array_equal(weights.numpy(), expected_weights)


def official_hourglass_target(points: np.ndarray, resolution: int = 64) -> np.ndarray:
    """The official ``GenerateHeatmap`` (princeton-vl/pytorch_stacked_hourglass, data/MPII/dp.py) as its
    arithmetic reads: sigma = res / 64, a (6 sigma + 3)-wide patch centred on ``int(x), int(y)``,
    pasted by max; points with x <= 0 (unannotated) or outside the map are skipped."""
    sigma = resolution / 64
    size = int(6 * sigma + 3)
    grid = np.arange(0, size, 1, float)
    x0 = y0 = 3 * sigma + 1
    patch = np.exp(-((grid[None] - x0) ** 2 + (grid[:, None] - y0) ** 2) / (2 * sigma**2))
    heatmaps = np.zeros((len(points), resolution, resolution), np.float32)
    for index, point in enumerate(points):
        if point[0] <= 0:
            continue
        x, y = int(point[0]), int(point[1])
        if x < 0 or y < 0 or x >= resolution or y >= resolution:
            continue
        ul = int(x - 3 * sigma - 1), int(y - 3 * sigma - 1)
        br = int(x + 3 * sigma + 2), int(y + 3 * sigma + 2)
        c, d = max(0, -ul[0]), min(br[0], resolution) - ul[0]
        a, b = max(0, -ul[1]), min(br[1], resolution) - ul[1]
        cc, dd = max(0, ul[0]), min(br[0], resolution)
        aa, bb = max(0, ul[1]), min(br[1], resolution)
        heatmaps[index, aa:bb, cc:dd] = np.maximum(heatmaps[index, aa:bb, cc:dd], patch[a:b, c:d])
    return heatmaps


def test_official_hourglass_target_is_one_setting_of_the_codec():
    """sigma 1, ``int()`` placement, pixel-centre convention, a 3 sigma + 1 window: the official target
    exactly, keypoints given in 64x64 output pixels (stride 1 here, as the official code transforms
    keypoints straight to the output resolution)."""
    generator = torch.Generator().manual_seed(3)
    points = torch.rand(40, 2, generator=generator) * 70 - 3  # some outside, near the borders too
    codec = GaussianHeatmapCodec((64, 64), (64, 64), 1.0, "centres", "truncated", window_radius=4.0)
    keypoints = torch.cat([points, torch.full((40, 1), 2.0)], -1)[None]
    heatmaps, _ = codec.encode(keypoints)
    official = official_hourglass_target(points.numpy().astype(np.float64))
    visible = points[:, 0] > 0  # the official code's "annotated" test; ours reads the visibility flag
    np.testing.assert_allclose(heatmaps[0][visible].numpy(), official[visible.numpy()], atol=1e-6)


def test_invisible_and_out_of_frame_keypoints_give_zero_maps_and_zero_weight():
    keypoints = torch.tensor([[[100.0, 100.0, 2], [50.0, 60.0, 0], [-3.0, 10.0, 2], [10.0, 256.0, 1]]])
    keypoints = torch.cat([keypoints, torch.tensor([[[float("nan"), 5.0, 2]]])], dim=1)
    heatmaps, weights = GaussianHeatmapCodec(INPUT, HEATMAP).encode(keypoints)
    assert weights.tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]]
    assert heatmaps[0, 1:].abs().sum() == 0
    assert torch.isfinite(heatmaps).all()
    assert heatmaps[0, 0].max() > 0.9


def test_overlapping_gaussians_of_one_channel_merge_by_max():
    centres = torch.tensor([[[10.0, 10.0], [13.0, 10.0], [40.0, 40.0]]])
    channels = torch.tensor([[0, 0, 1]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    merged = gaussian_heatmaps(centres, channels, valid, 2, (64, 64), sigma=torch.tensor([[2.0, 3.0, 1.0]]))
    singles = [
        gaussian_heatmaps(centres[:, i : i + 1], channels[:, i : i + 1], valid[:, :1], 2, (64, 64), s)
        for i, s in enumerate((2.0, 3.0, 1.0))
    ]
    torch.testing.assert_close(merged[0, 0], torch.maximum(singles[0][0, 0], singles[1][0, 0]))
    torch.testing.assert_close(merged[0, 1], singles[2][0, 1])
    assert merged[0, 0, 10, 10] == 1.0 and merged[0, 0, 10, 13] == 1.0  # both peaks survive


def flipped_keypoints(keypoints: torch.Tensor, permutation: list[int], width: int) -> torch.Tensor:
    flipped = keypoints[:, permutation].clone()
    flipped[..., 0] = width - flipped[..., 0]
    return flipped


@pytest.mark.parametrize("convention", ["corners", "centres"])
@pytest.mark.parametrize("placement", ["unbiased", "rounded", "truncated"])
def test_flipped_back_heatmaps_equal_the_originals_in_every_convention(convention, placement):
    """The half-pixel question: the heatmaps of the mirrored keypoints (x -> W - x, left and right swapped),
    flipped back with the codec's shift (``flip_shift``: 0, +1, 0 or -1 cells), are the original heatmaps
    (up to the Gaussian tails lost at the edge column); without the shift they are not, except for the
    two exact settings."""
    keypoints = random_keypoints(4, 6)
    permutation = [1, 0, 3, 2, 4, 5]
    codec = GaussianHeatmapCodec(INPUT, HEATMAP, convention=convention, placement=placement)
    heatmaps, _ = codec.encode(keypoints)
    heatmaps_of_flip, _ = codec.encode(flipped_keypoints(keypoints, permutation, INPUT[0]))
    torch.testing.assert_close(codec.unflip(heatmaps_of_flip, permutation), heatmaps, atol=1e-3, rtol=0)
    shift = flip_shift(convention, placement)
    assert shift == {("corners", "truncated"): -1, ("centres", "unbiased"): 1, ("centres", "rounded"): 1}.get(
        (convention, placement), 0
    )
    if shift:
        unshifted = flip_heatmaps(heatmaps_of_flip, permutation)
        assert (unshifted - heatmaps).abs().max() > 0.1
        decoded, _ = codec.decode(codec.unflip(heatmaps_of_flip, permutation))
        direct, _ = codec.decode(heatmaps)
        torch.testing.assert_close(decoded, direct, atol=1e-3, rtol=0)


# Round-trip error over random sub-pixel positions (64 x 17 keypoints, sigma 2 cells, stride 4, exact
# "corners" encoding), in input pixels: mean and max of the Euclidean error, as measured.
ROUND_TRIP_ERROR_PX = {
    "argmax": (0.78, 1.40),  # the quarter-cell offset: 1 px steps at stride 4, a quantiser
    "dark": (0.001, 0.002),  # DARK recovers the sub-pixel centre of a Gaussian
    "soft_argmax": (0.17, 0.25),  # beta 20: the softmax's discretisation bias
}


@pytest.mark.parametrize("decoder", sorted(ROUND_TRIP_ERROR_PX))
def test_round_trip_error_of_each_decoder(decoder):
    keypoints = random_keypoints(64, 17)
    codec = GaussianHeatmapCodec(INPUT, HEATMAP, decoder=decoder)
    decoded, scores = codec.decode(codec.encode(keypoints)[0])
    error = (decoded - keypoints[..., :2]).norm(dim=-1)
    mean, maximum = ROUND_TRIP_ERROR_PX[decoder]
    assert error.mean() <= mean and error.max() <= maximum, (float(error.mean()), float(error.max()))
    assert scores.min() > 0.8  # sub-pixel centres: the peak sample is a little below 1


def test_quantised_placements_add_their_bias():
    """``rounded`` and ``truncated`` targets cost accuracy that no decoder gets back: up to half a cell
    (2 px) per axis, the truncated one after decoding's half-cell correction (without it: a whole cell)."""
    keypoints = random_keypoints(64, 17)
    for placement, convention, low, high in (
        ("rounded", "corners", 1.0, 2.9),
        ("truncated", "centres", 1.0, 2.9),
    ):
        codec = GaussianHeatmapCodec(INPUT, HEATMAP, placement=placement, convention=convention)
        decoded, _ = codec.decode(codec.encode(keypoints)[0])
        error = (decoded - keypoints[..., :2]).norm(dim=-1)
        assert low <= error.mean() and error.max() <= high, (placement, float(error.mean()))


@pytest.mark.parametrize("decoder", ["argmax", "dark", "soft_argmax"])
def test_decoders_equal_the_per_keypoint_loop(decoder):
    keypoints = random_keypoints(4, 5, margin=0.0)  # near the borders too
    codec = GaussianHeatmapCodec(INPUT, HEATMAP, decoder=decoder)
    heatmaps = codec.encode(keypoints)[0] + 0.01 * torch.rand(
        4, 5, 64, 64, generator=torch.Generator().manual_seed(0)
    )
    decoded, scores = codec.decode(heatmaps)
    expected, expected_scores = decode_loop(heatmaps.numpy(), codec)
    np.testing.assert_allclose(decoded.numpy(), expected, atol=1e-3)
    np.testing.assert_allclose(scores.numpy(), expected_scores, atol=1e-6)


def test_decoders_survive_flat_and_empty_maps():
    heatmaps = torch.zeros(1, 2, 16, 16)
    heatmaps[0, 1] = 0.5
    for decode in (argmax_quarter_offset, dark_refine, soft_argmax):
        cells, scores = decode(heatmaps)
        assert torch.isfinite(cells).all() and torch.isfinite(scores).all(), decode.__name__
        assert ((cells >= 0) & (cells <= 15)).all()


def test_codec_rejects_bad_settings():
    with pytest.raises(ValueError, match="sigma"):
        GaussianHeatmapCodec(INPUT, HEATMAP, sigma=0)
    with pytest.raises(ValueError, match="convention"):
        GaussianHeatmapCodec(INPUT, HEATMAP, convention="middle")
    with pytest.raises(ValueError, match="keypoints must be"):
        GaussianHeatmapCodec(INPUT, HEATMAP).encode(torch.zeros(2, 3))
