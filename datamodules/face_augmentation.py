"""RetinaFace's training augmentation, as the implementation draws it (biubug6/Pytorch_Retinaface
``data/data_augment.py`` ``preproc``), on one image with its faces:

1. square crop: side = one of 0.3, 0.45, 0.6, 0.8, 1.0 of the short side at a random place, up to 250
   tries until the crop holds at least one whole face; the faces whose centre lies inside are kept, their
   boxes clipped to the crop and their landmarks clamped into it; if no try succeeds the whole image is
   kept and later padded to a square with the mean colour;
2. photometric distortion (SSD's: brightness, contrast, saturation, hue; ``ssd_augmentation``);
3. horizontal flip (p 0.5): boxes and landmarks mirrored (x -> W - x) and the left/right landmarks swapped
   (eyes, mouth corners), so "left" keeps meaning the smaller x;
4. resize to ``size`` x ``size`` with a random interpolation among linear, cubic, area, nearest, Lanczos.

Written here because the crop's rule (whole-face containment, centre-inside keep) and the landmark swap
on flips are RetinaFace's own; the distortion reuses SSD's transform. Faces without landmarks keep NaN.
``face_train_transform`` is deterministic given its ``numpy`` generator (the resumable loader's seeds).
"""

from __future__ import annotations

import cv2
import numpy as np

from datamodules.ssd_augmentation import PhotometricDistort

CROP_SCALES = (0.3, 0.45, 0.6, 0.8, 1.0)
CROP_TRIES = 250
MEAN_RGB = (123, 117, 104)  # the implementation's (104, 117, 123) BGR mean, used to pad
LANDMARK_FLIP = (1, 0, 2, 4, 3)  # after a mirror: left eye <-> right eye, left <-> right mouth corner
INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST, cv2.INTER_LANCZOS4)


def random_square_crop(
    image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Step 1 (module docstring): (image, boxes, landmarks, cropped)."""
    height, width = image.shape[:2]
    short = min(width, height)
    for _ in range(CROP_TRIES):
        side = int(CROP_SCALES[int(rng.integers(len(CROP_SCALES)))] * short)
        left = 0 if width == side else int(rng.integers(width - side))
        top = 0 if height == side else int(rng.integers(height - side))
        roi = np.array([left, top, left + side, top + side], dtype=np.float32)
        inside = (boxes[:, :2] >= roi[:2]).all(1) & (boxes[:, 2:] <= roi[2:]).all(1)
        if not inside.any():
            continue
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        keep = ((roi[:2] < centres) & (centres < roi[2:])).all(1)
        kept_boxes = boxes[keep].copy()
        kept_boxes[:, :2] = np.maximum(kept_boxes[:, :2], roi[:2]) - roi[:2]
        kept_boxes[:, 2:] = np.minimum(kept_boxes[:, 2:], roi[2:]) - roi[:2]
        kept_landmarks = np.clip(landmarks[keep] - roi[:2], 0, side)  # NaN stays NaN
        return image[top : top + side, left : left + side], kept_boxes, kept_landmarks, True
    return image, boxes, landmarks, False


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """The image at the top left of a square of its long side, filled with the mean colour."""
    height, width = image.shape[:2]
    side = max(height, width)
    square = np.empty((side, side, 3), dtype=image.dtype)
    square[:] = MEAN_RGB
    square[:height, :width] = image
    return square


def mirror(image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, ...]:
    """Step 3: the flipped image, boxes and landmarks (left/right landmarks swapped)."""
    width = image.shape[1]
    flipped_boxes = boxes.copy()
    flipped_boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    flipped_landmarks = landmarks[:, list(LANDMARK_FLIP)].copy()
    flipped_landmarks[..., 0] = width - flipped_landmarks[..., 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped_boxes, flipped_landmarks


def face_train_transform(
    image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The whole ``preproc`` (module docstring) of an RGB uint8 image, XYXY pixel boxes (N, 4) and landmarks
    (N, 5, 2) (NaN: none) -> the ``size`` x ``size`` image and the faces in its pixels."""
    image, boxes, landmarks, cropped = random_square_crop(image, boxes, landmarks, rng)
    distort = PhotometricDistort()
    distort.set_random_seed(int(rng.integers(2**31)))
    image = distort.apply(image, **distort.get_params())
    if not cropped:
        image = pad_to_square(image)
    if rng.random() < 0.5:
        image, boxes, landmarks = mirror(image, boxes, landmarks)
    side = image.shape[0]
    interpolation = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]
    image = cv2.resize(image, (size, size), interpolation=interpolation)
    factor = size / side
    return image, (boxes * factor).astype(np.float32), (landmarks * factor).astype(np.float32)
