"""The normalisation choice of the pix2pix / CycleGAN networks (junyanz/pytorch-CycleGAN-and-pix2pix
``get_norm_layer``): BatchNorm with affine parameters (pix2pix, Isola et al. CVPR 2017 Sec. 6.1) or
InstanceNorm without affine parameters and without running statistics (CycleGAN, Zhu et al. ICCV 2017
Sec. 7.2, after Ulyanov et al.). A convolution followed by BatchNorm has no bias (BatchNorm's shift
replaces it); one followed by the parameter-free InstanceNorm keeps its bias, as the official code decides.
"""

from __future__ import annotations

from torch import nn

NORMS = ("batch", "instance")


def check_norm(norm: str) -> str:
    """``norm`` if it is one of ``NORMS``, else a ValueError naming the choices."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def norm_layer(norm: str, channels: int) -> nn.Module:
    """``"batch"``: BatchNorm2d (affine); ``"instance"``: InstanceNorm2d (affine=False, no running stats)."""
    if check_norm(norm) == "batch":
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


def conv_bias(norm: str) -> bool:
    """Whether a convolution followed by ``norm`` has a bias: only before the parameter-free InstanceNorm."""
    return check_norm(norm) == "instance"
