"""Frozen ImageNet VGG features for perceptual losses -- the one perceptual network of the project -- and the
pure functions of those losses.

- SRGAN (Ledig et al., CVPR 2017, Sec. 2.2.1 eq. 5): VGG19 relu5_4 ("phi_5,4"), the feature maps rescaled by
  1/12.75 (Sec. 3.2): ``vgg_content_loss(..., feature_scale=1 / 12.75)``.
- Fast style transfer (Johnson et al., ECCV 2016, Sec. 3.3): VGG16, feature reconstruction loss at relu2_2,
  style reconstruction loss on the Gram matrices (``gram_matrix``) of relu1_2, relu2_2, relu3_3, relu4_3, and
  the total variation regulariser (``total_variation``).

The network is torchvision's (``torchvision.models.vgg16`` / ``vgg19``): RGB input normalised by the
ImageNet mean and std, weights from a local ``vgg16-397923af.pth`` / ``vgg19-dcbb9e9d.pth`` (nothing is
downloaded, see ``models.pretrained_weights``). The papers used the Caffe VGG (BGR, mean subtraction on
[0, 255]); torchvision's weights are the ones PyTorch re-implementations (pytorch/examples
``fast_neural_style``, BasicSR's ``PerceptualLoss``) use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import VGG16_Weights, VGG19_Weights
from torchvision.models.vgg import cfgs, make_layers

from models.pretrained_weights import local_weights_file

VGG_ARCHITECTURES = {"vgg16": "D", "vgg19": "E"}  # torchvision's configuration of each (``cfgs``)
VGG_WEIGHTS_URLS = {"vgg16": VGG16_Weights.IMAGENET1K_V1.url, "vgg19": VGG19_Weights.IMAGENET1K_V1.url}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg_relu_indices(arch: Literal["vgg16", "vgg19"]) -> dict[str, int]:
    """Name -> index in torchvision's ``features`` of every ReLU of `arch`: ``relu{block}_{conv}`` (relu1_1 ..
    relu5_3 for vgg16, .. relu5_4 for vgg19), derived from torchvision's configuration (conv + ReLU per
    number, one max-pool per "M", no batch norm)."""
    if arch not in VGG_ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(VGG_ARCHITECTURES)}, got {arch!r}")
    indices: dict[str, int] = {}
    index, block, conv = 0, 1, 0
    for item in cfgs[VGG_ARCHITECTURES[arch]]:
        if item == "M":
            index, block, conv = index + 1, block + 1, 0
        else:
            conv += 1
            indices[f"relu{block}_{conv}"] = index + 1  # the Conv2d is at `index`, its ReLU right after
            index += 2
    return indices


class VGGFeatures(nn.Module):
    """Frozen torchvision VGG16/VGG19 returning the feature maps of the requested ReLU layers.

    ``forward``: RGB images (N, 3, H, W) in [0, 1] -> ``{layer name: (N, C, H', W')}``; the ImageNet
    normalisation is done inside. The network is cut after the deepest requested layer. Its parameters never
    require gradients (gradients still flow to the input) and it stays in eval mode when a parent module calls
    ``.train()``.

    `weights_path`: a local torchvision state dict (``vgg16-397923af.pth`` / ``vgg19-dcbb9e9d.pth``, keys
    ``features.N.weight``; the classifier's keys are ignored). `random_weights_for_tests`: PyTorch's default
    initialisation instead, with a warning -- the features are then meaningless.
    """

    def __init__(
        self,
        arch: Literal["vgg16", "vgg19"] = "vgg16",
        layers: Sequence[str] = ("relu2_2",),
        weights_path: str | Path | None = None,
        random_weights_for_tests: bool = False,
    ) -> None:
        super().__init__()
        relu_indices = vgg_relu_indices(arch)
        layers = tuple(layers)
        unknown = [name for name in layers if name not in relu_indices]
        if not layers or unknown:
            raise ValueError(
                f"layers must be a non-empty subset of {arch}'s {list(relu_indices)}, got {list(layers)}"
            )
        path = local_weights_file(
            weights_path,
            network=f"VGGFeatures({arch})",
            source=f"torchvision's ImageNet {arch} weights ({VGG_WEIGHTS_URLS[arch]})",
            random_weights_for_tests=random_weights_for_tests,
        )
        self.arch = arch
        self.layers = layers
        self.layer_indices = {name: relu_indices[name] for name in layers}
        deepest = max(self.layer_indices.values())
        self.features = make_layers(cfgs[VGG_ARCHITECTURES[arch]], batch_norm=False)[: deepest + 1]
        if path is not None:
            self._load_torchvision_state_dict(path)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _load_torchvision_state_dict(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        wanted = {name: f"features.{name}" for name in self.features.state_dict()}
        missing = [key for key in wanted.values() if key not in state]
        if missing:
            raise KeyError(
                f"{path} is not a torchvision {self.arch} state dict: it lacks {missing[:4]}"
                f"{' ...' if len(missing) > 4 else ''} (expected keys features.N.weight / features.N.bias)"
            )
        self.features.load_state_dict({name: state[key] for name, key in wanted.items()})

    def train(self, mode: bool = True) -> VGGFeatures:
        """Stays in eval mode: the network is a fixed loss network."""
        return super().train(False)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"VGGFeatures expects RGB images (N, 3, H, W) in [0, 1], got {tuple(images.shape)}"
            )
        x = (images - self.mean) / self.std
        wanted = {index: name for name, index in self.layer_indices.items()}
        outputs = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                outputs[wanted[index]] = x
        return {name: outputs[name] for name in self.layers}


def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrices (N, C, C) of feature maps (N, C, H, W), divided by C * H * W: Johnson et al. Sec. 3.3
    eq. (3) (``G = psi psi^T / (C H W)``), as ``fast_neural_style/utils.py`` of pytorch/examples."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def total_variation(images: Tensor, reduction: Literal["sum", "mean", "none"] = "sum") -> Tensor:
    """Squared total variation of images (N, C, H, W) as Johnson et al.'s official ``TotalVariation.lua``
    (fast-neural-style): per image 0.5 * sum over the (H-1) x (W-1) top-left pixels of the squared differences
    to the right and lower neighbours, so that its gradient is exactly that module's. Returns the sum over
    images ("sum", what the Lua gradient adds up), their mean ("mean") or the (N,) values ("none").

    Written by hand: torchmetrics' ``total_variation`` is the L1 (beta = 1) variant over all pixels."""
    top_left = images[:, :, :-1, :-1]
    right = top_left - images[:, :, :-1, 1:]
    down = top_left - images[:, :, 1:, :-1]
    per_image = 0.5 * (right.square() + down.square()).flatten(1).sum(dim=1)
    if reduction == "sum":
        return per_image.sum()
    if reduction == "mean":
        return per_image.mean()
    if reduction == "none":
        return per_image
    raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")


def vgg_content_loss(
    predicted: Mapping[str, Tensor], target: Mapping[str, Tensor], feature_scale: float = 1.0
) -> Tensor:
    """Sum over the layers of `predicted` of the mean squared error between the feature maps, each scaled by
    `feature_scale` first: Johnson et al.'s feature reconstruction loss (eq. 2, normalised by C H W) and
    SRGAN's VGG loss (eq. 5) with ``feature_scale=1 / 12.75`` (Sec. 3.2). Eq. 5 divides by W H only; the mean
    also divides by C (and averages the batch), a constant factor per layer."""
    missing = [name for name in predicted if name not in target]
    if not predicted or missing:
        raise KeyError(f"target features lack layers {missing} of {list(predicted)}")
    losses = [F.mse_loss(feature_scale * predicted[name], feature_scale * target[name]) for name in predicted]
    return torch.stack(losses).sum()
