"""VPSNet (Kim et al., "Video Panoptic Segmentation", CVPR 2020): UPSNet (``models.upsnet``) extended to
video by a fuse module (Sec. 3.1: the reference frame's FPN features aligned to the target frame by
optical flow and fused with the target's, ``models.vps_fuse``) and a track head (Sec. 3.2: RoI embeddings
of target and reference objects, ``models.vps_track_head``), trained together (Sec. 3.3, "FuseTrack").

Composition and training follow mcahny/vps ``mmdet/models/detectors/panoptic_fusetrack.py``
``PanopticFuseTrack`` under ``configs/cityscapes/fusetrack.py``:

- the flow from the target to the reference frame is computed on the two (un-normalised) frames by
  ``flow_net`` (officially a frozen FlowNet2; here by default ``models.vps_flow.CompactFlowNet``, trained
  with the task; ``models.vps_flow.FlowNet2`` loads the official weights from a local path);
- both frames go through the backbone and FPN; the target's levels are fused with the reference's
  (``FuseModule``), and every head -- RPN, RoI heads, semantic head, panoptic head -- runs on the fused
  levels; the panoptic head trains on all ground-truth boxes (no "unknown" class: ``box_keep_fraction=1``)
  and its loss weighs 0.5 (``loss_pano_weight``), the semantic loss 1, without the semantic RoI loss;
- the track head embeds the target's foreground RoIs (fused features) and the reference frame's
  ground-truth boxes (the reference's own features); a RoI's label is the index + 1 of the reference
  object with its instance id, 0 ("new") if the object is not in the reference frame. The official code
  takes the RoIs of the box head's sample; here the foreground of a second draw of the same sampler
  (``sample_rois``), which has the same distribution -- the official loss weighs the sampled background
  RoIs 0, so only the foreground matters;
- at test time (``track_video``) each frame is fused with the previous one (the first with itself) and
  the detections the panoptic head takes (score >= 0.6, class-agnostic NMS 0.5) get ids from
  ``vps_tracking.assign_ids``; the panoptic segments inherit their detection's id.

Full size (the defaults) is the official Cityscapes FuseTrack model: R50-FPN Mask R-CNN with 8 thing
classes, 11 stuff classes, the 3-layer GroupNorm semantic head, fuse module and track head --
62,782,832 parameters without the flow network (counting the frozen batch-norm affines as the official
ResNet does; ``tests/test_vpsnet.py``).

Per-frame eval output (``track_video``): UPSNet's (detections in the original frame; ``frame_panoptic``,
``frame_segment_classes``: the frame's own segment ids 1..M and classes) plus the video's ``panoptic``
(H, W) ids that persist across the video -- stuff class c is ``c + 1``, tracked object k of class c is
``THING_ID_OFFSET * (k + 1) + c`` (``video_segments``) -- with ``segment_ids`` (M,) and ``segment_classes``
(M,) of the same segments, and ``object_ids`` (N,) of the detections (-1 for those the panoptic head did not
take).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from models.mask_iou_tracking import THING_ID_OFFSET
from models.mask_rcnn import MaskRCNN, check_targets
from models.upsnet import UPSNet, check_panoptic_targets
from models.vps_flow import CompactFlowNet
from models.vps_fuse import FuseModule
from models.vps_track_head import TrackHead
from models.vps_tracking import TrackMemory, assign_ids


def official_cityscapes_upsnet() -> UPSNet:
    """The image panoptic network of the official FuseTrack config: 8 things, 11 stuff, the 3-layer
    GroupNorm semantic head, no semantic RoI loss, the panoptic head on every ground-truth box; images at
    1024 x 2048."""
    detector = MaskRCNN(num_classes=8, min_size=1024, max_size=2048)
    return UPSNet(
        detector,
        num_stuff_classes=11,
        semantic_layers=3,
        semantic_group_norm=True,
        semantic_roi_loss=False,
        box_keep_fraction=1.0,
        stuff_area_limit=2048,
    )


class VPSNet(nn.Module):
    """VPSNet around an ``upsnet`` (default: ``official_cityscapes_upsnet``).

    Args:
        upsnet: the image panoptic network whose FPN levels are fused and whose heads run on them.
        flow_net: ``forward(image, reference)`` on (B, 3, H, W) RGB in [0, 1] -> flow (B, 2, h, w) from
            the image to the reference in pixels of its own grid (default ``CompactFlowNet``).
        fuse: the fuse module (default: the official ``FuseModule`` on the FPN's channels).
        track_head: the track head (default: the official one on the FPN's channels).
        fusion: fuse at test time; ``False`` runs the heads on the frame's own features (the ablation of
            the fuse module on the same checkpoint). Training always fuses.
        tracking: assign ids with the track head; ``False`` makes every detection a new object in every
            frame (nothing is linked; link ``frame_panoptic`` by mask IoU instead).
    """

    def __init__(
        self,
        upsnet: UPSNet | None = None,
        flow_net: nn.Module | None = None,
        fuse: FuseModule | None = None,
        track_head: TrackHead | None = None,
        *,
        fusion: bool = True,
        tracking: bool = True,
    ) -> None:
        super().__init__()
        self.upsnet = upsnet if upsnet is not None else official_cityscapes_upsnet()
        channels = self.upsnet.detector.backbone.out_channels
        self.flow_net = flow_net if flow_net is not None else CompactFlowNet()
        self.fuse = fuse if fuse is not None else FuseModule(channels)
        self.track_head = track_head if track_head is not None else TrackHead(channels)
        self.fusion = fusion
        self.tracking = tracking

    @property
    def detector(self) -> nn.Module:
        return self.upsnet.detector

    @property
    def num_classes(self) -> int:
        return self.upsnet.num_classes

    @property
    def num_stuff_classes(self) -> int:
        return self.upsnet.num_stuff_classes

    @property
    def num_semantic_classes(self) -> int:
        return self.upsnet.num_semantic_classes

    # -- shared -------------------------------------------------------------------------------------
    def fused_features(
        self,
        image_list: ImageList,
        features: dict[str, Tensor],
        reference_list: ImageList,
        reference_features: dict[str, Tensor],
    ) -> dict[str, Tensor]:
        """The target's FPN levels fused with the reference's along the flow between the two frames."""
        if image_list.tensors.shape != reference_list.tensors.shape:
            raise ValueError(
                f"a frame {tuple(image_list.tensors.shape)} and its reference "
                f"{tuple(reference_list.tensors.shape)} must have one size"
            )
        flow = self.flow_net(self._rgb(image_list.tensors), self._rgb(reference_list.tensors))
        names = list(features)
        fused = self.fuse([features[n] for n in names], [reference_features[n] for n in names], flow)
        return OrderedDict(zip(names, fused, strict=True))

    def _rgb(self, normalised: Tensor) -> Tensor:
        """The network input back to RGB in [0, 1] (what the flow network takes)."""
        transform = self.detector.transform
        mean = normalised.new_tensor(transform.image_mean)[None, :, None, None]
        std = normalised.new_tensor(transform.image_std)[None, :, None, None]
        return (normalised * std + mean).clamp(0, 1)

    # -- training -----------------------------------------------------------------------------------
    def forward(
        self,
        images: list[Tensor],
        references: list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
        reference_targets: list[dict[str, Tensor]] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training: UPSNet's losses on the fused features plus ``loss_track`` (weighted 0.5 inside, as
        the official ``loss_match``); targets need ``instance_ids``. Eval: per image UPSNet's output for
        the frame fused with its reference (no ids: ``track_video`` tracks)."""
        if len(references) != len(images):
            raise ValueError(f"{len(images)} frames but {len(references)} reference frames")
        if self.training:
            check_panoptic_targets(images, targets)
            check_targets(references, reference_targets)
            assert targets is not None and reference_targets is not None
            for which, group in (("target", targets), ("reference", reference_targets)):
                for i, target in enumerate(group):
                    if "instance_ids" not in target or len(target["instance_ids"]) != len(target["boxes"]):
                        raise ValueError(f"{which} {i}: VPSNet trains on one instance id per box")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        rng = torch.get_rng_state()  # the reference frames draw the same training scale as their targets
        image_list, targets, features = self.detector.features(images, targets)
        torch.set_rng_state(rng)
        reference_list, reference_targets, reference_features = self.detector.features(
            references, reference_targets
        )
        fused = self.fused_features(image_list, features, reference_list, reference_features)
        heads = self.upsnet.run_heads(image_list, fused, targets)
        if not self.training:
            return self.upsnet.postprocess(
                fused, heads.semantic_logits, heads.detections, image_list.image_sizes, original_sizes
            )
        assert targets is not None and reference_targets is not None
        losses = self.upsnet.losses(image_list, fused, heads, targets)
        losses["loss_track"] = self.track_loss(
            fused, reference_features, heads.proposals, targets, reference_targets
        )
        return losses

    def track_loss(
        self,
        features: dict[str, Tensor],
        reference_features: dict[str, Tensor],
        proposals: list[Tensor],
        targets: list[dict[str, Tensor]],
        reference_targets: list[dict[str, Tensor]],
    ) -> Tensor:
        """The track head's cross-entropy over the target's foreground RoIs (module docstring)."""
        roi_heads = self.detector.roi_heads
        boxes, _, matched = roi_heads.sample_rois([p.detach() for p in proposals], targets).foreground()
        labels = [
            reference_column(target["instance_ids"][m], reference["instance_ids"])
            for target, reference, m in zip(targets, reference_targets, matched, strict=True)
        ]
        reference_boxes = [r["boxes"] for r in reference_targets]
        affinities = self.track_head(
            roi_heads.box_roi_pool(features, boxes),
            roi_heads.box_roi_pool(reference_features, reference_boxes),
            [len(b) for b in boxes],
            [len(b) for b in reference_boxes],
        )
        weights = [torch.ones_like(lab, dtype=torch.float32) for lab in labels]
        loss = self.track_head.loss(affinities, labels, weights)
        return loss + sum(p.sum() * 0 for p in self.track_head.parameters())  # every rank touches them

    # -- inference ----------------------------------------------------------------------------------
    @torch.no_grad()
    def track_video(self, frames: list[Tensor]) -> list[dict[str, Tensor]]:
        """One video's frames in order -> per frame the eval output (module docstring)."""
        memory, untracked = TrackMemory(), 0
        previous: tuple[ImageList, dict[str, Tensor]] | None = None
        outputs = []
        for frame in frames:
            original = [(int(frame.shape[-2]), int(frame.shape[-1]))]
            image_list, _, features = self.detector.features([frame])
            reference = previous if previous is not None else (image_list, features)
            fused = self.fused_features(image_list, features, *reference) if self.fusion else features
            previous = (image_list, features)
            heads = self.upsnet.run_heads(image_list, fused, None)
            detection = heads.detections[0]
            chosen = self.upsnet.select_detections(heads.detections)
            object_ids = torch.full_like(detection["labels"], -1)
            boxes = detection["boxes"][chosen[0]]
            if self.tracking:
                object_ids[chosen[0]] = assign_ids(
                    self.track_head,
                    memory,
                    self.detector.roi_heads.box_roi_pool(fused, [boxes]),
                    boxes,
                    detection["labels"][chosen[0]],
                    detection["scores"][chosen[0]],
                )
            else:  # every detection a new object: ids unique in the video, never linked
                object_ids[chosen[0]] = torch.arange(untracked, untracked + len(boxes), device=boxes.device)
                untracked += len(boxes)
            output = self.upsnet.postprocess(
                fused, heads.semantic_logits, heads.detections, image_list.image_sizes, original, chosen
            )[0]
            outputs.append(video_segments(output, object_ids))
        return outputs


def reference_column(instance_ids: Tensor, reference_ids: Tensor) -> Tensor:
    """Per target RoI the track head's label: 1 + the index of the reference object with its instance id,
    0 when the reference frame does not have it."""
    if len(reference_ids) == 0:
        return torch.zeros_like(instance_ids)
    same = instance_ids[:, None] == reference_ids[None, :]
    return torch.where(same.any(dim=1), same.float().argmax(dim=1) + 1, 0)


def video_segments(output: dict[str, Tensor], object_ids: Tensor) -> dict[str, Tensor]:
    """Adds the video ids to UPSNet's per-frame output (module docstring): a stuff segment of class c is
    ``c + 1``; a thing segment whose detection is object k, of class c, is ``THING_ID_OFFSET * (k + 1) + c``
    -- the official ``get_unified_pan_result`` keys a segment by its class and object too, so an object
    whose class changes starts a new tube. Each segment's object is found through its detection
    (``segment_detections``); the official code indexes the object ids by the instance's rank among the
    instances left in the map, which shifts them when a kept detection ends up without pixels."""
    frame_ids, classes = output["panoptic"], output["segment_classes"]
    detections = output["segment_detections"]
    if len(object_ids):
        objects = torch.where(detections >= 0, object_ids[detections.clamp_min(0)], -1)
    else:
        objects = torch.full_like(detections, -1)
    if bool(((detections >= 0) & (objects < 0)).any()):
        raise ValueError("a thing segment's detection has no object id")
    segment_ids = torch.where(detections < 0, classes + 1, THING_ID_OFFSET * (objects + 1) + classes)
    lookup = torch.cat([segment_ids.new_zeros(1), segment_ids])
    output["frame_panoptic"], output["frame_segment_classes"] = frame_ids, classes
    output["panoptic"], output["segment_ids"] = lookup[frame_ids], segment_ids
    output["object_ids"] = object_ids
    return output
