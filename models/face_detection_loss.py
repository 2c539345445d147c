"""RetinaFace's training loss (Deng et al. 2020, "RetinaFace: Single-shot Multi-level Face Localisation in
the Wild", CVPR, Sec. 3.1), as the widely used PyTorch implementation biubug6/Pytorch_Retinaface computes
it (``layers/modules/multibox_loss.py`` ``MultiBoxLoss``, ``utils/box_utils.py`` ``match``, built in
``train.py`` as ``MultiBoxLoss(2, 0.35, True, 0, True, 7, 0.35, False)``):

- matching (``match``): a prior takes the ground truth it overlaps most and is a face at IoU >= 0.35,
  background below; every ground truth whose best prior overlaps it by >= 0.2 forces that prior to be its
  face (overlap set to 2); every ground truth, including those under 0.2, claims its best prior's
  ground-truth index, the later one winning a shared prior (the implementation's loop); an image whose
  faces all stay under 0.2 is all background;
- boxes: smooth-L1 on SSD-encoded deltas (``face_anchors``) of the positives, summed;
- classes: 2-way softmax cross-entropy, summed over the positives and the 7x as many hardest negatives
  of each image (ranked by their cross-entropy, positives ranked last, at most P - 1 per image);
- landmarks: smooth-L1 on the encoded 5 landmarks of the positives whose face has landmarks, summed.

Box and class losses are divided by the batch's number of positives, the landmark loss by its number of
positives with landmarks (each at least 1), so a batch without faces gives 0 for all three -- finite; an
image without faces mines no negatives (7 x 0), contributing nothing, as in the implementation.

Faces without landmarks. WIDER FACE's RetinaFace annotations write -1 for every coordinate of a face
without landmarks, and the implementation turns that into the face's label: 1 with landmarks, -1 without
(``data/wider_face.py``). ``match`` copies the label to the prior, so ``conf_t`` is 1 (face with
landmarks), -1 (face without) or 0 (background); the landmark loss takes ``conf_t > 0``, then every
``conf_t != 0`` becomes class 1 for the box and class losses. The project's ``Target.landmarks`` writes
NaN instead: here a face has landmarks (label 1) when all its landmark coordinates are finite, and is
labelled -1 otherwise (``datamodules.wider_face`` refuses a face with only some at -1).

Input: per image the ``Target`` convention (``datamodules.batch``), XYXY ``boxes`` and (N, 5, 2)
``landmarks`` in pixels of the network's input (a missing ``landmarks`` key: none annotated). They are
normalised by ``image_size`` = (H, W) of the batched input the priors were made for (images padded at the
bottom and right keep their pixel coordinates), as the implementation normalises by the image size.

The losses come back unweighted, named ``loss_box``, ``loss_class``, ``loss_landmark``; the training
total is a weighted sum (``LossDictModule``'s ``loss_weights``): ``loss_weights("implementation")`` is
``train.py``'s ``loc_weight * loss_l + loss_c + loss_landm`` with ``loc_weight`` 2, and
``loss_weights("paper")`` the paper's lambda1 = 0.25 (box), lambda2 = 0.1 (landmarks), class 1.

Dense regression (the paper's Sec. 3.2, not in the implementation): with a ``dense_regression`` module
(``models.face_dense_regression.DenseRegression``) and the network's 144 dense numbers per prior, the
positives' L_pixel on the input ``pixels`` cropped at their matched boxes comes back as ``loss_pixel``
(weight lambda3 = 0.01 in the paper, ``PAPER_PIXEL_WEIGHT``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou

from datamodules.batch import Target
from models.face_anchors import VARIANCES, center_to_corners, encode_boxes, encode_landmarks
from models.face_dense_regression import DenseRegression

NUM_LANDMARKS = 5

_LOSS_WEIGHTS = {
    # train.py: loss = cfg['loc_weight'] * loss_l + loss_c + loss_landm, loc_weight 2.0
    "implementation": {"loss_box": 2.0, "loss_class": 1.0, "loss_landmark": 1.0},
    # Sec. 3.1: L_cls + lambda1 L_box + lambda2 L_pts (+ lambda3 = 0.01 L_pixel, the dense regression
    # branch, which the implementation does not have)
    "paper": {"loss_box": 0.25, "loss_class": 1.0, "loss_landmark": 0.1},
}


def loss_weights(source: Literal["implementation", "paper"] = "implementation") -> dict[str, float]:
    """The weights of ``MultiBoxLoss``'s named losses in the training total, for ``loss_weights``."""
    return dict(_LOSS_WEIGHTS[source])


