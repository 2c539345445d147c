"""RetinaFace's priors, encoding, matching, loss and decoding (``models.face_anchors``,
``models.face_detection_loss``, ``models.face_detection_decode``) against plain transcriptions of
biubug6/Pytorch_Retinaface (``PriorBox.forward``, ``box_utils`` ``match`` / ``encode`` / ``decode`` /
``encode_landm`` / ``decode_landm``, ``MultiBoxLoss.forward``, ``detect.py``'s post-processing with
``py_cpu_nms``), written below from reading the official code: per-element loops where it loops, its
normalised (N, 15) targets with label 1 / -1, its CPU-only variant (the official loss moves to CUDA)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.face_anchors import (
    decode_boxes,
    decode_landmarks,
    encode_boxes,
    encode_landmarks,
    prior_boxes,
)
from models.face_detection_decode import decode_detections
from models.face_detection_loss import MultiBoxLoss, loss_weights, match

MIN_SIZES = [[16, 32], [64, 128], [256, 512]]
STEPS = [8, 16, 32]
VAR = [0.1, 0.2]
TOL = {"rtol": 1e-5, "atol": 1e-5}


# -- transcriptions of the official code ------------------------------------------------------------------
def official_priors(image_size, clip=False):
    height, width = image_size
    anchors = []
    for k, step in enumerate(STEPS):
        for i in range(math.ceil(height / step)):
            for j in range(math.ceil(width / step)):
                for min_size in MIN_SIZES[k]:
                    cx = (j + 0.5) * step / width
                    cy = (i + 0.5) * step / height
                    anchors += [cx, cy, min_size / width, min_size / height]
    out = torch.tensor(anchors, dtype=torch.float32).view(-1, 4)
    return out.clamp(min=0, max=1) if clip else out


def official_point_form(b):
    return torch.cat((b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2), 1)


def official_jaccard(a, b):
    max_xy = torch.min(a[:, None, 2:], b[None, :, 2:])
    min_xy = torch.max(a[:, None, :2], b[None, :, :2])
    inter = torch.clamp(max_xy - min_xy, min=0)
    inter = inter[..., 0] * inter[..., 1]
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
    return inter / (area_a + area_b - inter)


def official_encode(matched, priors, v):
    g_cxcy = (matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]
    g_cxcy /= v[0] * priors[:, 2:]
    g_wh = (matched[:, 2:] - matched[:, :2]) / priors[:, 2:]
    return torch.cat([g_cxcy, torch.log(g_wh) / v[1]], 1)


def official_encode_landm(matched, priors, v):
    matched = matched.reshape(matched.size(0), 5, 2)
    p = priors[:, None, :].expand(matched.size(0), 5, 4)
    g = (matched - p[:, :, :2]) / (v[0] * p[:, :, 2:])
    return g.reshape(g.size(0), -1)


def official_decode(loc, priors, v):
    boxes = torch.cat(
        (priors[:, :2] + loc[:, :2] * v[0] * priors[:, 2:], priors[:, 2:] * torch.exp(loc[:, 2:] * v[1])), 1
    )
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def official_decode_landm(pre, priors, v):
    return torch.cat(
        [priors[:, :2] + pre[:, 2 * k : 2 * k + 2] * v[0] * priors[:, 2:] for k in range(5)], dim=1
    )


def official_match(threshold, truths, priors, v, labels, landms, loc_t, conf_t, landm_t, idx):
    overlaps = official_jaccard(truths, official_point_form(priors))
    best_prior_overlap, best_prior_idx = overlaps.max(1, keepdim=True)
    valid_gt_idx = best_prior_overlap[:, 0] >= 0.2
    best_prior_idx_filter = best_prior_idx[valid_gt_idx, :]
    if best_prior_idx_filter.shape[0] <= 0:
        loc_t[idx] = 0
        conf_t[idx] = 0
        return
    best_truth_overlap, best_truth_idx = overlaps.max(0, keepdim=True)
    best_truth_idx = best_truth_idx.squeeze(0)
    best_truth_overlap = best_truth_overlap.squeeze(0)
    best_prior_idx = best_prior_idx.squeeze(1)
    best_truth_overlap.index_fill_(0, best_prior_idx_filter.squeeze(1), 2)
    for j in range(best_prior_idx.size(0)):
        best_truth_idx[best_prior_idx[j]] = j
    matches = truths[best_truth_idx]
    conf = labels[best_truth_idx].clone()
    conf[best_truth_overlap < threshold] = 0
    loc_t[idx] = official_encode(matches, priors, v)
    conf_t[idx] = conf.long()
    landm_t[idx] = official_encode_landm(landms[best_truth_idx], priors, v)


def official_log_sum_exp(x):
    x_max = x.max()
    return torch.log(torch.sum(torch.exp(x - x_max), 1, keepdim=True)) + x_max


def official_multibox_loss(predictions, priors, targets, threshold=0.35, negpos_ratio=7):
    loc_data, conf_data, landm_data = predictions
    num, num_priors = loc_data.size(0), priors.size(0)
    loc_t = torch.zeros(num, num_priors, 4)
    landm_t = torch.zeros(num, num_priors, 10)
    conf_t = torch.zeros(num, num_priors, dtype=torch.long)
    for idx in range(num):
        t = targets[idx]
        official_match(threshold, t[:, :4], priors, VAR, t[:, -1], t[:, 4:14], loc_t, conf_t, landm_t, idx)
    zeros = torch.tensor(0)
    pos1 = conf_t > zeros
    n1 = max(pos1.long().sum().float(), 1)
    loss_landm = F.smooth_l1_loss(landm_data[pos1].view(-1, 10), landm_t[pos1].view(-1, 10), reduction="sum")
    pos = conf_t != zeros
    conf_t[pos] = 1
    loss_l = F.smooth_l1_loss(loc_data[pos].view(-1, 4), loc_t[pos].view(-1, 4), reduction="sum")
    batch_conf = conf_data.view(-1, 2)
    loss_c = official_log_sum_exp(batch_conf) - batch_conf.gather(1, conf_t.view(-1, 1))
    loss_c[pos.view(-1, 1)] = 0
    loss_c = loss_c.view(num, -1)
    _, loss_idx = loss_c.sort(1, descending=True)
    _, idx_rank = loss_idx.sort(1)
    num_pos = pos.long().sum(1, keepdim=True)
    num_neg = torch.clamp(negpos_ratio * num_pos, max=pos.size(1) - 1)
    neg = idx_rank < num_neg.expand_as(idx_rank)
    sel = (pos | neg).unsqueeze(2).expand_as(conf_data)
    loss_c = F.cross_entropy(conf_data[sel].view(-1, 2), conf_t[pos | neg], reduction="sum")
    n = max(num_pos.sum().float(), 1)
    return loss_l / n, loss_c / n, loss_landm / n1


def official_py_cpu_nms(dets, thresh):
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


def official_detect(
    loc, conf_logits, landms, priors, image_size, thr=0.02, top_k=5000, nms=0.4, keep_top_k=750
):
    """detect.py for one image (``conf`` is the test-phase network's softmax)."""
    height, width = image_size
    boxes = (official_decode(loc, priors, VAR) * torch.tensor([width, height] * 2)).numpy()
    scores = F.softmax(conf_logits, dim=-1).numpy()[:, 1]
    landms = (official_decode_landm(landms, priors, VAR) * torch.tensor([width, height] * 5)).numpy()
    inds = np.where(scores > thr)[0]
    boxes, landms, scores = boxes[inds], landms[inds], scores[inds]
    order = scores.argsort()[::-1][:top_k]
    boxes, landms, scores = boxes[order], landms[order], scores[order]
    dets = np.hstack((boxes, scores[:, np.newaxis])).astype(np.float32, copy=False)
    keep = official_py_cpu_nms(dets, nms)
    return dets[keep, :][:keep_top_k], landms[keep][:keep_top_k]


# -- inputs -----------------------------------------------------------------------------------------------
def random_faces(generator, image_size, num, no_landmarks=0.3):
    """``num`` faces in pixels: XYXY boxes (sizes 4..300 px, log-uniform) and (N, 5, 2) landmarks,
    NaN for a random ``no_landmarks`` share."""
    height, width = image_size
    size = torch.exp(torch.empty(num).uniform_(math.log(4), math.log(300), generator=generator))
    aspect = torch.empty(num).uniform_(0.8, 1.25, generator=generator)
    w, h = size * aspect.sqrt(), size / aspect.sqrt()
    cx = torch.rand(num, generator=generator) * width
    cy = torch.rand(num, generator=generator) * height
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([width, height] * 2) - 0.5)
    corner, extent = boxes[:, None, :2], (boxes[:, 2:] - boxes[:, :2])[:, None]
    landmarks = corner + torch.rand(num, 5, 2, generator=generator) * extent
    landmarks[torch.rand(num, generator=generator) < no_landmarks] = float("nan")
    return {"boxes": boxes, "landmarks": landmarks}


