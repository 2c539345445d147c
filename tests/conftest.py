"""Shared fixtures: the real sample data beside the checkout, and runs that never reach the network."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_wandb_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never talk to W&B servers and never read the developer's credentials."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("ZOO_RUN_ID", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (shared/ beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic COCO world (8 train / 5 val images of 64 px): 5 so DDP pads a rank."""
    from datamodules.synthetic.coco_writer import write_coco_instances

    out = tmp_path_factory.mktemp("synthetic")
    write_coco_instances(out, "train", num_images=8, image_size=64, seed=0)
    write_coco_instances(out, "val", num_images=5, image_size=64, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_generative(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic world's generative layouts, tiny (8 train / 4 val images of 64 px), written by the
    real ``zoo synthetic`` tool: pix2pix/, cyclegan/, sr/, style/, classes/."""
    from zoo.tools import synthetic

    out = tmp_path_factory.mktemp("synthetic_generative")
    formats = "pix2pix,cyclegan,sr,style,classes"
    arguments = ["--out", str(out), "--train-images", "8", "--val-images", "4", "--size", "64"]
    assert synthetic.main([*arguments, "--formats", formats]) == 0
    return out
