"""Point-to-point distances between chart points (part, u, v) for the DensePose GPS (Güler et al., CVPR
2018, Sec. 4), pluggable into ``metrics.densepose_ap``.

A distance gives, for the P ground-truth points of an instance and the P predicted points read at their
pixels, ``distances`` (inf where the prediction is background, part 0: the point then scores 0, as in the
official evaluator) and ``normalisers``, the per-point sigma of ``exp(-d^2 / (2 sigma^2))``.

- ``SmplGeodesicDistance``: the official DensePose-COCO evaluator's (detectron2 ``projects/DensePose``
  ``densepose/evaluation/densepose_coco_evaluation.py``, ``_loadGEval``, ``findAllClosestVertsUV``,
  ``getDistancesUV``, ``computeOgps_single_pair_iuv``): each point goes to the closest vertex (in (u, v),
  among the vertices of its part) of the subdivided SMPL mesh, mapped to a mesh vertex by the subdivision
  transform; the distance is the geodesic distance between the two vertices, from a condensed pairwise
  matrix; sigma is the mean geodesic distance of the point's coarse part.
- ``ChartEuclideanDistance``: the synthetic world's charts are one screen-aligned frame per shape, so the
  distance is ``scale * ||(u, v) - (u', v')||`` whatever the parts (other than background).
"""

from __future__ import annotations

import abc
import math
import pickle
from pathlib import Path

import numpy as np
from scipy.io import loadmat
from scipy.spatial.distance import cdist

# Files of the official evaluator (https://dl.fbaipublicfiles.com/densepose/data/) and the keys it reads.
SMPL_SUBDIV_FILE = "SMPL_subdiv.mat"  # U_subdiv, V_subdiv, Part_ID_subdiv: per subdivided-mesh vertex
SMPL_TRANSFORM_FILE = "SMPL_SUBDIV_TRANSFORM.mat"  # index: 1-based mesh vertex of each subdivided vertex
PDIST_FILE = "Pdist_matrix.pkl"  # {"Pdist_matrix": condensed geodesic distances, (n (n - 1) / 2, 1)}
SMPL_FILES = (SMPL_SUBDIV_FILE, SMPL_TRANSFORM_FILE, PDIST_FILE)
NUM_PARTS = 24
# The official evaluator's mean geodesic distance of each coarse part (0: background) and the coarse part
# of each fine part 0..24.
MEAN_DISTANCES = np.array([0, 0.351, 0.107, 0.126, 0.237, 0.173, 0.142, 0.128, 0.150])
COARSE_PARTS = np.array([0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8])
# The GPS sigma where no per-part mean applies (the official CSE evaluation of meshes other than SMPL).
DEFAULT_SIGMA = 0.255
# ChartEuclideanDistance's default scale: Δuv = 1 is a shape's diameter (u = (x + 1) / 2 in circumradii),
# taken as the 1.7 m height of a person, so that sigma 0.255 keeps its meaning (0.3 m -> GPS 0.5).
SYNTHETIC_SHAPE_SIZE = 1.7


class PointDistance(abc.ABC):
    """Distances between ground-truth and predicted chart points, and the per-point GPS sigma."""

    @abc.abstractmethod
    def distances(
        self, gt_parts: np.ndarray, gt_uv: np.ndarray, parts: np.ndarray, uv: np.ndarray
    ) -> np.ndarray:
        """``(P,)`` float64 distances between ground truth points (parts 1..24, ``(P, 2)`` u, v) and the
        predicted points (parts 0..24, 0 background -> inf); NaN drops a ground-truth point."""

    @abc.abstractmethod
    def normalisers(self, gt_parts: np.ndarray) -> np.ndarray:
        """``(P,)`` float64 sigma of each ground-truth point."""


class ChartEuclideanDistance(PointDistance):
    """``scale * ||(u, v) - (u', v')||`` between points on the synthetic world's charts (one frame per
    shape: the parts do not matter, except that a background prediction is infinitely far); constant
    sigma ``sigma`` (``DEFAULT_SIGMA``). ``scale`` (``SYNTHETIC_SHAPE_SIZE``) is the distance of Δuv = 1."""

    def __init__(self, scale: float = SYNTHETIC_SHAPE_SIZE, sigma: float = DEFAULT_SIGMA) -> None:
        if scale <= 0 or sigma <= 0:
            raise ValueError(f"scale and sigma must be positive, got {scale}, {sigma}")
        self.scale, self.sigma = float(scale), float(sigma)

    def distances(
        self, gt_parts: np.ndarray, gt_uv: np.ndarray, parts: np.ndarray, uv: np.ndarray
    ) -> np.ndarray:
        gap = np.asarray(gt_uv, np.float64) - np.asarray(uv, np.float64)
        return np.where(np.asarray(parts) > 0, self.scale * np.hypot(gap[:, 0], gap[:, 1]), np.inf)

    def normalisers(self, gt_parts: np.ndarray) -> np.ndarray:
        return np.full(len(gt_parts), self.sigma)


