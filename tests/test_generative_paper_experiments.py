"""The generative family's paper-reproduction experiments: each YAML parses as ``zoo fit --print_config``
resolves it, states its recipe (pix2pix facades and Cityscapes, CycleGAN horse2zebra and SRResNet/SRGAN x4
as their papers and official code train them, fast style transfer as pytorch/examples does), builds through
the real CLI -- model with its full-size networks at the official parameter counts, data module, CPU trainer,
nothing trained -- and declares published numbers that ``zoo compare`` reads, in metric names the module
logs. The pretrained loss and metric networks' files are not here: the tests swap in random weights, and
check that without the file the error names the YAML's path."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from datamodules.unpaired_images import UnpairedImagesDataModule
from lightning_modules.generative import GenerativeModule
from metrics.fcn_score import FCNScore
from models.srresnet import SRResNet
from tests.cli_runs import REPO_ROOT
from zoo.cli import ZooCLI, run_cli
from zoo.compare.published import PublishedResult
from zoo.runs.config_file import SaveAndLogConfig
from zoo.runs.location import RUN_ID_ENV
from zoo.runs.records import published_results

EXPERIMENTS = REPO_ROOT / "experiments"
FACADES = EXPERIMENTS / "pix2pix" / "facades.yaml"
CITYSCAPES = EXPERIMENTS / "pix2pix" / "cityscapes_labels_to_photo.yaml"
HORSE2ZEBRA = EXPERIMENTS / "cyclegan" / "horse2zebra.yaml"
SRRESNET = EXPERIMENTS / "super_resolution" / "srresnet_x4.yaml"
SRGAN = EXPERIMENTS / "super_resolution" / "srgan_x4.yaml"
STYLE = EXPERIMENTS / "style_transfer" / "coco2014.yaml"

FCN_METRICS = {"val/FCN_per_pixel_accuracy", "val/FCN_per_class_accuracy", "val/FCN_class_IoU"}
RANDOM_VGG = (
    "--model.init_args.vgg.init_args.weights_path=null",
    "--model.init_args.vgg.init_args.random_weights_for_tests=true",
)
RANDOM_FCN = (
    "--model.init_args.fcn_score.init_args.weights_path=null",
    "--model.init_args.fcn_score.init_args.random_weights_for_tests=true",
)
RANDOM_FID = (
    "--model.init_args.fid_features.init_args.weights_path=null",
    "--model.init_args.fid_features.init_args.random_weights_for_tests=true",
)
RANDOM_WEIGHTS = pytest.mark.filterwarnings("ignore:.*RANDOM weights:UserWarning")


def resolved(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The config ``zoo fit --config <config> --print_config`` prints (it exits with status 0)."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def built(config: Path, runs: Path, monkeypatch: pytest.MonkeyPatch, *overrides: str) -> ZooCLI:
    """What ``zoo fit --config <config>`` builds -- the module with its full-size networks, the data module
    and the trainer, on the CPU -- without running it (``zoo.cli.run_cli``'s CLI with ``run=False``)."""
    monkeypatch.delenv(RUN_ID_ENV, raising=False)  # the CLI exports the run id; restored afterwards
    arguments = ["--config", str(config), "--trainer.accelerator=cpu", "--trainer.devices=1"]
    arguments += ["--trainer.strategy=auto", "--wandb=false", f"--runs_dir={runs}", "--run_id=built"]
    return ZooCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=SaveAndLogConfig,
        save_config_kwargs={"save_to_log_dir": False},
        run=False,
        args=[*arguments, *overrides],
    )


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def logged_metrics(module: GenerativeModule) -> set[str]:
    """The metrics the module logs at its evaluations: ``<split>/<name>``, and ``<split>/<name>_<key>`` for
    each entry of a metric computing a dict (the FCN score; ``GenerativeModule.evaluation_epoch_end``)."""
    names = set()
    for split, metrics in module.evaluation_metrics.items():
        for name, metric in metrics.items():
            if isinstance(metric, FCNScore):
                with warnings.catch_warnings():  # computed before any update: an empty confusion matrix
                    warnings.simplefilter("ignore")
                    names |= {f"{split}/{name}_{key}" for key in metric.compute()}
                metric.reset()
            else:
                names.add(f"{split}/{name}")
    return names


