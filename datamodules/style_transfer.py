"""Fast style transfer data (Johnson et al. 2016): a folder of content images (the paper: the 80k COCO
2014 training images) and ONE style image, whose path reaches the module in
``DatasetMetadata.style_image`` (the module reads it, e.g. with ``read_style_image``).

Content items (``datamodules.image_files.ImageFolderDataset``) are ``a`` and ``names`` only: resized so
the shorter side is ``image_size`` and centre-cropped to ``image_size`` x ``image_size`` (PyTorch's
``fast_neural_style`` example; the paper resizes to 256 x 256, Sec. 4.1, which distorts non-square
images), with nothing random: ``seeded_item`` ignores its seed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from PIL import Image
from torch import Tensor
from torchvision.transforms.functional import to_tensor

from datamodules.errors import DatasetFormatError
from datamodules.image_datamodule import ImageDataModule, split_folders
from datamodules.image_files import ImageFolderDataset, read_rgb, resize_and_center_crop
from datamodules.metadata import DatasetMetadata


def read_style_image(path: str | Path, size: int | None = None) -> Tensor:
    """The style image as float32 (3, H, W) in [0, 1]; with ``size``, resized (bilinear, as the content
    images) so its longer side is ``size`` (fast-neural-style's ``-style_image_size``)."""
    image = read_rgb(Path(path))
    if size is not None:
        scale = size / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.BILINEAR,
        )
    return to_tensor(image)


class StyleTransferDataModule(ImageDataModule):
    """Content images plus one style image (``metadata.style_image``), for feed-forward style transfer.

    Batches are ``datamodules.batch.ImageBatch`` with ``a`` (B, 3, image_size, image_size) and
    ``names``; no ``b`` (the target is the style image and the content itself). The style image is
    checked when the DataModule is built.

    Args:
        content_images: folder of the training content images (the paper: COCO 2014 ``train2014``).
        style_image: the style image file.
        val_images: folder of the validation content images (e.g. COCO ``val2014``, or a few photos).
        test_images: folder of the test content images; default: ``val_images``.
        image_size: content images are resized and centre-cropped to this square size (256).
        batch_size: training content images per batch (the paper: 4).
        val_batch_size: validation/test/predict images per batch; default: ``batch_size``.
        num_workers: DataLoader worker processes (persistent when > 0).
        pin_memory: pin batches in page-locked memory for faster host-to-GPU copies.
        predict_images: a folder of images to stylise, resized and centre-cropped like the content
            images; default: the test split.
    """

    def __init__(
        self,
        content_images: str | Path,
        style_image: str | Path,
        val_images: str | Path,
        test_images: str | Path | None = None,
        image_size: int = 256,
        batch_size: int = 4,
        val_batch_size: int | None = None,
        num_workers: int = 4,
        pin_memory: bool = False,
        predict_images: str | Path | None = None,
    ) -> None:
        super().__init__(batch_size, val_batch_size, num_workers, pin_memory, predict_images)
        self.save_hyperparameters()
        self.style_image = Path(style_image)
        if not self.style_image.is_file():
            raise DatasetFormatError(f"{self.style_image}: style image not found", "missing_image")
        read_rgb(self.style_image)  # readable now, not after the first training step
        self.folders = split_folders(content_images, val_images, test_images)
        self.image_size = image_size

    def build_dataset(self, split: str) -> ImageFolderDataset:
        return ImageFolderDataset(self.folders[split], self.predict_transform(), "content images")

    def predict_transform(self) -> Callable[[Image.Image], Image.Image]:
        """Content images' transform: shorter side to ``image_size``, centre crop."""
        return partial(resize_and_center_crop, size=self.image_size)

    @property
    def metadata(self) -> DatasetMetadata:
        return DatasetMetadata.without_classes(style_image=self.style_image)
