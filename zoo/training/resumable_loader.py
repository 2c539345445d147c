"""A training DataLoader that resumes exactly mid-epoch: same order, same augmentations, 0 or N workers, DDP.

Lightning saves a training DataLoader's ``state_dict()`` in the checkpoint and hands it back to
``load_state_dict()`` on resume when the loader has both (``CombinedLoader._state_dicts``); a plain
``torch.utils.data.DataLoader`` has neither, so a mid-epoch resume starts the epoch's data over.

Here the position in the data stream is the whole state: the sampler's permutation comes from ``(seed,
epoch)`` (``DistributedSampler``), and each item's augmentation seed from ``(seed, epoch, dataset
index)``, handed to the dataset with its index through the per-item seed contract
(``SeededItems.seeded_item(index, seed)``: the dataset draws every random choice of that item -- its
augmentation, the unpaired image it pairs with, a clip's start -- from that seed alone). So the loader's
state is three numbers -- seed, epoch, and how many samples of the epoch the training loop has received
(counted per yielded batch, not per index sent to the workers, which prefetch ahead) -- and neither
worker processes nor prefetching hold any of it: a run may resume with another number of workers, and an
image gets the same augmentation in a given epoch whatever the number of workers or GPUs.

torchdata's ``StatefulDataLoader`` (0.11) also works with Lightning 2.6, but its state records the
worker layout (resuming with another ``num_workers`` fails) and it re-implements PyTorch's DataLoader
iterators; with a sampler whose position is its state, counting yielded batches is all that is needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class SeededIndex(NamedTuple):
    """A dataset index and the seed of the random augmentation to apply to that item."""

    index: int
    seed: int


def augmentation_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 64-bit seed for one item of one epoch (numpy ``SeedSequence`` hashing)."""
    return int(np.random.SeedSequence((seed, epoch, index)).generate_state(1, dtype=np.uint64)[0])


def global_seed(trainer: Trainer | None = None) -> int:
    """The seed ``seed_everything`` exported (``PL_GLOBAL_SEED``; Lightning seeds its own
    ``DistributedSampler`` from it too), else 0 -- rank 0's under a trainer, so that every rank agrees
    (srun starts each rank with its own environment)."""
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    return trainer.strategy.broadcast(seed) if trainer is not None else seed


