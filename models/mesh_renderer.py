"""The differentiable renderer of RetinaFace's dense regression branch (Deng et al. 2019, Sec. 3.2):
a coloured mesh D_PST, camera parameters P_cam (7 numbers) and illumination parameters P_ill (9 numbers)
-> an image of the face crop, R(D_PST, P_cam, P_ill). The paper uses tf_mesh_renderer (Genova et al.
2018); this is a soft rasteriser in plain PyTorch, every step differentiable:

- camera (7): position t (3), orientation r (3, axis-angle), focal length (1): a vertex X goes to
  R(r) X + t and onto the crop at (u, v) = f (x / z, y / z), the crop spanning [-1, 1] in u (columns) and v
  (rows). P_cam = 0 puts the template at ``distance`` in front of the camera with ``focal`` = distance, so
  the template's rim (half-height 1) spans the crop's height.
- illumination (9): a point light's position (3, camera frame, default at the camera), its colour (3,
  default ``light``) and the ambient colour (3, default ``ambient``); each vertex's colour is its albedo
  times (ambient + light colour x max(0, n . l)) (Lambertian / Phong diffuse term, Gouraud shading), n the
  area-weighted vertex normal, l the direction to the light.
- rasterisation (SoftRas, Liu et al. 2019, Sec. 3.2-3.3, with DIB-R's split, Chen et al. 2019, Sec. 3):
  a pixel belongs to the triangles that contain it (half a sigma of slack across inner edges), whose
  clipped barycentric coordinates interpolate colour and depth; their colours are blended by SoftRas's
  softmax over D_j exp(-z_j / gamma) (the nearest triangle dominates). Near a silhouette edge -- a mesh
  boundary edge or a fold, where the triangle across faces the other way on screen -- a pixel outside also
  belongs to the triangle, with SoftRas's coverage D = sigmoid(sign(d) d^2 / sigma^2), d the signed
  distance to the nearest silhouette edge line (inner edges do not blur: with SoftRas's distance to every
  edge, the interior of a mesh of pixel-sized triangles comes out transparent). The face's alpha is the
  largest D of a pixel (SoftRas's union 1 - prod(1 - D_j) counts the two triangles at a boundary vertex
  twice and grows the silhouette by about half a pixel), and it is composited over the background:
  image = alpha x colour + (1 - alpha) x background (as DIB-R). Unlike SoftRas's background term inside
  the softmax, this keeps the colour image's edges soft, so the pixel loss moves the silhouette.

Cost: only (triangle, pixel) pairs within a triangle's box (plus the coverage margin) are visited, about
20k pairs for the 1024-triangle template at 32 x 32 pixels instead of 1M; N = 8 faces render forward and
backward in about 0.2 s on one CPU thread.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CAMERA_PARAMETERS = 7  # P_cam
ILLUMINATION_PARAMETERS = 9  # P_ill


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """(N, 3) rotation vectors -> (N, 3, 3) matrices (Rodrigues), smooth at the zero rotation."""
    angle = (axis_angle.square().sum(dim=1, keepdim=True) + 1e-12).sqrt()
    x, y, z = (axis_angle / angle).unbind(1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=1).view(-1, 3, 3)
    sin, cos = angle.sin()[..., None], angle.cos()[..., None]
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sin * skew + (1 - cos) * skew @ skew


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """(N, V, 3) unit normals: the sum of the adjacent triangles' cross products (area-weighted)."""
    v0, v1, v2 = vertices[:, faces].unbind(2)
    face_normals = torch.linalg.cross(v1 - v0, v2 - v0)
    normals = torch.zeros_like(vertices).index_add(1, faces.reshape(-1), face_normals.repeat_interleave(3, 1))
    return F.normalize(normals, dim=-1, eps=1e-8)


def pixel_centres(size: int, device: torch.device | None = None) -> Tensor:
    """(S * S, 2) (u, v) of the pixel centres in [-1, 1], row-major."""
    coords = (torch.arange(size, dtype=torch.float32, device=device) + 0.5) * (2 / size) - 1
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([u, v], dim=-1).reshape(-1, 2)


@torch.no_grad()
def candidate_pairs(corners: Tensor, size: int, margin: float) -> tuple[Tensor, Tensor, Tensor]:
    """(mesh, triangle, pixel) index triples of every pixel centre within ``margin`` (crop units) of a
    triangle's bounding box; ``corners`` (N, F, 3, 2)."""
    coords = (torch.arange(size, dtype=corners.dtype, device=corners.device) + 0.5) * (2 / size) - 1
    low, high = corners.amin(dim=2) - margin, corners.amax(dim=2) + margin  # (N, F, 2)
    inside = (coords >= low[..., None]) & (coords <= high[..., None])  # (N, F, 2, S): u, v
    mesh, triangle, row, column = (inside[:, :, 1, :, None] & inside[:, :, 0, None, :]).nonzero().unbind(1)
    return mesh, triangle, row * size + column


def edge_neighbours(faces: Tensor) -> Tensor:
    """(F, 3): the triangle across edge k (corner k -> corner k + 1) of each triangle, -1 on the boundary
    (an edge shared by more than two triangles keeps one of them)."""
    starts, ends = faces.reshape(-1), faces.roll(-1, dims=1).reshape(-1)
    key = torch.minimum(starts, ends) * (int(faces.max()) + 1) + torch.maximum(starts, ends)
    order = key.argsort(stable=True)
    owner = torch.arange(faces.numel(), device=faces.device) // 3
    neighbours = torch.full_like(key, -1)
    same = key[order[1:]] == key[order[:-1]]
    first, second = order[:-1][same], order[1:][same]
    neighbours[first], neighbours[second] = owner[second], owner[first]
    return neighbours.view(-1, 3)


def soft_rasterize(
    screen: Tensor,
    depth: Tensor,
    colours: Tensor,
    faces: Tensor,
    neighbours: Tensor,
    size: int,
    sigma: float,
    gamma: float,
) -> tuple[Tensor, Tensor]:
    """Soft rasterisation (module docstring) of triangles ``faces`` (F, 3) with ``neighbours``
    (``edge_neighbours``) over vertices at ``screen`` (N, V, 2) (u, v), with ``depth`` (N, V) and
    ``colours`` (N, V, C): (colour (N, C, S, S), alpha (N, 1, S, S)). ``sigma``: coverage softness in crop
    units (SoftRas's sqrt(sigma)); ``gamma``: depth softness in depth units. Only pixels near each
    triangle's box are visited (coverage logit below -6.25 is dropped), so the cost grows with the covered
    area, not with F x S^2."""
    batch, channels, pixel_count = screen.shape[0], colours.shape[-1], size * size
    corners = screen[:, faces]  # (N, F, 3, 2)
    edges = corners.roll(-1, dims=2) - corners  # edge k: corner k -> corner k + 1
    lengths = edges.norm(dim=-1).clamp(min=1e-8)
    # twice the signed area, cross(c1 - c0, c2 - c0) with c2 - c0 = -edge 2: > 0 anticlockwise in (u, v)
    doubled_area = edges[..., 2, 0] * edges[..., 0, 1] - edges[..., 2, 1] * edges[..., 0, 0]
    orientation = torch.where(doubled_area >= 0, 1.0, -1.0)  # (N, F)
    normals = torch.stack([-edges[..., 1], edges[..., 0]], dim=-1) / lengths[..., None]
    offsets = (normals * corners).sum(dim=-1)
    # silhouette edges: the mesh boundary and folds (the triangle across faces the other way on screen)
    across = orientation[:, neighbours.clamp(min=0)]  # (N, F, 3)
    silhouette = (neighbours < 0) | (across != orientation[..., None])

    mesh, triangle, pixel = candidate_pairs(corners, size, 2.5 * sigma)
    points = pixel_centres(size, screen.device)[pixel]
    # signed distance of each pixel to each edge line of its triangle, > 0 on the triangle's side
    distance = orientation[mesh, triangle, None] * (
        (normals[mesh, triangle] * points[:, None]).sum(dim=-1) - offsets[mesh, triangle]
    )
    # inside the triangle but for a silhouette edge's soft margin (and half a sigma across inner edges)
    on_silhouette = silhouette[mesh, triangle]
    keep = ((distance.detach() > -0.5 * sigma) | on_silhouette).all(dim=1)
    mesh, triangle, pixel, distance, on_silhouette = (
        mesh[keep],
        triangle[keep],
        pixel[keep],
        distance[keep],
        on_silhouette[keep],
    )
    nearest = torch.where(on_silhouette, distance, 1.0).amin(dim=1)
    coverage_logit = nearest * nearest.abs() / sigma**2  # SoftRas: sign(d) d^2 / sigma
    # barycentric weight of corner k: the area of the sub-triangle opposite it (edge k + 1), clipped
    areas = (distance * lengths[mesh, triangle]).roll(-1, dims=1)
    weights = (areas / doubled_area.abs().clamp(min=1e-8)[mesh, triangle, None]).clamp(0, 1)
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-8)
    corner_index = faces[triangle]  # (M, 3)
    pixel_depth = (weights * depth[mesh[:, None], corner_index]).sum(dim=1)
    pixel_colour = (weights[..., None] * colours[mesh[:, None], corner_index]).sum(dim=1)  # (M, C)

    # per pixel: softmax over its triangles of log D - z / gamma; union of the coverages
    key = mesh * pixel_count + pixel
    score = F.logsigmoid(coverage_logit) - pixel_depth / gamma
    flat = screen.new_zeros(batch * pixel_count)
    best = flat.scatter_reduce(0, key, score.detach(), reduce="amax", include_self=False)
    blend = (score - best[key]).exp()
    total = flat.index_add(0, key, blend).clamp(min=1e-12)
    colour = screen.new_zeros(batch * pixel_count, channels).index_add(0, key, blend[:, None] * pixel_colour)
    colour = colour / total[:, None]
    alpha = flat.scatter_reduce(0, key, torch.sigmoid(coverage_logit), reduce="amax", include_self=True)
    return (
        colour.view(batch, size, size, channels).permute(0, 3, 1, 2),
        alpha.view(batch, 1, size, size),
    )