def published_of(config: dict[str, Any], cli: ZooCLI) -> list[PublishedResult]:
    """The published results as ``zoo compare`` reads them from a run's config.yaml, which are the ones the
    CLI parsed (``--published``, a list of ``PublishedResult``)."""
    read = published_results(config["published"], "the printed config")
    assert len(read) == len(config["published"])  # none skipped as malformed
    assert all(isinstance(result, PublishedResult) for result in cli.config_init["published"])
    assert cli.config_init["published"] == read
    return read


def missing_file_error(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, *overrides: str
) -> None:
    """Built from an empty working directory (so the YAML's relative path cannot exist), the experiment
    stops with an error naming ``path``."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=re.escape(path)):
        built(config, tmp_path / "runs", monkeypatch, *overrides)


def official_linear_lrs(lr: float, n_epochs: int, n_epochs_decay: int) -> list[float]:
    """The official ``lr_policy linear`` (networks.get_scheduler, epoch_count 1): the lr of each epoch."""
    return [
        lr * (1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1))
        for epoch in range(n_epochs + n_epochs_decay)
    ]


def epoch_lrs(cli: ZooCLI, epochs: int) -> list[list[float]]:
    """Each optimizer's lr in each epoch, the schedules stepped once per epoch as the module steps them."""
    optimizers, schedulers = cli.model.configure_optimizers()
    lrs = []
    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": no training here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(epochs):
            lrs.append([optimizer.param_groups[0]["lr"] for optimizer in optimizers])
            for scheduler in schedulers:
                scheduler.step()
    return lrs


def assert_pix2pix_official_networks_and_optimisation(module: dict[str, Any]) -> None:
    generator, discriminator = module["generator"], module["discriminator"]
    assert generator["class_path"] == "models.unet_generator.UNetGenerator"
    assert generator["init_args"] == {
        "in_channels": 3,
        "out_channels": 3,
        "num_downs": 8,  # unet_256
        "base_channels": 64,
        "norm": "batch",
        "dropout": True,
        "official_weights": None,  # trained from scratch (a released latest_net_G.pth would go here)
    }
    assert discriminator["class_path"] == "models.patch_gan.PatchGANDiscriminator"
    assert discriminator["init_args"] == {
        "in_channels": 6,
        "base_channels": 64,
        "num_layers": 3,
        "norm": "batch",
    }
    assert module["optimizer"]["class_path"] == "torch.optim.Adam"
    adam = module["optimizer"]["init_args"]
    assert (adam["lr"], adam["betas"]) == (2e-4, [0.5, 0.999])
    assert module["lr_scheduler"]["class_path"] == "lightning_modules.lr_schedules.LinearDecayLR"
    assert module["lr_scheduler"]["init_args"] == {
        "constant_steps": 100,
        "decay_steps": 100,
        "last_epoch": -1,
    }
    assert module["lr_schedule_interval"] == "epoch"
    assert module["discriminator_optimizer"] is None and module["discriminator_lr_scheduler"] is None  # = G's
    assert (module["l1_weight"], module["gan_mode"], module["paper_inference"]) == (100.0, "vanilla", True)


