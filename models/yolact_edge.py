"""YolactEdge (Liu et al. 2021, "YolactEdge: Real-time Instance Segmentation on the Edge", ICRA, Sec. 3):
YOLACT on video, reusing a keyframe's expensive features on the frames that follow.

- a keyframe (every ``keyframe_interval`` = 5 frames) runs the full YOLACT network and keeps its C3
  lateral and its P4, P5 before the FPN's output convs (``forward_keyframe``);
- a non-keyframe runs the backbone up to C3 only and the C3 lateral conv, estimates the motion from
  the keyframe with FeatFlowNet (``models.yolact_edge_flow``), warps the keyframe's P4 and P5 along it
  and applies the predicted per-pixel scale and bias (the partial feature transform), rebuilds P3 as
  its own C3 lateral + the upsampled warped P4, refines P4, P5 with the official code's ``SPA``, and
  runs YOLACT's FPN output convs, P6/P7, heads, protonet and semantic conv unchanged
  (``forward_non_keyframe``).

Composed from ``models.yolact.Yolact`` (its flat settings; ``forward`` on single images is the
keyframe network) plus ``flow`` and ``spa``. Defaults follow the official ``yolact_edge_vid_config``
(R101, 550x550, YouTube-VIS's 40 classes: 54,381,375 parameters; ``backbone_depth=50`` is
``yolact_edge_vid_resnet50_config``, 35,389,247), whose flow options are listed in
``models.yolact_edge_flow``. As in the official forward, the non-keyframe's C3 lateral is detached
(the second training stage fine-tunes the flow, SPA and everything after the FPN's merge, never the
backbone or the laterals) and the cached keyframe features are detached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from models.yolact import Yolact
from models.yolact_edge_flow import SPA, FeatFlowNet, transform_features
from models.yolact_fpn import add_upsampled

C3_STAGE = "layer2"  # torchvision's name of the ResNet stage whose output is C3
NON_KEYFRAME_MODES = ("warp", "copy", "full")


class FrameFeatures(NamedTuple):
    """What a frame leaves for the next ones: its C3 lateral (B, C, H3, W3) and its P4, P5 before the
    FPN's output convs (the official ``FPN_phase_1`` outputs that are warped)."""

    lateral: Tensor
    levels: tuple[Tensor, ...]


class YolactEdge(Yolact):
    """YOLACT plus FeatFlowNet (and SPA) for video; ``yolact_settings`` are ``Yolact``'s.

    ``forward_keyframe(images)`` -> (YOLACT's network outputs, the frame's ``FrameFeatures``, detached);
    ``forward_non_keyframe(images, keyframe)`` -> (the same outputs, the warped ``FrameFeatures`` that
    the feature-matching loss compares with the full network's); ``video(frames)`` -> detections per
    frame with a keyframe every ``keyframe_interval`` frames. Images are lists like ``Yolact``'s; a
    non-keyframe batch holds the frames that follow the keyframe batch's, video for video.
    """

    def __init__(
        self,
        num_classes: int = 40,
        *,
        keyframe_interval: int = 5,
        flow_reduce_channels: int = 64,
        flow_encode_channels: int = 64,
        spa: bool = True,
        **yolact_settings: Any,
    ) -> None:
        super().__init__(num_classes, **yolact_settings)
        if keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be >= 1, got {keyframe_interval}")
        self.keyframe_interval = keyframe_interval
        channels = self.fpn.output[0].out_channels
        self.flow = FeatFlowNet(channels, flow_reduce_channels, flow_encode_channels)
        self.spa = SPA(channels, levels=2) if spa else None

    def backbone_to_c3(self, x: Tensor) -> Tensor:
        """The backbone's stem and stages up to C3; the later stages never run."""
        for name, module in self.backbone.items():
            x = module(x)
            if name == C3_STAGE:
                return x
        raise RuntimeError(f"the backbone has no stage {C3_STAGE!r}")

    def forward_keyframe(self, images: list[Tensor]) -> tuple[dict[str, Tensor], FrameFeatures]:
        merged, laterals = self.fpn.top_down(list(self.backbone(self.transform(images)).values()))
        outputs = self.predict(self.fpn.outputs(merged))
        return outputs, FrameFeatures(laterals[0].detach(), tuple(level.detach() for level in merged[1:]))

    def forward_non_keyframe(
        self, images: list[Tensor], keyframe: FrameFeatures, warp: bool = True
    ) -> tuple[dict[str, Tensor], FrameFeatures]:
        """``warp=False``: the no-warping baseline -- the keyframe's P4, P5 reused as they are (zero flow,
        no scale, bias or SPA), P3 still rebuilt from this frame's C3 lateral."""
        lateral = self.fpn.lateral[0](self.backbone_to_c3(self.transform(images))).detach()
        if lateral.shape != keyframe.lateral.shape:
            raise ValueError(
                f"non-keyframe C3 lateral {tuple(lateral.shape)} differs from the keyframe's "
                f"{tuple(keyframe.lateral.shape)}: same batch size and image size needed"
            )
        if not warp:
            p3 = add_upsampled(lateral, keyframe.levels[0])
            return self.predict(self.fpn.outputs([p3, *keyframe.levels])), FrameFeatures(
                lateral, keyframe.levels
            )
        fields = self.flow(lateral, keyframe.lateral)
        warped = [transform_features(f, field) for f, field in zip(keyframe.levels, fields, strict=True)]
        p3 = add_upsampled(lateral, warped[0])
        if self.spa is not None:
            warped = self.spa(lateral, warped)
        outputs = self.predict(self.fpn.outputs([p3, *warped]))
        return outputs, FrameFeatures(lateral, tuple(warped))

    @torch.no_grad()
    def video(
        self, frames: Sequence[list[Tensor]], non_keyframes: str = "warp"
    ) -> list[list[dict[str, Tensor]]]:
        """Eval-mode detections for consecutive frames (each a batch, one image per video), the
        official evaluation's schedule: frame ``i`` is a keyframe when ``i % keyframe_interval == 0``.
        ``non_keyframes``: ``"warp"`` (YolactEdge), ``"copy"`` (the keyframe's P4, P5 unwarped:
        ``forward_non_keyframe(..., warp=False)``) or ``"full"`` (every frame runs the full network)."""
        if non_keyframes not in NON_KEYFRAME_MODES:
            raise ValueError(f"non_keyframes must be one of {NON_KEYFRAME_MODES}, got {non_keyframes!r}")
        keyframe: FrameFeatures | None = None
        results = []
        for index, images in enumerate(frames):
            if index % self.keyframe_interval == 0 or keyframe is None or non_keyframes == "full":
                outputs, keyframe = self.forward_keyframe(images)
            else:
                outputs, _ = self.forward_non_keyframe(images, keyframe, warp=non_keyframes == "warp")
            results.append(self.detections(outputs, images))
        return results

    def added_modules(self) -> list[nn.Module]:
        """What YolactEdge adds to YOLACT (FeatFlowNet, and SPA when used)."""
        return [self.flow] if self.spa is None else [self.flow, self.spa]
