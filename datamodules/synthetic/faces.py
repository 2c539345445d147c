"""The synthetic world's faces, for face detection with landmarks (RetinaFace): 1-5 faces over the world's
textured stuff background, each an ellipse of skin colour (taller than wide, turned by up to 15 degrees)
with two eyes, a nose and a mouth drawn at its 5 landmarks' places -- left eye, right eye, nose tip, left
and right mouth corner, "left" meaning the smaller x on screen, the order RetinaFace's ``label.txt``
uses.

Written in RetinaFace's WIDER FACE layout (``datamodules.wider_face``): ``<root>/<split>/images/
<id:06d>.png`` and ``<root>/<split>/label.txt`` with ``# <id:06d>.png`` then per face ``x y w h`` (the
ellipse's axis-aligned box, in pixels), the 5 landmarks as ``x y 0.0`` and a score 1.0. Faces narrower
than ``MIN_LANDMARK_FACE`` pixels get -1 landmarks, as WIDER FACE leaves its tiny faces without them, so
that path is exercised. Faces overlap at most a little (IoU <= 0.1), so landmarks stay visible.
Deterministic per (seed, split, index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.synthetic.coco_writer import check_arguments, scene_rng, write_png
from datamodules.synthetic.render import fill_polygon, hsv_to_rgb255
from datamodules.synthetic.world import render_stuff

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")
# landmark positions in the face's frame, in units of its half-width (x) and half-height (y)
LANDMARK_OFFSETS = np.array([[-0.38, -0.22], [0.38, -0.22], [0.0, 0.12], [-0.32, 0.48], [0.32, 0.48]])
MIN_LANDMARK_FACE = 16.0  # pixels of width below which a face is written without landmarks
MAX_OVERLAP = 0.1


@dataclass(frozen=True)
class Face:
    """A face: centre (x, y), half-width ``a`` and half-height ``b`` in pixels, turn ``angle`` (radians)."""

    centre: tuple[float, float]
    a: float
    b: float
    angle: float

    def to_image(self, offsets: np.ndarray) -> np.ndarray:
        """Points in the face frame (units of a, b) -> image pixels."""
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        x, y = offsets[..., 0] * self.a, offsets[..., 1] * self.b
        return np.stack([self.centre[0] + cos * x - sin * y, self.centre[1] + sin * x + cos * y], axis=-1)

    def box(self) -> np.ndarray:
        """The ellipse's axis-aligned box, XYXY."""
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        half_w = math.hypot(self.a * cos, self.b * sin)
        half_h = math.hypot(self.a * sin, self.b * cos)
        cx, cy = self.centre
        return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])

    def landmarks(self) -> np.ndarray:
        return self.to_image(LANDMARK_OFFSETS)


def _ellipse(face: Face, centre: np.ndarray, a: float, b: float, vertices: int = 32) -> np.ndarray:
    """An ellipse outline in image pixels, centred at ``centre`` (face units), axes a, b (face units)."""
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    return face.to_image(np.stack([centre[0] + a * np.cos(t), centre[1] + b * np.sin(t)], axis=1))


def _iou(box: np.ndarray, others: list[np.ndarray]) -> float:
    best = 0.0
    for other in others:
        w = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
        h = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
        inter = w * h
        union = (box[2] - box[0]) * (box[3] - box[1]) + (other[2] - other[0]) * (other[3] - other[1]) - inter
        best = max(best, inter / union)
    return best


def sample_faces(rng: np.random.Generator, image_size: int) -> list[Face]:
    """1-5 faces whose boxes lie inside the image and overlap at most ``MAX_OVERLAP``."""
    faces: list[Face] = []
    boxes: list[np.ndarray] = []
    wanted = int(rng.integers(1, 6))
    for _ in range(50 * wanted):
        if len(faces) == wanted:
            break
        a = float(rng.uniform(0.05, 0.22)) * image_size
        face = Face(
            centre=(float(rng.uniform(0, image_size)), float(rng.uniform(0, image_size))),
            a=a,
            b=a * float(rng.uniform(1.15, 1.35)),
            angle=math.radians(float(rng.uniform(-15, 15))),
        )
        box = face.box()
        if box[0] < 0 or box[1] < 0 or box[2] > image_size or box[3] > image_size:
            continue
        if _iou(box, boxes) > MAX_OVERLAP:
            continue
        faces.append(face)
        boxes.append(box)
    return faces


def paint_face(image: np.ndarray, face: Face, rng: np.random.Generator) -> None:
    """Draws ``face`` into the (S, S, 3) uint8 ``image`` in place."""
    size = image.shape[0]
    skin = hsv_to_rgb255(
        float(rng.uniform(15, 40)), float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.55, 0.95))
    )
    dark = hsv_to_rgb255(float(rng.uniform(0, 360)), 0.3, float(rng.uniform(0.05, 0.25)))
    image[fill_polygon(_ellipse(face, np.zeros(2), 1.0, 1.0, 48), size)] = np.round(skin).astype(np.uint8)
    for eye in LANDMARK_OFFSETS[:2]:
        image[fill_polygon(_ellipse(face, eye, 0.13, 0.08), size)] = np.round(dark).astype(np.uint8)
    nose = face.to_image(np.array([[0.0, -0.05], [-0.1, 0.14], [0.1, 0.14]]))
    image[fill_polygon(nose, size)] = np.round(skin * 0.7).astype(np.uint8)
    mouth = _ellipse(face, LANDMARK_OFFSETS[3:].mean(0), 0.32, 0.07)
    image[fill_polygon(mouth, size)] = np.round(dark * 0.8 + np.array([90.0, 10.0, 10.0])).astype(np.uint8)


def face_line(face: Face) -> str:
    """The face's ``label.txt`` line: ``x y w h``, 5 x ``lx ly 0.0`` (or -1 for a small face), 1.0."""
    x0, y0, x1, y1 = face.box()
    values = [x0, y0, x1 - x0, y1 - y0]
    if x1 - x0 >= MIN_LANDMARK_FACE:
        for x, y in face.landmarks():
            values += [x, y, 0.0]
    else:
        values += [-1.0] * 15
    values.append(1.0)
    return " ".join(f"{v:.3f}" for v in values)


def write_face_split(
    root: str | Path, split: str, num_images: int, image_size: int = 128, seed: int = 0
) -> Path:
    """``num_images`` face scenes of ``image_size`` px in RetinaFace's layout under ``root/split``; returns
    the ``label.txt`` path."""
    check_arguments(split, num_images, image_size, seed)
    folder = Path(root) / split
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(num_images):
        rng = scene_rng(seed, f"faces_{split}", index)
        image, _ = render_stuff(rng, image_size)
        faces = sample_faces(rng, image_size)
        for face in faces:
            paint_face(image, face, rng)
        name = f"{index + 1:06d}.png"
        write_png(folder / "images" / name, image)
        lines.append(f"# {name}")
        lines.extend(face_line(face) for face in faces)
    label_file = folder / "label.txt"
    label_file.write_text("\n".join(lines) + "\n")
    return label_file