class MeshRenderer(nn.Module):
    """R(D_PST, P_cam, P_ill) (module docstring) for meshes of the triangles ``faces`` (F, 3).

    Args:
        faces: the mesh's triangles (the template's, ``FaceMeshDecoder.faces``).
        image_size: the square render (and face crop) size S.
        distance, focal: the camera's default distance to the mesh origin and focal length (crop units).
        light, ambient: default light and ambient colour (grey levels).
        sigma_px: coverage softness in pixels; gamma: depth softness in mesh units.
        background: the colour behind the face (the paper renders the face alone: black).

    ``forward(vertices (N, V, 3), colours (N, V, 3), camera (N, 7), illumination (N, 9))`` ->
    ``(image (N, 3, S, S), alpha (N, 1, S, S))``.
    """

    def __init__(
        self,
        faces: Tensor,
        image_size: int = 32,
        *,
        distance: float = 5.0,
        focal: float = 5.0,
        light: float = 0.5,
        ambient: float = 0.5,
        sigma_px: float = 0.5,
        gamma: float = 0.05,
        background: float = 0.0,
    ) -> None:
        super().__init__()
        self.register_buffer("faces", faces.long(), persistent=False)
        self.register_buffer("neighbours", edge_neighbours(self.faces), persistent=False)
        self.image_size, self.distance, self.focal = image_size, distance, focal
        self.light, self.ambient = light, ambient
        self.sigma, self.gamma, self.background = sigma_px * 2 / image_size, gamma, background

    def camera_frame(self, vertices: Tensor, camera: Tensor) -> Tensor:
        """Vertices rotated and moved by P_cam into the camera frame (z: depth)."""
        translation = camera[:, :3] + camera.new_tensor([0.0, 0.0, self.distance])
        return vertices @ axis_angle_to_matrix(camera[:, 3:6]).transpose(1, 2) + translation[:, None]

    def shade(self, points: Tensor, albedo: Tensor, illumination: Tensor) -> Tensor:
        """Per-vertex colours lit by P_ill's point light and ambient colour, in the camera frame."""
        normals = vertex_normals(points, self.faces)
        to_light = F.normalize(illumination[:, None, :3] - points, dim=-1, eps=1e-8)
        diffuse = (normals * to_light).sum(dim=-1, keepdim=True).clamp(min=0)
        light = self.light + illumination[:, None, 3:6]
        ambient = self.ambient + illumination[:, None, 6:9]
        return albedo * (ambient + light * diffuse)

    def forward(
        self, vertices: Tensor, colours: Tensor, camera: Tensor, illumination: Tensor
    ) -> tuple[Tensor, Tensor]:
        if camera.shape[-1] != CAMERA_PARAMETERS or illumination.shape[-1] != ILLUMINATION_PARAMETERS:
            raise ValueError(
                f"P_cam has {CAMERA_PARAMETERS} and P_ill {ILLUMINATION_PARAMETERS} numbers per face, got "
                f"{camera.shape[-1]} and {illumination.shape[-1]}"
            )
        points = self.camera_frame(vertices, camera)
        shaded = self.shade(points, colours, illumination)
        depth = points[..., 2].clamp(min=1e-3)
        focal = self.focal * camera[:, 6:7].exp()
        screen = focal[..., None] * points[..., :2] / depth[..., None]
        image, alpha = soft_rasterize(
            screen, depth, shaded, self.faces, self.neighbours, self.image_size, self.sigma, self.gamma
        )
        return alpha * image + (1 - alpha) * self.background, alpha