def official_target(target, image_size):
    """The implementation's (N, 15) row: normalised box, landmarks (-1 pixels when absent), label 1 / -1."""
    height, width = image_size
    boxes = target["boxes"] / torch.tensor([width, height] * 2)
    landmarks = target["landmarks"].reshape(-1, 10)
    missing = landmarks.isnan().any(1)
    landmarks = torch.where(missing[:, None], -1.0, landmarks) / torch.tensor([width, height] * 5)
    labels = torch.where(missing, -1.0, 1.0)[:, None]
    return torch.cat([boxes, landmarks, labels], 1)


def random_predictions(generator, batch, num_priors):
    return (
        torch.randn(batch, num_priors, 4, generator=generator),
        torch.randn(batch, num_priors, 2, generator=generator) * 2,
        torch.randn(batch, num_priors, 10, generator=generator),
    )


# -- priors and encoding ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("image_size", "clip"), [((640, 640), False), ((300, 451), False), ((300, 451), True)]
)
def test_priors_match_prior_box(image_size, clip):
    ours = prior_boxes(image_size, clip=clip)
    torch.testing.assert_close(ours, official_priors(image_size, clip), rtol=0, atol=1e-7)
    if image_size == (640, 640):
        assert ours.shape == (16_800, 4)
        torch.testing.assert_close(ours[0], torch.tensor([4 / 640, 4 / 640, 16 / 640, 16 / 640]))
        torch.testing.assert_close(ours[1], torch.tensor([4 / 640, 4 / 640, 32 / 640, 32 / 640]))
        torch.testing.assert_close(ours[2], torch.tensor([12 / 640, 4 / 640, 16 / 640, 16 / 640]))
    else:  # ceil(300 / 8) x ceil(451 / 8) = 38 x 57, 19 x 29, 10 x 15 cells, 2 sizes each
        assert ours.shape == (2 * (38 * 57 + 19 * 29 + 10 * 15), 4)


