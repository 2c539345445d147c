"""Weight initialisation of the pix2pix / CycleGAN networks: "weights initialized from a Gaussian
distribution with mean 0 and standard deviation 0.02" (Isola et al. CVPR 2017 Sec. 3.3 / 6.2; Zhu et al.
ICCV 2017 Sec. 7.2), as the official ``init_weights(init_type="normal", init_gain=0.02)`` applies it:
every convolution (transposed included) and linear layer gets weight N(0, std) and bias 0; every
BatchNorm gets weight N(1, std) and bias 0; InstanceNorm without affine parameters has nothing to set.
"""

from __future__ import annotations

from torch import nn

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def init_gan_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Initialise every convolution, linear and BatchNorm layer of ``module`` in place; returns ``module``."""
    for layer in module.modules():
        if isinstance(layer, (*_CONVOLUTIONS, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, _BATCH_NORMS) and layer.weight is not None:
            nn.init.normal_(layer.weight, 1.0, std)
            nn.init.zeros_(layer.bias)
    return module
