"""Batch collation for the project's detection convention (torchvision detection style)."""

from collections.abc import Sequence

from torch import Tensor


def collate_detection(
    batch: Sequence[tuple[Tensor, dict[str, Tensor]]],
) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """Turn ``[(image, target), ...]`` into ``([image, ...], [target, ...])``.

    Images keep their own sizes (no padding or stacking): detection models batch them internally,
    as torchvision's ``GeneralizedRCNNTransform`` does.
    """
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets
