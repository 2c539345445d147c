from pathlib import Path

from zoo.runs.location import RUN_ID_ENV, resolve_run_id, resolve_run_location, slurm_run_id
from zoo.tracking.wandb_setup import wandb_credentials_available, wandb_mode


def test_explicit_id_wins_then_exported_then_slurm():
    environ = {RUN_ID_ENV: "from-parent", "SLURM_JOB_ID": "123", "LOCAL_RANK": "1"}
    assert resolve_run_id("mine", environ) == "mine"
    assert resolve_run_id(None, environ) == "from-parent"
    assert resolve_run_id(None, {"SLURM_JOB_ID": "123"}) == "slurm-123"


def test_exported_id_is_only_inherited_by_launched_child_processes():
    assert resolve_run_id(None, {RUN_ID_ENV: "earlier-run", "SLURM_JOB_ID": "5"}) == "slurm-5"


def test_slurm_array_jobs_get_one_id_per_task():
    assert (
        slurm_run_id({"SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "2"})
        == "slurm-7_2"
    )


def test_new_local_ids_differ():
    assert resolve_run_id(None, {}) != resolve_run_id(None, {})


def test_location_exports_its_id_for_child_processes(tmp_path: Path, monkeypatch):
    location = resolve_run_location("mask_rcnn_synthetic", tmp_path, None)
    import os

    assert os.environ[RUN_ID_ENV] == location.run_id
    assert location.root == tmp_path / "mask_rcnn_synthetic" / location.run_id
    assert location.checkpoints.parent == location.root
    assert location.wandb_id.startswith("mask_rcnn_synthetic-")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_run_location("mask_rcnn_synthetic", tmp_path, None).run_id == location.run_id


def test_wandb_is_offline_without_credentials(tmp_path: Path):
    assert wandb_mode({"NETRC": str(tmp_path / "absent")}) == "offline"
    assert wandb_mode({"WANDB_API_KEY": "x" * 40}) == "online"
    assert wandb_mode({"WANDB_MODE": "disabled", "WANDB_API_KEY": "x"}) == "disabled"
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    assert wandb_credentials_available({"NETRC": str(netrc_file)})
