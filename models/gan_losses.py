"""Adversarial losses of pix2pix and CycleGAN, as the official ``GANLoss`` computes them
(junyanz/pytorch-CycleGAN-and-pix2pix): the discriminator's logit map is compared, element by element
and averaged, with a target map of its own shape, 1 for real and 0 for fake.

- ``"vanilla"``: binary cross-entropy on logits, the GAN objective of pix2pix (Isola et al. CVPR 2017
  Eq. 1; Sec. 3.3: the generator maximises log D(x, G(x, z)) rather than minimising log(1 - D)).
- ``"lsgan"``: least squares (Mao et al.), which CycleGAN uses instead of the log likelihood (Zhu et al.
  ICCV 2017 Sec. 4: the generator minimises E[(D(G(x)) - 1)^2], the discriminator E[(D(y) - 1)^2] +
  E[D(G(x))^2]).

Both papers halve the discriminator's objective ("we divide the objective by 2 while optimizing D",
pix2pix Sec. 3.3; CycleGAN Sec. 4): ``discriminator_loss``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

MODES = ("vanilla", "lsgan")


def adversarial_loss(logits: Tensor, target_is_real: bool, mode: str) -> Tensor:
    """Mean loss of a discriminator output ``logits`` (any shape) against all-real or all-fake targets."""
    target = logits.new_full(logits.shape, 1.0 if target_is_real else 0.0)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, mode: str) -> Tensor:
    """0.5 * (loss on real as real + loss on fake as fake): the discriminator's halved objective."""
    return 0.5 * (adversarial_loss(real_logits, True, mode) + adversarial_loss(fake_logits, False, mode))
