"""DensePose R-CNN assembly: detectron2's full-size count, which RoIs the dense branch trains on, its losses
through the detector, and the eval outputs."""

from __future__ import annotations

import pytest
import torch

from models.densepose_head import DensePoseOutputs
from models.densepose_rcnn import DensePoseRCNN, DensePoseRoIHeads
from models.mask_rcnn import MaskRCNN

SMALL = dict(
    backbone_depth=18,
    frozen_bn=False,
    trainable_backbone_layers=5,
    fpn_channels=32,
    representation_size=64,
    min_size=64,
    max_size=64,
    rpn_post_nms_top_n_train=64,
    box_batch_size_per_image=64,
)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _small(**settings) -> DensePoseRCNN:
    torch.manual_seed(0)
    detector = MaskRCNN(num_classes=2, mask_branch=False, box_background_deltas=False, **SMALL)
    return DensePoseRCNN(detector, head_channels=32, head_num_convs=2, decoder_channels=32, **settings)


def test_full_size_parameter_count_is_detectron2s() -> None:
    model = DensePoseRCNN()
    assert _count(model) == 63_821_090  # densepose_rcnn_R_50_FPN_s1x as detectron2 instantiates it
    assert _count(model.roi_heads.densepose.decoder) == 4_196_352
    assert _count(model.roi_heads.densepose.head) == 17_698_816
    assert _count(model.roi_heads.densepose.predictor) == 630_861
    # detectron2 predicts box deltas for the object class only: 1024 * 4 + 4 rather than torchvision's 8
    assert _count(model.roi_heads.box_predictor.bbox_pred) == 4_100
    assert _count(DensePoseRCNN(decoder_on=False)) == 63_821_090 - 4_196_352


def test_refuses_a_detector_with_a_mask_branch() -> None:
    with pytest.raises(ValueError, match="mask_branch=False"):
        DensePoseRCNN(MaskRCNN(num_classes=1, **SMALL))


def _target(boxes: list[list[float]], points_per_box: list[int], size: int = 64) -> dict[str, torch.Tensor]:
    count = len(boxes)
    most = max(points_per_box, default=0)
    points = torch.full((count, most, 5), float("nan"))
    generator = torch.Generator().manual_seed(1)
    for row, n in enumerate(points_per_box):
        xy = torch.rand(n, 2, generator=generator) * 255
        part = torch.randint(1, 25, (n, 1), generator=generator).float()
        points[row, :n] = torch.cat([xy, part, torch.rand(n, 2, generator=generator)], dim=1)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float),
        "labels": torch.ones(count, dtype=torch.int64),
        "dense_points": points,
        "dense_segmentation": torch.randint(0, 15, (count, 256, 256), dtype=torch.uint8, generator=generator),
        "image_id": torch.tensor(1),
    }


def test_dense_branch_trains_on_confident_annotated_rois_only() -> None:
    heads: DensePoseRoIHeads = _small().roi_heads
    target = _target([[0, 0, 20, 20], [30, 30, 60, 60]], [5, 0])
    proposals = torch.tensor(
        [[0, 0, 20, 20], [1, 1, 20, 20], [0, 0, 40, 40], [30, 30, 60, 60], [31, 31, 60, 60]],
        dtype=torch.float,
    )
    matched = torch.tensor([0, 0, 0, 1, 1])
    boxes, gt_boxes, index = heads.densepose_rois([proposals], [matched], [target])
    # IoU 1.0 and 0.9025 pass the 0.7 threshold; 0.25 does not; the second box has no points
    assert boxes[0].tolist() == [[0, 0, 20, 20], [1, 1, 20, 20]]
    assert index[0].tolist() == [0, 0]
    assert gt_boxes[0].tolist() == [[0, 0, 20, 20]] * 2


def test_training_losses_reach_every_branch_parameter() -> None:
    model = _small()
    model.train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    targets = [
        _target([[4, 4, 30, 40], [34, 10, 60, 50]], [6, 3]),
        _target([[10, 10, 50, 50]], [0]),  # an instance without DensePose
    ]
    losses = model(images, targets)
    names = {"loss_densepose_I", "loss_densepose_U", "loss_densepose_V", "loss_densepose_S"}
    assert names <= set(losses) and all(torch.isfinite(v) for v in losses.values())
    # the GT boxes are proposals, so RoIs of IoU 1 always exist
    assert float(losses["loss_densepose_I"].detach()) > 0
    sum(losses.values()).backward()
    for name, parameter in model.roi_heads.densepose.named_parameters():
        assert parameter.grad is not None, name


def test_no_densepose_annotation_gives_zero_losses_with_gradients() -> None:
    model = _small()
    model.train()
    losses = model([torch.rand(3, 64, 64)], [_target([[4, 4, 30, 40]], [0])])
    dense = [losses[f"loss_densepose_{k}"] for k in "IUVS"]
    assert all(float(v) == 0 for v in dense)
    sum(losses.values()).backward()  # DDP needs a gradient (zeros) for every parameter
    assert all(p.grad is not None for p in model.roi_heads.densepose.parameters())


@pytest.mark.parametrize("decoder_on", [True, False])
def test_eval_outputs_per_detection_charts(decoder_on: bool) -> None:
    model = _small(decoder_on=decoder_on)
    model.eval()
    model.roi_heads.box_heads.score_thresh = 0.0
    with torch.no_grad():
        outputs = model([torch.rand(3, 64, 48), torch.rand(3, 40, 64)])
    for output in outputs:
        charts = output["densepose"]
        assert isinstance(charts, DensePoseOutputs)
        assert charts.fine_segm.shape == (len(output["boxes"]), 25, 112, 112)
        assert charts.coarse_segm.shape == (len(output["boxes"]), 2, 112, 112)
        assert "masks" not in output
