"""Gaussian heatmaps: keypoints to heatmaps and back, as pure tensor functions over whole batches.

Shared by the landmark networks (SimpleBaseline, Stacked Hourglass), the keypoint detectors (CenterNet,
CornerNet: one channel per class, overlapping objects merged by max) and RetinaFace. No Lightning, no
loops over keypoints or pixels: every function works on (B, ...) tensors on any device.

Coordinates. Input keypoints are continuous pixel coordinates of the network input (the batch
convention: pixel i covers [i, i + 1)). A heatmap of ``stride`` s has cells of s x s input pixels;
"cell coordinates" u index cells by their centres (cell j's centre is u = j). How input x maps to u is
the ``convention``:

- ``"corners"`` (default, exact): cell j covers input [j s, (j + 1) s), so u = x / s - 1/2. A horizontal
  flip of the input (x -> W - x) is exactly a flip of the heatmap array (u -> w - 1 - u); this is the
  "unbiased data processing" of Huang et al. (CVPR 2020).
- ``"centres"``: u = x / s -- the official Stacked Hourglass code and mmpose's MSRA heatmaps divide their
  keypoint coordinates by the stride. A flip of the input then moves u to w - u, one cell off the array
  flip's w - 1 - u.

Flip testing (``flip_heatmaps``, ``GaussianHeatmapCodec.unflip``): the heatmaps of the mirrored input
(x -> W - x, the batch convention's flip), flipped back, equal the input's own heatmaps after a shift of
a whole number of cells that depends on the convention and the placement (``flip_shift``): none for
``"corners"`` with unbiased or rounded centres, one cell right for ``"centres"`` with them (mmpose's
shift), none for ``"centres"`` with truncated centres (the official Hourglass test averages unshifted),
one cell left for ``"corners"`` with truncated ones. ``tests/test_heatmaps.py`` checks all six.

Where the Gaussian's centre goes (``placement``): ``"unbiased"`` at the real-valued u (Zhang et al.,
"Distribution-Aware Coordinate Representation", CVPR 2020, Sec. 3.2, DARK's unbiased encoding);
``"truncated"`` at ``int(u)`` (the official Stacked Hourglass ``GenerateHeatmap``: Python ``int``, so
toward zero); ``"rounded"`` at the nearest cell (SimpleBaseline / mmpose MSRA heatmaps).

Decoders (cell coordinates out; ``GaussianHeatmapCodec.decode`` maps them back to input pixels):
``argmax_quarter_offset`` (Newell et al. 2016 / SimpleBaseline: the maximum moved a quarter cell toward
the higher neighbour), ``dark_refine`` (DARK Sec. 3.1: Gaussian modulation, then a second-order Taylor
expansion of the log-heatmap at the maximum) and ``soft_argmax`` (integral regression, Sun et al., ECCV
2018: the expectation under a spatial softmax). ``tests/test_heatmaps.py`` states each one's round-trip
error over random sub-pixel positions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Convention = Literal["corners", "centres"]
Placement = Literal["unbiased", "truncated", "rounded"]
Decoder = Literal["argmax", "dark", "soft_argmax"]
DECODERS: tuple[Decoder, ...] = ("argmax", "dark", "soft_argmax")


def to_cell_coordinates(points: Tensor, stride: Tensor | float, convention: Convention = "corners") -> Tensor:
    """Input-pixel (..., 2) x, y -> heatmap cell coordinates (module docstring); ``stride`` per axis (2,)."""
    if convention == "corners":
        return points / stride - 0.5
    if convention == "centres":
        return points / stride
    raise ValueError(f"convention must be 'corners' or 'centres', got {convention!r}")


def to_input_coordinates(cells: Tensor, stride: Tensor | float, convention: Convention = "corners") -> Tensor:
    """The inverse of ``to_cell_coordinates``."""
    if convention == "corners":
        return (cells + 0.5) * stride
    if convention == "centres":
        return cells * stride
    raise ValueError(f"convention must be 'corners' or 'centres', got {convention!r}")


def place_centres(cells: Tensor, placement: Placement = "unbiased") -> Tensor:
    """Where the Gaussians go: the real-valued position, ``int()`` of it, or the nearest cell."""
    if placement == "unbiased":
        return cells
    if placement == "truncated":
        return torch.trunc(cells)
    if placement == "rounded":
        return torch.floor(cells + 0.5)
    raise ValueError(f"placement must be 'unbiased', 'truncated' or 'rounded', got {placement!r}")


def inside_heatmap(
    centres: Tensor, heatmap_size: tuple[int, int], placement: Placement = "unbiased"
) -> Tensor:
    """(..., 2) placed centres -> (...) bool: the Gaussian's centre lies on the heatmap. For integer
    placements that is a cell index in range (the official Hourglass test); for unbiased ones, the
    point lies within the heatmap's area, [-1/2, w - 1/2) x [-1/2, h - 1/2) in cell coordinates."""
    width, height = heatmap_size
    if placement == "unbiased":
        low, high_x, high_y = -0.5, width - 0.5, height - 0.5
        return (
            (centres[..., 0] >= low)
            & (centres[..., 0] < high_x)
            & (centres[..., 1] >= low)
            & (centres[..., 1] < high_y)
        )
    return (
        (centres[..., 0] >= 0)
        & (centres[..., 0] <= width - 1)
        & (centres[..., 1] >= 0)
        & (centres[..., 1] <= height - 1)
    )


