"""The pix2pix / CycleGAN networks (models/patch_gan.py, unet_generator.py, resnet_generator.py), their
initialisation (gan_init.py), the image history pool (image_pool.py) and adversarial losses (gan_losses.py).

The full-size parameter counts are those of the official junyanz/pytorch-CycleGAN-and-pix2pix networks
(``define_G(3, 3, 64, "unet_256", norm="batch")``, ``define_G(3, 3, 64, "resnet_9blocks",
norm="instance")``, ``define_D(6, 64, "basic", norm="batch")``, ``define_D(3, 64, "basic",
norm="instance")``), counted layer by layer from their layout (tests/image_translation_official_layout.py
reproduces it name for name).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.gan_init import init_gan_weights
from models.gan_losses import adversarial_loss, discriminator_loss
from models.image_pool import ImagePool
from models.patch_gan import PatchGANDiscriminator
from models.resnet_generator import ResNetGenerator
from models.unet_generator import UNetGenerator


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def unet_256() -> UNetGenerator:
    torch.manual_seed(0)
    return UNetGenerator()


@pytest.fixture(scope="module")
def resnet_9blocks() -> ResNetGenerator:
    torch.manual_seed(0)
    return ResNetGenerator()


def test_full_size_parameter_counts(unet_256, resnet_9blocks):
    assert count(unet_256) == 54_413_955
    assert count(resnet_9blocks) == 11_378_179
    assert count(PatchGANDiscriminator(in_channels=6, norm="batch")) == 2_768_705
    assert count(PatchGANDiscriminator(in_channels=3, norm="instance")) == 2_764_737


def test_norm_layers_and_convolution_biases_follow_the_official_choice(unet_256, resnet_9blocks):
    batch_d = PatchGANDiscriminator(in_channels=6, norm="batch")
    convs = [m for m in batch_d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.bias is not None for c in convs] == [True, False, False, False, True]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    instance_d = PatchGANDiscriminator(norm="instance")
    assert all(m.bias is not None for m in instance_d.modules() if isinstance(m, nn.Conv2d))
    instance_norms = [m for m in resnet_9blocks.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(instance_norms) == 1 + 2 + 2 * 9 + 2
    assert all(not m.affine and not m.track_running_stats for m in instance_norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in resnet_9blocks.modules())
    # U-Net with BatchNorm: only the outermost up convolution keeps a bias.
    with_bias = [n for n, m in unet_256.named_modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    with_bias = [n for n in with_bias if unet_256.get_submodule(n).bias is not None]
    assert with_bias == ["model.model.3"]
    # Dropout 0.5 in the num_downs - 5 = 3 blocks around the innermost, none when off.
    dropouts = [m for m in unet_256.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 3 and all(m.p == 0.5 for m in dropouts)
    assert not any(isinstance(m, nn.Dropout) for m in UNetGenerator(num_downs=6, dropout=False).modules())
    assert sum(isinstance(m, nn.Dropout) for m in ResNetGenerator(num_blocks=2, dropout=True).modules()) == 2


def test_unknown_norm_or_padding_is_named():
    with pytest.raises(ValueError, match="'group'"):
        PatchGANDiscriminator(norm="group")
    with pytest.raises(ValueError, match="'circular'"):
        ResNetGenerator(num_blocks=1, padding="circular")


def test_unet_256_translates_a_256_image_into_minus_one_one(unet_256):
    torch.manual_seed(1)
    images = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        out = unet_256.eval()(images)
    assert out.shape == (1, 3, 256, 256)
    assert out.abs().max() <= 1 and out.std() > 0
    with pytest.raises(ValueError, match="multiples of 256"):
        unet_256(torch.zeros(1, 3, 128, 128))


def test_resnet_generator_keeps_the_size_and_stays_in_minus_one_one(resnet_9blocks):
    torch.manual_seed(2)
    with torch.no_grad():
        out = resnet_9blocks(torch.rand(2, 3, 64, 48) * 2 - 1)
    assert out.shape == (2, 3, 64, 48)
    assert out.abs().max() <= 1 and out.std() > 0
    with pytest.raises(ValueError, match="multiples of 4"):
        resnet_9blocks(torch.zeros(1, 3, 30, 32))


@pytest.mark.parametrize("model", [UNetGenerator(num_downs=5, base_channels=8), ResNetGenerator(2, 1, 8, 2)])
def test_small_generators_train_every_parameter(model):
    torch.manual_seed(3)
    model.train()
    images = torch.rand(2, model_in_channels(model), 32, 32)
    model(images).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def model_in_channels(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels


def test_unet_skip_is_not_modified_in_place():
    """The official in-place LeakyReLU changes the skip (kept), but never the caller's tensor."""
    model = UNetGenerator(num_downs=5, base_channels=4).eval()
    images = torch.randn(1, 3, 32, 32)
    before = images.clone()
    model(images)
    assert torch.equal(images, before)


