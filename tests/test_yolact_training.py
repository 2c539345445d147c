"""YOLACT trains through the shared detection module: a batch without a positive anchor (an image
with no objects) gives a non-finite loss, which skips the optimizer step and is counted; with a
per-device batch below 6 BatchNorm is frozen (statistics and affine parameters unchanged)."""

import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch.utils.data import DataLoader

from datamodules.collate import collate_detection
from datamodules.metadata import DatasetMetadata
from lightning_modules.batchnorm_freeze import FreezeBatchNormBelowBatchSize
from lightning_modules.detection import InstanceSegmentationModule
from tests.presets import small_yolact
from tests.test_yolact import _target


class ThreeImages(LightningDataModule):
    """Objects, no objects, objects -- one image per batch."""

    batch_size = 1

    def train_dataloader(self):
        items = []
        for index, boxes in enumerate([[[10, 10, 60, 50]], [], [[20, 30, 90, 80]]]):
            target = _target(boxes, [2] * len(boxes))
            target["image_id"] = torch.tensor(index)
            items.append((torch.rand(3, 96, 128), target))
        return DataLoader(items, batch_size=1, collate_fn=collate_detection)


def test_empty_batch_is_skipped_and_counted_and_small_batches_freeze_batchnorm(tmp_path):
    metadata = DatasetMetadata(
        class_names=("a", "b", "c", "d"), label_to_category_id={1: 1, 2: 2, 3: 3, 4: 4}, annotation_files={}
    )
    module = InstanceSegmentationModule(
        small_yolact(), metadata, optimizer=lambda params: torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    )
    batchnorm = module.model.backbone.bn1
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, callbacks=[FreezeBatchNormBelowBatchSize(6)], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule=ThreeImages())
    assert module.skipped_nonfinite_steps == 1
    assert trainer.global_step == 3  # Lightning counts the skipped batch as a step
    after = module.model.state_dict()
    assert torch.equal(after["backbone.bn1.running_mean"], before["backbone.bn1.running_mean"])
    assert torch.equal(after["backbone.bn1.weight"], before["backbone.bn1.weight"])
    assert not batchnorm.weight.requires_grad
    assert not torch.equal(after["head.cls.weight"], before["head.cls.weight"])