def separable_gaussians(
    centres: Tensor,
    heatmap_size: tuple[int, int],
    sigma: Tensor | float,
    window_radius: Tensor | float | None = None,
) -> tuple[Tensor, Tensor]:
    """The x and y factors of G = gx(x) gy(y) for centres (..., 2) in cell coordinates: (..., w) and
    (..., h); ``sigma`` and ``window_radius`` (cells within it in x and in y get a value, a square patch
    as the official Hourglass and CenterNet code paste) are floats or tensors of the centres' shape."""
    width, height = heatmap_size
    shape = centres.shape[:-1]
    sigma = torch.as_tensor(sigma, dtype=centres.dtype, device=centres.device).expand(shape)
    dx = torch.arange(width, dtype=centres.dtype, device=centres.device) - centres[..., 0, None]
    dy = torch.arange(height, dtype=centres.dtype, device=centres.device) - centres[..., 1, None]
    two_sigma_squared = 2 * sigma[..., None] ** 2
    gx = torch.exp(-(dx**2) / two_sigma_squared)
    gy = torch.exp(-(dy**2) / two_sigma_squared)
    if window_radius is not None:
        radius = torch.as_tensor(window_radius, dtype=centres.dtype, device=centres.device)
        radius = radius.expand(shape)[..., None]
        gx = gx * (dx.abs() <= radius)
        gy = gy * (dy.abs() <= radius)
    return gx, gy


def gaussian_heatmaps(
    centres: Tensor,
    channels: Tensor,
    valid: Tensor,
    num_channels: int,
    heatmap_size: tuple[int, int],
    sigma: Tensor | float,
    window_radius: Tensor | float | None = None,
) -> Tensor:
    """Draw G = exp(-((x - xc)^2 + (y - yc)^2) / (2 sigma^2)) for every point and merge by max per channel.

    Args:
        centres: (B, M, 2) Gaussian centres in cell coordinates.
        channels: (B, M) int64 channel of each point (keypoint index; CenterNet's class).
        valid: (B, M) bool; invalid points draw nothing.
        num_channels: C, the output channels.
        heatmap_size: (w, h).
        sigma: a float or (B, M) per point (CenterNet's size-dependent radius).
        window_radius: None (the whole map) or a float / (B, M) tensor (``separable_gaussians``).

    Returns (B, C, h, w) float32; channels without a valid point are all zero. (Keypoint heatmaps, one
    point per channel and instance, take the faster ``keypoint_heatmaps``.)
    """
    width, height = heatmap_size
    batch, points = centres.shape[:2]
    gx, gy = separable_gaussians(centres, heatmap_size, sigma, window_radius)
    gx = gx * valid[..., None]
    maps = (gy[..., :, None] * gx[..., None, :]).reshape(batch, points, height * width)
    merged = maps.new_zeros(batch, num_channels, height * width)
    index = channels[..., None].expand(batch, points, height * width)
    merged.scatter_reduce_(1, index, maps, reduce="amax", include_self=True)
    return merged.reshape(batch, num_channels, height, width)


def keypoint_heatmaps(
    centres: Tensor,
    valid: Tensor,
    heatmap_size: tuple[int, int],
    sigma: Tensor | float,
    window_radius: Tensor | float | None = None,
) -> Tensor:
    """``gaussian_heatmaps`` for keypoints: centres (B, N, K, 2) of N instances' K keypoints, valid
    (B, N, K), keypoint k drawn into channel k and the instances merged by max. (B, K, h, w) float32."""
    gx, gy = separable_gaussians(centres, heatmap_size, sigma, window_radius)
    gx = gx * valid[..., None]
    maps = gy[..., :, None] * gx[..., None, :]  # (B, N, K, h, w)
    return maps[:, 0] if maps.shape[1] == 1 else maps.amax(dim=1)


