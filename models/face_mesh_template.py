"""The template face mesh of the dense regression branch (RetinaFace, Deng et al. 2019, Sec. 3.2), built in
code: the front half of an ellipsoid, a face-shaped cap, with a nested vertex hierarchy for the mesh
decoder's up-sampling (CoMA, Ranjan et al. 2018, Sec. 3.3).

RetinaFace decodes onto a 3D face model's topology, which this project does not ship; the cap stands in for
it. It starts from the front half of an octahedron (5 vertices, 4 triangles) and is subdivided ``levels``
times, each triangle into four at its edge midpoints, every new vertex pushed out onto the unit sphere and
the sphere finally scaled to the semi-axes ``(a, b, c)``: 5, 13, 41, 145, 545 vertices after 0-4
subdivisions (1024 triangles at 4). Each level's vertices are the first ones of the next, so down-sampling
keeps a prefix and up-sampling (CoMA's barycentric up-sampling matrix, here exact) copies the coarse
vertices and puts every new vertex at the mean of its edge's two ends (``parents``).

Frame: x right, y down (image rows), z away from the viewer; the cap bulges towards the viewer (z <= 0),
its rim, the ellipse x^2/a^2 + y^2/b^2 = 1, lies at z = 0. Triangles are wound so that their normals,
cross(v1 - v0, v2 - v0), point out of the ellipsoid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# semi-axes: width, height and depth in units of the face's half-height; the synthetic faces' height /
# width ratio is 1.15-1.35 (``datamodules.synthetic.faces``)
FACE_SEMI_AXES = (0.8, 1.0, 0.6)
OCTAHEDRON_FRONT = (
    torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
    torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]]),
)


@dataclass(frozen=True)
class MeshLevel:
    """One level of the hierarchy: ``vertices`` (V, 3), ``faces`` (F, 3) and, for every vertex that is not
    in the coarser level, the two coarse vertices it is the midpoint of: ``parents`` (V - V_coarse, 2)."""

    vertices: Tensor
    faces: Tensor
    parents: Tensor

    @property
    def edges(self) -> Tensor:
        """(E, 2) every edge once, lower index first."""
        pairs = torch.cat([self.faces[:, [0, 1]], self.faces[:, [1, 2]], self.faces[:, [2, 0]]])
        return torch.unique(pairs.sort(dim=1).values, dim=0)


def subdivide(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Splits every triangle into four at its edge midpoints, new vertices after the old ones and on the
    unit sphere: (vertices, faces, parents (new vertices, 2))."""
    midpoint: dict[tuple[int, int], int] = {}
    parents: list[tuple[int, int]] = []

    def middle(i: int, j: int) -> int:
        key = (min(i, j), max(i, j))
        if key not in midpoint:
            midpoint[key] = len(vertices) + len(parents)
            parents.append(key)
        return midpoint[key]

    new_faces = []
    for i, j, k in faces.tolist():
        ij, jk, ki = middle(i, j), middle(j, k), middle(k, i)
        new_faces += [[i, ij, ki], [ij, j, jk], [ki, jk, k], [ij, jk, ki]]
    parent_index = torch.tensor(parents)
    added = vertices[parent_index].mean(dim=1)
    added = added / added.norm(dim=1, keepdim=True)
    return torch.cat([vertices, added]), torch.tensor(new_faces), parent_index


def outward(vertices: Tensor, faces: Tensor) -> Tensor:
    """``faces`` re-wound where needed so that each normal points away from the origin (convex shape)."""
    v0, v1, v2 = vertices[faces].unbind(1)
    inward = (torch.linalg.cross(v1 - v0, v2 - v0) * (v0 + v1 + v2)).sum(dim=1) < 0
    return torch.where(inward[:, None], faces[:, [0, 2, 1]], faces)


def face_mesh_hierarchy(
    levels: int = 4, semi_axes: tuple[float, float, float] = FACE_SEMI_AXES
) -> list[MeshLevel]:
    """The template cap after 0, 1, ..., ``levels`` subdivisions (module docstring), coarsest first."""
    vertices, faces = OCTAHEDRON_FRONT
    hierarchy = [MeshLevel(vertices, faces, torch.zeros(0, 2, dtype=torch.long))]
    for _ in range(levels):
        vertices, faces, parents = subdivide(vertices, faces)
        hierarchy.append(MeshLevel(vertices, faces, parents))
    scale = torch.tensor(semi_axes)
    return [
        MeshLevel(level.vertices * scale, outward(level.vertices * scale, level.faces), level.parents)
        for level in hierarchy
    ]


def upsample(features: Tensor, parents: Tensor) -> Tensor:
    """(B, V_coarse, C) -> (B, V_coarse + len(parents), C): coarse vertices kept, each new vertex the mean
    of its two parents (CoMA's up-sampling matrix for vertices at edge midpoints)."""
    return torch.cat([features, features[:, parents].mean(dim=2)], dim=1)