def test_encode_and_decode_match_the_implementation_and_round_trip():
    g = torch.Generator().manual_seed(0)
    priors = prior_boxes((320, 256))
    faces = random_faces(g, (320, 256), priors.shape[0], no_landmarks=0)
    boxes = faces["boxes"] / torch.tensor([256, 320] * 2)
    landmarks = faces["landmarks"] / torch.tensor([256, 320])
    torch.testing.assert_close(encode_boxes(boxes, priors), official_encode(boxes, priors, VAR), **TOL)
    torch.testing.assert_close(
        encode_landmarks(landmarks, priors), official_encode_landm(landmarks.flatten(1), priors, VAR), **TOL
    )
    deltas = torch.randn(3, priors.shape[0], 14, generator=g)
    decoded = decode_boxes(deltas[..., :4], priors)
    decoded_landmarks = decode_landmarks(deltas[..., 4:], priors)
    assert decoded.shape == (3, priors.shape[0], 4) and decoded_landmarks.shape == (3, priors.shape[0], 5, 2)
    for b in range(3):
        torch.testing.assert_close(decoded[b], official_decode(deltas[b, :, :4], priors, VAR), **TOL)
        torch.testing.assert_close(
            decoded_landmarks[b].flatten(1), official_decode_landm(deltas[b, :, 4:], priors, VAR), **TOL
        )
    torch.testing.assert_close(decode_boxes(encode_boxes(boxes, priors), priors), boxes, **TOL)
    torch.testing.assert_close(
        decode_landmarks(encode_landmarks(landmarks, priors), priors), landmarks, **TOL
    )