def match(
    truths: Tensor,
    priors: Tensor,
    has_landmarks: Tensor,
    threshold: float = 0.35,
    min_best_overlap: float = 0.2,
) -> tuple[Tensor, Tensor]:
    """The implementation's ``match`` for one image: per prior its class target ``conf`` (P,) int64 --
    1 face with landmarks, -1 face without, 0 background -- and the index (P,) of its ground truth
    (meaningful where ``conf != 0``). ``truths`` (N, 4) normalised XYXY, ``priors`` (P, 4) centre-size,
    ``has_landmarks`` (N,) bool."""
    num_priors, num_truths = priors.shape[0], truths.shape[0]
    conf = torch.zeros(num_priors, dtype=torch.long, device=priors.device)
    if num_truths == 0:
        return conf, conf.clone()
    overlaps = box_iou(truths, center_to_corners(priors))  # (N, P): the implementation's jaccard
    best_prior_overlap, best_prior = overlaps.max(dim=1)
    valid = best_prior_overlap >= min_best_overlap
    if not bool(valid.any()):
        return conf, conf.clone()
    best_truth_overlap, best_truth = overlaps.max(dim=0)
    best_truth_overlap = best_truth_overlap.index_fill(0, best_prior[valid], 2.0)
    # every ground truth (valid or not) claims its best prior, the last one winning a shared prior
    claimant = torch.full((num_priors,), -1, dtype=torch.long, device=priors.device)
    claimant = claimant.scatter_reduce(
        0, best_prior, torch.arange(num_truths, device=priors.device), reduce="amax"
    )
    best_truth = torch.where(claimant >= 0, claimant, best_truth)
    labels = torch.where(has_landmarks, 1, -1).to(device=priors.device, dtype=torch.long)
    conf = torch.where(best_truth_overlap < threshold, 0, labels[best_truth])
    return conf, best_truth


