"""The top-down keypoint modules: losses that stay finite on what data can hold (all-invisible instances,
keypoints pushed out of the crop), the flip test undone exactly for heatmaps and coordinates, metrics
scored in the source image (perfect predictions give NME 0, PCK 1 and pycocotools' AP of the ground
truth on the real COCO sample), and the full-size baselines' parameter counts."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from datamodules.coco_keypoints_datamodule import CocoKeypointsDataModule
from datamodules.keypoint_layouts import coco_person, face_300w
from datamodules.metadata import DatasetMetadata
from lightning_modules.keypoints import (
    HeatmapKeypointModule,
    RegressionKeypointModule,
    boxes_to_source,
    crop_to_source,
)
from lightning_modules.wandb_overlays import (
    GROUND_TRUTH_COLOUR,
    PREDICTION_COLOUR,
    draw_keypoints_and_heatmaps,
)
from models.deeppose import CoordinateRegression
from models.heatmaps import GaussianHeatmapCodec
from models.simple_baseline import SimpleBaseline

ADAM = partial(torch.optim.Adam, lr=1e-3)
CODEC = GaussianHeatmapCodec((64, 64), (16, 16), sigma=1.0)
# three keypoints: a left/right pair and a middle one
METADATA = DatasetMetadata(
    class_names=("thing",),
    label_to_category_id={1: 1},
    keypoint_names=("left", "right", "middle"),
    flip_pairs=((0, 1),),
)


class Constant(nn.Module):
    """Returns fixed outputs for an image batch and for its mirror (to test the flip test's undoing)."""

    def __init__(self, images: Tensor, output: Tensor, mirrored_output: Tensor) -> None:
        super().__init__()
        self.images, self.output, self.mirrored_output = images, output, mirrored_output
        self.weight = nn.Parameter(torch.zeros(()))  # something to optimise

    def forward(self, images: Tensor) -> Tensor:
        if torch.equal(images, self.images):
            return self.output + self.weight
        assert torch.equal(images, self.images.flip(-1))
        return self.mirrored_output + self.weight


def mirrored(keypoints: Tensor, width: float) -> Tensor:
    """Keypoints (B, K, 3) of the mirrored crop: x -> W - x, left and right swapped."""
    flipped = keypoints.clone()
    flipped[..., 0] = width - flipped[..., 0]
    return flipped[:, [1, 0, 2]]


def test_heatmap_flip_test_recovers_sub_pixel_keypoints() -> None:
    torch.manual_seed(0)
    keypoints = torch.cat([torch.rand(4, 3, 2) * 40 + 12, torch.full((4, 3, 1), 2.0)], dim=-1)
    images = torch.rand(4, 3, 64, 64)
    heatmaps, _ = CODEC.encode(keypoints)
    mirrored_heatmaps, _ = CODEC.encode(mirrored(keypoints, 64))
    model = Constant(images, heatmaps, mirrored_heatmaps)
    module = HeatmapKeypointModule(model, METADATA, ADAM, CODEC, flip_test=True, compare_decoders=True)
    prediction = module.predict_crops(images)
    # DARK on exact Gaussians (sigma 1 cell = 4 px) recovers the position to well under a pixel
    assert (prediction.keypoints - keypoints[..., :2]).abs().max() < 0.3
    assert set(prediction.alternatives) == {"argmax", "dark", "soft_argmax"}
    assert prediction.heatmaps.shape == (4, 3, 16, 16)
    # a mirrored prediction that was not swapped back would put left on right
    swapped = HeatmapKeypointModule(
        Constant(images, heatmaps, CODEC.encode(keypoints)[0].flip(-1)), METADATA, ADAM, CODEC
    ).predict_crops(images)
    assert (swapped.keypoints - keypoints[..., :2]).abs().max() > 1


def test_regression_flip_test_undoes_the_mirror_and_the_swap() -> None:
    torch.manual_seed(1)
    keypoints = torch.cat([torch.rand(2, 3, 2) * 64, torch.full((2, 3, 1), 2.0)], dim=-1)
    images = torch.rand(2, 3, 64, 64)
    normalised = keypoints[..., :2] / 64
    model = Constant(images, normalised, mirrored(keypoints, 64)[..., :2] / 64)
    prediction = RegressionKeypointModule(model, METADATA, ADAM).predict_crops(images)
    torch.testing.assert_close(prediction.keypoints, keypoints[..., :2], atol=1e-5, rtol=0)
    assert (prediction.scores == 1).all()


@pytest.mark.parametrize("kind", ["heatmap", "regression"])
def test_losses_stay_finite_without_a_single_usable_keypoint(kind: str) -> None:
    """All-invisible instances and keypoints outside the crop weigh 0: the loss is 0 or finite, never NaN."""
    images = torch.rand(2, 3, 64, 64)
    keypoints = torch.tensor(
        [
            [[10.0, 10.0, 0.0], [20.0, 20.0, 0.0], [0.0, 0.0, 0.0]],  # nothing annotated
            [[-30.0, 10.0, 2.0], [70.0, 90.0, 2.0], [float("nan"), 5.0, 1.0]],  # out of the crop, NaN
        ]
    )
    if kind == "heatmap":
        model = SimpleBaseline(num_keypoints=3, depth=18, deconv_channels=16)
        module = HeatmapKeypointModule(model, METADATA, ADAM, CODEC)
    else:
        model = CoordinateRegression(num_keypoints=3, depth=18)
        module = RegressionKeypointModule(model, METADATA, ADAM)
    losses = module.compute_losses(images, keypoints)
    (loss,) = losses.values()
    assert torch.isfinite(loss) and loss == 0
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_hourglass_intermediate_supervision_sums_the_stacks() -> None:
    keypoints = torch.tensor([[[20.0, 30.0, 2.0], [40.0, 30.0, 2.0], [30.0, 50.0, 1.0]]])
    images = torch.rand(1, 3, 64, 64)
    target, _ = CODEC.encode(keypoints)
    stacks = torch.stack([torch.zeros_like(target), target, 0.5 * target], dim=1)  # (1, 3 stacks, K, h, w)
    module = HeatmapKeypointModule(Constant(images, stacks, stacks), METADATA, ADAM, CODEC, flip_test=False)
    loss = module.compute_losses(images, keypoints)["loss_heatmap"]
    expected = target.pow(2).mean() + 0 + (0.5 * target).pow(2).mean()
    torch.testing.assert_close(loss, expected)
    # the prediction is the last stack's
    torch.testing.assert_close(module.predict_crops(images).heatmaps, 0.5 * target)


def test_sizes_that_disagree_with_the_codec_are_named() -> None:
    module = HeatmapKeypointModule(
        SimpleBaseline(num_keypoints=3, depth=18, deconv_channels=8), METADATA, ADAM, CODEC
    )
    with pytest.raises(ValueError, match="codec's input_size is 64 x 64"):
        module.predict_crops(torch.rand(1, 3, 96, 64))
    other = GaussianHeatmapCodec((64, 64), (32, 32))
    module = HeatmapKeypointModule(
        SimpleBaseline(num_keypoints=3, depth=18, deconv_channels=8), METADATA, ADAM, other
    )
    with pytest.raises(ValueError, match="codec's heatmap_size is 32 x 32"):
        module.predict_crops(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="num_keypoints=5 but the dataset has 3"):
        RegressionKeypointModule(CoordinateRegression(num_keypoints=5, depth=18), METADATA, ADAM)


def test_crop_predictions_map_back_through_crop_to_image() -> None:
    matrix = torch.tensor([[[0.5, 0.0, 10.0], [0.0, 0.25, -3.0]]], dtype=torch.float64)
    points = torch.tensor([[[2.0, 4.0], [0.0, 0.0]]])
    torch.testing.assert_close(
        crop_to_source(points, matrix), torch.tensor([[[11.0, -2.0], [10.0, -3.0]]], dtype=torch.float64)
    )
    boxes = torch.tensor([[0.0, 0.0, 4.0, 8.0]])
    torch.testing.assert_close(
        boxes_to_source(boxes, matrix), torch.tensor([[10.0, -3.0, 12.0, -1.0]], dtype=torch.float64)
    )


class GroundTruthModule(HeatmapKeypointModule):
    """Predicts the batch's own keypoints (set before each step), to test the evaluation path."""

    def predict_crops(self, images: Tensor):
        heatmaps, _ = self.codec.encode(self.current)
        prediction = super().predict_crops(images)
        prediction.keypoints = self.current[..., :2].clone()
        prediction.scores = torch.ones_like(prediction.scores)
        prediction.heatmaps = heatmaps
        return prediction

    def evaluation_step(self, batch, split):
        self.current = torch.cat([target["keypoints"] for target in batch[1]])
        super().evaluation_step(batch, split)


@pytest.mark.parametrize(
    ("name", "layout", "expected_ap"), [("coco", coco_person, 0.8939), ("300w", face_300w, None)]
)
def test_perfect_predictions_score_perfectly_in_the_source_image(
    shared_data: Path, name: str, layout, expected_ap: float | None
) -> None:
    """On the real samples, predicting the crops' own keypoints gives NME 0 and PCK 1 after the mapping
    back through crop_to_image, and on COCO the AP pycocotools gives the ground truth itself (0.8939:
    persons without keypoints count as ground truth, shared/data/README.md)."""
    folder, annotation_file = {
        "coco": ("coco_sample", "coco_sample/test_coco.json"),
        "300w": ("landmarks_sample/300w", "landmarks_sample/300w/test_300w.json"),
    }[name]
    datamodule = CocoKeypointsDataModule(
        shared_data / folder,
        shared_data / annotation_file,
        shared_data / folder,
        shared_data / annotation_file,
        layout(),
        input_size=(64, 64),
        batch_size=4,
        num_workers=0,
    )
    model = SimpleBaseline(num_keypoints=layout().num_keypoints, depth=18, deconv_channels=8)
    module = GroundTruthModule(model, datamodule.metadata, ADAM, CODEC, flip_test=False)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (results,) = trainer.validate(module, datamodule)
    assert results["val/keypoints/NME"] < 1e-5
    assert results["val/keypoints/PCK@0.05"] == 1.0
    if expected_ap is None:
        assert "val/keypoints/AP" not in results  # no OKS sigmas for faces
    else:
        assert results["val/keypoints/AP"] == pytest.approx(expected_ap, abs=1e-4)


def test_full_size_parameter_counts() -> None:
    """SimpleBaseline ResNet-50 with 17 keypoints as the official ``pose_resnet`` (ResNet-50 without fc:
    23,508,032; deconvolutions 2048->256->256->256 4x4 without bias: 10,485,760; BN: 1,536; final 1x1:
    4,369) and mmpose's ResNet-50 DeepPose (ResNet-50 + FC 2048 -> 34)."""
    with torch.device("meta"):
        simple_baseline = SimpleBaseline()
        deeppose = CoordinateRegression()
    assert sum(p.numel() for p in simple_baseline.parameters()) == 33_999_697
    assert sum(p.numel() for p in deeppose.parameters()) == 23_577_698


def test_overlay_draws_ground_truth_prediction_skeleton_and_heatmaps() -> None:
    image = torch.zeros(3, 64, 64)
    target = torch.tensor([[16.5, 16.5, 2.0], [48.5, 16.5, 2.0], [32.5, 48.5, 0.0]])  # the last unannotated
    predicted = torch.tensor([[16.5, 40.5], [48.5, 40.5], [32.5, 56.5]])
    heatmaps, _ = CODEC.encode(target[None])
    canvas = draw_keypoints_and_heatmaps(image, predicted, target, [(0, 1), (1, 2)], heatmaps[0])
    assert canvas.shape == (256, 512, 3) and canvas.dtype == np.uint8  # 4x the crop, heatmaps beside it
    green, red = np.array(GROUND_TRUTH_COLOUR), np.array(PREDICTION_COLOUR)
    assert (canvas[66, 66] == green).all() and (canvas[66, 194] == green).all()  # (16.5, 16.5) x 4
    assert canvas[66, 130, 1] > 150 and canvas[66, 130, 0] == 0  # the (anti-aliased) skeleton edge
    assert not (canvas[194, 130] == green).all()  # the unannotated keypoint is not drawn
    assert (canvas[162, 66] == red).all() and canvas[162, 130, 0] > 150  # prediction and its edge
    right = canvas[:, 256:]
    assert right[66, 66].tolist() != right[10, 10].tolist()  # a heatmap peak stands out of the background
