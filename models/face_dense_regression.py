"""RetinaFace's dense regression branch (Deng et al. 2019, "RetinaFace: Single-stage Dense Face Localisation
in the Wild", Sec. 3.2, Fig. 3) as a loss term: each positive anchor predicts 144 numbers, P_ST (128 shape
and texture parameters), P_cam (7) and P_ill (9); the mesh decoder (``models.face_mesh_decoder``) turns
P_ST into a coloured mesh D_PST, the renderer (``models.mesh_renderer``) draws it with P_cam and P_ill, and
the loss is the pixel-wise L1 difference to the face (Eq. 3)

    L_pixel = 1 / (W H) sum_i sum_j || R(D_PST, P_cam, P_ill)_ij - I*_ij ||_1,

I* the image cropped at the anchor's matched ground-truth box and resized to the render size (W = H = S),
colours on [0, 1], averaged over the positive anchors. It is self-supervised (no 3D labels) and, as the
paper's Eq. 1 says, applied to positive anchors only; at test time the branch is not needed.

The paper weighs it by lambda_3 = 0.01 in Eq. 1 (``PAPER_PIXEL_WEIGHT``; the training total is the
module's ``loss_weights``, ``loss_pixel``). ``max_faces`` caps how many positive anchors a batch renders
(evenly spaced among them) to bound the cost on a CPU; ``None`` renders all, as the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from models.face_mesh_decoder import SHAPE_TEXTURE_PARAMETERS, FaceMeshDecoder
from models.mesh_renderer import CAMERA_PARAMETERS, ILLUMINATION_PARAMETERS, MeshRenderer

DENSE_VALUES = SHAPE_TEXTURE_PARAMETERS + CAMERA_PARAMETERS + ILLUMINATION_PARAMETERS  # 144 per anchor
PAPER_PIXEL_WEIGHT = 0.01  # lambda_3 (Sec. 3.1, Eq. 1)


def face_crops(images: Tensor, image_index: Tensor, boxes: Tensor, size: int) -> Tensor:
    """(N, C, size, size): ``images`` (B, C, H, W) cropped at ``boxes`` (N, 4) XYXY pixels of the images
    ``image_index`` (N,) and resized bilinearly (RoIAlign, pixel-aligned, 2 x 2 samples per output)."""
    rois = torch.cat([image_index[:, None].to(boxes), boxes], dim=1)
    return roi_align(images, rois, (size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)


class DenseRegression(nn.Module):
    """The mesh decoder + renderer and L_pixel (module docstring).

    Args:
        render_size: S, the render and crop size.
        max_faces: at most this many positive anchors rendered per batch (``None``: all).
        decoder: the mesh decoder (default ``FaceMeshDecoder()``: 545 vertices, 129,494 parameters).
        renderer_options: ``MeshRenderer`` keyword arguments (camera defaults, softness, background).
    """

    def __init__(
        self,
        render_size: int = 32,
        max_faces: int | None = None,
        decoder: FaceMeshDecoder | None = None,
        renderer_options: dict | None = None,
    ) -> None:
        super().__init__()
        self.max_faces = max_faces
        self.decoder = decoder if decoder is not None else FaceMeshDecoder()
        self.renderer = MeshRenderer(self.decoder.faces, render_size, **(renderer_options or {}))

    @property
    def render_size(self) -> int:
        return self.renderer.image_size

    def render(self, parameters: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 144) [P_ST | P_cam | P_ill] -> (image (N, 3, S, S), alpha (N, 1, S, S))."""
        if parameters.ndim != 2 or parameters.shape[1] != DENSE_VALUES:
            raise ValueError(
                f"dense regression takes (N, {DENSE_VALUES}) parameters, got {tuple(parameters.shape)}"
            )
        shape_texture, camera, illumination = parameters.split(
            [SHAPE_TEXTURE_PARAMETERS, CAMERA_PARAMETERS, ILLUMINATION_PARAMETERS], dim=1
        )
        vertices, colours = self.decoder(shape_texture)
        return self.renderer(vertices, colours, camera, illumination)

    def pixel_loss(self, parameters: Tensor, crops: Tensor) -> Tensor:
        """L_pixel (Eq. 3) of each face: (N,), the per-pixel L1 over the colour channels, averaged."""
        rendered, _ = self.render(parameters)
        return (rendered - crops).abs().sum(dim=1).mean(dim=(1, 2))

    def forward(self, parameters: Tensor, images: Tensor, image_index: Tensor, boxes: Tensor) -> Tensor:
        """Mean L_pixel over the positive anchors: their ``parameters`` (N, 144), the batch ``images``
        (B, 3, H, W) RGB on [0, 1], each anchor's image ``image_index`` (N,) and matched ``boxes`` (N, 4)
        XYXY pixels. No positive anchor: 0, still connected to ``parameters``."""
        if len(parameters) == 0:
            return parameters.sum() * 0.0
        if self.max_faces is not None and len(parameters) > self.max_faces:
            chosen = torch.linspace(0, len(parameters) - 1, self.max_faces, device=parameters.device).round()
            chosen = chosen.long()
            parameters, image_index, boxes = parameters[chosen], image_index[chosen], boxes[chosen]
        crops = face_crops(images.float(), image_index, boxes.float(), self.render_size)
        return self.pixel_loss(parameters.float(), crops).mean()
