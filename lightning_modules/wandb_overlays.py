"""Validation overlays for W&B: predicted and ground-truth boxes (and instance masks, when there are
any) on the image, with class names and scores (``wandb.Image`` box and mask layers, toggled in the
W&B UI). Labels are named through the dataset's ``label_names``; in the painted mask layers 0 means
"no object", which no label is (``datamodules.batch``). Panoptic overlays paint the predicted and the
ground-truth semantic class per pixel as mask layers (void/unknown ``IGNORE_INDEX``) and outline every
segment on the image -- ground truth green, prediction red -- so that instances of one class stay apart.
Video panoptic clips (``video_panoptic_overlay``) show the frames side by side, prediction above ground
truth, each tracked id in one colour over the clip.
Keypoint overlays draw the ground truth and the
prediction with the dataset's skeleton on the crop, beside the predicted heatmaps."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import wandb
from torch import Tensor

from datamodules.batch import IGNORE_INDEX
from models.mask_iou_tracking import THING_ID_OFFSET

NO_OBJECT = 0  # the painted mask layers' value where no instance is


def _label_map(masks: Tensor, labels: Tensor, scores: Tensor | None) -> np.ndarray:
    """Paint instance masks into one class-label map, the most confident instance on top."""
    height, width = masks.shape[-2:]
    label_map = np.full((height, width), NO_OBJECT, dtype=np.uint8)
    order = torch.argsort(scores) if scores is not None else torch.arange(len(labels))
    for index in order.tolist():
        label_map[masks[index].reshape(height, width).cpu().numpy() > 0.5] = int(labels[index])
    return label_map


def _box_data(
    boxes: Tensor, labels: Tensor, scores: Tensor | None, class_labels: dict[int, str]
) -> list[dict]:
    rows = []
    for index, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist(), strict=True)):
        row = {
            "position": {"minX": box[0], "minY": box[1], "maxX": box[2], "maxY": box[3]},
            "domain": "pixel",
            "class_id": int(label),
            "box_caption": class_labels.get(int(label), str(label)),
        }
        if scores is not None:
            score = float(scores[index])
            row["scores"] = {"score": score}
            row["box_caption"] += f" {score:.2f}"
        rows.append(row)
    return rows


def detection_overlay(
    image: Tensor,
    prediction: dict[str, Tensor],
    target: dict[str, Tensor],
    label_names: dict[int, str],
    score_threshold: float,
) -> wandb.Image:
    """``image`` (3,H,W) in [0,1]; ``prediction`` as the model's eval output; ``target`` the batch's."""
    class_labels = dict(label_names)
    keep = prediction["scores"] >= score_threshold
    boxes, labels, scores = prediction["boxes"][keep], prediction["labels"][keep], prediction["scores"][keep]
    pixels = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    layers_masks, layers_boxes = {}, {}
    layers_boxes["predictions"] = {
        "box_data": _box_data(boxes, labels, scores, class_labels),
        "class_labels": class_labels,
    }
    layers_boxes["ground_truth"] = {
        "box_data": _box_data(target["boxes"], target["labels"], None, class_labels),
        "class_labels": class_labels,
    }
    mask_labels = {NO_OBJECT: "no object", **class_labels}
    if "masks" in prediction:
        masks = prediction["masks"][keep]
        layers_masks["predictions"] = {
            "mask_data": _label_map(masks, labels, scores),
            "class_labels": mask_labels,
        }
    if "masks" in prediction and "masks" in target:  # a box-only detector gets box layers only
        layers_masks["ground_truth"] = {
            "mask_data": _label_map(target["masks"], target["labels"], None),
            "class_labels": mask_labels,
        }
    if "heatmap" in prediction:  # keypoint detectors: the centre (corner) heatmap under the boxes
        layers_masks["heatmap"] = {
            "mask_data": heatmap_levels(prediction["heatmap"], pixels.shape[:2]),
            "class_labels": HEATMAP_LEVEL_NAMES,
        }
    return wandb.Image(pixels, masks=layers_masks or None, boxes=layers_boxes)


HEATMAP_LEVELS = 10
HEATMAP_LEVEL_NAMES = {
    level: f"heatmap {level / HEATMAP_LEVELS:.1f}-{(level + 1) / HEATMAP_LEVELS:.1f}"
    for level in range(HEATMAP_LEVELS)
}


def heatmap_levels(heatmap: Tensor, size: tuple[int, int]) -> np.ndarray:
    """An (h, w) map of probabilities over the image, resized (nearest) to ``size`` and binned into
    ``HEATMAP_LEVELS`` levels of 0.1 (W&B mask layers are label maps)."""
    resized = F.interpolate(heatmap.detach().float()[None, None].cpu(), size=size, mode="nearest")[0, 0]
    return (resized * HEATMAP_LEVELS).floor().clamp(0, HEATMAP_LEVELS - 1).to(torch.uint8).numpy()


GROUND_TRUTH_COLOUR = (0, 220, 0)
PREDICTION_COLOUR = (255, 40, 40)


def _segment_classes_map(ids: Tensor, segment_ids: Tensor, classes: Tensor) -> np.ndarray:
    """(H, W) uint8: the class of each pixel's segment, ``IGNORE_INDEX`` for void (id 0) and unlisted ids."""
    flat = ids.detach().reshape(-1).cpu().long()
    segment_ids, classes = segment_ids.detach().cpu().long(), classes.detach().cpu().long()
    painted = torch.full_like(flat, IGNORE_INDEX)
    if len(segment_ids):
        order = torch.argsort(segment_ids)
        position = torch.searchsorted(segment_ids[order], flat).clamp_max(len(order) - 1)
        listed = (segment_ids[order][position] == flat) & (flat != 0)
        painted = torch.where(listed, classes[order][position], painted)
    return painted.view(ids.shape).numpy().astype(np.uint8)


