"""Keypoint layouts: what a keypoint dataset's K points are, as data (timm-style presets).

A layout names the keypoints, pairs the left/right ones that swap on a horizontal flip, lists the
skeleton edges drawn in overlays, gives COCO's per-keypoint OKS sigmas and the two keypoints whose
distance normalises NME. COCO keypoint JSON stores names and skeleton (not flip pairs, sigmas or the
normaliser), and face datasets (300W, WFLW) store none of them, so the datamodule takes a layout.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeypointLayout:
    """The K keypoints of one dataset. Indices are 0-based positions in the keypoint list."""

    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()
    oks_sigmas: tuple[float, ...] = ()
    normalizing_keypoints: tuple[int, int] | None = None  # NME's normaliser; None: the box size

    def __post_init__(self) -> None:
        count = len(self.names)
        if count == 0:
            raise ValueError("a keypoint layout needs at least one keypoint")
        for what, pairs in (("flip_pairs", self.flip_pairs), ("skeleton", self.skeleton)):
            outside = [pair for pair in pairs if not all(0 <= i < count for i in pair)]
            if outside:
                raise ValueError(f"{what} {outside} index keypoints outside 0..{count - 1}")
        flipped = [i for pair in self.flip_pairs for i in pair]
        if len(flipped) != len(set(flipped)):
            raise ValueError(f"flip_pairs {self.flip_pairs} use a keypoint twice")
        if self.oks_sigmas and len(self.oks_sigmas) != count:
            raise ValueError(f"{len(self.oks_sigmas)} OKS sigmas for {count} keypoints")
        if self.normalizing_keypoints is not None and not all(
            0 <= i < count for i in self.normalizing_keypoints
        ):
            raise ValueError(f"normalizing_keypoints {self.normalizing_keypoints} outside 0..{count - 1}")

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def flip_permutation(self) -> list[int]:
        """``permutation[k]``: the keypoint that k becomes on a horizontal flip (itself if unpaired)."""
        permutation = list(range(self.num_keypoints))
        for left, right in self.flip_pairs:
            permutation[left], permutation[right] = right, left
        return permutation
