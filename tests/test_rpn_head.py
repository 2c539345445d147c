"""Under bf16 autocast, proposals and final boxes are decoded in float32 (no 4-8 px bf16 grid)."""

import torch
from torchvision.models.detection.rpn import RPNHead

from models.rpn_head import Float32RPNHead
from tests.presets import small_mask_rcnn


def test_float32_rpn_head_is_torchvisions_head_with_float32_outputs():
    torch.manual_seed(0)
    ours, reference = Float32RPNHead(16, 3), RPNHead(16, 3)
    reference.load_state_dict(ours.state_dict(), strict=True)
    features = [torch.randn(1, 16, 8, 8), torch.randn(1, 16, 4, 4)]
    for a, b in zip(ours(features)[0], reference(features)[0], strict=True):
        torch.testing.assert_close(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        objectness, deltas = ours(features)
        assert reference(features)[1][0].dtype == torch.bfloat16
    assert {t.dtype for t in objectness + deltas} == {torch.float32}


def test_bf16_detections_are_not_snapped_to_the_bf16_grid():
    """Boxes in the 512-1024 px range would land on multiples of 4 if decoded in bf16."""
    torch.manual_seed(0)
    model = small_mask_rcnn(num_classes=2, min_size=800, max_size=800, box_score_thresh=0.0).eval()
    image = torch.rand(3, 800, 800)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        [detections] = model([image])
    boxes = detections["boxes"]
    assert boxes.dtype == torch.float32 and len(boxes) > 0
    large = boxes[boxes > 512]
    assert len(large) > 0
    assert ((large % 4) != 0).float().mean() > 0.5
