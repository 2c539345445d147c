"""YolactEdge through the zoo CLI: the three synthetic stages chained on a tiny synthetic video world (each
starts from the previous stage's checkpoint and logs keyframe / non-keyframe / all-frame mask AP), and the
YouTube-VIS experiments carry the official settings and published numbers with their sources."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from datamodules.synthetic.youtube_vis_writer import write_youtube_vis_split
from models.yolact_edge import YolactEdge
from tests.cli_runs import REPO_ROOT, read_metrics, split_arguments
from zoo.cli import run_cli

EXPERIMENTS = REPO_ROOT / "experiments" / "yolact_edge"
STAGES = ("synthetic_image", "synthetic_flow", "synthetic_finetune")


@pytest.mark.timeout(300)
def test_synthetic_stages_chain_checkpoints_and_log_keyframe_metrics(tmp_path: Path) -> None:
    data = tmp_path / "ytvis"
    write_youtube_vis_split(data, "train", 2, num_frames=4, image_size=64, seed=0)
    write_youtube_vis_split(data, "val", 1, num_frames=5, image_size=64, seed=0)
    checkpoint = None
    for stage in STAGES:
        arguments = [
            "fit",
            f"--config={EXPERIMENTS / f'{stage}.yaml'}",
            *split_arguments(data, "{split}/JPEGImages", "annotations/instances_{split}.json"),
            "--data.init_args.num_workers=0",
            "--data.init_args.batch_size=2",
            "--model.init_args.model.init_args.image_size=128",
            f"--runs_dir={tmp_path / 'runs'}",
            "--run_id=tiny",
            "--wandb=false",
            "--trainer.max_steps=2",
            "--trainer.val_check_interval=2",
        ]
        if checkpoint is not None:
            arguments.append(f"--model.init_args.checkpoint={checkpoint}")
        cli = run_cli(arguments)
        run_dir = tmp_path / "runs" / f"yolact_edge_{stage}" / "tiny"
        [record] = [r for r in read_metrics(run_dir) if "val/segm/AP" in r]
        assert {"val/keyframe/segm/AP", "val/non_keyframe/segm/AP", "val/bbox/AP"} <= set(record)
        if checkpoint is not None:  # started from the previous stage's weights; its frozen parts kept them
            assert cli.model.hparams.checkpoint == str(checkpoint)
            before = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
            after = cli.model.state_dict()
            for name in ("model.backbone.conv1.weight", "model.backbone.bn1.running_mean"):
                assert torch.equal(after[name], before[name]), (stage, name)
            assert not torch.equal(after["model.flow.reduce.0.weight"], before["model.flow.reduce.0.weight"])
            trained_head = stage == "synthetic_finetune"
            assert (
                torch.equal(after["model.head.cls.weight"], before["model.head.cls.weight"]) != trained_head
            )
        checkpoint = run_dir / "checkpoints" / "last.ckpt"
        assert checkpoint.is_file()


# The official README's YouTube-VIS table (haotian-liu/yolact_edge, "Model Zoo": mask mAP, Jetson AGX Xavier
# with TensorRT and RTX 2080 Ti fps) and the parameter counts of the official video configs.
PUBLISHED = {
    "ytvis_r50": (50, 35_389_247, 0.440, "32.4", "177.6"),
    "ytvis_r101": (101, 54_381_375, 0.462, "30.8", "172.7"),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_youtube_vis_experiments_are_the_official_configs(name: str, capsys: pytest.CaptureFixture) -> None:
    depth, parameters, mask_ap, xavier_fps, rtx_fps = PUBLISHED[name]
    path = EXPERIMENTS / f"{name}.yaml"
    config = yaml.safe_load(path.read_text())
    module = config["model"]["init_args"]
    assert module["non_keyframes"] == "warp" and module["frame_offsets"] == [2, 5]
    assert (module["matching_locations"], module["matching_distance"]) == ("L+P", "cosine")
    settings = {**module["model"]["init_args"], "backbone_weights": None}
    assert settings["backbone_depth"] == depth and settings["num_classes"] == 40
    assert settings["image_size"] == 550 and settings["keyframe_interval"] == 5
    assert sum(p.numel() for p in YolactEdge(**settings).parameters()) == parameters
    assert module["optimizer"]["init_args"] == {"lr": 0.0002, "momentum": 0.9, "weight_decay": 0.0005}
    schedule = module["lr_scheduler"]["init_args"]
    assert schedule == {"max_steps": 200000, "warmup_steps": 500, "warmup_factor": 0.0}
    assert config["trainer"]["max_steps"] == 200000
    data = config["data"]["init_args"]
    assert (data["batch_size"], data["clip_length"], data["val_clip_length"]) == (8, 6, 5)
    assert data["train_transforms"]["init_args"] == {"size": 550, "expand": False}
    [published] = config["published"]
    assert published["metrics"] == {"val/segm/AP": mask_ap}
    assert all(text in published["source"] for text in ("haotian-liu/yolact_edge", xavier_fps, rtx_fps))
    suffix = "_resnet50" if depth == 50 else ""
    for official in ("yolact_edge_youtubevis", "yolact_edge_vid_trainflow", "yolact_edge_vid"):
        assert f"`{official}{suffix}_config`" in path.read_text()  # the stages' official configs, cited
    with pytest.raises(SystemExit) as exit_info:  # the CLI parses it (nothing is instantiated)
        run_cli(["fit", f"--config={path}", "--print_config"])
    assert exit_info.value.code == 0 and "YolactEdgeFineTuneModule" in capsys.readouterr().out
