"""The resumable training loader: a restored state continues the same order and augmentations."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, SequentialSampler

from zoo.training.resumable_loader import (
    ResumableDataLoader,
    ResumableShuffleSampler,
    SeededDataset,
    SeededIndex,
    augmentation_seed,
    resumable_train_loader,
)


class JitteredImages(Dataset):
    """Item i: (i, the mean of a colour-jittered, maybe flipped 4x4 image) -- the augmentation shows."""

    def __init__(self, size: int = 10) -> None:
        self.size = size
        self.transforms = A.Compose(
            [
                A.HorizontalFlip(p=0.5),
                A.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.0, p=1.0),
            ]
        )
        self.image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[int, float]:
        image = self.transforms(image=self.image)["image"]
        return index, float(image.mean()) + float(image[0, 0, 0])

    def seeded_item(self, index: int, seed: int) -> tuple[int, float]:
        self.transforms.set_random_seed(seed)
        return self[index]


def test_a_dataset_without_the_seed_contract_is_refused() -> None:
    class Unseeded(Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> int:
            return index

    with pytest.raises(TypeError, match="Unseeded has no seeded_item"):
        resumable_train_loader(Unseeded(), batch_size=1, collate_fn=collate, seed=0)


def collate(items: list[tuple[int, float]]) -> list[tuple[int, float]]:
    return items


def make_loader(num_workers: int, seed: int = 7):
    return resumable_train_loader(
        JitteredImages(), batch_size=3, collate_fn=collate, seed=seed, num_workers=num_workers
    )


def take(iterator, count: int) -> list:
    return [next(iterator) for _ in range(count)]


def epochs(loader, count: int) -> list:
    return [batch for _ in range(count) for batch in loader]


@pytest.mark.parametrize(
    ("workers_before", "workers_after", "batches", "yielded"),
    [(0, 0, 2, 6), (1, 1, 2, 6), (2, 0, 2, 6), (0, 1, 4, 10)],
)
def test_restored_state_continues_order_and_augmentation_across_epochs(
    workers_before: int, workers_after: int, batches: int, yielded: int
):
    uninterrupted = epochs(make_loader(0), 3)  # 3 epochs of 4 batches (3, 3, 3, 1 items)

    stopped = make_loader(workers_before)
    seen = take(iter(stopped), batches)  # mid-epoch 0 (workers have prefetched further), or its end
    state = stopped.state_dict()
    assert state == {"seed": 7, "epoch": 0, "yielded": yielded}
    del stopped
    resumed = make_loader(workers_after, seed=99)  # the saved seed wins
    resumed.load_state_dict(state)
    # mid-epoch, the first pass is the rest of epoch 0; at its end, epoch 1 (the pass Lightning runs next)
    seen += epochs(resumed, 3 if yielded < len(resumed.dataset) else 2)
    assert seen == uninterrupted


def test_worker_count_does_not_change_the_stream() -> None:
    assert epochs(make_loader(2), 2) == epochs(make_loader(0), 2)


def test_augmentation_depends_on_seed_epoch_and_index_only() -> None:
    loader = make_loader(0)
    epoch0 = sorted(item for batch in loader for item in batch)
    epoch1 = sorted(item for batch in loader for item in batch)
    assert len({value for _, value in epoch0}) == len(epoch0)  # every item augmented differently
    assert [value for _, value in epoch0] != [
        value for _, value in epoch1
    ]  # and again differently next epoch
    again = make_loader(0)
    assert sorted(item for batch in again for item in batch) == epoch0
    assert augmentation_seed(7, 0, 3) == augmentation_seed(7, 0, 3) != augmentation_seed(7, 1, 3)


def test_shards_cover_the_dataset_once_per_epoch() -> None:
    dataset = JitteredImages(size=8)
    shards = [list(ResumableShuffleSampler(dataset, num_replicas=2, rank=rank, seed=3)) for rank in (0, 1)]
    assert all(isinstance(item, SeededIndex) for shard in shards for item in shard)
    assert sorted(item.index for shard in shards for item in shard) == list(range(8))


def test_lightning_epoch_only_starts_a_sampler_without_history() -> None:
    """Resumed at an epoch boundary Lightning restores no loader state and says which epoch it is; once
    the sampler has a position it counts its own passes (a max_steps stop makes Lightning's count run
    ahead)."""
    dataset = JitteredImages(size=4)
    fresh = ResumableShuffleSampler(dataset, seed=3)
    fresh.set_epoch(2)
    reference = ResumableShuffleSampler(dataset, seed=3)
    passes = [list(reference) for _ in range(3)]
    assert list(fresh) == passes[2]

    restored = ResumableShuffleSampler(dataset, seed=3)
    restored.resume(seed=3, epoch=0, position=1)
    restored.set_epoch(5)
    assert list(restored) == passes[0][1:]
    restored.set_epoch(6)
    assert list(restored) == passes[1]
    assert (
        torch.utils.data.DistributedSampler in type(restored).__mro__
    )  # Lightning leaves it in place under DDP


def test_with_another_sampler_it_is_a_plain_loader() -> None:
    """Lightning rebuilds the loader with a ``SequentialSampler`` for ``overfit_batches``."""
    dataset = JitteredImages(size=4)
    loader = ResumableDataLoader(
        SeededDataset(dataset), sampler=SequentialSampler(dataset), batch_size=2, collate_fn=collate
    )
    assert [[index for index, _ in batch] for batch in loader] == [[0, 1], [2, 3]]
    assert loader.state_dict() == {}
