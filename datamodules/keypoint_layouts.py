"""Keypoint layouts: what a keypoint dataset's K points are, as data (timm-style presets).

A layout names the keypoints, pairs the left/right ones that swap on a horizontal flip, lists the
skeleton edges drawn in overlays, gives COCO's per-keypoint OKS sigmas and the two keypoints whose
distance normalises NME. COCO keypoint JSON stores names and skeleton (not flip pairs, sigmas or the
normaliser), and face datasets (300W, WFLW) store none of them, so the datamodule takes a layout.
"""

from __future__ import annotations

from dataclasses import dataclass

from jsonargparse import set_parsing_settings

from metrics.keypoint_metrics import MPII_JOINTS  # (metrics imports nothing from datamodules: no cycle)


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
        return flip_permutation(self.num_keypoints, self.flip_pairs)


def flip_permutation(num_keypoints: int, flip_pairs: tuple[tuple[int, int], ...]) -> list[int]:
    """``permutation[k]``: the keypoint that k becomes on a horizontal flip (itself if unpaired)."""
    permutation = list(range(num_keypoints))
    for left, right in flip_pairs:
        permutation[left], permutation[right] = right, left
    return permutation


# jsonargparse parses a dataclass type from its fields only; enabling "subclasses" for this one type also
# accepts a preset function as its class_path (``layout: {class_path: datamodules.keypoint_layouts.
# face_300w}``), while inline fields (``layout: {names: [...], flip_pairs: [...]}``) keep working.
set_parsing_settings(subclasses_enabled=[KeypointLayout])


# Presets: plain functions returning a layout, so a YAML names one as ``layout: {class_path:
# datamodules.keypoint_layouts.face_300w}``. The numbers are facts copied from the sources each cites.

COCO_PERSON_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)


def coco_person() -> KeypointLayout:
    """COCO's 17 person keypoints: the names and skeleton of ``person_keypoints_*.json`` (its 1-based
    skeleton made 0-based), left/right pairs by name, and the OKS sigmas of pycocotools'
    ``Params.setKpParams`` (``kpt_oks_sigmas``)."""
    return KeypointLayout(
        names=COCO_PERSON_NAMES,
        flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
        skeleton=(
            (15, 13),
            (13, 11),
            (16, 14),
            (14, 12),
            (11, 12),
            (5, 11),
            (6, 12),
            (5, 6),
            (5, 7),
            (6, 8),
            (7, 9),
            (8, 10),
            (1, 2),
            (0, 1),
            (0, 2),
            (1, 3),
            (2, 4),
            (3, 5),
            (4, 6),
        ),
        oks_sigmas=(
            0.026,
            0.025,
            0.025,
            0.035,
            0.035,
            0.079,
            0.079,
            0.072,
            0.072,
            0.062,
            0.062,
            0.107,
            0.107,
            0.087,
            0.087,
            0.089,
            0.089,
        ),
    )


def face_300w() -> KeypointLayout:
    """300W's 68 iBUG landmarks (0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth); flip pairs
    as mmpose's ``configs/_base_/datasets/300w.py`` swaps them; NME normalised by the outer eye corners
    36 and 45 (inter-ocular distance, as 300W's evaluation)."""
    return KeypointLayout(
        names=tuple(f"landmark_{i}" for i in range(68)),
        flip_pairs=(
            *((i, 16 - i) for i in range(8)),  # jaw 0-7 <-> 16-9
            *((17 + i, 26 - i) for i in range(5)),  # brows 17-21 <-> 26-22
            (31, 35),
            (32, 34),  # nostrils
            (36, 45),
            (37, 44),
            (38, 43),
            (39, 42),
            (40, 47),
            (41, 46),  # eyes
            (48, 54),
            (49, 53),
            (50, 52),
            (55, 59),
            (56, 58),  # outer lips
            (60, 64),
            (61, 63),
            (65, 67),  # inner lips
        ),
        normalizing_keypoints=(36, 45),
    )


def face_wflw() -> KeypointLayout:
    """WFLW's 98 landmarks (0-32 jaw, 33-50 brows, 51-59 nose, 60-75 eyes, 76-95 mouth, 96-97 pupils);
    flip pairs as mmpose's ``configs/_base_/datasets/wflw.py`` swaps them; NME normalised by the outer
    eye corners 60 and 72 (WFLW's inter-ocular distance)."""
    return KeypointLayout(
        names=tuple(f"landmark_{i}" for i in range(98)),
        flip_pairs=(
            *((i, 32 - i) for i in range(16)),  # jaw 0-15 <-> 32-17
            *((33 + i, 46 - i) for i in range(5)),  # upper brows 33-37 <-> 46-42
            *((38 + i, 50 - i) for i in range(4)),  # lower brows 38-41 <-> 50-47
            (55, 59),
            (56, 58),  # nostrils
            *(
                (60 + i, 72 - i) for i in range(5)
            ),  # eyes: outer corner, upper lid, inner corner 60-64 <-> 72-68
            *((65 + i, 75 - i) for i in range(3)),  # eyes, lower lid 65-67 <-> 75-73
            (76, 82),
            (77, 81),
            (78, 80),
            (83, 87),
            (84, 86),  # outer lips
            (88, 92),
            (89, 91),
            (93, 95),  # inner lips
            (96, 97),  # pupils
        ),
        normalizing_keypoints=(60, 72),
    )


def mpii() -> KeypointLayout:
    """MPII Human Pose's 16 joints (Andriluka et al., CVPR 2014) in the order of its annotations' point
    ids 0-15 (``metrics.keypoint_metrics.MPII_JOINTS``, the one definition of the names); flip pairs
    right/left ankle, knee, hip, wrist, elbow, shoulder as HRNet's ``lib/dataset/mpii.py``
    (``flip_pairs``) swaps them; the skeleton of mmpose's ``configs/_base_/datasets/mpii.py``
    (``skeleton_info``). No OKS sigmas (MPII is scored by PCKh, with the head boxes ``zoo mpii-to-coco``
    writes) and no NME normaliser."""
    return KeypointLayout(
        names=MPII_JOINTS,
        flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
        skeleton=(
            (0, 1),
            (1, 2),
            (2, 6),
            (6, 3),
            (3, 4),
            (4, 5),  # legs through the pelvis
            (6, 7),
            (7, 8),
            (8, 9),  # pelvis, thorax, upper neck, head top
            (8, 12),
            (12, 11),
            (11, 10),  # right arm from the upper neck
            (8, 13),
            (13, 14),
            (14, 15),  # left arm from the upper neck
        ),
    )
