"""RetinaFace's mesh decoder (Deng et al. 2019, "RetinaFace: Single-stage Dense Face Localisation in the
Wild", Sec. 3.2, Fig. 3): the shape and texture parameters P_ST (128 numbers per face) -> a coloured mesh
D_PST, every vertex a position and a colour (6 numbers).

It is CoMA's decoder (Ranjan et al. 2018, "Generating 3D faces using Convolutional Mesh Autoencoders",
ECCV, Sec. 3.3, Table 1): a fully connected layer onto the coarsest used level of the mesh hierarchy, then
per level an up-sampling (``models.face_mesh_template.upsample``) and a Chebyshev graph convolution
(``models.chebyshev_graph_conv``, K = 6 as CoMA) with ELU, and a last Chebyshev convolution to the 6
outputs. CoMA's decoder ends in 3 outputs (positions); RetinaFace's adds the colour. Positions are the
template's plus the decoded offsets, colours ``sigmoid(raw)`` in [0, 1]; the last convolution starts at
zero, so an untrained decoder gives the template in mid grey.

The template is the ellipsoid cap of ``models.face_mesh_template`` (545 vertices, 1024 triangles at 4
subdivisions), not the paper's 3D face model topology. The paper's decoder may be pre-trained on 3D face
data ("we employ the mesh decoder ... from CoMA"); here it is trained from scratch with the detector.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.chebyshev_graph_conv import ChebConv, scaled_laplacian
from models.face_mesh_template import FACE_SEMI_AXES, face_mesh_hierarchy, upsample

SHAPE_TEXTURE_PARAMETERS = 128  # P_ST
VERTEX_VALUES = 6  # x, y, z, r, g, b


class FaceMeshDecoder(nn.Module):
    """P_ST (N, 128) -> (vertices (N, V, 3), colours (N, V, 3)) on the template (module docstring).

    Args:
        parameters: length of P_ST (128).
        channels: feature channels on the coarsest used level, then after each up-sampling convolution
            (CoMA's decoder: its filters reversed); ``len(channels) - 1`` up-samplings.
        subdivisions: of the template (the finest level, which is decoded).
        K: Chebyshev filter taps (CoMA: 6).
        semi_axes: the template's (``face_mesh_template``).
    """

    def __init__(
        self,
        parameters: int = SHAPE_TEXTURE_PARAMETERS,
        channels: Sequence[int] = (64, 32, 32, 16),
        subdivisions: int = 4,
        K: int = 6,
        semi_axes: tuple[float, float, float] = FACE_SEMI_AXES,
    ) -> None:
        super().__init__()
        upsamplings = len(channels) - 1
        if not 1 <= upsamplings <= subdivisions:
            raise ValueError(f"need 1..{subdivisions} up-samplings (len(channels) - 1), got {upsamplings}")
        hierarchy = face_mesh_hierarchy(subdivisions, semi_axes)
        used = hierarchy[subdivisions - upsamplings :]
        self.coarse_vertices, self.coarse_channels = len(used[0].vertices), channels[0]
        self.fc = nn.Linear(parameters, self.coarse_vertices * channels[0])
        self.convs = nn.ModuleList(
            ChebConv(c_in, c_out, K, scaled_laplacian(level.edges, len(level.vertices)))
            for c_in, c_out, level in zip(channels[:-1], channels[1:], used[1:], strict=True)
        )
        finest = used[-1]
        self.output = ChebConv(channels[-1], VERTEX_VALUES, K, self.convs[-1].laplacian)
        nn.init.zeros_(self.output.weight)
        for i, level in enumerate(used[1:]):
            self.register_buffer(f"parents{i}", level.parents, persistent=False)
        self.register_buffer("template", finest.vertices, persistent=False)
        self.register_buffer("faces", finest.faces, persistent=False)

    @property
    def num_vertices(self) -> int:
        return int(self.template.shape[0])

    def forward(self, shape_texture: Tensor) -> tuple[Tensor, Tensor]:
        x = self.fc(shape_texture).view(-1, self.coarse_vertices, self.coarse_channels)
        for i, conv in enumerate(self.convs):
            x = F.elu(conv(upsample(x, getattr(self, f"parents{i}"))))
        out = self.output(x)
        return self.template + out[..., :3], torch.sigmoid(out[..., 3:])
