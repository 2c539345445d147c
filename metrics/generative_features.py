"""Metrics of generated images computed on features of pretrained networks, with the networks' weights from
local files (nothing is downloaded, ``models.pretrained_weights``):

- FID (Heusel et al., NeurIPS 2017) and KID (Binkowski et al., ICLR 2018) as torchmetrics'
  ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` with any feature extractor ``nn.Module``
  (``frechet_inception_distance``, ``kernel_inception_distance``); torchmetrics reduces their states over
  DDP ranks (FID: feature sums and Gram sums, "sum"; KID: the features, gathered);
- ``FIDInceptionV3``: the standard extractor, torch-fidelity's ``FeatureExtractorInceptionV3`` -- the
  TensorFlow FID Inception (pt_inception-2015-12-05, the weights of pytorch-fid and torch-fidelity) with
  TensorFlow 1.x's bilinear resize to 299 -- taking float images in [0, 1];
- ``lpips_metric``: LPIPS (Zhang et al., CVPR 2018) as torchmetrics'
  ``LearnedPerceptualImagePatchSimilarity``, whose linear heads ship inside torchmetrics and whose ImageNet
  backbone comes from a local torchvision file.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torchmetrics.image import (
    FrechetInceptionDistance,
    KernelInceptionDistance,
    LearnedPerceptualImagePatchSimilarity,
)

from models.pretrained_weights import local_weights_file

PYTORCH_FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
FID_INCEPTION_FEATURES = (64, 192, 768, 2048)
# torchmetrics' LPIPS backbones: torchvision's DEFAULT ImageNet weights of each.
LPIPS_BACKBONE_WEIGHTS = {
    "alex": torchvision.models.AlexNet_Weights.DEFAULT,
    "vgg": torchvision.models.VGG16_Weights.DEFAULT,
    "squeeze": torchvision.models.SqueezeNet1_1_Weights.DEFAULT,
}


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 as a feature extractor for torchmetrics' FID and KID: float RGB images
    (N, 3, H, W) in [0, 1] -> (N, `feature`) float32 features (2048: the pool3 features of FID and KID).

    The images are rounded to 8 bits (as saving them to PNG, ``torchvision.utils.save_image``, does) and
    passed to torch-fidelity's ``FeatureExtractorInceptionV3``, the reference implementation: TensorFlow
    1.x-compatible bilinear resize to 299 x 299 (torchmetrics' default extractor uses an antialiased resize
    instead), scaling to [-1, 1], the 2015-12-05 Inception graph, in float32 also under autocast. It stays in
    eval mode with frozen weights.

    `weights_path`: the local ``weights-inception-2015-12-05-6726825d.pth`` of torch-fidelity (identical
    to pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``). `random_weights_for_tests`: random
    weights instead, with a warning -- the numbers are then meaningless.
    """

    def __init__(
        self,
        weights_path: str | Path | None = None,
        feature: int = 2048,
        random_weights_for_tests: bool = False,
    ) -> None:
        super().__init__()
        if feature not in FID_INCEPTION_FEATURES:
            raise ValueError(f"feature must be one of {FID_INCEPTION_FEATURES}, got {feature}")
        path = local_weights_file(
            weights_path,
            network="FIDInceptionV3",
            source=f"the FID Inception weights ({URL_INCEPTION_V3}, or pytorch-fid's identical "
            f"{PYTORCH_FID_WEIGHTS_URL})",
            random_weights_for_tests=random_weights_for_tests,
        )
        features_list = [str(feature)]
        if path is None:
            self.inception = _RandomlyInitialisedInceptionV3("inception-v3-compat", features_list)
        else:
            self.inception = FeatureExtractorInceptionV3(
                "inception-v3-compat", features_list, feature_extractor_weights_path=str(path)
            )
        self.num_features = feature  # read by torchmetrics' FID instead of a dummy forward
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FIDInceptionV3:
        """Stays in eval mode (batch norm statistics of the reference network)."""
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"FIDInceptionV3 expects float RGB images (N, 3, H, W) in [0, 1], got {tuple(images.shape)} "
                f"{images.dtype}"
            )
        as_uint8 = torch.round(images.clamp(0.0, 1.0) * 255.0).to(torch.uint8)
        with torch.autocast(images.device.type, enabled=False):  # the reference runs in float32, even under
            (features,) = self.inception(as_uint8)  # a bf16-mixed Trainer's validation step
        return features