class SmplGeodesicDistance(PointDistance):
    """The official geodesic distance on SMPL, from the official evaluator's files in ``data_dir``
    (``SMPL_FILES``: the user fetches them, e.g. from https://dl.fbaipublicfiles.com/densepose/data/).
    The files are checked at construction and read at first use. sigma of a point: the official mean
    geodesic distance of its coarse part (``MEAN_DISTANCES[COARSE_PARTS[part]]``; the official takes the
    part of the closest vertex, which is the point's own part)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise FileNotFoundError(
                f"SMPL geodesic data directory {self.data_dir} does not exist: it must hold {SMPL_FILES}"
            )
        missing = [name for name in SMPL_FILES if not (self.data_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.data_dir} lacks {', '.join(missing)} (needs {SMPL_FILES})")
        self._tables: tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray] | None = None

    def _load(self) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
        if self._tables is not None:
            return self._tables
        subdiv = loadmat(self.data_dir / SMPL_SUBDIV_FILE)
        transform = np.asarray(loadmat(self.data_dir / SMPL_TRANSFORM_FILE)["index"]).reshape(-1)
        with open(self.data_dir / PDIST_FILE, "rb") as file:
            pdist = np.asarray(pickle.load(file, encoding="latin1")["Pdist_matrix"]).reshape(-1)
        uv = np.stack([np.asarray(subdiv[k], np.float64).reshape(-1) for k in ("U_subdiv", "V_subdiv")], 1)
        part_ids = np.asarray(subdiv["Part_ID_subdiv"]).reshape(-1)
        n = (1 + math.isqrt(1 + 8 * len(pdist))) // 2
        if n * (n - 1) // 2 != len(pdist) or len(transform) != len(uv) or transform.max() > n:
            raise ValueError(
                f"{self.data_dir}: inconsistent SMPL files ({len(pdist)} condensed distances, "
                f"{len(uv)} subdivided vertices, {len(transform)} transform entries up to {transform.max()})"
            )
        vertices = np.arange(len(uv)) + 1  # 1-based, as the official
        part_uvs = [uv[part_ids == k] for k in range(1, NUM_PARTS + 1)]
        part_vertices = [vertices[part_ids == k] for k in range(1, NUM_PARTS + 1)]
        self._tables = part_uvs, part_vertices, transform.astype(np.int64), pdist
        return self._tables

    def closest_vertices(self, parts: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """``(P,)`` int64 1-based mesh vertex of each point (0 for background): the subdivided-mesh vertex
        of the point's part closest in (u, v) (the first of equals), mapped by the transform."""
        part_uvs, part_vertices, transform, _ = self._load()
        parts = np.asarray(parts).astype(np.int64)
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        closest = np.zeros(len(parts), np.int64)
        for k in range(1, NUM_PARTS + 1):
            chosen = parts == k
            if chosen.any():
                if not len(part_uvs[k - 1]):
                    raise ValueError(f"{self.data_dir / SMPL_SUBDIV_FILE} has no vertex of part {k}")
                nearest = cdist(part_uvs[k - 1], uv[chosen]).argmin(axis=0)
                closest[chosen] = transform[part_vertices[k - 1][nearest] - 1]
        return closest

    def vertex_distances(self, gt_vertices: np.ndarray, vertices: np.ndarray) -> np.ndarray:
        """Geodesic distances between 1-based mesh vertices (inf where ``vertices`` is 0, NaN where
        ``gt_vertices`` is 0). The official's index arithmetic in ``getDistancesUV`` reduces to
        ``a (a - 1) / 2 + b`` for 0-based vertices ``a > b``: the lower triangle, row by row."""
        pdist = self._load()[3]
        a = np.maximum(gt_vertices, vertices) - 1
        b = np.minimum(gt_vertices, vertices) - 1
        valid = (gt_vertices > 0) & (vertices > 0) & (a != b)
        out = np.zeros(len(a), np.float64)
        out[valid] = pdist[a[valid] * (a[valid] - 1) // 2 + b[valid]]
        out[vertices <= 0] = np.inf
        out[gt_vertices <= 0] = np.nan
        return out

    def distances(
        self, gt_parts: np.ndarray, gt_uv: np.ndarray, parts: np.ndarray, uv: np.ndarray
    ) -> np.ndarray:
        return self.vertex_distances(self.closest_vertices(gt_parts, gt_uv), self.closest_vertices(parts, uv))

    def normalisers(self, gt_parts: np.ndarray) -> np.ndarray:
        return MEAN_DISTANCES[COARSE_PARTS[np.asarray(gt_parts).astype(np.int64)]]
