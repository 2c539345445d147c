"""The "FCN score" of pix2pix (Isola et al., CVPR 2017, Sec. 4.1; Table 1): an off-the-shelf semantic
segmentation network segments the GENERATED photos, and its labels are scored against the ground-truth
labels of the input label map -- per-pixel accuracy, per-class accuracy (mean over classes) and class IoU
(mean over classes) -- "if the generated images are realistic, classifiers trained on real images will be
able to classify the synthesized image correctly as well".

The official evaluation (junyanz/pytorch-CycleGAN-and-pix2pix ``scripts/eval_cityscapes/``, from
clockwork-fcn): each generated 256 x 256 photo is saved (8 bits), resized bilinearly to its gtFine label's
1024 x 2048 (``scipy.misc.imresize``) and segmented by a Caffe FCN-8s (Long et al. 2015) that was trained
on Cityscapes photos resized to 256 x 256 and back to 1024 x 2048 (BGR, 0-255 minus the mean (72.78044,
83.21195, 73.45286)); the argmax of its 20 outputs is histogrammed (``fast_hist``) against the gtFine
``labelIds`` mapped to the 19 train ids (void: 255, ignored) over the 500 val images, and ``get_scores``
reduces the summed histogram: per-pixel accuracy ``diag.sum() / hist.sum()``, per-class accuracy
``nanmean(diag / hist.sum(1))``, IoU ``nanmean(diag / (hist.sum(1) + hist.sum(0) - diag))``.

``FCNScore`` reproduces this, with these differences:

- ground truth: the pix2pix Cityscapes A|B files carry the label map as a 256 x 256 colour image (the
  gtFine ``_color.png`` resized and JPEG-compressed, ``datasets/prepare_cityscapes_dataset.py``), decoded
  here by nearest palette colour (``cityscapes_colours_to_train_ids``), not the full-resolution gtFine ids:
  region boundaries are blended by the resize, so a few boundary pixels differ from the official labels;
- resolution: the network's logits are resized (bilinear) to the label's size before the argmax.
  ``ExportedSegmenter(input_size=(1024, 2048))`` gives the converted official FCN-8s the input size it was
  trained for; its logits are then brought down to the 256 x 256 labels;
- predictions outside the ``num_classes`` (the official FCN-8s's 20th output) count as misses of their
  pixel's class. The official ``fast_hist`` instead bins a prediction 19 for label ``a`` as (``a + 1``,
  road), and drops the whole frame where a bicycle pixel is predicted 19 (its bincount then has the wrong
  length);
- ``count_absent_classes=True`` (default) keeps the official ``1e-12`` of ``get_scores``'s denominators,
  which makes 0 / 0 a 0: a class absent from the ground truth scores 0 accuracy (and 0 IoU when also never
  predicted), so ``nanmean`` is a plain mean over all 19 classes. On the full val set every class is
  present and this changes nothing; on a subset use ``count_absent_classes=False``, where such classes
  are NaN and left out of the means.

The segmentation network comes from a local file (nothing is downloaded, ``models.pretrained_weights``):
``load_segmentation_network`` / ``ExportedSegmenter`` read a TorchScript file (``torch.jit.save``) or a
``torch.export`` program (``.pt2``, ``torch.export.save``), the formats any PyTorch Cityscapes segmenter
(mmsegmentation, a torchvision FCN / DeepLabV3 trained on Cityscapes -- torchvision ships no Cityscapes
weights) exports to. The exported module takes float RGB images (B, 3, H, W) in [0, 1] and returns logits
(B, C >= 19, h, w) over the Cityscapes train ids, with its own normalisation inside::

    class ForExport(nn.Module):
        def __init__(self, model, mean, std):  # e.g. an mmsegmentation / torchvision model
            super().__init__()
            self.model = model.eval()
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

        def forward(self, images):  # RGB in [0, 1]
            return self.model((images - self.mean) / self.std)["out"]  # torchvision returns a dict

    torch.jit.trace(ForExport(model, mean, std), torch.rand(1, 3, 256, 256)).save("fcn_cityscapes.pt")

(trace on the CPU, at the size it will see). The official FCN-8s is a Caffe model
(``fcn-8s-cityscapes.caffemodel`` + ``deploy.prototxt``, 512 MB, ``scripts/eval_cityscapes/
download_fcn8s.sh``); PyTorch cannot read it. Convert it by building the FCN-8s of ``deploy.prototxt`` in
PyTorch (VGG16 convolutions with ``pad: 100`` on conv1_1, ``fc6_cs``/``fc7_cs`` as 7 x 7 and 1 x 1
convolutions, 20-channel ``score_fr``/``score_pool4``/``score_pool3``, bias-free deconvolutions
``upscore2``/``upscore_pool4``/``upscore8`` and the Crop offsets 5, 9 and 31), copying each layer's blobs
(read with pycaffe's ``net.params`` or the caffe.proto protobuf), wrapping it with the preprocessing
(``images * 255``, RGB -> BGR, minus the mean above) and tracing it at 1 x 3 x 1024 x 2048. Check the
conversion by segmenting real Cityscapes val photos resized to 256 x 256: the paper's "ground truth" row
(Table 1: per-pixel 0.80, per-class 0.26, IoU 0.21).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import Metric
from torchmetrics.functional.classification.confusion_matrix import (
    _multiclass_confusion_matrix_format,
    _multiclass_confusion_matrix_update,
)

from models.pretrained_weights import local_weights_file

# cityscapesscripts/helpers/labels.py: the 19 train ids (0..18), their names and colours.
CITYSCAPES_TRAIN_CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
)
# The colours of labels.py's ignored labels (train id 255) that no train class shares: unlabeled, ego
# vehicle, rectification border, out of roi and static are all black; then dynamic, ground, parking, rail
# track, guard rail, bridge, tunnel, caravan, trailer. (polegroup and license plate have the colours of
# pole and car, and decode as those.)
CITYSCAPES_VOID_COLOURS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (111, 74, 0),
    (81, 0, 81),
    (250, 170, 160),
    (230, 150, 140),
    (180, 165, 180),
    (150, 100, 100),
    (150, 120, 90),
    (0, 0, 90),
    (0, 0, 110),
)
OFFICIAL_EPSILON = 1e-12  # get_scores's denominators


def cityscapes_colours_to_train_ids(
    image: Tensor, ignore_index: int = 255, max_distance: float | None = None
) -> Tensor:
    """The Cityscapes train ids (H, W) int64 of a colour label map (3, H, W) -- or (B, H, W) of (B, 3, H, W)
    -- as float RGB in [0, 1] or uint8: each pixel takes the nearest (Euclidean, 0-255 RGB) colour among the
    19 train colours and the void colours (``CITYSCAPES_VOID_COLOURS``), whose pixels become
    `ignore_index`; farther than `max_distance` from every colour: `ignore_index` too (None: no limit).

    Nearest rather than exact colours, because the pix2pix Cityscapes A|B files are JPEGs of the gtFine
    ``_color.png`` resized to 256 x 256: compression shifts colours by a few levels and the resize blends
    them at region boundaries. The official FCN-score evaluation reads the full-resolution gtFine
    ``labelIds`` instead (module docstring)."""
    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"expected a colour label map (3, H, W) or (B, 3, H, W), got {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        rgb = image.float()
    elif image.is_floating_point():
        rgb = image.float() * 255.0
    else:
        raise ValueError(f"expected float RGB in [0, 1] or uint8, got {image.dtype}")
    palette = torch.tensor(
        [colour for _, colour in CITYSCAPES_TRAIN_CLASSES] + list(CITYSCAPES_VOID_COLOURS),
        dtype=torch.float32,
        device=image.device,
    )
    train_ids = torch.full((len(palette),), ignore_index, dtype=torch.long, device=image.device)
    train_ids[: len(CITYSCAPES_TRAIN_CLASSES)] = torch.arange(len(CITYSCAPES_TRAIN_CLASSES))
    pixels = rgb.movedim(-3, -1).reshape(-1, 3)
    # exact differences, not the |x|^2 - 2xy + |y|^2 expansion; ties go to the first colour (a train class)
    distances = torch.cdist(pixels, palette, compute_mode="donot_use_mm_for_euclid_dist")
    nearest, index = distances.min(dim=1)
    labels = train_ids[index]
    if max_distance is not None:
        labels[nearest > max_distance] = ignore_index
    return labels.reshape(rgb.shape[:-3] + rgb.shape[-2:])


def load_segmentation_network(weights_path: str | Path | None) -> nn.Module:
    """The segmentation network saved at the local `weights_path`, on the CPU and frozen: a TorchScript file
    (``torch.jit.save``; eval mode) or a ``torch.export`` program (``.pt2``; its mode is the one it was
    exported in). Raises FileNotFoundError naming the path when it is missing."""
    checked = local_weights_file(
        weights_path,
        network="the FCN-score segmentation network",
        source="(or export) a Cityscapes semantic segmentation network as TorchScript or torch.export "
        "(.pt2) (metrics.fcn_score's docstring: how to convert the official Caffe FCN-8s)",
    )
    assert checked is not None  # random weights are never asked for here
    if checked.suffix == ".pt2":
        network = torch.export.load(str(checked)).module()
    else:
        network = torch.jit.load(str(checked), map_location="cpu")
        network.eval()
    for parameter in network.parameters():  # a ScriptModule has no requires_grad_()
        parameter.requires_grad_(False)
    return network


class ExportedSegmenter(nn.Module):
    """A frozen segmentation network read from a local file (``load_segmentation_network``): float RGB
    images (B, 3, H, W) in [0, 1] -> logits (B, C, h, w); the ``fcn_score`` of ``lightning_modules.pix2pix.
    Pix2Pix``, e.g. ``{class_path: metrics.fcn_score.ExportedSegmenter, init_args:
    {weights_path: data/pretrained/fcn8s_cityscapes.pt, input_size: [1024, 2048]}}``.

    Args:
        weights_path: the TorchScript (``.pt``) or ``torch.export`` (``.pt2``) file of the network.
        input_size: (height, width) the images are resized to (bilinear) before the network: the converted
            official FCN-8s expects (1024, 2048) (module docstring); None: as given.
        num_classes: outputs of the random network of `random_weights_for_tests`.
        random_weights_for_tests: a random 1 x 1 convolution instead of the file, with a warning (tests).

    It stays in eval mode: ``train()`` does not reach the network (a ``torch.export`` module refuses it).
    """

    def __init__(
        self,
        weights_path: str | Path | None = None,
        input_size: tuple[int, int] | None = None,
        num_classes: int = len(CITYSCAPES_TRAIN_CLASSES),
        random_weights_for_tests: bool = False,
    ) -> None:
        super().__init__()
        if input_size is not None and (len(input_size) != 2 or min(input_size) < 1):
            raise ValueError(f"input_size must be (height, width) or None, got {input_size}")
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        if random_weights_for_tests:
            local_weights_file(
                weights_path, network="ExportedSegmenter", source="", random_weights_for_tests=True
            )  # the warning (or the error when a path is given too)
            self.network: nn.Module = nn.Conv2d(3, num_classes, 1).requires_grad_(False)
        else:
            self.network = load_segmentation_network(weights_path)
        self.training = False

    def train(self, mode: bool = True) -> ExportedSegmenter:
        """Stays in eval mode, the network untouched (frozen weights, batch norm statistics as exported)."""
        return self

    def forward(self, images: Tensor) -> Tensor:
        if self.input_size is not None and tuple(images.shape[-2:]) != self.input_size:
            images = F.interpolate(images, size=self.input_size, mode="bilinear", align_corners=False)
        return self.network(images)


class FCNScore(Metric):
    """The FCN score (module docstring): ``update(generated_images, label_maps)`` segments the generated
    photos (B, 3, H, W) in [0, 1] (rounded to 8 bits, as the saved PNGs the official script reads) with the
    frozen `segmentation_network` (float32, autocast off), resizes its logits (B, C >= num_classes, h, w)
    bilinearly to the labels' size, takes the argmax and adds it to the confusion matrix against
    `label_maps` (B, H, W) int64 train ids (`ignore_index`: void). ``compute()`` returns
    ``{"per_pixel_accuracy", "per_class_accuracy", "class_IoU"}`` as ``get_scores`` does.

    State: ``confmat`` (C + 1, C + 1) int64 pixel counts, rows the ground truth, columns the prediction,
    index C a prediction outside the C classes (never a ground truth); a "sum" state, so DDP ranks add
    their counts exactly. Counted with torchmetrics' multiclass confusion-matrix functions.

    Args:
        segmentation_network: images in [0, 1] -> logits over the train ids (e.g. ``ExportedSegmenter``);
            frozen here and kept in eval mode.
        num_classes: 19, the Cityscapes train ids.
        ignore_index: the void label of `label_maps`.
        count_absent_classes: True: the official ``get_scores`` (a class absent from the ground truth
            counts as 0 accuracy, absent from both as 0 IoU); False: they are left out of the means.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        segmentation_network: nn.Module,
        num_classes: int = len(CITYSCAPES_TRAIN_CLASSES),
        ignore_index: int = 255,
        count_absent_classes: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(segmentation_network, nn.Module):
            raise TypeError(
                f"segmentation_network must be an nn.Module, got {type(segmentation_network).__name__}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is one of the {num_classes} classes")
        for parameter in segmentation_network.parameters():
            parameter.requires_grad_(False)
        if not isinstance(segmentation_network, ExportedSegmenter):
            segmentation_network.eval()
        self.segmentation_network = segmentation_network
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.count_absent_classes = count_absent_classes
        size = num_classes + 1
        self.add_state("confmat", torch.zeros(size, size, dtype=torch.long), dist_reduce_fx="sum")

    def train(self, mode: bool = True) -> FCNScore:
        """The metric's mode changes; the segmentation network stays in eval mode."""
        self.training = mode
        return self

    def update(self, generated_images: Tensor, label_maps: Tensor) -> None:
        if generated_images.ndim != 4 or generated_images.shape[1] != 3:
            raise ValueError(f"expected generated images (B, 3, H, W), got {tuple(generated_images.shape)}")
        if not generated_images.is_floating_point():
            raise ValueError(f"expected float generated images in [0, 1], got {generated_images.dtype}")
        if label_maps.ndim != 3 or label_maps.shape[0] != generated_images.shape[0]:
            raise ValueError(
                f"expected label maps (B, H, W) for {generated_images.shape[0]} images, "
                f"got {tuple(label_maps.shape)}"
            )
        if label_maps.is_floating_point():
            raise ValueError(f"expected integer label maps (train ids), got {label_maps.dtype}")
        known = (label_maps == self.ignore_index) | ((label_maps >= 0) & (label_maps < self.num_classes))
        if not bool(known.all()):
            unknown = label_maps[~known].unique()[:10].tolist()
            raise ValueError(
                f"label maps hold values {unknown} that are neither a train id 0..{self.num_classes - 1} nor "
                f"ignore_index {self.ignore_index}"
            )
        images = torch.round(generated_images.detach().float().clamp(0.0, 1.0) * 255.0) / 255.0
        with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
            logits = self.segmentation_network(images)
        if logits.ndim != 4 or logits.shape[0] != images.shape[0] or logits.shape[1] < self.num_classes:
            raise ValueError(
                f"the segmentation network must return logits (B, C >= {self.num_classes}, h, w) for "
                f"{images.shape[0]} images, returned {tuple(logits.shape)}"
            )
        if logits.shape[-2:] != label_maps.shape[-2:]:
            logits = F.interpolate(
                logits.float(), size=label_maps.shape[-2:], mode="bilinear", align_corners=False
            )
        predictions = logits.argmax(dim=1).clamp_max(self.num_classes)  # C: outside the classes
        predictions, targets = _multiclass_confusion_matrix_format(
            predictions, label_maps.long(), self.ignore_index
        )
        self.confmat += _multiclass_confusion_matrix_update(predictions, targets, self.num_classes + 1)

    def compute(self) -> dict[str, Tensor]:
        hist = self.confmat.double()
        classes = self.num_classes
        hits = hist.diagonal()[:classes]
        labelled = hist[:classes].sum(dim=1)
        predicted = hist[:, :classes].sum(dim=0)
        epsilon = OFFICIAL_EPSILON if self.count_absent_classes else 0.0
        return {
            "per_pixel_accuracy": hits.sum() / (hist.sum() + epsilon),
            "per_class_accuracy": (hits / (labelled + epsilon)).nanmean(),
            "class_IoU": (hits / (labelled + predicted - hits + epsilon)).nanmean(),
        }