def _outline(ids: Tensor) -> np.ndarray:
    """(H, W) bool: the pixels on either side of a boundary between two segments (or a segment and void)."""
    ids = ids.detach().cpu()
    edge = torch.zeros(ids.shape, dtype=torch.bool)
    across, down = ids[:, 1:] != ids[:, :-1], ids[1:] != ids[:-1]
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    edge[1:] |= down
    edge[:-1] |= down
    return edge.numpy()


def panoptic_overlay(
    image: Tensor,
    prediction: dict[str, Tensor],
    target: dict[str, Tensor],
    semantic_names: Sequence[str],
    semantic_category_ids: Sequence[int],
) -> wandb.Image:
    """``image`` (3, H, W) in [0, 1]; ``prediction`` the model's eval output (``panoptic`` segment ids
    1..M, ``segment_classes`` (M,) semantic classes); ``target`` the batch's (``panoptic`` and ``segments``
    [id, category_id, iscrowd], the category turned into its semantic class through
    ``semantic_category_ids``). Mask layers ``predictions`` and ``ground_truth`` name each semantic class
    (``semantic_names``) and void; segment outlines are drawn into the image."""
    if len(semantic_names) >= IGNORE_INDEX:
        raise ValueError(f"W&B masks hold classes 0..254, got {len(semantic_names)} semantic classes")
    semantic_of = {category: index for index, category in enumerate(semantic_category_ids)}
    predicted_ids, target_ids = prediction["panoptic"], target["panoptic"]
    predicted = _segment_classes_map(
        predicted_ids, torch.arange(1, len(prediction["segment_classes"]) + 1), prediction["segment_classes"]
    )
    segments = target["segments"].detach().cpu().long().reshape(-1, 3)
    truth = _segment_classes_map(
        target_ids,
        segments[:, 0],
        torch.tensor([semantic_of[int(c)] for c in segments[:, 1]], dtype=torch.long),
    )
    pixels = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    pixels[_outline(target_ids)] = GROUND_TRUTH_COLOUR
    pixels[_outline(predicted_ids)] = PREDICTION_COLOUR
    class_labels = {IGNORE_INDEX: "void / unknown", **dict(enumerate(semantic_names))}
    masks = {
        "predictions": {"mask_data": predicted, "class_labels": class_labels},
        "ground_truth": {"mask_data": truth, "class_labels": class_labels},
    }
    return wandb.Image(pixels, masks=masks, caption="outlines: ground truth green, prediction red")