def values_at(heatmaps: Tensor, x: Tensor, y: Tensor, dx: int, dy: int) -> Tensor:
    """(B, K) values of (B, K, h, w) maps at cells (x + dx, y + dy), positions clamped to the map (the
    edge repeats, as replicate padding)."""
    height, width = heatmaps.shape[-2:]
    index = (y + dy).clamp(0, height - 1) * width + (x + dx).clamp(0, width - 1)
    return heatmaps.flatten(2).gather(-1, index[..., None])[..., 0]


def argmax_quarter_offset(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """(B, K, h, w) -> cell coordinates (B, K, 2) and maxima (B, K): the arg-max moved 1/4 cell toward
    the higher neighbour on each axis (not at the border), as the Stacked Hourglass evaluation does."""
    height, width = heatmaps.shape[-2:]
    maxima, index = heatmaps.flatten(2).max(dim=-1)
    x, y = index % width, index // width
    inner_x = (x > 0) & (x < width - 1)
    inner_y = (y > 0) & (y < height - 1)
    shift_x = torch.sign(values_at(heatmaps, x, y, 1, 0) - values_at(heatmaps, x, y, -1, 0)) * 0.25 * inner_x
    shift_y = torch.sign(values_at(heatmaps, x, y, 0, 1) - values_at(heatmaps, x, y, 0, -1)) * 0.25 * inner_y
    cells = torch.stack([x + shift_x, y + shift_y], dim=-1).to(heatmaps.dtype)
    return cells, maxima


def opencv_gaussian_sigma(kernel_size: int) -> float:
    """The sigma ``cv2.GaussianBlur`` picks for ``sigma=0`` (the official DARK code's modulation)."""
    return 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8


def gaussian_kernel(kernel_size: int, like: Tensor) -> Tensor:
    """The normalised 1-D Gaussian of ``cv2.GaussianBlur(ksize, sigma=0)`` (``opencv_gaussian_sigma``)."""
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    sigma = opencv_gaussian_sigma(kernel_size)
    offsets = torch.arange(kernel_size, dtype=like.dtype, device=like.device) - kernel_size // 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def blurred_around(heatmaps: Tensor, x: Tensor, y: Tensor, kernel_size: int, radius: int = 2) -> Tensor:
    """DARK's modulation blur (Sec. 3.1, Eq. 8: a Gaussian blur with zero padding, as mmpose's
    ``gaussian_blur``), before its rescaling, at the (2 radius + 1)^2 cells around (x, y) -- clamped to
    the map like ``values_at`` -- without blurring whole maps: (B, K, 2 radius + 1, 2 radius + 1), rows
    y - radius .. y + radius. Equal to the zero-padded separable blur at those cells."""
    height, width = heatmaps.shape[-2:]
    kernel = gaussian_kernel(kernel_size, heatmaps)
    half = kernel_size // 2
    padded = F.pad(heatmaps, (half, half, half, half)).flatten(2)  # zero padding, as the blur's
    steps = torch.arange(-radius, radius + 1, device=heatmaps.device)
    taps = torch.arange(kernel_size, device=heatmaps.device)  # offset + half in the padded map
    rows = (y[..., None] + steps).clamp(0, height - 1)[..., :, None] + taps  # (B, K, 2r+1, taps)
    columns = (x[..., None] + steps).clamp(0, width - 1)[..., :, None] + taps
    index = rows[..., :, :, None, None] * (width + 2 * half) + columns[..., None, None, :, :]
    patches = padded.gather(-1, index.flatten(2)).view(index.shape)  # (B, K, 2r+1, taps, 2r+1, taps)
    return torch.einsum("nkjaic,a,c->nkji", patches, kernel, kernel)


def dark_refine(heatmaps: Tensor, kernel_size: int | None = 11, eps: float = 1e-10) -> tuple[Tensor, Tensor]:
    """DARK decoding (Zhang et al., CVPR 2020, Sec. 3.1): the arg-max plus the Newton step
    -H^-1 g of the log-heatmap's second-order Taylor expansion there, with the official code's central
    differences (second derivatives over two cells). ``kernel_size`` None skips the modulation.
    (B, K, h, w) -> cell coordinates (B, K, 2), maxima (B, K) of the unmodulated maps.

    Only the 5 x 5 cells around each maximum enter the step, so the modulation is computed there
    (``blurred_around``); its rescaling to the map's maximum is a constant factor per map, which the
    log-heatmap's derivatives do not see."""
    width = heatmaps.shape[-1]
    maxima, index = heatmaps.flatten(2).max(dim=-1)
    x, y = index % width, index // width
    local = blurred_around(heatmaps, x, y, kernel_size or 1)  # a 1-tap kernel: the values themselves
    log_local = torch.log(local.clamp_min(eps))

    def at(dx: int, dy: int) -> Tensor:
        return log_local[..., dy + 2, dx + 2]

    centre = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    hyy = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    determinant = hxx * hyy - hxy**2
    solvable = determinant.abs() > torch.finfo(heatmaps.dtype).eps
    safe = torch.where(solvable, determinant, torch.ones_like(determinant))
    step_x = torch.where(solvable, -(hyy * gx - hxy * gy) / safe, torch.zeros_like(gx))
    step_y = torch.where(solvable, -(hxx * gy - hxy * gx) / safe, torch.zeros_like(gy))
    # A step longer than one cell means the quadratic model does not hold there (a flat or
    # multi-modal map): keep the arg-max, as the official code's determinant check intends.
    trusted = (step_x.abs() <= 1) & (step_y.abs() <= 1)
    cells = torch.stack([x + step_x * trusted, y + step_y * trusted], dim=-1).to(heatmaps.dtype)
    return cells, maxima


def soft_argmax(heatmaps: Tensor, beta: float = 20.0) -> tuple[Tensor, Tensor]:
    """Integral decoding (Sun et al., ECCV 2018, Sec. 3.1): the expected cell under softmax(beta h) over
    each map; ``beta`` sharpens heatmaps trained with MSE (values in [0, 1]): 20 decodes sigma-2 Gaussians
    best (0.17 px mean error at stride 4; 100: 1.2 px, the softmax then samples too narrow a peak).
    (B, K, h, w) -> cell coordinates (B, K, 2), maxima (B, K)."""
    batch, keypoints, height, width = heatmaps.shape
    probabilities = torch.softmax(beta * heatmaps.reshape(batch, keypoints, -1), dim=-1)
    probabilities = probabilities.reshape(batch, keypoints, height, width)
    xs = torch.arange(width, dtype=heatmaps.dtype, device=heatmaps.device)
    ys = torch.arange(height, dtype=heatmaps.dtype, device=heatmaps.device)
    x = (probabilities.sum(dim=2) * xs).sum(-1)
    y = (probabilities.sum(dim=3) * ys).sum(-1)
    return torch.stack([x, y], dim=-1), heatmaps.flatten(2).amax(-1)


def flip_shift(convention: Convention, placement: Placement) -> int:
    """Cells to move a flipped-back heatmap right (negative: left) so that it equals the unflipped one.

    With u = x / s + a (a = -1/2 for ``"corners"``, 0 for ``"centres"``), the mirrored input's point sits
    at w - u + 2a; the array flip takes a Gaussian placed at p there to w - 1 - p. Unbiased and rounded
    placements land at p(u) - 1 - 2a, truncated ones (``int``, u not an integer) at int(u) - 2a."""
    twice_offset = -1 if convention == "corners" else 0
    return twice_offset if placement == "truncated" else 1 + twice_offset


def flip_heatmaps(heatmaps: Tensor, flip_permutation: list[int] | Tensor, shift: int = 0) -> Tensor:
    """The heatmaps of a horizontally flipped input, brought back to the original: flip the width axis,
    swap left/right channels (``heatmaps[..., permutation[k], :, :]`` becomes channel k) and move the
    result ``shift`` cells right (``flip_shift``; the vacated column repeats the edge, as mmpose does).
    Works on (..., K, h, w)."""
    flipped = heatmaps.flip(-1)[..., flip_permutation, :, :]
    if shift > 0:
        flipped = torch.cat(
            [flipped[..., :1].expand(*flipped.shape[:-1], shift), flipped[..., :-shift]], dim=-1
        )
    elif shift < 0:
        flipped = torch.cat(
            [flipped[..., -shift:], flipped[..., -1:].expand(*flipped.shape[:-1], -shift)], dim=-1
        )
    return flipped


@dataclass(frozen=True)
class GaussianHeatmapCodec:
    """Encode (B, N, K, 3) keypoints (x, y, visibility in input pixels) to (B, K, h, w) heatmaps with
    weights, and decode heatmaps to keypoints in input pixels. Defaults: SimpleBaseline / mmpose at
    stride 4 (sigma 2 cells) with the exact ``"corners"`` convention and DARK's unbiased placement; the
    official Stacked Hourglass target is ``sigma=1, placement="truncated", convention="centres",
    window_radius=4`` (3 sigma + 1, its pasted patch) at 64x64.

    Args:
        input_size: (W, H) of the network input.
        heatmap_size: (w, h) of the heatmaps; the stride is input / heatmap per axis.
        sigma: the Gaussian's standard deviation in cells.
        convention, placement: see the module docstring.
        window_radius: in cells, None for the whole map.
        decoder: ``"dark"``, ``"argmax"`` (quarter offset) or ``"soft_argmax"``.
        dark_kernel_size: DARK's modulation kernel (11 for sigma 2 in the official code; None: none).
        soft_argmax_beta: the softmax sharpness for ``"soft_argmax"``.
    """

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float = 2.0
    convention: Convention = "corners"
    placement: Placement = "unbiased"
    window_radius: float | None = None
    decoder: Decoder = "dark"
    dark_kernel_size: int | None = 11
    soft_argmax_beta: float = 20.0

    def __post_init__(self) -> None:
        if self.sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if min(*self.input_size, *self.heatmap_size) <= 0:
            raise ValueError(f"sizes must be positive, got {self.input_size} and {self.heatmap_size}")
        to_cell_coordinates(torch.zeros(2), 1.0, self.convention)
        place_centres(torch.zeros(2), self.placement)
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be 'argmax', 'dark' or 'soft_argmax', got {self.decoder!r}")

    def stride(self, like: Tensor) -> Tensor:
        """(2,) input pixels per cell in x and y."""
        return torch.tensor(
            [self.input_size[0] / self.heatmap_size[0], self.input_size[1] / self.heatmap_size[1]],
            dtype=like.dtype,
            device=like.device,
        )

    def encode(self, keypoints: Tensor) -> tuple[Tensor, Tensor]:
        """(B, K, 3) or (B, N, K, 3) keypoints -> heatmaps (B, K, h, w), weights (B, K).

        A keypoint draws its Gaussian when it is annotated (visibility > 0) and its centre falls on the
        heatmap; the N instances of an image merge by max per channel. Weight 1 where at least one
        keypoint drew, else 0 (that map is all zero)."""
        if keypoints.dim() == 3:
            keypoints = keypoints[:, None]
        if keypoints.dim() != 4 or keypoints.shape[-1] != 3:
            raise ValueError(f"keypoints must be (B, K, 3) or (B, N, K, 3), got {tuple(keypoints.shape)}")
        points = keypoints[..., :2].float()
        centres = place_centres(
            to_cell_coordinates(points, self.stride(points), self.convention), self.placement
        )
        finite = torch.isfinite(centres).all(-1)
        centres = torch.where(finite[..., None], centres, torch.zeros_like(centres))
        drawn = (keypoints[..., 2] > 0) & finite & inside_heatmap(centres, self.heatmap_size, self.placement)
        heatmaps = keypoint_heatmaps(centres, drawn, self.heatmap_size, self.sigma, self.window_radius)
        return heatmaps, drawn.any(dim=1).float()

    def decode(self, heatmaps: Tensor) -> tuple[Tensor, Tensor]:
        """(B, K, h, w) -> keypoints (B, K, 2) in input pixels and scores (B, K) (the maxima). For the
        truncated placement, half a cell is added: ``int`` moved the centres that far down on average
        (the official Hourglass ``adjust`` adds the same 0.5)."""
        if self.decoder == "dark":
            cells, scores = dark_refine(heatmaps, self.dark_kernel_size)
        elif self.decoder == "argmax":
            cells, scores = argmax_quarter_offset(heatmaps)
        else:
            cells, scores = soft_argmax(heatmaps, self.soft_argmax_beta)
        if self.placement == "truncated":
            cells = cells + 0.5
        return to_input_coordinates(cells, self.stride(cells), self.convention), scores

    def with_decoder(self, decoder: Decoder) -> GaussianHeatmapCodec:
        """This codec with another decoder."""
        return replace(self, decoder=decoder)

    def unflip(self, heatmaps: Tensor, flip_permutation: list[int] | Tensor) -> Tensor:
        """``flip_heatmaps`` with the shift this codec's convention and placement need (``flip_shift``)."""
        return flip_heatmaps(heatmaps, flip_permutation, flip_shift(self.convention, self.placement))