class _RandomlyInitialisedInceptionV3(FeatureExtractorInceptionV3):
    """torch-fidelity's network left at PyTorch's initialisation (tests only): its constructor always loads a
    state dict, so it is handed an empty one, which is not applied."""

    def __init__(self, name: str, features_list: list[str]) -> None:
        empty = io.BytesIO()
        torch.save({}, empty)
        empty.seek(0)
        super().__init__(name, features_list, feature_extractor_weights_path=empty)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        if not state_dict:  # the constructor's empty dict: keep the random initialisation
            return super().load_state_dict(state_dict, strict=False, assign=assign)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def frechet_inception_distance(
    feature_extractor: nn.Module, reset_real_features: bool = True, **metric_kwargs: Any
) -> FrechetInceptionDistance:
    """torchmetrics' FID on the features of `feature_extractor` (float images in [0, 1] -> (N, D); e.g.
    ``FIDInceptionV3``). ``reset_real_features=False`` keeps the real statistics across ``reset()``."""
    return FrechetInceptionDistance(
        feature=_checked_extractor(feature_extractor),
        reset_real_features=reset_real_features,
        normalize=True,
        **metric_kwargs,
    )


def kernel_inception_distance(
    feature_extractor: nn.Module,
    subsets: int = 100,
    subset_size: int = 1000,
    reset_real_features: bool = True,
    **metric_kwargs: Any,
) -> KernelInceptionDistance:
    """torchmetrics' KID on the features of `feature_extractor` (float images in [0, 1] -> (N, D)): the
    unbiased MMD^2 with the cubic polynomial kernel (x.y / D + 1)^3, mean and std over `subsets` random
    subsets of `subset_size` images per side (100 x 1000, torch-fidelity's defaults). ``compute`` returns
    (mean, std)."""
    return KernelInceptionDistance(
        feature=_checked_extractor(feature_extractor),
        subsets=subsets,
        subset_size=subset_size,
        reset_real_features=reset_real_features,
        normalize=True,
        **metric_kwargs,
    )


def _checked_extractor(feature_extractor: nn.Module) -> nn.Module:
    if not isinstance(feature_extractor, nn.Module):
        raise TypeError(f"feature_extractor must be an nn.Module, got {type(feature_extractor).__name__}")
    return feature_extractor


def lpips_metric(
    backbone_weights_path: str | Path,
    net_type: Literal["alex", "vgg", "squeeze"] = "alex",
    reduction: Literal["mean", "sum", "none"] = "mean",
    **metric_kwargs: Any,
) -> LearnedPerceptualImagePatchSimilarity:
    """torchmetrics' LPIPS (float images in [0, 1], ``normalize=True``) built from local files only: its
    linear heads are the LPIPS v0.1 weights shipped inside torchmetrics; its backbone is torchvision's
    ImageNet AlexNet / VGG16 / SqueezeNet 1.1, read from `backbone_weights_path` (torchvision's file, e.g.
    ``alexnet-owt-7be5be79.pth``, under any name).

    torchmetrics fetches the backbone through torchvision's weights API, which reads
    ``<torch hub dir>/checkpoints/<torchvision's file name>`` before it would download; this points the hub
    directory, while the metric is built, at a temporary folder where that name links to
    `backbone_weights_path` (not thread-safe: it sets ``torch.hub``'s directory and restores it)."""
    if net_type not in LPIPS_BACKBONE_WEIGHTS:
        raise ValueError(f"net_type must be one of {sorted(LPIPS_BACKBONE_WEIGHTS)}, got {net_type!r}")
    weights = LPIPS_BACKBONE_WEIGHTS[net_type]
    path = local_weights_file(
        backbone_weights_path,
        network=f"LPIPS({net_type})",
        source=f"torchvision's ImageNet backbone weights ({weights.url})",
    )
    with _torch_hub_checkpoint(path, Path(urlparse(weights.url).path).name):
        return LearnedPerceptualImagePatchSimilarity(
            net_type=net_type, reduction=reduction, normalize=True, **metric_kwargs
        )


@contextlib.contextmanager
def _torch_hub_checkpoint(path: Path, file_name: str) -> Iterator[None]:
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as hub:
        checkpoint = Path(hub) / "checkpoints" / file_name
        checkpoint.parent.mkdir()
        try:
            os.symlink(path.resolve(), checkpoint)
        except OSError:  # no symlinks (some Windows setups)
            shutil.copyfile(path, checkpoint)
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)
