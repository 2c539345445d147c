"""CycleGAN's unpaired layout (the official ``unaligned_dataset.py``): two domains in
``<root>/{train,test}A/`` and ``<root>/{train,test}B/`` (horse2zebra, monet2photo, ...), with no pairing
between their files.

An epoch has ``max(len(A), len(B))`` items; item ``i`` takes ``A[i % len(A)]`` and, in training, a
random B image -- as the official code (not ``B[i % len(B)]``, its ``--serial_batches`` mode), but drawn
from the item's seed, so a resumed run pairs the same images. Each domain gets its own random jitter
draw (``datamodules.random_jitter``). Evaluation items take ``B[i % len(B)]`` and only resize.
``direction="BtoA"`` swaps the domains' roles (``a`` from the B folder, indexed; ``b`` from A, drawn),
which the official code does in the model instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from datamodules.image_datamodule import Direction, ImageTranslationDataModule
from datamodules.image_files import ImageItem, image_item, list_images, read_rgb
from datamodules.random_jitter import RandomJitter


class UnpairedImagesDataset(Dataset):
    """Domains ``<root>/<split>A`` and ``<root>/<split>B``: items ``a`` (the indexed domain), ``b`` (the
    other domain, unrelated to ``a``), float32 (3, crop_size, crop_size) in [0, 1], and ``names`` (``a``'s
    file stem)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        jitter: RandomJitter | None = None,
        direction: Direction = "AtoB",
    ) -> None:
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
        root = Path(root)
        domains = {name: list_images(root / f"{split}{name}", f"domain {name} images") for name in "AB"}
        self.a_paths, self.b_paths = (
            (domains["A"], domains["B"]) if direction == "AtoB" else (domains["B"], domains["A"])
        )
        self.jitter = jitter or RandomJitter()

    def __len__(self) -> int:
        return max(len(self.a_paths), len(self.b_paths))

    def seeded_item(self, index: int, seed: int) -> ImageItem:
        """``a`` = A[index % len(A)] and ``b`` = the B image the seed's first draw picks (so it depends
        on the seed alone), each with its own jitter draw from ``seed``."""
        rng = np.random.default_rng(seed)
        b_path = self.b_paths[int(rng.integers(len(self.b_paths)))]
        a_path = self.a_paths[index % len(self.a_paths)]
        a = self.jitter.apply(read_rgb(a_path), self.jitter.draw(rng))
        b = self.jitter.apply(read_rgb(b_path), self.jitter.draw(rng))
        return image_item(a_path.stem, a=a, b=b)

    def __getitem__(self, index: int) -> ImageItem:
        a_path = self.a_paths[index % len(self.a_paths)]
        b_path = self.b_paths[index % len(self.b_paths)]
        a, b = (self.jitter.evaluate(read_rgb(path)) for path in (a_path, b_path))
        return image_item(a_path.stem, a=a, b=b)


class UnpairedImagesDataModule(ImageTranslationDataModule):
    """CycleGAN unpaired data: ``<root>/{trainA,trainB,testA,testB}`` (the official datasets' layout, which
    has no validation split: validation reads the test folders unless ``val_split`` says otherwise).

    Batches are ``datamodules.batch.ImageBatch`` with ``a``, ``b`` (B, 3, crop_size, crop_size) and
    ``names``; no classes. The training loader resumes exactly mid-epoch, unpaired draws included.
    Arguments: ``ImageTranslationDataModule``'s, the splits being folder prefixes (``<root>/<split>A``
    and ``<root>/<split>B``).
    """

    default_val_split = "test"

    def build_dataset(self, split: str) -> UnpairedImagesDataset:
        return UnpairedImagesDataset(self.root, self.splits[split], self.jitter, self.direction)
