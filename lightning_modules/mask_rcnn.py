"""Mask R-CNN training (He et al. 2017, Sec. 3): the multi-task loss on each sampled RoI is
L = L_cls + L_box + L_mask, where L_mask is the average binary cross-entropy of the ground-truth
class's 28x28 mask only, plus the RPN's objectness and box losses (Ren et al. 2015, Sec. 3.1.2),
all summed with weight 1. Optimisation (Sec. 4 / detectron2 1x): SGD, momentum 0.9, weight decay
1e-4, lr 0.02 at batch 16 with linear warm-up and x0.1 steps -- the defaults of the base module."""

from __future__ import annotations

from torch import Tensor

from lightning_modules.instance_segmentation import InstanceSegmentationModule


class MaskRCNNModule(InstanceSegmentationModule):
    """``model`` is a ``models.mask_rcnn.MaskRCNN`` (or torchvision's, which has the same API)."""

    def compute_losses(self, images: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        return self.model(images, targets)