# quasi-random steps (Roberts' R2 sequence, the plastic number's powers): consecutive ids land far apart
_HUE_STEP, _VALUE_STEP = 0.7548776662466927, 0.5698402909980532


def track_colour(segment_id: int) -> tuple[int, int, int]:
    """The RGB colour of a tracked segment id, the same in every frame and every run: hue and value stepped
    by the id through the R2 low-discrepancy sequence (M. Roberts, "The Unreasonable Effectiveness of
    Quasirandom Sequences", 2018), so that nearby ids -- tracks opened one after another -- differ most."""
    hue = (segment_id * _HUE_STEP) % 1.0
    value = 0.65 + 0.35 * ((segment_id * _VALUE_STEP) % 1.0)
    return _rgb(colorsys.hsv_to_rgb(hue, 0.9, value))


def stuff_colour(semantic_class: int) -> tuple[int, int, int]:
    """The (muted) RGB colour of a stuff class, the same for its segments in prediction and ground truth."""
    hue = (semantic_class * _HUE_STEP) % 1.0
    return _rgb(colorsys.hsv_to_rgb(hue, 0.35, 0.8))


def _rgb(colour: tuple[float, float, float]) -> tuple[int, int, int]:
    red, green, blue = colour
    return round(255 * red), round(255 * green), round(255 * blue)


TRACK_ALPHA, STUFF_ALPHA = 0.55, 0.3


def _paint_tracks(pixels: np.ndarray, ids: Tensor, stuff_classes: dict[int, int]) -> np.ndarray:
    """``pixels`` (H, W, 3) uint8 with every segment of ``ids`` (H, W) blended in and outlined (``_outline``)
    in its colour: stuff (``stuff_classes``: segment id -> stuff class) in its class's muted colour and
    fainter, every other id in ``track_colour``; void (0) left as it is."""
    ids_np = ids.detach().cpu().long().numpy()
    present, index = np.unique(ids_np, return_inverse=True)
    colours = np.zeros((len(present), 3), dtype=np.float64)
    alphas = np.zeros(len(present), dtype=np.float64)
    for k, segment_id in enumerate(present.tolist()):
        if segment_id == 0:
            continue
        if segment_id in stuff_classes:
            colours[k], alphas[k] = stuff_colour(stuff_classes[segment_id]), STUFF_ALPHA
        else:
            colours[k], alphas[k] = track_colour(segment_id), TRACK_ALPHA
    index = index.reshape(ids_np.shape)
    alpha = alphas[index][..., None]
    painted = pixels.astype(np.float64) * (1 - alpha) + colours[index] * alpha
    edge = _outline(ids) & (ids_np != 0)
    painted[edge] = colours[index][edge]
    return painted.round().astype(np.uint8)


