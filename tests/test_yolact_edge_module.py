"""YolactEdge's training stages and video evaluation: the frames' COCO view (perfect predictions score AP 1),
keyframe / non-keyframe / all-frame metrics from clips, what each stage trains and freezes, its losses, the
previous stage's checkpoint (strict or reported), the schedule and the clip overlay."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from datamodules.metadata import DatasetMetadata
from datamodules.synthetic.youtube_vis_writer import write_youtube_vis_split
from datamodules.video_clips import collate_clips, split_frame_image_id
from datamodules.youtube_vis import YouTubeVISDataset
from datamodules.youtube_vis_coco import youtube_vis_frames_as_coco
from lightning_modules.lr_schedules import WarmupCosineLR
from lightning_modules.stage_checkpoint import load_stage_checkpoint
from lightning_modules.wandb_overlays import clip_overlay
from lightning_modules.yolact_edge import (
    YolactEdgeFineTuneModule,
    YolactEdgeFlowModule,
    YolactEdgeImageModule,
)
from metrics.coco_evaluation import COCOEvaluation
from models.yolact_edge import YolactEdge
from tests.cli_runs import REPO_ROOT

PRESET = REPO_ROOT / "experiments" / "yolact_edge" / "synthetic_model.yaml"


def small_model(**overrides) -> YolactEdge:
    block = yaml.safe_load(PRESET.read_text())
    assert block["class_path"] == "models.yolact_edge.YolactEdge"
    return YolactEdge(**{**block["init_args"], "image_size": 128, **overrides})


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ytvis")
    write_youtube_vis_split(out, "val", 2, num_frames=6, image_size=64, seed=1)
    return out


def _dataset(videos: Path, clip_length: int = 5) -> YouTubeVISDataset:
    return YouTubeVISDataset(
        videos / "val" / "JPEGImages", videos / "annotations" / "instances_val.json", clip_length, clip_step=5
    )


def _metadata(videos: Path) -> DatasetMetadata:
    dataset = _dataset(videos)
    return DatasetMetadata(
        tuple(dataset.class_names),
        dataset.label_to_category_id,
        {"val": videos / "annotations" / "instances_val.json"},
    )


def _sgd(parameters):
    return torch.optim.SGD(parameters, lr=1e-3, momentum=0.9)


def test_frames_coco_view_scores_the_ground_truth_as_perfect(videos: Path) -> None:
    data = json.loads((videos / "annotations" / "instances_val.json").read_text())
    coco = youtube_vis_frames_as_coco(data)
    assert [split_frame_image_id(image["id"]) for image in coco["images"]] == [
        (v, t) for v in (1, 2) for t in range(6)
    ]
    shown = [(a["id"], t) for a in data["annotations"] for t, s in enumerate(a["segmentations"]) if s]
    assert len(coco["annotations"]) == len(shown) > 5
    for ann, (instance, t) in zip(coco["annotations"], shown, strict=True):
        source = next(a for a in data["annotations"] if a["id"] == instance)
        assert (ann["instance_id"], ann["area"], ann["bbox"]) == (
            instance,
            source["areas"][t],
            source["bboxes"][t],
        )
    dataset = _dataset(videos, clip_length=1)
    evaluator = COCOEvaluation(coco, dataset.label_to_category_id)
    for _, targets in (dataset[i] for i in range(len(dataset))):
        target = targets[0]
        masks = target["masks"][:, None].float()
        prediction = {"boxes": target["boxes"], "labels": target["labels"], "masks": masks}
        evaluator.update([{**prediction, "scores": torch.ones(len(masks))}], [target])
    results = evaluator.compute()
    assert results["segm/AP"].item() == pytest.approx(1.0) and results["bbox/AP"].item() == pytest.approx(1.0)


@pytest.mark.parametrize("non_keyframes", ["warp", "copy", "full"])
def test_clips_are_scored_as_keyframes_non_keyframes_and_all_frames(videos: Path, non_keyframes: str) -> None:
    torch.manual_seed(0)
    module = YolactEdgeFlowModule(
        small_model(score_threshold=0.0),
        _metadata(videos),
        _sgd,
        non_keyframes=non_keyframes,
        overlay_clips=0,
    )  # no Trainer here: the clip overlay is tested on its own
    module.setup("validate")
    module.eval()
    dataset = _dataset(videos)
    assert len(dataset) == 2  # one clip of frames 0-4 per video
    logged: dict = {}
    module.log_dict = lambda values, **_: logged.update(values)
    module.overlays.wants = lambda *_: False  # no Trainer here: the clip overlay is tested on its own
    with torch.no_grad():
        module.evaluation_step(collate_clips([dataset[0], dataset[1]]), "val")
    frames = {
        kind: sorted(
            split_frame_image_id(i)[1]
            for i in torch.cat(module.evaluators[f"val_{kind}"].images)[:, 0].tolist()
        )
        for kind in ("keyframe", "non_keyframe", "all")
    }
    assert frames == {
        "keyframe": [0, 0],
        "non_keyframe": [1, 1, 2, 2, 3, 3, 4, 4],
        "all": sorted(list(range(5)) * 2),
    }
    module.evaluation_epoch_end("val")
    for prefix in ("val/keyframe/", "val/non_keyframe/", "val/"):
        assert 0.0 <= logged[f"{prefix}segm/AP"] <= 1.0 and f"{prefix}bbox/AP" in logged
    assert module.evaluators["val_all"].update_count == 0  # reset for the next pass


def test_no_warping_reuses_the_keyframe_features_and_full_runs_every_frame() -> None:
    torch.manual_seed(0)
    model = small_model(score_threshold=0.0).eval()
    frames = [[torch.rand(3, 64, 64)] for _ in range(3)]
    warped, copied, full = (model.video(frames, mode) for mode in ("warp", "copy", "full"))
    assert torch.equal(warped[0][0]["scores"], copied[0][0]["scores"])  # the keyframe
    assert not torch.equal(warped[1][0]["masks"], copied[1][0]["masks"])
    with torch.no_grad():
        outputs, _ = model.forward_keyframe(frames[2])
    assert torch.equal(model.detections(outputs, frames[2])[0]["scores"], full[2][0]["scores"])
    with pytest.raises(ValueError, match="non_keyframes"):
        model.video(frames, "flow")


def _trainable(module) -> set[str]:
    names = {name for name, p in module.model.named_parameters() if p.requires_grad}
    return {".".join(n.split(".")[:2]) if n.startswith("fpn.") else n.split(".")[0] for n in names}


def test_each_stage_trains_what_the_official_stage_does(videos: Path) -> None:
    metadata = _metadata(videos)
    image = YolactEdgeImageModule(small_model(), metadata, _sgd)
    later = {
        "fpn.output",
        "fpn.downsample",
        "protonet",
        "head",
        "semantic_head",
    }  # the official FPN phase 2 on
    assert _trainable(image) == {"backbone", "fpn.lateral", *later}
    assert _trainable(YolactEdgeFlowModule(small_model(), metadata, _sgd)) == {"flow", "spa"}
    finetune = YolactEdgeFineTuneModule(small_model(), metadata, _sgd, frame_offsets=(1, 2))
    assert _trainable(finetune) == {"flow", "spa", *later}
    finetune.train()
    finetune.on_train_batch_start(None, 0)
    assert not finetune.model.backbone.training and not finetune.model.fpn.lateral.training
    assert finetune.model.head.training


def test_pair_stages_losses_and_gradients(videos: Path) -> None:
    torch.manual_seed(0)
    metadata = _metadata(videos)
    dataset = _dataset(videos, clip_length=3)
    clips, targets = collate_clips([dataset[0], dataset[1]])
    flow = YolactEdgeFlowModule(small_model(), metadata, _sgd, frame_offsets=(1, 2)).train()
    losses = flow.compute_losses(clips, targets)
    assert list(losses) == ["loss_feature_matching"] and 0 < losses["loss_feature_matching"].item() < 2
    losses["loss_feature_matching"].backward()
    assert {n.split(".")[0] for n, p in flow.model.named_parameters() if p.grad is not None} == {
        "flow",
        "spa",
    }
    finetune = YolactEdgeFineTuneModule(small_model(), metadata, _sgd, frame_offsets=(1, 2)).train()
    losses = finetune.compute_losses(clips, targets)
    names = {"loss_class", "loss_box", "loss_mask", "loss_semantic"}
    assert set(losses) == names | {f"{name}_warped" for name in names} | {"loss_feature_matching"}
    assert all(torch.isfinite(value) for value in losses.values())
    with pytest.raises(ValueError, match="frame_offsets"):
        YolactEdgeFlowModule(small_model(), metadata, _sgd, frame_offsets=(2, 5)).compute_losses(
            [clip[:2] for clip in clips], targets
        )


def test_previous_stage_checkpoint_loads_strictly_or_reports_names(videos: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = YolactEdgeImageModule(small_model(), _metadata(videos), _sgd)
    path = tmp_path / "stage.ckpt"
    torch.save({"state_dict": source.state_dict()}, path)
    module = YolactEdgeFlowModule(small_model(), _metadata(videos), _sgd, checkpoint=path)
    assert torch.equal(module.model.head.cls.weight, source.model.head.cls.weight)
    other = {k: v for k, v in source.state_dict().items() if not k.startswith("model.spa.")}
    other["model.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": other}, path)
    with pytest.raises(ValueError, match=r"missing \['spa\.refine\.0\.0\.weight"):
        YolactEdgeFlowModule(small_model(), _metadata(videos), _sgd, checkpoint=path)
    missing, unexpected = load_stage_checkpoint(small_model(), path, strict=False)
    assert all(name.startswith("spa.") for name in missing) and missing and unexpected == ["extra.weight"]


def test_warm_up_then_cosine_as_the_official_train_py() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-4)
    schedule = WarmupCosineLR(optimizer, max_steps=1000, warmup_steps=10, warmup_factor=0.0)
    assert [schedule.factor(step) for step in (0, 5, 10)] == [0.0, 0.5, 1.0]
    assert schedule.factor(11) == pytest.approx((math.cos(math.pi * 11 / 1000) + 1) / 2)
    assert schedule.factor(1000) == pytest.approx(0.0)


def test_clip_overlay_puts_the_frames_side_by_side() -> None:
    frames = [torch.zeros(3, 20, 30) for _ in range(3)]
    mask = torch.zeros(1, 1, 20, 30)
    mask[..., 5:10, 5:10] = 1
    prediction = {"labels": torch.tensor([2]), "scores": torch.tensor([0.9]), "masks": mask}
    image = clip_overlay(frames, [prediction] * 3, ["a (key)", "b", "c"], 0.5)
    assert image.image.size == (90, 20) and image._caption == "a (key) | b | c"
    pixels = torch.from_numpy(__import__("numpy").asarray(image.image))
    assert pixels[7, 37].sum() > 0 and pixels[0, 0].sum() == 0  # painted inside the mask only
