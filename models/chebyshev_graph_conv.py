"""Graph convolution by fast localised spectral filtering (Defferrard et al. 2016, "Convolutional Neural
Networks on Graphs with Fast Localized Spectral Filtering", NeurIPS, Sec. 2.1-2.2), the mesh convolution
of CoMA (Ranjan et al. 2018, "Generating 3D faces using Convolutional Mesh Autoencoders", ECCV, Sec. 3.2)
that RetinaFace's mesh decoder uses (Deng et al. 2019, Sec. 3.2).

A filter is a polynomial of order K - 1 in the scaled Laplacian L~ = 2 L / lambda_max - I, written in the
Chebyshev basis: ``y = sum_k T_k(L~) x W_k`` with T_0 = I, T_1 = L~, T_k = 2 L~ T_{k-1} - T_{k-2}, so only
K - 1 sparse products with L~ are needed. L is the normalised Laplacian I - D^-1/2 A D^-1/2; CoMA takes
lambda_max = 2 (its ``rescale_L(L, lmax=2)``), which makes L~ = -D^-1/2 A D^-1/2.

Written in plain PyTorch (a sparse COO matrix and ``torch.sparse.mm``) rather than torch_geometric, which
this project does not depend on.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def scaled_laplacian(edges: Tensor, num_vertices: int, lambda_max: float = 2.0) -> Tensor:
    """The sparse (V, V) L~ = 2 L / lambda_max - I of an undirected graph, L = I - D^-1/2 A D^-1/2.

    ``edges`` (E, 2) vertex index pairs, each edge once in either direction (duplicates are merged)."""
    pairs = torch.cat([edges, edges.flip(1)]).long()
    pairs = torch.unique(pairs[pairs[:, 0] != pairs[:, 1]], dim=0)
    degree = torch.zeros(num_vertices).index_add_(0, pairs[:, 0], torch.ones(len(pairs)))
    inverse_sqrt = degree.clamp(min=1).rsqrt()
    adjacency = inverse_sqrt[pairs[:, 0]] * inverse_sqrt[pairs[:, 1]]
    diagonal = torch.arange(num_vertices)
    # L~ = (2 / lambda_max) (I - N) - I, N the normalised adjacency
    indices = torch.cat([pairs.T, torch.stack([diagonal, diagonal])], dim=1)
    values = torch.cat([-2 / lambda_max * adjacency, torch.full((num_vertices,), 2 / lambda_max - 1.0)])
    return torch.sparse_coo_tensor(
        indices, values, (num_vertices, num_vertices), check_invariants=True
    ).coalesce()


class ChebConv(nn.Module):
    """Chebyshev graph convolution of order ``K`` (K filter taps, module docstring) on a fixed graph.

    ``forward(x (B, V, in_channels)) -> (B, V, out_channels)``. ``laplacian``: the sparse scaled Laplacian
    (``scaled_laplacian``), kept as a non-persistent buffer (it is rebuilt from the mesh, never loaded).
    Weights uniform in +-1 / sqrt(K in_channels) (PyTorch's Linear default for K x in_channels inputs);
    bias zero.
    """

    def __init__(self, in_channels: int, out_channels: int, K: int, laplacian: Tensor) -> None:
        super().__init__()
        if K < 1:
            raise ValueError(f"ChebConv needs K >= 1 filter taps, got {K}")
        self.in_channels, self.out_channels, self.K = in_channels, out_channels, K
        self.weight = nn.Parameter(torch.empty(K, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        bound = 1 / math.sqrt(in_channels * K)
        nn.init.uniform_(self.weight, -bound, bound)
        self.register_buffer("laplacian", laplacian.coalesce(), persistent=False)

    def basis(self, x: Tensor) -> Tensor:
        """(K, B, V, C): T_k(L~) x for k < K, by the Chebyshev recurrence."""
        batch, vertices, channels = x.shape
        flat = x.permute(1, 0, 2).reshape(vertices, batch * channels)  # (V, B*C): one sparse product per k
        laplacian = self.laplacian.to(flat.dtype)
        terms = [flat]
        if self.K > 1:
            terms.append(torch.sparse.mm(laplacian, flat))
        for _ in range(2, self.K):
            terms.append(2 * torch.sparse.mm(laplacian, terms[-1]) - terms[-2])
        return torch.stack(terms).view(self.K, vertices, batch, channels).permute(0, 2, 1, 3)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1:] != (self.laplacian.shape[0], self.in_channels):
            raise ValueError(
                f"ChebConv takes (B, {self.laplacian.shape[0]}, {self.in_channels}), got {tuple(x.shape)}"
            )
        return torch.einsum("kbvc,kco->bvo", self.basis(x), self.weight) + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, K={self.K}, vertices={self.laplacian.shape[0]}"
