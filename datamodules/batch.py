"""The project's one batch convention, shared by datamodules, models, metrics and overlays.

A batch is ``(images, targets)``: a list of float32 (3, H, W) images in [0, 1], each at its own size
(detection models batch them internally, as torchvision's ``GeneralizedRCNNTransform`` does), and one
``Target`` per image (torchvision detection style). Every key is optional except ``image_id``; a
method reads the keys its task needs, and later families add theirs here, not elsewhere.

Coordinates: boxes, polygons and keypoints are continuous pixel coordinates in which pixel (i, j)
covers [i, i + 1) x [j, j + 1) (COCO's polygon convention, ``datamodules.synthetic.render``): an image of
width W spans x in [0, W], and a horizontal flip maps x to W - x.

Top-down keypoint items (one instance cropped by its box and warped to the network input) hold N = 1
instance in the crop's pixel frame; ``crop_to_image`` maps crop pixels back to the source image, where
metrics and COCO results live.

Labels and ``num_classes`` -- one rule everywhere:
- object labels run 1..C, C = ``num_classes``, which never counts a background class;
- label 0 is never an object. Models with a background class (Mask R-CNN, YOLACT) use it for
  background, so their classifiers have C + 1 outputs; models without one (CenterNet's heatmaps) map
  label l to channel l - 1. Metrics map labels to dataset category ids through
  ``DatasetMetadata.label_to_category_id``; overlays name labels through ``DatasetMetadata.label_names``.

Semantic classes (panoptic segmentation) extend the same rule: the S stuff classes of
``DatasetMetadata.stuff_names`` come first (semantic class 0..S-1), then the C thing classes (label l is
semantic class S + l - 1), UPSNet's layout; void pixels are ``IGNORE_INDEX``. Crowd regions keep their
thing class in ``semantic`` but have no instance (no box, label or mask); ``segments`` lists them.
"""

from __future__ import annotations

from typing import TypedDict

from torch import Tensor

IGNORE_INDEX = 255
"""The value of pixels a semantic target leaves out of the loss and the metric (void, unlabelled)."""


class Target(TypedDict, total=False):
    """The annotations of one image, in its (possibly augmented) pixel frame."""

    image_id: Tensor  # int64 scalar: the dataset's image id (COCO ``image_id``)
    boxes: Tensor  # float32 (N, 4): XYXY in absolute pixels
    labels: Tensor  # int64 (N,): object labels 1..C (see the module docstring)
    masks: Tensor  # uint8 (N, H, W): instance masks in {0, 1}
    keypoints: Tensor  # float32 (N, K, 3): x, y in pixels and visibility (0 absent, 1 occluded, 2 visible)
    annotation_ids: Tensor  # int64 (N,): the dataset's annotation id of each instance (COCO ``id``)
    head_boxes: Tensor  # float32 (N, 4): XYXY head boxes in pixels (MPII, for PCKh)
    crop_to_image: Tensor  # float64 (2, 3): affine map of a top-down crop's pixels to its source image's
    instance_ids: Tensor  # int64 (N,): identities that persist across the frames of a video
    semantic: Tensor  # int64 (H, W): semantic class per pixel, IGNORE_INDEX where unlabelled
    panoptic: Tensor  # int64 (H, W): panoptic segment id per pixel, 0 = void (COCO panoptic ids)
    segments: Tensor  # int64 (M, 3): per panoptic segment [id, category_id, iscrowd], in the JSON's order
    landmarks: Tensor  # float32 (N, L, 2): facial landmarks in pixels (NaN where not annotated)
    dense_points: Tensor  # float32 (N, P, 5): DensePose points x, y (box frame), part index, u, v
    face_subsets: Tensor  # bool (N, 3): the WIDER FACE easy / medium / hard keep flags of each face


Batch = tuple[list[Tensor], list[Target]]
"""What every detection-style datamodule's loaders yield and every such module's steps take."""


class ImageBatch(TypedDict, total=False):
    """A batch of the generative family (image-to-image translation, super-resolution, style transfer,
    class-conditional generation): stacked tensors, every image of a batch at one size, values in [0, 1]
    (a model that works in [-1, 1] maps to and from it itself).

    ``a`` is what the generator is given and ``b`` what it should produce, as the pix2pix/CycleGAN code
    names its two domains: pix2pix A -> B (paired), CycleGAN A <-> B (unpaired: ``b`` is an unrelated
    image of the other domain), super-resolution low -> high resolution, style transfer content (no
    ``b``), a class-conditional GAN real images ``b`` with their ``labels`` (no ``a``).
    """

    a: Tensor  # float32 (B, 3, H, W) in [0, 1]: the generator's input domain
    b: Tensor  # float32 (B, 3, H', W') in [0, 1]: the output domain (paired target, or unpaired other domain)
    labels: Tensor  # int64 (B,): class labels 1..C of ``b`` (class-conditional generation)
    names: list[str]  # each item's file stem (``a``'s when there is one), for writing predictions
