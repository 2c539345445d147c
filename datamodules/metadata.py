"""What a LightningModule needs to know about its dataset, handed to it explicitly: the ``zoo`` CLI
links ``data.metadata`` to ``model.init_args.metadata`` when both are instantiated, so no module reaches
into ``trainer.datamodule``. Datamodules of later families fill the keypoint fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DatasetMetadata:
    """Class names (index = label - 1, the label rule of ``datamodules.batch``), the dataset category
    id of each label, the annotation file each evaluated split is scored against, and for keypoint
    datasets the keypoint names, left/right flip pairs, skeleton edges, OKS sigmas and the two keypoints
    whose distance normalises NME (None: the box size).

    Image-to-image datasets (pix2pix pairs, CycleGAN domains, super-resolution) have no classes:
    ``DatasetMetadata.without_classes()``."""

    class_names: tuple[str, ...]
    label_to_category_id: dict[int, int]
    annotation_files: dict[str, Path] = field(default_factory=dict)  # "val", "test" -> ground-truth file
    keypoint_names: tuple[str, ...] = ()
    flip_pairs: tuple[tuple[int, int], ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()
    oks_sigmas: tuple[float, ...] = ()
    normalizing_keypoints: tuple[int, int] | None = None  # NME's normaliser (300W: outer eye corners 36, 45)
    style_image: Path | None = None  # style transfer: the one style image every content image takes on
    stuff_names: tuple[str, ...] = ()  # panoptic: the stuff classes, semantic classes 0..S-1
    stuff_category_ids: tuple[int, ...] = ()  # panoptic: the dataset category id of each stuff class

    def __post_init__(self) -> None:
        outside = sorted(set(self.label_to_category_id) - set(range(1, len(self.class_names) + 1)))
        if outside:  # a subset is fine: torchvision's 91-way COCO labels leave ids unused
            raise ValueError(
                f"labels must lie in 1..{len(self.class_names)} (one per class name), got {outside}"
            )

        if len(self.stuff_names) != len(self.stuff_category_ids):
            raise ValueError(
                f"{len(self.stuff_names)} stuff names for {len(self.stuff_category_ids)} stuff category ids"
            )
        shared = sorted(set(self.stuff_category_ids) & set(self.label_to_category_id.values()))
        if shared:
            raise ValueError(f"category ids {shared} are both stuff and thing categories")

    @classmethod
    def without_classes(cls, **fields) -> DatasetMetadata:
        """Metadata of a dataset whose items carry no class (image translation, super-resolution)."""
        return cls(class_names=(), label_to_category_id={}, **fields)

    @property
    def num_classes(self) -> int:
        """C, the number of object classes (no background: ``datamodules.batch``)."""
        return len(self.class_names)

    @property
    def label_names(self) -> dict[int, str]:
        return {label: name for label, name in enumerate(self.class_names, start=1)}

    @property
    def num_semantic_classes(self) -> int:
        """S + C: the stuff classes, then the thing classes (the layout of ``datamodules.batch``)."""
        return len(self.stuff_names) + self.num_classes

    @property
    def semantic_names(self) -> tuple[str, ...]:
        """The name of each semantic class: stuff first, then things."""
        return self.stuff_names + self.class_names

    @property
    def semantic_category_ids(self) -> tuple[int, ...]:
        """The dataset category id of each semantic class (panoptic datasets map every thing label)."""
        missing = sorted(set(range(1, self.num_classes + 1)) - set(self.label_to_category_id))
        if missing:
            raise ValueError(f"thing labels {missing} have no category id: semantic classes need all of them")
        things = tuple(self.label_to_category_id[label] for label in range(1, self.num_classes + 1))
        return self.stuff_category_ids + things

    @property
    def category_isthing(self) -> dict[int, bool]:
        """Category id -> isthing for every stuff and thing category (what PQ scores)."""
        return {
            **{category: False for category in self.stuff_category_ids},
            **{category: True for category in self.label_to_category_id.values()},
        }

    def annotation_file(self, split: str) -> Path:
        if split not in self.annotation_files:
            raise ValueError(
                f"no annotation file for the {split!r} split (have {sorted(self.annotation_files)})"
            )
        return self.annotation_files[split]
