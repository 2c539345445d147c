"""The DataLoaders every DataModule builds: a resumable training loader (exact resume, one shuffle seed on
every rank) and plain, ordered evaluation loaders, both with the detection batch convention's
``collate_detection`` unless given another ``collate_fn`` (the generative family's stacked
``ImageBatch``: torch's ``default_collate``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, Dataset

from datamodules.collate import collate_detection
from zoo.training.resumable_loader import ResumableDataLoader, global_seed, resumable_train_loader


def training_loader(
    dataset: Dataset | None,
    batch_size: int,
    num_workers: int,
    pin_memory: bool,
    trainer: Trainer | None,
    collate_fn: Callable[[list], Any] = collate_detection,
) -> ResumableDataLoader:
    if dataset is None:
        raise RuntimeError("call setup('fit') before asking for the training dataloader")
    return resumable_train_loader(
        dataset,
        batch_size,
        collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        seed=global_seed(trainer),  # one seed on every rank, or the shards would overlap
        num_replicas=trainer.world_size if trainer else 1,
        rank=trainer.global_rank if trainer else 0,
    )


def evaluation_loader(
    dataset: Dataset | None,
    batch_size: int,
    num_workers: int,
    pin_memory: bool,
    collate_fn: Callable[[list], Any] = collate_detection,
) -> DataLoader:
    if dataset is None:
        raise RuntimeError("call setup() with the matching stage before asking for its dataloader")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )
