"""The FCN score of pix2pix (metrics.fcn_score) and its wiring into Pix2Pix.

The scores are compared with a numpy re-implementation of the official ``scripts/eval_cityscapes/util.py``
(``fast_hist`` over the label/prediction pairs, ``get_scores`` with its ``1e-12`` denominators) on random
predictions with ignored pixels and classes absent from the ground truth, the predictions or both; float64
throughout, so they agree to 1e-12 relative. The segmentation networks are fakes whose output is known: one
reads the predicted class from the image's red channel, one segments by palette colour."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch import Trainer
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torchmetrics.utilities.data import dim_zero_sum

from datamodules.metadata import DatasetMetadata
from lightning_modules.pix2pix import Pix2Pix
from metrics.fcn_score import (
    CITYSCAPES_TRAIN_CLASSES,
    CITYSCAPES_VOID_COLOURS,
    ExportedSegmenter,
    FCNScore,
    cityscapes_colours_to_train_ids,
    load_segmentation_network,
)
from models.patch_gan import PatchGANDiscriminator
from models.unet_generator import UNetGenerator

CLASSES = len(CITYSCAPES_TRAIN_CLASSES)
IGNORE = 255
TRAIN_COLOURS = torch.tensor([colour for _, colour in CITYSCAPES_TRAIN_CLASSES], dtype=torch.uint8)
RANDOM_WEIGHTS = pytest.mark.filterwarnings("ignore:.*RANDOM weights:UserWarning")
JIT_DEPRECATED = pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning")


# --- the official evaluation, in numpy ------------------------------------------------------------------


def official_fast_hist(labels: np.ndarray, predictions: np.ndarray, n: int) -> np.ndarray:
    keep = (labels >= 0) & (labels < n)
    return np.bincount(n * labels[keep].astype(int) + predictions[keep], minlength=n**2).reshape(n, n)


def official_get_scores(hist: np.ndarray) -> tuple[float, float, float]:
    diag = np.diag(hist)
    accuracy = diag.sum() / (hist.sum() + 1e-12)
    class_accuracy = diag / (hist.sum(1) + 1e-12)
    iou = diag / (hist.sum(1) + hist.sum(0) - diag + 1e-12)
    return accuracy, np.nanmean(class_accuracy), np.nanmean(iou)


def nanmean_scores(hist: np.ndarray) -> tuple[float, float, float]:
    """get_scores without the epsilon: classes with 0 / 0 are NaN and left out of the means."""
    diag = np.diag(hist)
    with np.errstate(invalid="ignore", divide="ignore"):
        class_accuracy = diag / hist.sum(1)
        iou = diag / (hist.sum(1) + hist.sum(0) - diag)
    return diag.sum() / hist.sum(), np.nanmean(class_accuracy), np.nanmean(iou)


# --- fake segmentation networks -------------------------------------------------------------------------


class RedChannelClasses(nn.Module):
    """One-hot logits (B, outputs, H, W) of the class round(255 * red) of each pixel."""

    def __init__(self, outputs: int = CLASSES) -> None:
        super().__init__()
        self.outputs = outputs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        classes = torch.round(images[:, 0] * 255).long()
        return F.one_hot(classes, self.outputs).permute(0, 3, 1, 2).float()


class PaletteClasses(nn.Module):
    """One-hot logits over 19 + 1 outputs of the decoded palette colours (void -> the 20th output)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        ids = cityscapes_colours_to_train_ids(images, ignore_index=CLASSES)
        return F.one_hot(ids, CLASSES + 1).permute(0, 3, 1, 2).float()


def images_predicting(predictions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] that ``RedChannelClasses`` segments as `predictions` (B, H, W)."""
    images = torch.rand((*predictions.shape[:1], 3, *predictions.shape[1:]), generator=generator)
    images[:, 0] = predictions.float() / 255
    return images


def random_batches(generator: torch.Generator, count: int = 3, size: tuple[int, int] = (24, 32)):
    """Labels over the classes but 3, 7 and 5 (5 only predicted), 9 never predicted, ~10% ignored;
    predictions right ~60% of the time."""
    labelled = torch.tensor([c for c in range(CLASSES) if c not in (3, 5, 7)])
    predicted = torch.tensor([c for c in range(CLASSES) if c not in (3, 7, 9)])
    for _ in range(count):
        labels = labelled[torch.randint(len(labelled), (2, *size), generator=generator)]
        guesses = predicted[torch.randint(len(predicted), (2, *size), generator=generator)]
        right = (torch.rand(labels.shape, generator=generator) < 0.6) & (labels != 9)
        predictions = torch.where(right, labels, guesses)
        labels[torch.rand(labels.shape, generator=generator) < 0.1] = IGNORE
        yield labels, predictions


def as_numbers(scores: dict[str, torch.Tensor]) -> tuple[float, float, float]:
    return tuple(float(scores[key]) for key in ("per_pixel_accuracy", "per_class_accuracy", "class_IoU"))


# --- the metric ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count_absent_classes", [True, False])
def test_scores_equal_the_official_get_scores(count_absent_classes: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    metric = FCNScore(RedChannelClasses(), count_absent_classes=count_absent_classes)
    hist = np.zeros((CLASSES, CLASSES), dtype=np.int64)
    for labels, predictions in random_batches(generator):
        metric.update(images_predicting(predictions, generator), labels)
        hist += official_fast_hist(labels.numpy().ravel(), predictions.numpy().ravel(), CLASSES)
    np.testing.assert_array_equal(metric.confmat[:CLASSES, :CLASSES].numpy(), hist)
    assert int(metric.confmat[CLASSES].sum() + metric.confmat[:, CLASSES].sum()) == 0
    expected = official_get_scores(hist) if count_absent_classes else nanmean_scores(hist)
    np.testing.assert_allclose(as_numbers(metric.compute()), expected, rtol=1e-12)
    # classes 3 and 7 absent from both, 5 from the labels: 0 in the official means, left out of the others
    assert official_get_scores(hist)[1] < nanmean_scores(hist)[1]
    assert official_get_scores(hist)[2] < nanmean_scores(hist)[2]


def test_predictions_outside_the_classes_are_misses() -> None:
    """A 20-output network (the official FCN-8s): its 20th class is a miss for its pixel's class."""
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(CLASSES, (2, 16, 16), generator=generator)
    predictions = torch.where(torch.rand(labels.shape, generator=generator) < 0.5, labels, CLASSES)
    metric = FCNScore(RedChannelClasses(outputs=CLASSES + 1), count_absent_classes=False)
    metric.update(images_predicting(predictions, generator), labels)
    hist = np.bincount(
        (CLASSES + 1) * labels.numpy().ravel() + predictions.numpy().ravel(),
        minlength=CLASSES * (CLASSES + 1),
    ).reshape(CLASSES, CLASSES + 1)
    hits = np.diag(hist[:, :CLASSES])
    expected = (
        hits.sum() / hist.sum(),
        np.mean(hits / hist.sum(1)),
        np.mean(hits / (hist.sum(1) + hist[:, :CLASSES].sum(0) - hits)),
    )
    np.testing.assert_allclose(as_numbers(metric.compute()), expected, rtol=1e-12)


def test_logits_are_resized_to_the_labels() -> None:
    """Logits of one class at 3 x 5 cover every pixel of the 16 x 24 labels."""

    class OnlyCars(nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(images.shape[0], CLASSES, 3, 5)
            logits[:, 13] = 1.0
            return logits

    labels = torch.randint(CLASSES, (2, 16, 24), generator=torch.Generator().manual_seed(2))
    labels[:, :4] = IGNORE
    metric = FCNScore(OnlyCars())
    metric.update(torch.rand(2, 3, 16, 24), labels)
    assert int(metric.confmat[:, 13].sum()) == int((labels != IGNORE).sum())
    expected = float((labels == 13).sum()) / float((labels != IGNORE).sum())
    assert float(metric.compute()["per_pixel_accuracy"]) == pytest.approx(expected, rel=1e-12)


def test_perfect_segmentation_and_absent_classes() -> None:
    """The label map's own colours segmented by palette: every pixel right; with 4 of 19 classes present,
    the official means count the 15 absent ones as 0."""
    ids = torch.tensor([0, 2, 10, 13]).repeat_interleave(8)[:, None].expand(32, 8)  # 4 stripes
    image = TRAIN_COLOURS[ids].permute(2, 0, 1)[None].float() / 255
    labels = cityscapes_colours_to_train_ids(image)
    assert torch.equal(labels[0], ids)
    scores = {}
    for count_absent_classes in (True, False):
        metric = FCNScore(PaletteClasses(), count_absent_classes=count_absent_classes)
        metric.update(image, labels)
        scores[count_absent_classes] = as_numbers(metric.compute())
    assert scores[False] == pytest.approx((1.0, 1.0, 1.0))
    assert scores[True] == pytest.approx((1.0, 4 / 19, 4 / 19))


def test_two_ranks_states_merge_into_one() -> None:
    """The confusion matrix is a "sum" state: two ranks' metrics merged equal one metric over all."""
    generator = torch.Generator().manual_seed(3)
    batches = [
        (images_predicting(predictions, generator), labels)
        for labels, predictions in random_batches(generator, count=4)
    ]
    whole, first, second = (FCNScore(RedChannelClasses()) for _ in range(3))
    for index, batch in enumerate(batches):
        whole.update(*batch)
        (first if index % 2 else second).update(*batch)
    assert first._reductions["confmat"] is dim_zero_sum
    first.merge_state(second)
    assert torch.equal(first.confmat, whole.confmat)
    assert as_numbers(first.compute()) == as_numbers(whole.compute())


def test_bad_labels_and_networks_are_refused() -> None:
    metric = FCNScore(RedChannelClasses())
    images = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"values \[19\]"):
        metric.update(images, torch.full((1, 8, 8), CLASSES))
    with pytest.raises(ValueError, match="integer label maps"):
        metric.update(images, torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="C >= 19"):
        FCNScore(RedChannelClasses(outputs=4)).update(images, torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="ignore_index 3"):
        FCNScore(RedChannelClasses(), ignore_index=3)


# --- colour label maps -----------------------------------------------------------------------------------


def test_palette_colours_decode_to_train_ids_and_void_to_ignore() -> None:
    colours = torch.cat([TRAIN_COLOURS, torch.tensor(CITYSCAPES_VOID_COLOURS, dtype=torch.uint8)])
    image = colours.T.reshape(3, 1, -1)  # one pixel per colour
    expected = torch.tensor(list(range(CLASSES)) + [IGNORE] * len(CITYSCAPES_VOID_COLOURS))
    assert torch.equal(cityscapes_colours_to_train_ids(image), expected[None])
    assert torch.equal(cityscapes_colours_to_train_ids(image.float() / 255), expected[None])
    batched = cityscapes_colours_to_train_ids(torch.stack([image, image]).float() / 255, ignore_index=-1)
    assert batched.shape == (2, 1, len(colours))
    assert torch.equal(batched[1, 0], torch.where(expected == IGNORE, -1, expected))


def test_perturbed_colours_decode_to_the_nearest() -> None:
    generator = torch.Generator().manual_seed(4)
    ids = torch.randint(CLASSES, (40, 40), generator=generator)
    image = TRAIN_COLOURS[ids].permute(2, 0, 1).float()
    noise = torch.randint(-6, 7, image.shape, generator=generator).float()
    noisy = ((image + noise).clamp(0, 255) / 255).float()
    assert torch.equal(cityscapes_colours_to_train_ids(noisy), ids)
    far = torch.tensor([60.0, 200.0, 60.0]).view(3, 1, 1) / 255  # 78.7 from vegetation, the nearest
    assert cityscapes_colours_to_train_ids(far).item() == 8
    assert cityscapes_colours_to_train_ids(far, max_distance=80).item() == 8
    assert cityscapes_colours_to_train_ids(far, max_distance=78).item() == IGNORE


def test_jpeg_label_maps_decode_back() -> None:
    """The official A|B files are JPEGs (quality 100, no chroma subsampling) of the colour label maps."""
    ids = torch.randint(CLASSES, (8, 8), generator=torch.Generator().manual_seed(5))
    ids = ids.repeat_interleave(8, 0).repeat_interleave(8, 1)  # 8 x 8 blocks: 64 x 64 pixels
    buffer = io.BytesIO()
    Image.fromarray(TRAIN_COLOURS[ids].numpy()).save(buffer, format="JPEG", quality=100, subsampling=0)
    decoded = torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(cityscapes_colours_to_train_ids(decoded), ids)


# --- the segmentation network from a file ----------------------------------------------------------------


def _tiny_segmenter() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, CLASSES, 1)).eval()


