"""RetinaFace as a detector in torchvision's convention (``datamodules.batch``): ``forward(images, targets)``
returns the named losses in training and, in eval, per image ``boxes`` (XYXY), ``scores``, ``labels`` (all
1: the face class) and ``landmarks`` (N, 5, 2) in the image's own pixels.

Around a ``network`` returning (box deltas, class logits, landmark deltas) per prior
(``models.retinaface_network.RetinaFaceNetwork``), with the implementation's priors (``models.face_anchors``),
loss (``models.face_detection_loss``) and decode (``models.face_detection_decode``). Input as the
implementation (biubug6/Pytorch_Retinaface): BGR minus the mean (104, 117, 123) on the 0-255 scale; in
training every image letterboxed to the square ``image_size`` (its data pipeline crops, pads to a square
and resizes to 640 / 840); in eval each image at its own resolution (``test_widerface.py --origin_size``),
padded at the bottom and right to a multiple of 32 to batch them. The evaluation's settings are the
default: score threshold 0.02, NMS 0.4, every face kept (``test_widerface.py`` has the top-k limits
commented out).

The paper's dense regression branch (Sec. 3.2, ``models.face_dense_regression``) is optional: with
``dense_regression`` (a ``DenseRegression``) and a network built with ``dense_regression=True`` (a fourth
output, 144 numbers per prior), training adds ``loss_pixel`` on the positive priors' face crops, cut from
the letterboxed input (back on [0, 1] RGB) at their matched boxes; eval ignores the fourth output.
"""

from __future__ import annotations

from torch import Tensor, nn

from models.face_anchors import prior_boxes
from models.face_dense_regression import DenseRegression
from models.face_detection_decode import decode_detections
from models.face_detection_loss import MultiBoxLoss
from models.letterbox import LetterboxTransform

# the implementation's mean, BGR (104, 117, 123) on the 0-255 scale; here RGB on [0, 1] with a std of
# 1/255 that puts the network input back on the 0-255 scale
MEAN_RGB = (123 / 255, 117 / 255, 104 / 255)
STD = (1 / 255, 1 / 255, 1 / 255)


class RetinaFace(nn.Module):
    """The detector (module docstring).

    Args:
        network: the backbone + FPN + SSH + heads.
        image_size: the square training input (implementation: 640 for MobileNet-0.25, 840 for ResNet-50).
        score_threshold, nms_threshold, top_k, keep_top_k: the decode (``face_detection_decode``).
        overlap_threshold, negatives_per_positive: matching and hard-negative mining (0.35, 7).
        dense_regression: the dense regression branch's decoder, renderer and L_pixel (off: ``None``).
    """

    def __init__(
        self,
        network: nn.Module,
        image_size: int = 640,
        *,
        score_threshold: float = 0.02,
        nms_threshold: float = 0.4,
        top_k: int | None = None,
        keep_top_k: int | None = None,
        overlap_threshold: float = 0.35,
        negatives_per_positive: int = 7,
        dense_regression: DenseRegression | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.transform = LetterboxTransform(
            image_size, mean=MEAN_RGB, std=STD, bgr=True, test_padding=(32, 0)
        )
        self.loss = MultiBoxLoss(overlap_threshold, negatives_per_positive, dense_regression=dense_regression)
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.top_k, self.keep_top_k = top_k, keep_top_k

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        batch = self.transform(images)
        size = (int(batch.shape[-2]), int(batch.shape[-1]))
        priors = prior_boxes(size, device=batch.device)
        box_deltas, class_logits, landmark_deltas, *dense = self.network(batch)
        scales = self.transform.scales(images)
        if self.training:
            if targets is None:
                raise ValueError("RetinaFace needs targets in training mode")
            scaled = [_scaled_target(t, s) for t, s in zip(targets, scales, strict=True)]
            if self.loss.dense_regression is None:
                return self.loss(box_deltas, class_logits, landmark_deltas, priors, scaled, size)
            if not dense:
                raise ValueError("dense_regression needs a network with a dense head (dense_regression=True)")
            pixels = _input_pixels(self.transform, batch)
            return self.loss(
                box_deltas, class_logits, landmark_deltas, priors, scaled, size, dense[0], pixels
            )
        detections = decode_detections(
            box_deltas,
            class_logits,
            landmark_deltas,
            priors,
            size,
            score_threshold=self.score_threshold,
            top_k=self.top_k,
            nms_threshold=self.nms_threshold,
            keep_top_k=self.keep_top_k,
        )
        for detection, image, scale in zip(detections, images, scales, strict=True):
            height, width = image.shape[-2:]
            detection["boxes"] = detection["boxes"] / scale
            detection["boxes"][:, 0::2] = detection["boxes"][:, 0::2].clamp(0, width)
            detection["boxes"][:, 1::2] = detection["boxes"][:, 1::2].clamp(0, height)
            detection["landmarks"] = detection["landmarks"] / scale
        return detections


def _scaled_target(target: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
    """The target's boxes and landmarks in the letterboxed input's pixels."""
    scaled = {"boxes": target["boxes"] * scale}
    if "landmarks" in target:
        scaled["landmarks"] = target["landmarks"] * scale
    return scaled


def _input_pixels(transform: LetterboxTransform, batch: Tensor) -> Tensor:
    """The letterboxed input back in RGB on [0, 1] (the padding at the mean colour)."""
    return (batch.flip(1) if transform.bgr else batch) * transform.std + transform.mean
