"""models/conditional_gan.py: the DCGAN-style conditional generator and projection discriminator -- shapes,
value range, parameter counts, the label convention (1..C) and that the label changes what is computed."""

import pytest
import torch

from models.conditional_gan import ConditionalDiscriminator, ConditionalGenerator, sample_latents


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_default_parameter_counts() -> None:
    """32x32 RGB, z of 100, label embedding of 50, 64 base maps, 10 classes: G 1,274,228, D 704,257."""
    generator = (
        10 * 50  # label embedding
        + (150 * 256 * 4 * 4 + 2 * 256)  # [z, embedding] -> 256 x 4 x 4, BN
        + (256 * 128 * 4 * 4 + 2 * 128)  # -> 8 x 8, BN
        + (128 * 64 * 4 * 4 + 2 * 64)  # -> 16 x 16, BN
        + 64 * 3 * 4 * 4  # -> 32 x 32, tanh
    )
    discriminator = (
        3 * 64 * 4 * 4  # 32 -> 16, no BN
        + (64 * 128 * 4 * 4 + 2 * 128)  # -> 8, BN
        + (128 * 256 * 4 * 4 + 2 * 256)  # -> 4, BN
        + (256 * 4 * 4 + 1)  # psi: linear on the flattened 4x4 features
        + 10 * 256 * 4 * 4  # V: the label projection
    )
    assert (generator, discriminator) == (1_274_228, 704_257)
    assert parameters(ConditionalGenerator(10)) == generator
    assert parameters(ConditionalDiscriminator(10)) == discriminator


@pytest.mark.parametrize("image_size", [16, 32, 64])
def test_shapes_and_range(image_size: int) -> None:
    generator = ConditionalGenerator(4, latent_dim=8, embedding_dim=4, image_size=image_size, base_channels=8)
    discriminator = ConditionalDiscriminator(4, image_size=image_size, base_channels=8)
    labels = torch.tensor([1, 2, 3, 4, 4])
    images = generator(sample_latents(5, 8), labels)
    assert images.shape == (5, 3, image_size, image_size)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images, labels).shape == (5, 1)


def test_gray_images_and_training_reaches_every_parameter() -> None:
    generator = ConditionalGenerator(
        3, latent_dim=8, embedding_dim=4, image_size=16, base_channels=8, out_channels=1
    )
    discriminator = ConditionalDiscriminator(3, image_size=16, base_channels=8, in_channels=1)
    labels = torch.tensor([3, 1])
    logits = discriminator(generator(sample_latents(2, 8), labels), labels)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)).backward()
    for module in (generator, discriminator):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_the_label_changes_the_image_and_the_logit() -> None:
    """P(x | y): the same z under two labels gives two images; the same image under two labels two logits."""
    torch.manual_seed(0)
    generator = ConditionalGenerator(3, latent_dim=16, embedding_dim=8, image_size=16, base_channels=8).eval()
    discriminator = ConditionalDiscriminator(3, image_size=16, base_channels=8).eval()
    latents = sample_latents(1, 16).expand(3, 16)
    with torch.no_grad():
        images = generator(latents, torch.tensor([1, 2, 3]))
        same = generator(latents, torch.tensor([2, 2, 2]))
        logits = discriminator(images[:1].expand(3, -1, -1, -1), torch.tensor([1, 2, 3]))
    assert torch.equal(same[0], same[2])
    for first, second in ((0, 1), (1, 2), (0, 2)):
        assert (images[first] - images[second]).abs().max() > 1e-3
        assert logits[first] != logits[second]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.tensor([1, 0]), r"in 1\.\.3 \(num_classes\), got \[0\]"),
        (torch.tensor([4, 2]), r"in 1\.\.3 \(num_classes\), got \[4\]"),
        (torch.tensor([-1, 5]), r"got \[-1, 5\]"),
        (torch.tensor([1.0, 2.0]), r"integer tensor of shape \(2,\), got torch\.float32"),
        (torch.tensor([[1, 2]]), r"shape \(2,\), got torch\.int64 \(1, 2\)"),
        (torch.tensor([1, 2, 3]), r"shape \(2,\)"),
    ],
)
def test_labels_outside_one_to_num_classes_are_refused(labels: torch.Tensor, message: str) -> None:
    generator = ConditionalGenerator(3, latent_dim=8, embedding_dim=4, image_size=16, base_channels=8)
    discriminator = ConditionalDiscriminator(3, image_size=16, base_channels=8)
    with pytest.raises(ValueError, match=message):
        generator(sample_latents(2, 8), labels)
    with pytest.raises(ValueError, match=message):
        discriminator(torch.zeros(2, 3, 16, 16), labels)


@pytest.mark.parametrize("image_size", [8, 24, 48, 0])
def test_image_size_must_be_a_power_of_two_from_16(image_size: int) -> None:
    with pytest.raises(ValueError, match=f"power of two >= 16, got {image_size}"):
        ConditionalGenerator(3, image_size=image_size)
    with pytest.raises(ValueError, match=f"power of two >= 16, got {image_size}"):
        ConditionalDiscriminator(3, image_size=image_size)


def test_wrong_latents_or_images_are_refused() -> None:
    generator = ConditionalGenerator(3, latent_dim=8, embedding_dim=4, image_size=16, base_channels=8)
    with pytest.raises(ValueError, match=r"latents must be \(B, 8\), got \(2, 9\)"):
        generator(torch.zeros(2, 9), torch.tensor([1, 2]))
    discriminator = ConditionalDiscriminator(3, image_size=16, base_channels=8)
    with pytest.raises(ValueError, match=r"images must be \(B, 3, 16, 16\), got \(2, 3, 32, 32\)"):
        discriminator(torch.zeros(2, 3, 32, 32), torch.tensor([1, 2]))


def test_dcgan_initialisation_and_seeded_latents() -> None:
    torch.manual_seed(0)
    generator = ConditionalGenerator(10)
    discriminator = ConditionalDiscriminator(10)
    for layer in [*generator.modules(), *discriminator.modules()]:
        if isinstance(layer, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Linear):
            assert abs(layer.weight.std().item() - 0.02) < 0.002
        if isinstance(layer, torch.nn.BatchNorm2d):
            assert abs(layer.weight.mean().item() - 1) < 0.01 and torch.all(layer.bias == 0)
    assert abs(discriminator.label_projection.weight.std().item() - 0.02) < 0.002
    assert abs(generator.label_embedding.weight.std().item() - 1) < 0.2
    first = sample_latents(4, 100, generator=torch.Generator().manual_seed(3))
    assert first.shape == (4, 100)
    assert torch.equal(first, sample_latents(4, 100, generator=torch.Generator().manual_seed(3)))