def test_patchgan_gives_a_logit_map_with_a_70_pixel_receptive_field():
    torch.manual_seed(4)
    full = PatchGANDiscriminator(in_channels=6)
    with torch.no_grad():
        logits = full.eval()(torch.randn(1, 6, 64, 64))
    assert logits.shape == (1, 1, 6, 6)  # 256 -> 30 x 30: H / 8 - 2
    assert (logits < 0).any() and (logits > 0).any()  # no sigmoid
    small = PatchGANDiscriminator(in_channels=3, base_channels=4).eval()
    images = torch.randn(1, 3, 128, 128, requires_grad=True)
    out = small(images)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = images.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    cols = images.grad.abs().sum(dim=(0, 1, 2)).nonzero()
    assert int(rows.max() - rows.min()) + 1 == 70
    assert int(cols.max() - cols.min()) + 1 == 70


def test_weights_start_from_the_papers_gaussian(unet_256):
    convs = [m for m in unet_256.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    weights = torch.cat([m.weight.detach().flatten() for m in convs])
    assert abs(weights.mean().item()) < 1e-4
    assert weights.std().item() == pytest.approx(0.02, rel=0.01)
    assert all(torch.count_nonzero(m.bias) == 0 for m in convs if m.bias is not None)
    norms = [m for m in unet_256.modules() if isinstance(m, nn.BatchNorm2d)]
    gammas = torch.cat([m.weight.detach() for m in norms])
    assert gammas.mean().item() == pytest.approx(1.0, abs=0.002)
    assert gammas.std().item() == pytest.approx(0.02, rel=0.1)
    assert all(torch.count_nonzero(m.bias) == 0 for m in norms)


def test_init_gan_weights_covers_linear_layers_and_takes_the_std():
    torch.manual_seed(5)
    module = nn.Sequential(nn.Linear(500, 400), nn.BatchNorm1d(400), nn.InstanceNorm2d(3), nn.Conv1d(8, 8, 3))
    assert init_gan_weights(module, std=0.1) is module
    assert module[0].weight.std().item() == pytest.approx(0.1, rel=0.02)
    assert torch.count_nonzero(module[0].bias) == 0 and torch.count_nonzero(module[3].bias) == 0
    assert module[1].weight.mean().item() == pytest.approx(1.0, abs=0.02)
    assert torch.count_nonzero(module[1].bias) == 0


def numbered(first: int, n: int) -> torch.Tensor:
    """n 1x1x1 'images' whose value is their id, first .. first + n - 1."""
    return torch.arange(first, first + n, dtype=torch.float32).view(n, 1, 1, 1)


def reference_pool_queries(pool: list[float], size: int, batches: list[torch.Tensor]) -> list[list[float]]:
    """The official util/image_pool.py rule, drawing from torch's global generator in the same order."""
    returned = []
    for batch in batches:
        out = []
        for value in batch.flatten().tolist():
            if len(pool) < size:
                pool.append(value)
                out.append(value)
            elif torch.rand(()).item() > 0.5:
                index = int(torch.randint(size, ()).item())
                out.append(pool[index])
                pool[index] = value
            else:
                out.append(value)
        returned.append(out)
    return returned


def test_image_pool_fills_then_swaps_half_of_the_time():
    pool = ImagePool(size=4)
    assert torch.equal(pool.query(numbered(0, 3)), numbered(0, 3))
    assert len(pool) == 3
    torch.manual_seed(6)
    out = pool.query(numbered(3, 3))  # the 4th is stored and returned; then the pool is full
    assert out[0].item() == 3 and len(pool) == 4
    stored = pool.state_dict()["images"].flatten().tolist()
    batches = [numbered(100 * k, 8) for k in range(1, 200)]
    torch.manual_seed(7)
    outs = [pool.query(b).flatten().tolist() for b in batches]
    torch.manual_seed(7)
    assert outs == reference_pool_queries(stored, 4, batches)
    new = [b.flatten().tolist() for b in batches]
    swapped = sum(o != n for out, b in zip(outs, new, strict=True) for o, n in zip(out, b, strict=True))
    assert 0.45 < swapped / (8 * len(batches)) < 0.55
    assert len(pool) == 4


def test_image_pool_draws_from_torch_not_python_random():
    import random

    results = []
    for python_seed in (0, 1):
        pool = ImagePool(size=2)
        pool.query(numbered(0, 2))
        random.seed(python_seed)
        torch.manual_seed(8)
        results.append(pool.query(numbered(10, 16)))
    assert torch.equal(results[0], results[1])


def test_image_pool_state_round_trip_gives_the_same_future_queries():
    torch.manual_seed(9)
    pool = ImagePool(size=5)
    pool.query(torch.randn(3, 3, 8, 8))
    partial = pool.state_dict()["images"]
    assert partial.shape == (3, 3, 8, 8)
    pool.query(torch.randn(4, 3, 8, 8))
    state = pool.state_dict()
    assert state["images"].shape == (5, 3, 8, 8)
    restored = ImagePool(size=5)
    restored.load_state_dict({"images": state["images"].clone()})
    future = [torch.randn(4, 3, 8, 8) for _ in range(5)]
    torch.manual_seed(10)
    original_outs = [pool.query(batch) for batch in future]
    torch.manual_seed(10)
    restored_outs = [restored.query(batch) for batch in future]
    assert all(torch.equal(a, b) for a, b in zip(original_outs, restored_outs, strict=True))
    assert torch.equal(pool.state_dict()["images"], restored.state_dict()["images"])
    empty = ImagePool(size=5)
    empty.load_state_dict(ImagePool(size=5).state_dict())
    assert len(empty) == 0
    with pytest.raises(ValueError, match="size=2"):
        ImagePool(size=2).load_state_dict(state)
    restored.query(torch.randn(2, 3, 8, 8, dtype=torch.float64))  # e.g. a checkpoint's float32 under bf16
    assert restored.state_dict()["images"].dtype == torch.float64


def test_image_pool_returns_and_stores_detached_images():
    generated = torch.randn(3, 3, 4, 4, requires_grad=True) * 1.0
    pool = ImagePool(size=3)
    out = pool.query(generated)
    assert not out.requires_grad
    assert not pool.state_dict()["images"].requires_grad
    assert torch.equal(out, generated.detach())
    assert torch.equal(ImagePool(size=0).query(generated), generated.detach())
    with pytest.raises(ValueError, match="shape"):
        pool.query(torch.zeros(1, 3, 8, 8))


def test_vanilla_loss_is_bce_on_logits_against_a_map_of_the_logits_shape():
    zeros = torch.zeros(2, 1, 30, 30)
    assert adversarial_loss(zeros, True, "vanilla").item() == pytest.approx(math.log(2))
    assert adversarial_loss(zeros, False, "vanilla").item() == pytest.approx(math.log(2))
    logits = torch.randn(2, 1, 30, 30)
    official = F.binary_cross_entropy(torch.sigmoid(logits), torch.ones_like(logits))  # BCELoss(sigmoid)
    assert adversarial_loss(logits, True, "vanilla").item() == pytest.approx(official.item(), rel=1e-5)
    assert adversarial_loss(torch.tensor([20.0]), True, "vanilla").item() < 1e-8
    assert adversarial_loss(torch.tensor([20.0]), False, "vanilla").item() == pytest.approx(20.0, rel=1e-6)


def test_lsgan_loss_is_the_squared_distance_to_one_or_zero():
    logits = torch.tensor([[0.5, 1.0], [2.0, 0.0]])
    assert adversarial_loss(logits, True, "lsgan").item() == pytest.approx((0.25 + 0 + 1 + 1) / 4)
    assert adversarial_loss(logits, False, "lsgan").item() == pytest.approx((0.25 + 1 + 4 + 0) / 4)


def test_discriminator_loss_halves_the_sum_and_bad_modes_are_named():
    real, fake = torch.full((1, 1, 2, 2), 1.0), torch.full((1, 1, 2, 2), 1.0)
    assert discriminator_loss(real, fake, "lsgan").item() == pytest.approx(0.5)
    expected = 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
    assert discriminator_loss(real, fake, "vanilla").item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="wgangp"):
        adversarial_loss(real, True, "wgangp")