# -- matching ---------------------------------------------------------------------------------------------
def compare_match(truths_px, landmarks_px, image_size):
    """Our ``match`` + encoding against the official ``match`` on one image; returns our conf."""
    height, width = image_size
    priors = prior_boxes(image_size)
    target = {"boxes": truths_px, "landmarks": landmarks_px}
    row = official_target(target, image_size)
    loc_t, conf_t = torch.zeros(1, priors.shape[0], 4), torch.zeros(1, priors.shape[0], dtype=torch.long)
    landm_t = torch.zeros(1, priors.shape[0], 10)
    official_match(0.35, row[:, :4], priors, VAR, row[:, -1], row[:, 4:14], loc_t, conf_t, landm_t, 0)
    truths = truths_px / torch.tensor([width, height] * 2)
    has_landmarks = landmarks_px.isfinite().flatten(1).all(1)
    conf, truth = match(truths, priors, has_landmarks)
    assert torch.equal(conf, conf_t[0])
    positive, with_landmarks = conf != 0, conf > 0
    torch.testing.assert_close(encode_boxes(truths[truth], priors)[positive], loc_t[0][positive], **TOL)
    landmarks = landmarks_px / torch.tensor([width, height])
    ours = encode_landmarks(landmarks[truth], priors)[with_landmarks]
    torch.testing.assert_close(ours, landm_t[0][with_landmarks], **TOL)
    return conf


def test_match_random_faces_with_and_without_landmarks():
    g = torch.Generator().manual_seed(1)
    for image_size, num in [((640, 640), 40), ((300, 451), 12), ((640, 640), 1)]:
        faces = random_faces(g, image_size, num)
        conf = compare_match(faces["boxes"], faces["landmarks"], image_size)
        assert (conf == 1).any()
    assert (conf != 0).any()


def test_match_forced_best_prior_shared_prior_and_hard_faces():
    size = (64, 64)
    priors = prior_boxes(size)
    nan = torch.full((5, 2), float("nan"))
    points = torch.tensor([[20.0, 20.0], [24, 20], [22, 22], [20, 25], [24, 25]])
    # a 12 px face centred between four 16 px priors overlaps each by 1/3 < 0.35: forced onto the first
    conf = compare_match(torch.tensor([[18.0, 18, 30, 30]]), points[None], size)
    assert conf.nonzero().flatten().tolist() == [36]  # not 38, 52, 54 (rows/columns 2-3)
    # two faces on the same best prior: the later one takes it (its label: -1, no landmarks)
    box = torch.tensor([[12.0, 12, 28, 28]])
    conf = compare_match(torch.cat([box, box]), torch.stack([points, nan]), size)
    assert conf[36] == -1  # the 16 px prior at row 2, column 2
    # a tiny face (best IoU < 0.2) inside a larger one: not forced, but still claims its best prior
    tiny = torch.tensor([[19.0, 19, 21, 21]])
    conf = compare_match(torch.cat([box, tiny]), torch.stack([points, nan]), size)
    assert conf[36] == -1  # the tiny face's label (no landmarks): it encodes the tiny box
    conf = compare_match(torch.cat([tiny, box]), torch.stack([nan, points]), size)
    assert conf[36] == 1
    # only tiny faces: all background
    conf = compare_match(torch.cat([tiny, tiny + 30]), torch.stack([points, points]), size)
    assert not conf.any()
    conf, _ = match(torch.zeros(0, 4), priors, torch.zeros(0, dtype=torch.bool))
    assert not conf.any()


# -- loss -------------------------------------------------------------------------------------------------
def test_loss_matches_multibox_loss():
    g = torch.Generator().manual_seed(2)
    size = (640, 640)
    priors = prior_boxes(size)
    targets = [
        random_faces(g, size, 15),
        random_faces(g, size, 3, no_landmarks=0.7),
        random_faces(g, size, 0),
    ]
    box, logits, landmarks = (p.requires_grad_() for p in random_predictions(g, 3, priors.shape[0]))
    losses = MultiBoxLoss()(box, logits, landmarks, priors, targets, size)
    assert set(losses) == {"loss_box", "loss_class", "loss_landmark"}
    official = official_multibox_loss(
        (box, logits, landmarks), priors, [official_target(t, size) for t in targets]
    )
    for name, value in zip(("loss_box", "loss_class", "loss_landmark"), official, strict=True):
        torch.testing.assert_close(losses[name], value, **TOL)
    # the same priors take part: equal gradients
    ours = torch.autograd.grad(sum(losses.values()), (box, logits, landmarks))
    theirs = torch.autograd.grad(sum(official), (box, logits, landmarks))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    assert loss_weights() == {"loss_box": 2.0, "loss_class": 1.0, "loss_landmark": 1.0}
    assert loss_weights("paper") == {"loss_box": 0.25, "loss_class": 1.0, "loss_landmark": 0.1}


