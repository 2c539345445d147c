"""The history of generated images that CycleGAN's discriminators are updated with (Zhu et al., ICCV 2017,
Sec. 4 "Training details", after Shrivastava et al. CVPR 2017: "we update the discriminators using a
history of generated images rather than the ones produced by the latest generators. We keep an image
buffer that stores the 50 previously created images").

Semantics of the official ``util/image_pool.py`` (junyanz/pytorch-CycleGAN-and-pix2pix), image by image:
while the pool holds fewer than ``size`` images, store the new one and return it; once full, with
probability 0.5 return a uniformly chosen stored image and store the new one in its place, otherwise
return the new one. The draws come from torch's global generator (``torch.rand`` / ``torch.randint``),
so that reseeding it (as the project does per training batch) makes a resumed run draw the same.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ImagePool:
    """A buffer of up to ``size`` detached images (CycleGAN Sec. 4); ``size=0`` returns queries unchanged.

    ``state_dict()`` / ``load_state_dict()`` carry the stored images as one ``(n, C, H, W)`` tensor
    (``n <= size``), so a LightningModule can put the pool into its checkpoint."""

    def __init__(self, size: int = 50) -> None:
        if size < 0:
            raise ValueError(f"ImagePool size must be >= 0, got {size}")
        self.size = size
        self.images: list[Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: Tensor) -> Tensor:
        """(B, C, H, W) newly generated images -> (B, C, H, W) detached images to show the discriminator."""
        images = images.detach()
        if self.size == 0:
            return images
        if self.images and self.images[0].shape != images.shape[1:]:
            raise ValueError(
                f"ImagePool holds images of shape {tuple(self.images[0].shape)}, got a batch of "
                f"{tuple(images.shape[1:])}"
            )
        if self.images and (self.images[0].device, self.images[0].dtype) != (images.device, images.dtype):
            # e.g. loaded from a checkpoint on the CPU: keep one device and dtype so the pool stacks
            self.images = [image.to(images) for image in self.images]
        returned = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                returned.append(image)
            elif torch.rand(()).item() > 0.5:
                index = int(torch.randint(self.size, ()).item())
                returned.append(self.images[index])
                self.images[index] = image.clone()
            else:
                returned.append(image)
        return torch.stack(returned)

    def state_dict(self) -> dict[str, Tensor]:
        """``{"images": (n, C, H, W)}``, the stored images in storage order (``(0,)`` when empty)."""
        return {"images": torch.stack(self.images) if self.images else torch.empty(0)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        images = state["images"]
        if images.numel() == 0:
            self.images = []
            return
        if images.dim() != 4 or len(images) > self.size:
            raise ValueError(
                f"ImagePool(size={self.size}) state needs an (n <= {self.size}, C, H, W) tensor, got shape "
                f"{tuple(images.shape)}"
            )
        self.images = [image.detach().clone() for image in images]
