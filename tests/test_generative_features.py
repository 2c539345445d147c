"""FID, KID and LPIPS builders and the FID Inception (metrics.generative_features).

FID and KID run with a small fixed extractor (2 x 2 average-pooled colours, 12 features) and are compared
with numpy/scipy references written here: FID as pytorch-fid's ``calculate_frechet_distance`` (scipy
``sqrtm``), KID as the unbiased MMD^2 of Binkowski et al. with the cubic kernel (torch-fidelity's
``mmd2``), one subset holding every image so that the subset draw does not matter. In float64 they agree
to 1e-9 relative (measured ~1e-13). The FID Inception runs once, with random weights, on four
64 x 64 images; its weight file loading is checked on the parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from scipy import linalg
from torch import nn

from metrics.generative_features import (
    PYTORCH_FID_WEIGHTS_URL,
    FIDInceptionV3,
    frechet_inception_distance,
    kernel_inception_distance,
    lpips_metric,
)


class _PooledColours(nn.Module):
    """Float64 features, so that torchmetrics' FID and KID compute in float64 (with float32 features, as
    from the Inception, KID's kernel sums are float32: ~1e-5 relative)."""

    num_features = 12

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(images.double(), 2).flatten(1)


def _images(n: int, seed: int) -> torch.Tensor:
    return 0.2 + 0.6 * torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def _reference_fid(real: np.ndarray, fake: np.ndarray) -> float:
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    sigma1, sigma2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))


def _reference_kid(real: np.ndarray, fake: np.ndarray) -> float:
    d = real.shape[1]

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T / d + 1) ** 3

    m = len(real)
    k_xx, k_yy, k_xy = kernel(real, real), kernel(fake, fake), kernel(real, fake)
    off_diagonal = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(off_diagonal - 2 * k_xy.mean())


def test_fid_of_a_set_with_itself_is_zero_and_of_a_shifted_set_matches_reference() -> None:
    real = _images(64, seed=0)
    shifted = 0.7 * real + 0.25
    features = _PooledColours()
    fid = frechet_inception_distance(features)
    fid.update(real, real=True)
    fid.update(real, real=False)
    assert abs(fid.compute().item()) < 1e-5

    fid.reset()
    fid.update(real, real=True)
    fid.update(shifted, real=False)
    value = fid.compute().item()
    expected = _reference_fid(features(real).numpy(), features(shifted).numpy())
    assert value > 0.05
    assert value == pytest.approx(expected, rel=1e-9)


def test_fid_states_merge_like_ddp_ranks() -> None:
    real, fake = _images(40, seed=1), _images(40, seed=2)
    whole, rank0, rank1 = (frechet_inception_distance(_PooledColours()) for _ in range(3))
    assert whole._reductions.keys() >= {"real_features_sum", "real_features_cov_sum", "fake_features_sum"}
    whole.update(real, real=True)
    whole.update(fake, real=False)
    rank0.update(real[:15], real=True)
    rank0.update(fake[:25], real=False)
    rank1.update(real[15:], real=True)
    rank1.update(fake[25:], real=False)
    rank0.merge_state(rank1)
    assert rank0.compute().item() == pytest.approx(whole.compute().item(), rel=1e-9)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save all extracted features")
def test_kid_near_zero_for_the_same_distribution_and_matches_reference_when_shifted() -> None:
    real, same_distribution = _images(50, seed=3), _images(50, seed=4)
    shifted = 0.7 * same_distribution + 0.25
    features = _PooledColours()
    kid = kernel_inception_distance(features, subsets=1, subset_size=50)
    kid.update(real, real=True)
    kid.update(same_distribution, real=False)
    near_zero, _ = kid.compute()
    kid.reset()
    kid.update(real, real=True)
    kid.update(shifted, real=False)
    shifted_mean, shifted_std = kid.compute()
    expected = _reference_kid(features(real).numpy(), features(shifted).numpy())
    assert shifted_mean.item() == pytest.approx(expected, rel=1e-9)
    assert shifted_std.item() == 0.0  # one subset
    assert abs(near_zero.item()) < 0.1 * shifted_mean.item()


def test_fid_inception_needs_a_local_file(tmp_path) -> None:
    missing = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)) as error:
        FIDInceptionV3(missing)
    assert PYTORCH_FID_WEIGHTS_URL in str(error.value)
    with pytest.raises(FileNotFoundError, match="random_weights_for_tests=True"):
        FIDInceptionV3(None)
    with pytest.raises(ValueError, match="feature must be one of"):
        FIDInceptionV3(missing, feature=1000)


def test_fid_inception_random_weights_warn_and_a_saved_state_dict_loads(tmp_path) -> None:
    with pytest.warns(UserWarning, match="RANDOM weights.*meaningless"):
        inception = FIDInceptionV3(random_weights_for_tests=True)
    inception.train()
    assert not any(module.training for module in inception.modules())
    assert not any(parameter.requires_grad for parameter in inception.parameters())
    with torch.no_grad():
        features = inception(torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(5)))
    assert features.shape == (4, 2048)
    assert features.dtype == torch.float32 and features.isfinite().all()
    assert frechet_inception_distance(inception).real_features_sum.shape == (2048,)  # no dummy forward

    # torch-fidelity's file layout: the state dict of its FeatureExtractorInceptionV3
    path = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(inception.inception.state_dict(), path)
    loaded = FIDInceptionV3(path, feature=768)
    assert loaded.num_features == 768
    for (name, value), (loaded_name, loaded_value) in zip(
        inception.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert name == loaded_name
        torch.testing.assert_close(loaded_value, value, rtol=0, atol=0)


def test_lpips_builds_from_a_local_backbone_file(tmp_path) -> None:
    missing = tmp_path / "squeezenet1_1-b8a52dc0.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)) as error:
        lpips_metric(missing, net_type="squeeze")
    assert torchvision.models.SqueezeNet1_1_Weights.DEFAULT.url in str(error.value)

    torch.manual_seed(0)
    backbone = torchvision.models.squeezenet1_1(weights=None).state_dict()
    path = tmp_path / "my_squeezenet.pth"  # any file name
    torch.save(backbone, path)
    hub_dir = torch.hub.get_dir()
    lpips = lpips_metric(path, net_type="squeeze")
    assert torch.hub.get_dir() == hub_dir
    first_conv = lpips.net.net.slices[0][0]
    torch.testing.assert_close(first_conv.weight, backbone["features.0.weight"], rtol=0, atol=0)

    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    lpips.update(images, images)
    assert lpips.compute().item() == pytest.approx(0.0, abs=1e-6)
    lpips.reset()
    lpips.update(images, images.flip(-1))
    assert lpips.compute().item() > 0
