"""Face detection items from a WIDER FACE annotation file (either layout, ``datamodules.wider_face``) and its
image folder, in the project's batch convention (``datamodules.batch``): image float32 (3, H, W) in [0, 1];
target ``image_id`` (the record's 1-based position in the file), ``boxes`` (N, 4) XYXY pixels, ``labels``
(N,) all 1 (the face class), ``landmarks`` (N, 5, 2) pixels with NaN where a face has none.

``train_size``: training items go through RetinaFace's augmentation (``datamodules.face_augmentation``)
to that square size, drawn from the item's seed (``seeded_item``, the resumable loader's contract);
``None``: items as stored (evaluation, where predictions are scored in the image's own pixels). A missing
or unreadable image is a ``DatasetFormatError`` naming the annotation file and the image path.

``subsets``: the official easy / medium / hard keep lists (``metrics.wider_face_ap.read_official_subsets``,
keyed by image name without extension); items then carry ``face_subsets`` (N, 3) bool for the WIDER FACE
AP. An image missing from them, or a face count that differs from the annotation's, is an error.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.batch import Target
from datamodules.errors import DatasetFormatError
from datamodules.face_augmentation import face_train_transform
from datamodules.image_files import list_images, read_rgb
from datamodules.wider_face import FaceImage, read_wider_face_annotations

FACE_LABEL = 1


class FaceDetectionDataset(Dataset):
    """Items of one WIDER FACE split (module docstring)."""

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        train_size: int | None = None,
        subsets: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        self.train_size = train_size
        annotations = read_wider_face_annotations(self.annotation_file)
        self.records = annotations.images
        self.skipped = annotations.skipped
        self.face_subsets = None if subsets is None else [self._subsets(r, subsets) for r in self.records]

    def _subsets(self, record: FaceImage, subsets: dict[str, dict[str, np.ndarray]]) -> np.ndarray:
        name = Path(record.path).stem
        keep = np.zeros((len(record.boxes), len(subsets)), dtype=bool)
        for column, lists in enumerate(subsets.values()):
            if name not in lists:
                raise DatasetFormatError(
                    f"{self.annotation_file}: image {record.path} is not in the subset lists"
                )
            indices = lists[name]
            if len(indices) and indices.max() >= len(record.boxes):
                raise DatasetFormatError(
                    f"{self.annotation_file}: image {record.path} has {len(record.boxes)} faces but the "
                    "subset "
                    f"lists keep face {int(indices.max()) + 1} (the lists count the official file's faces, "
                    "degenerate ones included)"
                )
            keep[indices, column] = True
        return keep

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_faces(self) -> int:
        return sum(len(record.boxes) for record in self.records)

    def _image(self, item: int) -> np.ndarray:
        path = self.image_dir / self.records[item].path
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetFormatError(
                f"{self.annotation_file}: image {self.records[item].path} (item {item}) is missing or "
                f"unreadable "
                f"at {path}",
                "missing_image",
            )
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def _item(self, item: int, rng: np.random.Generator | None) -> tuple[torch.Tensor, Target]:
        record = self.records[item]
        image, boxes, landmarks = self._image(item), record.boxes, record.landmarks
        if rng is not None and self.train_size is not None:
            image, boxes, landmarks = face_train_transform(image, boxes, landmarks, self.train_size, rng)
        target: Target = {
            "image_id": torch.tensor(item + 1, dtype=torch.int64),
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)).reshape(-1, 4),
            "labels": torch.full((len(boxes),), FACE_LABEL, dtype=torch.int64),
            "landmarks": torch.from_numpy(np.ascontiguousarray(landmarks, dtype=np.float32)).reshape(
                -1, 5, 2
            ),
        }
        if self.face_subsets is not None and rng is None:  # evaluation items: the faces as stored
            target["face_subsets"] = torch.from_numpy(self.face_subsets[item])
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
        return pixels, target

    def seeded_item(self, item: int, seed: int) -> tuple[torch.Tensor, Target]:
        """Item ``item`` with its augmentation (when ``train_size`` is set) drawn from ``seed``."""
        return self._item(item, np.random.default_rng(seed))

    def __getitem__(self, item: int) -> tuple[torch.Tensor, Target]:
        return self._item(item, None)


class FaceImageFolder(Dataset):
    """Every image under ``folder`` (recursively, sorted; ``datamodules.image_files``) for ``zoo predict``:
    items (image, target with ``image_id`` = 1-based position); ``names`` the paths relative to ``folder``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.paths = list_images(self.folder, "images to detect faces in")
        self.names = [str(path.relative_to(self.folder)) for path in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, Target]:
        pixels = torch.from_numpy(np.asarray(read_rgb(self.paths[item]))).permute(2, 0, 1).float() / 255
        return pixels, {"image_id": torch.tensor(item + 1, dtype=torch.int64)}