class MultiBoxLoss(nn.Module):
    """The implementation's ``MultiBoxLoss`` (module docstring): unweighted named losses of a batch.

    Args:
        overlap_threshold: IoU at which a prior is a face (``overlap_thresh``, 0.35).
        negatives_per_positive: hard negatives mined per positive (``neg_pos``, 7).
        min_best_overlap: a ground truth forces its best prior only when they overlap at least this
            much (0.2, hard-coded in ``match``).
        variances: the box and landmark encoding's (``cfg['variance']``).
        dense_regression: the dense regression term (module docstring; ``None``: none).
    """

    def __init__(
        self,
        overlap_threshold: float = 0.35,
        negatives_per_positive: int = 7,
        min_best_overlap: float = 0.2,
        variances: Sequence[float] = VARIANCES,
        dense_regression: DenseRegression | None = None,
    ) -> None:
        super().__init__()
        self.overlap_threshold = overlap_threshold
        self.negatives_per_positive = negatives_per_positive
        self.min_best_overlap = min_best_overlap
        self.variances = tuple(variances)
        self.dense_regression = dense_regression

    def forward(
        self,
        box_deltas: Tensor,
        class_logits: Tensor,
        landmark_deltas: Tensor,
        priors: Tensor,
        targets: Sequence[Target],
        image_size: tuple[int, int],
        dense: Tensor | None = None,
        pixels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``box_deltas`` (B, P, 4), ``class_logits`` (B, P, 2) (background, face), ``landmark_deltas``
        (B, P, 10) as the network outputs them in training mode; ``priors`` (P, 4) of ``image_size``
        (H, W); ``targets`` one ``Target`` per image in pixels (module docstring). With
        ``dense_regression``: ``dense`` (B, P, 144) and the input ``pixels`` (B, 3, H, W) RGB on [0, 1]."""
        batch, num_priors = class_logits.shape[:2]
        device = class_logits.device
        height, width = image_size
        box_scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=device)
        point_scale = box_scale[:2]
        conf = torch.zeros(batch, num_priors, dtype=torch.long, device=device)
        matched_boxes = torch.zeros(batch, num_priors, 4, device=device)
        matched_landmarks = torch.zeros(batch, num_priors, NUM_LANDMARKS, 2, device=device)
        for i, target in enumerate(targets):
            boxes = target["boxes"].to(device=device, dtype=torch.float32) / box_scale
            if "landmarks" in target:
                landmarks = target["landmarks"].to(device=device, dtype=torch.float32) / point_scale
            else:
                landmarks = torch.full((boxes.shape[0], NUM_LANDMARKS, 2), float("nan"), device=device)
            has_landmarks = landmarks.isfinite().flatten(1).all(dim=1)
            conf[i], truth = match(
                boxes, priors, has_landmarks, self.overlap_threshold, self.min_best_overlap
            )
            if boxes.shape[0] > 0:
                matched_boxes[i] = boxes[truth]
                matched_landmarks[i] = landmarks.nan_to_num(0.0)[truth]

        positive = conf != 0
        with_landmarks = conf > 0
        priors_per_image = priors.expand(batch, num_priors, 4)
        num_positive = positive.sum().clamp(min=1).float()
        num_with_landmarks = with_landmarks.sum().clamp(min=1).float()

        box_targets = encode_boxes(matched_boxes[positive], priors_per_image[positive], self.variances)
        loss_box = F.smooth_l1_loss(box_deltas[positive].float(), box_targets, reduction="sum")
        landmark_targets = encode_landmarks(
            matched_landmarks[with_landmarks], priors_per_image[with_landmarks], self.variances
        )
        loss_landmark = F.smooth_l1_loss(
            landmark_deltas[with_landmarks].float(), landmark_targets, reduction="sum"
        )

        classes = positive.long()
        logits = class_logits.float()
        negative = self.hard_negatives(logits, classes, positive)
        selected = positive | negative
        loss_class = F.cross_entropy(logits[selected], classes[selected], reduction="sum")
        losses = {
            "loss_box": loss_box / num_positive,
            "loss_class": loss_class / num_positive,
            "loss_landmark": loss_landmark / num_with_landmarks,
        }
        if self.dense_regression is not None:
            if dense is None or pixels is None:
                raise ValueError("the dense regression loss needs the dense outputs and the input pixels")
            image_index = positive.nonzero()[:, 0]
            boxes = matched_boxes[positive] * box_scale
            losses["loss_pixel"] = self.dense_regression(dense[positive], pixels, image_index, boxes)
        return losses

    @torch.no_grad()
    def hard_negatives(self, logits: Tensor, classes: Tensor, positive: Tensor) -> Tensor:
        """(B, P) bool: per image the ``negatives_per_positive`` x (its positives) priors of highest
        cross-entropy, positives counted as 0 (so ranked last), at most P - 1 -- the implementation's
        double sort (whose ``log_sum_exp - gather`` is the cross-entropy)."""
        num_priors = logits.shape[1]
        mining = F.cross_entropy(logits.flatten(0, 1), classes.flatten(), reduction="none")
        mining = mining.view_as(classes).masked_fill(positive, 0.0)
        rank = mining.argsort(dim=1, descending=True).argsort(dim=1)
        num_negative = (self.negatives_per_positive * positive.sum(dim=1, keepdim=True)).clamp(
            max=num_priors - 1
        )
        return rank < num_negative