def test_images_without_faces_give_finite_losses():
    g = torch.Generator().manual_seed(3)
    size = (128, 96)
    priors = prior_boxes(size)
    empty = {"boxes": torch.zeros(0, 4), "landmarks": torch.zeros(0, 5, 2)}
    predictions = [p.requires_grad_() for p in random_predictions(g, 2, priors.shape[0])]
    losses = MultiBoxLoss()(*predictions, priors, [empty, {"boxes": torch.zeros(0, 4)}], size)
    official = official_multibox_loss(predictions, priors, [torch.zeros(0, 15)] * 2)
    for name, value in zip(("loss_box", "loss_class", "loss_landmark"), official, strict=True):
        assert losses[name] == value == 0  # no positives, so 7 x 0 negatives: nothing to learn from
    grads = torch.autograd.grad(sum(losses.values()), predictions)
    assert all(bool(torch.isfinite(grad).all()) and not grad.any() for grad in grads)
    # an image without faces beside one with faces adds nothing (it mines no negatives)
    face = random_faces(g, size, 2, no_landmarks=0)
    both = MultiBoxLoss()(*predictions, priors, [face, empty], size)
    alone = MultiBoxLoss()(*(p[:1] for p in predictions), priors, [face], size)
    for name in both:
        torch.testing.assert_close(both[name], alone[name])


# -- decoding ---------------------------------------------------------------------------------------------
def test_decode_and_nms_on_a_hand_made_case():
    size = (64, 64)
    priors = prior_boxes(size)
    box, landmarks = torch.zeros(1, 168, 4), torch.zeros(1, 168, 10)
    logits = torch.tensor([10.0, -10.0]).repeat(1, 168, 1)  # background everywhere

    def face(index, probability):
        logits[0, index] = torch.tensor([0.0, math.log(probability / (1 - probability))])

    face(36, 0.9)  # 16 px prior centred on (20, 20): [12, 12, 28, 28]
    face(37, 0.8)  # 32 px prior there: [4, 4, 36, 36], IoU 0.265 with the first (inclusive pixels): kept
    face(38, 0.7)  # 16 px prior centred on (28, 20), moved to (22, 20): IoU 0.78 with the first: suppressed
    box[0, 38, 0] = (22 - 28) / (0.1 * 16)
    face(40, 0.01)  # below the 0.02 threshold
    face(166, 0.5)  # 256 px prior centred on (48, 48): [-80, -80, 176, 176]
    points = torch.tensor([[12.0, 20], [16, 20], [20, 20], [24, 20], [28, 20]])
    landmarks[0, 36] = ((points - 20) / (0.1 * 16)).flatten()
    (out,) = decode_detections(box, logits, landmarks, priors, size)
    expected = torch.tensor([[12.0, 12, 28, 28], [4, 4, 36, 36], [-80, -80, 176, 176]])
    torch.testing.assert_close(out["boxes"], expected)
    torch.testing.assert_close(out["scores"], torch.tensor([0.9, 0.8, 0.5]))
    torch.testing.assert_close(out["landmarks"][0], points)
    torch.testing.assert_close(out["landmarks"][1], torch.full((5, 2), 20.0))
    assert out["labels"].tolist() == [1, 1, 1]
    (top2,) = decode_detections(box, logits, landmarks, priors, size, keep_top_k=2)
    torch.testing.assert_close(top2["boxes"], expected[:2])
    (top1,) = decode_detections(box, logits, landmarks, priors, size, top_k=1)
    torch.testing.assert_close(top1["boxes"], expected[:1])


@pytest.mark.parametrize(("top_k", "keep_top_k"), [(5000, 750), (None, None), (150, 20)])
def test_decode_matches_detect_py(top_k, keep_top_k):
    g = torch.Generator().manual_seed(4)
    size = (96, 128)
    priors = prior_boxes(size)
    box, logits, landmarks = random_predictions(g, 2, priors.shape[0])
    detections = decode_detections(box, logits, landmarks, priors, size, top_k=top_k, keep_top_k=keep_top_k)
    for b, out in enumerate(detections):
        dets, landms = official_detect(
            box[b], logits[b], landmarks[b], priors, size, top_k=top_k, keep_top_k=keep_top_k
        )
        assert len(dets) > 10
        torch.testing.assert_close(out["boxes"], torch.from_numpy(dets[:, :4]), **TOL)
        torch.testing.assert_close(out["scores"], torch.from_numpy(dets[:, 4]), **TOL)
        torch.testing.assert_close(out["landmarks"].flatten(1), torch.from_numpy(landms), **TOL)