class ResumableShuffleSampler(DistributedSampler):
    """Shuffled (and, with ``num_replicas > 1``, sharded) order of ``SeededIndex`` items that can start
    mid-epoch (``resume``).

    The epoch counts this sampler's own passes over the data. Lightning's ``set_epoch`` only starts a
    sampler without history (a run resumed at an epoch boundary, where Lightning restores no loader
    state): a run stopped by ``max_steps`` mid-epoch is counted by Lightning as one epoch further than
    its data, and following that count after a resume would reshuffle unlike a run that never stopped.
    Being a ``DistributedSampler``, Lightning leaves it in place under DDP.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False
        )
        self.start = 0  # where in its epoch the current pass began
        self._has_position = False  # a pass has begun or a position was given: the epoch is ours to count
        self._resume_at: int | None = None

    def set_epoch(self, epoch: int) -> None:
        if not self._has_position:
            self.epoch = epoch

    def resume(self, seed: int, epoch: int, position: int) -> None:
        """Make the next pass continue epoch ``epoch`` of seed ``seed`` after its first ``position``
        samples."""
        self.seed, self.epoch, self._resume_at, self._has_position = seed, epoch, position, True

    def __iter__(self) -> Iterator[SeededIndex]:  # a generator: the pass begins at the first draw
        if self._resume_at is not None:
            self.start, self._resume_at = self._resume_at, None
        else:
            if self._has_position:
                self.epoch += 1
            self.start = 0
        self._has_position = True
        for index in list(super().__iter__())[self.start :]:
            yield SeededIndex(index, augmentation_seed(self.seed, self.epoch, index))


@runtime_checkable
class SeededItems(Protocol):
    """The per-item seed contract every training dataset follows (images, pairs, unpaired domains,
    video clips): ``seeded_item(index, seed)`` is item ``index`` with all its randomness drawn from
    ``seed``, so the same (index, seed) always gives the same item, in any process."""

    def __len__(self) -> int: ...

    def seeded_item(self, index: int, seed: int) -> Any: ...


class SeededDataset(Dataset):
    """Reads ``dataset.seeded_item(index, seed)`` for a ``SeededIndex``; a plain index (another sampler,
    e.g. the sequential one Lightning puts in for ``overfit_batches``) is read as ``dataset[index]``."""

    def __init__(self, dataset: SeededItems) -> None:
        if not isinstance(dataset, SeededItems):
            raise TypeError(
                f"{type(dataset).__name__} has no seeded_item(index, seed): a training dataset must draw "
                "each item's randomness from the seed it is given, or a resumed run would not repeat it"
            )
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: SeededIndex | int) -> Any:
        if isinstance(item, SeededIndex):
            return self.dataset.seeded_item(item.index, item.seed)
        return self.dataset[item]


class ResumableDataLoader(DataLoader):
    """DataLoader over ``SeededDataset(dataset)`` in the order of a ``ResumableShuffleSampler``, with
    the ``state_dict``/``load_state_dict`` that Lightning checkpoints: ``{"seed", "epoch", "yielded"}``,
    ``yielded`` being the samples of the epoch in the batches this loader has handed out. Rebuilt by
    Lightning with another sampler (``overfit_batches``), it is a plain DataLoader with an empty state."""

    def __init__(self, dataset: SeededDataset, sampler: ResumableShuffleSampler, **kwargs: Any) -> None:
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._state: dict[str, int] | None = None

    def __iter__(self) -> Iterator[Any]:
        sampler = self.sampler
        if not isinstance(sampler, ResumableShuffleSampler):
            yield from super().__iter__()
            return
        for count, batch in enumerate(super().__iter__(), start=1):
            # read after the batch arrives: by then this pass has begun in the sampler
            yielded = min(sampler.start + count * self.batch_size, len(sampler))
            self._state = {"seed": sampler.seed, "epoch": sampler.epoch, "yielded": yielded}
            yield batch

    def state_dict(self) -> dict[str, int]:
        if not isinstance(self.sampler, ResumableShuffleSampler):
            return {}
        if self._state is None:  # nothing handed out yet
            return {"seed": self.sampler.seed, "epoch": self.sampler.epoch, "yielded": 0}
        return dict(self._state)

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if not state_dict or not isinstance(self.sampler, ResumableShuffleSampler):
            return
        seed, epoch, yielded = state_dict["seed"], state_dict["epoch"], state_dict["yielded"]
        if yielded >= len(self.sampler):
            # A checkpoint written after the epoch's last batch: Lightning counts that epoch as done and
            # starts the next one, so the next pass is the next epoch's, not an empty rest of this one
            # (which would cost Lightning a whole epoch and leave its epoch counter one too high).
            epoch, yielded = epoch + 1, 0
        self.sampler.resume(seed, epoch, yielded)
        self._state = {"seed": seed, "epoch": epoch, "yielded": yielded}


def resumable_train_loader(
    dataset: SeededItems,
    batch_size: int,
    collate_fn: Callable[[list], Any],
    seed: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    num_replicas: int = 1,
    rank: int = 0,
) -> ResumableDataLoader:
    """The shuffled, augmented training loader over ``dataset`` (persistent workers when ``num_workers > 0``).

    ``seed`` fixes the order and the augmentations (a resumed run keeps the one in its checkpoint);
    ``num_replicas``/``rank``: the DDP world size and this process's global rank.
    """
    return ResumableDataLoader(
        SeededDataset(dataset),
        sampler=ResumableShuffleSampler(dataset, num_replicas=num_replicas, rank=rank, seed=seed),
        batch_size=batch_size,
        drop_last=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )
