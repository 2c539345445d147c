"""The RetinaFace detector around its network: perfect predictions decode back to the faces and landmarks in
each image's own pixels (eval keeps the resolution, padded to 32), training losses stay finite for an image
without faces and for faces without landmarks, and the input is the implementation's BGR minus mean."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from models.face_anchors import encode_boxes, encode_landmarks, prior_boxes
from models.face_detection_loss import match
from models.retinaface import RetinaFace


class PerfectNetwork(nn.Module):
    """Outputs the implementation's regression targets of given faces (a stand-in for the real network):
    for the priors the faces match, the encoded boxes and landmarks and a confident face logit."""

    def __init__(self, faces: list[dict[str, Tensor]]) -> None:
        super().__init__()
        self.faces = faces
        self.seen: Tensor | None = None

    def forward(self, batch: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.seen = batch
        height, width = batch.shape[-2:]
        priors = prior_boxes((height, width))
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes, logits, landmarks = [], [], []
        for face in self.faces:
            truths = face["boxes"] / scale
            conf, index = match(truths, priors, torch.ones(len(truths), dtype=torch.bool))
            if len(truths) == 0:  # no face: background everywhere
                boxes.append(torch.zeros(len(priors), 4))
                landmarks.append(torch.zeros(len(priors), 10))
            else:
                boxes.append(encode_boxes(truths[index], priors))
                landmarks.append(encode_landmarks(face["landmarks"][index] / scale[:2], priors))
            face_logit = torch.where(conf > 0, 8.0, -8.0)
            logits.append(torch.stack([torch.zeros_like(face_logit), face_logit], dim=1))
        return torch.stack(boxes), torch.stack(logits), torch.stack(landmarks)


def face(x0: float, y0: float, size: float) -> tuple[list[float], list[list[float]]]:
    box = [x0, y0, x0 + size, y0 + size * 1.2]
    points = [
        [x0 + size * fx, y0 + size * 1.2 * fy]
        for fx, fy in ((0.3, 0.35), (0.7, 0.35), (0.5, 0.55), (0.35, 0.8), (0.65, 0.8))
    ]
    return box, points


def test_perfect_predictions_decode_to_the_faces_in_image_pixels() -> None:
    images = [torch.rand(3, 100, 90), torch.rand(3, 70, 120)]
    faces = [[face(10, 12, 40), face(50, 40, 30)], [face(60, 5, 48)]]
    targets = [
        {
            "boxes": torch.tensor([b for b, _ in image_faces]),
            "landmarks": torch.tensor([p for _, p in image_faces]),
        }
        for image_faces in faces
    ]
    network = PerfectNetwork(targets)  # eval: no letterbox, so the faces stay in image pixels
    model = RetinaFace(network, image_size=64).eval()
    detections = model(images)
    assert network.seen.shape == (2, 3, 128, 128)  # padded to a multiple of 32, resolution kept
    for detection, target in zip(detections, targets, strict=True):
        confident = detection["scores"] > 0.99
        order = torch.argsort(detection["boxes"][confident][:, 0])
        expected = torch.argsort(target["boxes"][:, 0])
        assert torch.allclose(detection["boxes"][confident][order], target["boxes"][expected], atol=1e-3)
        assert torch.allclose(
            detection["landmarks"][confident][order], target["landmarks"][expected], atol=1e-3
        )
        assert (detection["labels"] == 1).all()


def test_input_is_bgr_minus_the_implementation_mean() -> None:
    network = PerfectNetwork([{"boxes": torch.zeros(0, 4), "landmarks": torch.zeros(0, 5, 2)}])
    model = RetinaFace(network, image_size=64).eval()
    image = torch.zeros(3, 64, 64)
    image[0] = 1.0  # pure red
    model([image])
    assert network.seen[0, :, 0, 0].tolist() == pytest.approx(
        [-104.0, -117.0, 255.0 - 123.0], abs=1e-3
    )  # BGR - mean


def test_training_losses_are_finite_without_faces_and_without_landmarks() -> None:
    class Random(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, batch: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            priors = prior_boxes(tuple(batch.shape[-2:]))
            shape = (len(batch), len(priors))
            generator = torch.Generator().manual_seed(0)
            return tuple(torch.randn(*shape, n, generator=generator) * self.scale for n in (4, 2, 10))  # type: ignore[return-value]

    model = RetinaFace(Random(), image_size=64).train()
    box, points = face(10, 10, 30)
    targets = [
        {"boxes": torch.zeros(0, 4), "landmarks": torch.zeros(0, 5, 2)},
        {"boxes": torch.tensor([box]), "landmarks": torch.full((1, 5, 2), float("nan"))},
        {"boxes": torch.tensor([box]), "landmarks": torch.tensor([points])},
    ]
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 48, 64), torch.rand(3, 64, 64)], targets)
    assert set(losses) == {"loss_box", "loss_class", "loss_landmark"}
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and float(total) > 0 and torch.isfinite(model.network.scale.grad)


def test_the_mobilenet_network_trains_and_detects_through_the_detector() -> None:
    from models.retinaface_network import RetinaFaceNetwork

    torch.manual_seed(0)
    model = RetinaFace(RetinaFaceNetwork("mobilenet0.25"), image_size=96)
    box, points = face(20, 20, 40)
    targets = [{"boxes": torch.tensor([box]), "landmarks": torch.tensor([points])}] * 2
    losses = model.train()([torch.rand(3, 96, 96), torch.rand(3, 80, 96)], targets)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    detections = model.eval()([torch.rand(3, 100, 70)])
    assert detections[0]["landmarks"].shape[1:] == (5, 2) and len(detections[0]["boxes"]) == len(
        detections[0]["scores"]
    )