def video_panoptic_overlay(
    frames: Sequence[Tensor],
    predictions: Sequence[dict[str, Tensor]],
    targets: Sequence[dict[str, Tensor]],
    semantic_names: Sequence[str],
    semantic_category_ids: Sequence[int],
    num_stuff_classes: int | None = None,
    max_frame_height: int = 256,
) -> wandb.Image:
    """A video clip as one W&B image: its frames left to right, the prediction on the top row and the
    ground truth below, every segment blended in and outlined in its colour. A tracked id keeps one colour
    over the clip (``track_colour``: derived from the id alone), so an id switch shows as a change of
    colour; the prediction's and the ground truth's ids differ, and so do the colours of one object in
    the two rows. Stuff is fainter, in its semantic class's muted colour (``stuff_colour``).

    ``frames`` (3, H, W) in [0, 1]; ``predictions`` per frame the video model's output (``panoptic``
    (H, W) persistent ids, ``segment_ids``, ``segment_classes``: semantic classes); ``targets`` per frame
    the batch's (``panoptic`` and ``segments`` [id, category_id, iscrowd], a category turned into its
    semantic class through ``semantic_category_ids``). Stuff: the semantic classes < ``num_stuff_classes``;
    without it, the predicted segments with ids below ``models.mask_iou_tracking.THING_ID_OFFSET`` (the
    video model's contract) and the ground-truth segments of their classes. Frames higher than
    ``max_frame_height`` are shrunk to it (ids nearest-neighbour, outlines drawn after). The caption names
    the rows and the classes (``semantic_names``) of the stuff shown."""
    if len(frames) == 0 or not len(frames) == len(predictions) == len(targets):
        raise ValueError(
            f"need one prediction and one target per frame, got {len(frames)} frames, {len(predictions)} "
            f"predictions, {len(targets)} targets"
        )
    semantic_of = {category: index for index, category in enumerate(semantic_category_ids)}
    predicted_classes = [
        dict(zip(p["segment_ids"].tolist(), p["segment_classes"].tolist(), strict=True)) for p in predictions
    ]
    target_classes = []
    for target in targets:
        segments = target["segments"].detach().cpu().long().reshape(-1, 3)
        target_classes.append({int(i): semantic_of[int(c)] for i, c in segments[:, :2].tolist()})
    if num_stuff_classes is None:
        stuff = {c for classes in predicted_classes for i, c in classes.items() if i < THING_ID_OFFSET}
    else:
        stuff = set(range(num_stuff_classes))
    top, bottom = [], []
    for image, predicted, truth, row_classes in zip(
        frames, predictions, targets, zip(predicted_classes, target_classes, strict=True), strict=True
    ):
        image = image.detach().float().clamp(0, 1).cpu()
        maps = [predicted["panoptic"].detach().cpu().long(), truth["panoptic"].detach().cpu().long()]
        height, width = image.shape[-2:]
        if height > max_frame_height:
            size = (max_frame_height, max(1, round(width * max_frame_height / height)))
            image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
            maps = [
                F.interpolate(m[None, None].float(), size=size, mode="nearest")[0, 0].long() for m in maps
            ]
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        for row, ids, classes in zip((top, bottom), maps, row_classes, strict=True):
            stuff_ids = {i: c for i, c in classes.items() if c in stuff}
            row.append(_paint_tracks(pixels, ids, stuff_ids))
    grid = np.concatenate([np.concatenate(top, axis=1), np.concatenate(bottom, axis=1)], axis=0)
    shown = sorted({c for classes in [*predicted_classes, *target_classes] for c in classes.values()} & stuff)
    names = ", ".join(semantic_names[c] for c in shown if c < len(semantic_names))
    caption = (
        f"{len(frames)} frames left to right; top: prediction, bottom: ground truth; one colour per "
        f"tracked id; stuff faint ({names or 'none'})"
    )
    return wandb.Image(grid, caption=caption)


def _draw_keypoints(
    canvas: np.ndarray, points: np.ndarray, shown: np.ndarray, skeleton: Sequence[tuple[int, int]], colour
) -> None:
    scale = canvas.shape[0] / 256
    radius, thickness = max(1, round(2 * scale)), max(1, round(scale))
    for first, second in skeleton:
        if shown[first] and shown[second]:
            start = tuple(int(v) for v in np.round(points[first]))
            end = tuple(int(v) for v in np.round(points[second]))
            cv2.line(canvas, start, end, colour, thickness, cv2.LINE_AA)
    for (x, y), visible in zip(points.tolist(), shown.tolist(), strict=True):
        if visible:
            cv2.circle(canvas, (round(x), round(y)), radius, colour, -1, cv2.LINE_AA)


def keypoint_overlay(
    image: Tensor,
    predicted: Tensor,
    target_keypoints: Tensor,
    skeleton: Sequence[tuple[int, int]],
    heatmaps: Tensor | None = None,
    caption: str = "",
) -> wandb.Image:
    """``draw_keypoints_and_heatmaps`` as a W&B image."""
    return wandb.Image(
        draw_keypoints_and_heatmaps(image, predicted, target_keypoints, skeleton, heatmaps), caption=caption
    )


