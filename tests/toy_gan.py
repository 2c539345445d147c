"""A toy paired GAN for the generative base's tests: 32x32 images ``a`` with targets ``b = 1 - a``, a
two-layer generator, a PatchGAN-like discriminator fed through an image pool, and L1 as its metric --
small enough for CPU tests of the step semantics, resume, DDP and bf16 through the real ``zoo`` CLI."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch import Tensor, nn
from torch.utils.data import DataLoader, default_collate
from torchmetrics import MeanMetric

from datamodules.batch import ImageBatch
from datamodules.metadata import DatasetMetadata
from lightning_modules.generative import GenerativeModule
from models.image_pool import ImagePool
from zoo.training.resumable_loader import global_seed, resumable_train_loader

SIZE = 32


class ToyPairs:
    """``count`` seeded random images; training items flip horizontally from their seed."""

    def __init__(self, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(count, 3, SIZE, SIZE, generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        a = self.images[index]
        return {"a": a, "b": 1 - a, "names": f"{index:03d}"}

    def seeded_item(self, index: int, seed: int) -> dict:
        item = self[index]
        if seed % 2:
            item["a"], item["b"] = item["a"].flip(-1), item["b"].flip(-1)
        return item


class ToyPairsDataModule(LightningDataModule):
    def __init__(self, train_items: int = 8, val_items: int = 4, batch_size: int = 2) -> None:
        super().__init__()
        self.train_items, self.val_items, self.batch_size = train_items, val_items, batch_size

    @property
    def metadata(self) -> DatasetMetadata:
        return DatasetMetadata.without_classes()

    def train_dataloader(self):
        trainer = self.trainer
        return resumable_train_loader(
            ToyPairs(self.train_items, 0),
            self.batch_size,
            default_collate,
            seed=global_seed(trainer),
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
        )

    def val_dataloader(self):
        return DataLoader(ToyPairs(self.val_items, 1), batch_size=self.batch_size, collate_fn=default_collate)

    predict_dataloader = val_dataloader


class ToyGAN(GenerativeModule):
    main_metric = "val/L1"

    def __init__(self, *args, pool_size: int = 3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.generator = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)
        )
        self.discriminator = nn.Sequential(
            nn.Conv2d(6, 8, 4, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3, padding=1)
        )
        self.pool = ImagePool(pool_size)
        self.set_evaluation_metrics(lambda: {"L1": MeanMetric()})

    def image_pools(self) -> dict[str, ImagePool]:
        return {"fake_pairs": self.pool}

    def generate(self, batch: ImageBatch) -> dict[str, Tensor]:
        return {"fake": torch.tanh(self.generator(batch["a"]))}

    def discriminator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        fake = self.pool.query(torch.cat([batch["a"], generated["fake"].detach()], 1))
        fake_logits = self.discriminator(fake)
        real_logits = self.discriminator(torch.cat([batch["a"], batch["b"] * 2 - 1], 1))
        loss = 0.5 * (
            F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
            + F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        )
        return {"loss": loss}

    def generator_losses(self, batch: ImageBatch, generated: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.discriminator(torch.cat([batch["a"], generated["fake"]], 1))
        adversarial = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        l1 = F.l1_loss(generated["fake"], batch["b"] * 2 - 1)
        return {"loss": adversarial + 10 * l1, "adversarial": adversarial, "L1": l1}

    def translate(self, batch: ImageBatch) -> Tensor:
        return (torch.tanh(self.generator(batch["a"])) + 1) / 2

    def evaluation_step(self, batch: ImageBatch, split: str) -> None:
        output = self.translate(batch)
        self.evaluation_metrics[split]["L1"].update(
            F.l1_loss(output, batch["b"], reduction="none").mean((1, 2, 3))
        )
        self.add_samples(split, [batch["a"], output, batch["b"]], ["input", "output", "target"])