@JIT_DEPRECATED
def test_torchscript_round_trip(tmp_path) -> None:
    network = _tiny_segmenter()
    path = tmp_path / "segmenter.pt"
    torch.jit.trace(network, torch.rand(1, 3, 16, 16)).save(str(path))
    images = torch.rand(2, 3, 20, 24)
    loaded = load_segmentation_network(path)
    assert not any(parameter.requires_grad for parameter in loaded.parameters())
    assert torch.equal(loaded(images), network(images))
    segmenter = ExportedSegmenter(path)
    segmenter.train()
    assert not segmenter.training and not segmenter.network.training
    assert torch.equal(segmenter(images), network(images))
    resized = ExportedSegmenter(str(path), input_size=(32, 48))(images)
    expected = network(F.interpolate(images, size=(32, 48), mode="bilinear", align_corners=False))
    assert torch.equal(resized, expected)


def test_torch_export_round_trip(tmp_path) -> None:
    network = _tiny_segmenter()
    path = tmp_path / "segmenter.pt2"
    dims = {0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
    torch.export.save(torch.export.export(network, (torch.rand(2, 3, 16, 16),), dynamic_shapes=(dims,)), path)
    images = torch.rand(1, 3, 20, 24)
    segmenter = ExportedSegmenter(path)
    segmenter.train()  # would raise inside an exported module
    assert torch.equal(segmenter(images), network(images))


def test_missing_network_file_is_a_clear_error(tmp_path) -> None:
    missing = tmp_path / "fcn8s_cityscapes.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_segmentation_network(missing)
    with pytest.raises(FileNotFoundError, match="needs a local weights file"):
        ExportedSegmenter()
    with pytest.warns(UserWarning, match="RANDOM weights"):
        segmenter = ExportedSegmenter(random_weights_for_tests=True)
    assert segmenter(torch.rand(1, 3, 8, 8)).shape == (1, CLASSES, 8, 8)


@JIT_DEPRECATED
def test_yaml_class_path_builds_the_segmenter(tmp_path) -> None:
    path = tmp_path / "fcn8s_cityscapes.pt"
    torch.jit.trace(_tiny_segmenter(), torch.rand(1, 3, 16, 16)).save(str(path))
    parser = ArgumentParser()
    parser.add_argument("--fcn_score", type=nn.Module | None)
    config = parser.parse_object(
        {
            "fcn_score": {
                "class_path": "metrics.fcn_score.ExportedSegmenter",
                "init_args": {"weights_path": str(path), "input_size": [1024, 2048]},
            }
        }
    )
    segmenter = parser.instantiate(config).fcn_score
    assert isinstance(segmenter, ExportedSegmenter) and segmenter.input_size == (1024, 2048)


# --- Pix2Pix ---------------------------------------------------------------------------------------------


@RANDOM_WEIGHTS
def test_pix2pix_logs_the_fcn_score_of_its_translations() -> None:
    torch.manual_seed(0)
    segmenter = ExportedSegmenter(random_weights_for_tests=True)
    module = Pix2Pix(
        UNetGenerator(num_downs=5, base_channels=8),
        PatchGANDiscriminator(in_channels=6, base_channels=8, num_layers=2),
        DatasetMetadata.without_classes(),
        paper_inference=False,  # deterministic translations, to recompute the score here
        fcn_score=segmenter,
        optimizer=torch.optim.Adam,
    )
    generator = torch.Generator().manual_seed(6)
    batches = []
    for index in range(2):
        ids = torch.randint(CLASSES, (2, 4, 4), generator=generator)
        ids = ids.repeat_interleave(8, 1).repeat_interleave(8, 2)
        a = TRAIN_COLOURS[ids].permute(0, 3, 1, 2).float() / 255
        a[:, :, :4] = 0.0  # a void (black) strip
        batches.append(
            {"a": a, "b": torch.rand(2, 3, 32, 32, generator=generator), "names": [f"{index}"] * 2}
        )
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    logged = trainer.callback_metrics
    expected = FCNScore(segmenter)
    for batch in batches:
        expected.update(module.translate(batch), cityscapes_colours_to_train_ids(batch["a"]))
    for key, value in expected.compute().items():
        assert float(logged[f"val/FCN_{key}"]) == pytest.approx(float(value), rel=1e-6)
    assert {"val/L1", "val/PSNR"} <= set(logged)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert not [key for key in checkpoint["state_dict"] if "segmentation_network" in key]