def draw_keypoints_and_heatmaps(
    image: Tensor,
    predicted: Tensor,
    target_keypoints: Tensor,
    skeleton: Sequence[tuple[int, int]],
    heatmaps: Tensor | None = None,
) -> np.ndarray:
    """``image`` (3, H, W) in [0, 1]; ``predicted`` (K, 2) and ``target_keypoints`` (K, 3) in its pixels
    (only annotated ground truth is drawn, green; predictions red, both with the skeleton); ``heatmaps``
    (K, h, w), if given, are shown beside it as their per-pixel maximum over keypoints. Returns the
    RGB uint8 canvas, scaled up to at least 256 px high so that small crops stay readable."""
    pixels = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    height, width = pixels.shape[:2]
    size = max(256, height)
    scale = size / height
    canvas = np.ascontiguousarray(
        cv2.resize(pixels, (round(width * scale), size), interpolation=cv2.INTER_NEAREST)
    )
    target = target_keypoints.detach().float().cpu().numpy()
    # continuous pixel coordinates (datamodules.batch) -> OpenCV's pixel-centre indices on the canvas
    _draw_keypoints(canvas, target[:, :2] * scale - 0.5, target[:, 2] > 0, skeleton, GROUND_TRUTH_COLOUR)
    points = predicted.detach().float().cpu().numpy()
    _draw_keypoints(canvas, points * scale - 0.5, np.isfinite(points).all(1), skeleton, PREDICTION_COLOUR)
    if heatmaps is not None:
        peak = heatmaps.detach().float().amax(0).clamp(0, 1).cpu().numpy()
        peak = cv2.resize(
            (peak * 255).astype(np.uint8), (canvas.shape[1], size), interpolation=cv2.INTER_LINEAR
        )
        coloured = cv2.cvtColor(cv2.applyColorMap(peak, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        canvas = np.concatenate([canvas, coloured], axis=1)
    return canvas


def image_grid(images: Sequence[Tensor], captions: Sequence[str]) -> wandb.Image:
    """One W&B image of ``images`` ((3, H, W) in [0, 1], sizes may differ: each is resized to the
    tallest's height) side by side, captioned ``captions`` joined by " | " (input | output | target)."""
    height = max(int(image.shape[-2]) for image in images)
    panels = []
    for image in images:
        panel = image.detach().float().clamp(0, 1)
        if panel.shape[-2] != height:
            width = round(panel.shape[-1] * height / panel.shape[-2])
            panel = torch.nn.functional.interpolate(panel[None], size=(height, width), mode="nearest")[0]
        panels.append(panel)
    grid = torch.cat(panels, dim=-1).permute(1, 2, 0).cpu().numpy()
    return wandb.Image((grid * 255).round().astype(np.uint8), caption=" | ".join(captions))


def painted_instances(
    image: Tensor, prediction: dict[str, Tensor], score_threshold: float, alpha: float = 0.5
) -> Tensor:
    """``image`` (3, H, W) in [0, 1] with the masks (> 0.5) of the detections scoring at least
    ``score_threshold`` blended in, one colour per label (JET colormap), the most confident on top."""
    keep = prediction["scores"] >= score_threshold
    masks, labels, scores = prediction["masks"][keep], prediction["labels"][keep], prediction["scores"][keep]
    painted = image.detach().float().clamp(0, 1).cpu().clone()
    palette = cv2.applyColorMap(np.arange(0, 256, 37, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    for index in torch.argsort(scores).tolist():
        colour = torch.tensor(palette[int(labels[index]) % len(palette)] / 255.0, dtype=painted.dtype)
        region = masks[index].reshape(painted.shape[-2:]).cpu() > 0.5
        painted[:, region] = (1 - alpha) * painted[:, region] + alpha * colour[:, None]
    return painted


def clip_overlay(
    frames: Sequence[Tensor],
    predictions: Sequence[dict[str, Tensor]],
    captions: Sequence[str],
    score_threshold: float,
) -> wandb.Image:
    """A video clip's frames side by side, each with its predicted instance masks painted
    (``painted_instances``), captioned per frame (e.g. which frame is the keyframe)."""
    return image_grid(
        [painted_instances(f, p, score_threshold) for f, p in zip(frames, predictions, strict=True)], captions
    )