def test_pix2pix_facades_is_the_official_recipe(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resolved(FACADES, capsys)
    assert config["model"]["class_path"] == "lightning_modules.pix2pix.Pix2Pix"
    assert_pix2pix_official_networks_and_optimisation(config["model"]["init_args"])
    data = config["data"]["init_args"]
    assert config["data"]["class_path"] == "datamodules.paired_images.PairedImagesDataModule"
    assert data["root"] == "data/facades" and data["direction"] == "BtoA"  # label map (B) -> photo (A)
    assert (data["load_size"], data["crop_size"], data["flip"], data["batch_size"]) == (286, 256, True, 1)
    assert (data["val_split"], data["test_split"]) == ("val", "test")
    assert config["trainer"]["max_epochs"] == 200 and config["trainer"]["max_steps"] == -1  # epochs decide
    cli = built(FACADES, tmp_path, monkeypatch)
    assert parameters(cli.model.generator) == 54_413_955  # the official unet_256
    assert parameters(cli.model.discriminator) == 2_768_705  # the official basic D on 6 channels, BatchNorm
    assert published_of(config, cli) == []  # the paper has no facades number in a metric Pix2Pix logs
    official = official_linear_lrs(2e-4, 100, 100)
    assert epoch_lrs(cli, 200) == [[pytest.approx(lr), pytest.approx(lr)] for lr in official]  # G and D


@RANDOM_WEIGHTS
def test_pix2pix_cityscapes_is_the_facades_recipe_on_labels_to_photo_with_the_fcn_score(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resolved(CITYSCAPES, capsys)
    module = config["model"]["init_args"]
    facades = resolved(FACADES, capsys)["model"]["init_args"]
    assert facades["fcn_score"] is None
    assert {k: v for k, v in module.items() if k != "fcn_score"} == {
        k: v for k, v in facades.items() if k != "fcn_score"
    }
    segmenter = module["fcn_score"]
    assert segmenter["class_path"] == "metrics.fcn_score.ExportedSegmenter"
    assert segmenter["init_args"]["weights_path"] == "data/pretrained/fcn8s_cityscapes.pt"
    assert list(segmenter["init_args"]["input_size"]) == [1024, 2048]  # the official FCN-8s's input
    data = config["data"]["init_args"]
    assert data["root"] == "data/cityscapes"
    # prepare_cityscapes_dataset.py pastes the photo left (A), the colour label map right (B)
    assert data["direction"] == "BtoA"
    assert (data["val_split"], data["test_split"]) == ("test", "test")  # it writes Cityscapes val as test/
    assert (data["load_size"], data["crop_size"], data["flip"], data["batch_size"]) == (286, 256, True, 1)
    assert config["trainer"]["max_epochs"] == 200

    cli = built(CITYSCAPES, tmp_path, monkeypatch, *RANDOM_FCN)
    pix2pix, ground_truth = published_of(config, cli)
    assert pix2pix.metrics == {
        "val/FCN_per_pixel_accuracy": 0.66,
        "val/FCN_per_class_accuracy": 0.23,
        "val/FCN_class_IoU": 0.17,
    }
    assert ground_truth.metrics == {
        "val/FCN_per_pixel_accuracy": 0.80,
        "val/FCN_per_class_accuracy": 0.26,
        "val/FCN_class_IoU": 0.21,
    }
    assert (
        "Table 1" in pix2pix.source and "L1+cGAN" in pix2pix.source and "Ground truth" in ground_truth.source
    )
    assert set(pix2pix.metrics) == set(ground_truth.metrics) == FCN_METRICS <= logged_metrics(cli.model)
    missing_file_error(CITYSCAPES, tmp_path, monkeypatch, "data/pretrained/fcn8s_cityscapes.pt")


@RANDOM_WEIGHTS
def test_cyclegan_horse2zebra_is_the_official_recipe(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resolved(HORSE2ZEBRA, capsys)
    module = config["model"]["init_args"]
    assert config["model"]["class_path"] == "lightning_modules.cyclegan.CycleGAN"
    for name in ("generator_a_to_b", "generator_b_to_a"):
        assert module[name]["class_path"] == "models.resnet_generator.ResNetGenerator"
        assert module[name]["init_args"] == {
            "in_channels": 3,
            "out_channels": 3,
            "base_channels": 64,
            "num_blocks": 9,  # resnet_9blocks
            "norm": "instance",
            "padding": "reflect",
            "dropout": False,
            "official_weights": None,
        }
    for name in ("discriminator_a", "discriminator_b"):
        assert module[name]["class_path"] == "models.patch_gan.PatchGANDiscriminator"
        assert module[name]["init_args"] == {
            "in_channels": 3,
            "base_channels": 64,
            "num_layers": 3,
            "norm": "instance",
        }
    assert (module["cycle_weight"], module["identity_weight"]) == (10.0, 0.5)
    assert (module["pool_size"], module["gan_mode"]) == (50, "lsgan")
    adam = module["optimizer"]["init_args"]
    assert (adam["lr"], adam["betas"]) == (2e-4, [0.5, 0.999])
    schedule = module["lr_scheduler"]["init_args"]
    assert (schedule["constant_steps"], schedule["decay_steps"], module["lr_schedule_interval"]) == (
        100,
        100,
        "epoch",
    )
    fid = module["fid_features"]
    assert fid["class_path"] == "metrics.generative_features.FIDInceptionV3"
    assert fid["init_args"]["weights_path"] == "data/pretrained/pt_inception-2015-12-05-6726825d.pth"
    data = config["data"]["init_args"]
    assert data["root"] == "data/horse2zebra" and data["direction"] == "AtoB"  # horse -> zebra
    assert (data["load_size"], data["crop_size"], data["flip"], data["batch_size"]) == (286, 256, True, 1)
    # validation reads testA/testB, as the published FID was measured
    assert data["val_split"] == UnpairedImagesDataModule.default_val_split == "test"
    assert config["trainer"]["max_epochs"] == 200

    cli = built(HORSE2ZEBRA, tmp_path, monkeypatch, *RANDOM_FID)
    generators, discriminators = cli.model.generator, cli.model.discriminator
    assert [parameters(generators[name]) for name in ("a_to_b", "b_to_a")] == [11_378_179] * 2
    assert [parameters(discriminators[name]) for name in ("a", "b")] == [2_764_737] * 2
    assert [pool.size for pool in cli.model.fake_pools.values()] == [50, 50]
    [reference] = published_of(config, cli)
    assert reference.metrics == {"val/FID": 62.111} and "mmagic" in reference.source
    assert set(reference.metrics) <= logged_metrics(cli.model)
    official = official_linear_lrs(2e-4, 100, 100)
    assert epoch_lrs(cli, 200) == [[pytest.approx(lr), pytest.approx(lr)] for lr in official]
    missing_file_error(
        HORSE2ZEBRA, tmp_path, monkeypatch, "data/pretrained/pt_inception-2015-12-05-6726825d.pth"
    )


def assert_sr_benchmarks(config: dict[str, Any], published: list[PublishedResult], logged: set[str]) -> None:
    """Set14 is the validation set and Set5 the test set; each published entry names its benchmark and
    that benchmark's split's metrics, which the module logs."""
    data = config["data"]["init_args"]
    assert (data["val_images"], data["test_images"]) == (
        "data/sr_benchmarks/Set14",
        "data/sr_benchmarks/Set5",
    )
    for result in published:
        [split] = {name.split("/")[0] for name in result.metrics}
        assert set(result.metrics) == {f"{split}/PSNR", f"{split}/SSIM"} <= logged
        assert f"on {Path(data[f'{split}_images']).name} " in result.source and "Table 2" in result.source
    splits = sorted(name.split("/")[0] for result in published for name in result.metrics)
    assert splits == ["test", "test", "val", "val"]
    crops = (data["scale"], data["hr_crop_size"], data["batch_size"], data["flip_and_rotate"])
    assert crops == (4, 96, 16, False)
    assert data["train_images"] == "data/imagenet_sr350k"


def test_srresnet_x4_is_the_paper_recipe(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resolved(SRRESNET, capsys)
    module = config["model"]["init_args"]
    assert config["model"]["class_path"] == "lightning_modules.super_resolution.SRResNet"
    assert module["generator"]["init_args"] == {
        "scale": 4,
        "num_blocks": 16,
        "channels": 64,
        "in_channels": 3,
    }
    assert module["scale"] == 4 and module["lr_scheduler"] is None
    adam = module["optimizer"]["init_args"]
    assert (adam["lr"], adam["betas"]) == (1e-4, [0.9, 0.999])
    trainer = config["trainer"]
    assert trainer["max_steps"] == 1_000_000 and trainer["check_val_every_n_epoch"] is None
    assert trainer["max_steps"] % trainer["val_check_interval"] == 0  # the last validation is at the end
    cli = built(SRRESNET, tmp_path, monkeypatch)
    assert parameters(cli.model.generator) == 1_548_547
    published = published_of(config, cli)
    assert_sr_benchmarks(config, published, logged_metrics(cli.model))
    assert [result.metrics for result in published] == [
        {"test/PSNR": 32.05, "test/SSIM": 0.9019},  # Set5
        {"val/PSNR": 28.49, "val/SSIM": 0.8184},  # Set14
    ]
    assert "--run_id srresnet" in SRRESNET.read_text()  # the run srgan_x4.yaml starts from


@RANDOM_WEIGHTS
def test_srgan_x4_is_the_paper_recipe_from_the_srresnet_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resolved(SRGAN, capsys)
    srresnet = resolved(SRRESNET, capsys)
    module = config["model"]["init_args"]
    assert config["model"]["class_path"] == "lightning_modules.super_resolution.SRGAN"
    assert module["generator"] == srresnet["model"]["init_args"]["generator"]
    assert module["generator_checkpoint"] == f"runs/{srresnet['experiment']}/srresnet/checkpoints/last.ckpt"
    assert module["discriminator"]["init_args"] == {"in_channels": 3, "base_channels": 64, "input_size": 96}
    assert module["discriminator"]["init_args"]["input_size"] == config["data"]["init_args"]["hr_crop_size"]
    assert module["vgg"]["init_args"] == {
        "arch": "vgg19",
        "layers": ["relu5_4"],
        "weights_path": "data/pretrained/vgg19-dcbb9e9d.pth",
        "random_weights_for_tests": False,
    }
    assert module["adversarial_weight"] == 1e-3 and module["discriminator_steps"] == 1
    adam = module["optimizer"]["init_args"]
    assert (adam["lr"], adam["betas"]) == (1e-4, [0.9, 0.999])
    # 10^5 generator steps at 1e-4, 10^5 at 1e-5: the schedule steps once per generator step
    assert module["lr_scheduler"]["class_path"] == "torch.optim.lr_scheduler.MultiStepLR"
    assert module["lr_scheduler"]["init_args"] == {"milestones": [100_000], "gamma": 0.1, "last_epoch": -1}
    assert module["lr_schedule_interval"] == "step" and config["trainer"]["max_steps"] == 200_000
    assert config["trainer"]["max_steps"] % config["trainer"]["val_check_interval"] == 0

    # a trained SRResNet's checkpoint (generator.* weights) starts the generator
    block = srresnet["model"]["init_args"]["generator"]
    trained = SRResNet(**block["init_args"])
    checkpoint = tmp_path / "srresnet.ckpt"
    torch.save({"state_dict": {f"generator.{k}": v for k, v in trained.state_dict().items()}}, checkpoint)
    start = f"--model.init_args.generator_checkpoint={checkpoint}"
    cli = built(SRGAN, tmp_path, monkeypatch, *RANDOM_VGG, start)
    for name, value in cli.model.generator.state_dict().items():
        assert torch.equal(value, trained.state_dict()[name]), name
    assert parameters(cli.model.generator) == 1_548_547
    assert parameters(cli.model.discriminator) == 23_563_649  # Fig. 4 at 96 x 96
    assert cli.model.content_layer == "relu5_4"
    published = published_of(config, cli)
    assert_sr_benchmarks(config, published, logged_metrics(cli.model))
    assert [result.metrics for result in published] == [
        {"test/PSNR": 29.40, "test/SSIM": 0.8472},  # Set5
        {"val/PSNR": 26.02, "val/SSIM": 0.7397},  # Set14
    ]
    missing_file_error(SRGAN, tmp_path, monkeypatch, "data/pretrained/vgg19-dcbb9e9d.pth", start)


@RANDOM_WEIGHTS
def test_style_transfer_coco2014_is_the_pytorch_examples_recipe(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resolved(STYLE, capsys)
    module = config["model"]["init_args"]
    assert config["model"]["class_path"] == "lightning_modules.style_transfer.StyleTransfer"
    assert module["generator"]["class_path"] == "models.transformer_net.TransformerNet"
    assert module["vgg"]["init_args"]["arch"] == "vgg16"
    assert module["vgg"]["init_args"]["weights_path"] == "data/pretrained/vgg16-397923af.pth"
    style_layers = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    assert module["vgg"]["init_args"]["layers"] == module["style_layers"] == style_layers
    assert module["content_layer"] == "relu2_2"
    assert (module["content_weight"], module["style_weight"], module["tv_weight"]) == (1e5, 1e10, 0.0)
    assert module["style_size"] is None and module["lr_scheduler"] is None
    assert module["optimizer"]["class_path"] == "torch.optim.Adam"
    assert module["optimizer"]["init_args"]["lr"] == 1e-3
    data = config["data"]["init_args"]
    assert data["content_images"] == "data/coco/train2014"
    assert data["style_image"] == "data/style_transfer/mosaic.jpg"  # the example's default style
    assert (data["image_size"], data["batch_size"]) == (256, 4)
    assert config["trainer"]["max_epochs"] == 2

    style = tmp_path / "style.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(style)
    cli = built(STYLE, tmp_path, monkeypatch, *RANDOM_VGG, f"--data.init_args.style_image={style}")
    assert parameters(cli.model.generator) == 1_679_235  # pytorch/examples' TransformerNet
    assert published_of(config, cli) == []  # no number in the logged metrics
    missing_file_error(
        STYLE,
        tmp_path,
        monkeypatch,
        "data/pretrained/vgg16-397923af.pth",
        f"--data.init_args.style_image={style}",
    )
    missing_file_error(STYLE, tmp_path, monkeypatch, "data/style_transfer/mosaic.jpg", *RANDOM_VGG)
