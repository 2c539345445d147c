import torch
from pycocotools import mask as mask_utils

from metrics.coco_results import coco_detections, keep_mapped_labels


def _prediction() -> dict[str, torch.Tensor]:
    masks = torch.zeros(2, 1, 20, 30)
    masks[0, 0, 2:8, 3:9] = 0.9
    masks[1, 0, 10:15, 20:28] = 0.7
    masks[1, 0, 0, 0] = 0.4  # below the 0.5 threshold
    return {
        "boxes": torch.tensor([[3.0, 2.0, 9.0, 8.0], [20.0, 10.0, 28.0, 15.0]]),
        "labels": torch.tensor([1, 12]),
        "scores": torch.tensor([0.9, 0.6]),
        "masks": masks,
    }


def test_detections_become_coco_results_with_xywh_boxes_and_rle_masks():
    prediction = _prediction()
    results = coco_detections(prediction, image_id=7, label_to_category_id={1: 5, 12: 44})
    assert [r["category_id"] for r in results] == [5, 44]
    assert results[1]["bbox"] == [20.0, 10.0, 8.0, 5.0]
    assert results[0]["image_id"] == 7 and abs(results[1]["score"] - 0.6) < 1e-6
    decoded = mask_utils.decode(results[1]["segmentation"])
    assert decoded.shape == (20, 30) and decoded.sum() == 5 * 8 and decoded[0, 0] == 0


def test_labels_without_a_category_are_dropped_and_reported():
    kept, dropped = keep_mapped_labels(_prediction(), {1: 5})
    assert dropped == [12]
    assert (
        kept["labels"].tolist() == [1] and kept["masks"].shape == (1, 1, 20, 30) and len(kept["boxes"]) == 1
    )
    unchanged, none = keep_mapped_labels(_prediction(), None)
    assert none == [] and len(unchanged["labels"]) == 2
