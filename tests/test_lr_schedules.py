import pytest
import torch

from lightning_modules.lr_schedules import WarmupMultiStepFactor, warmup_multistep


def test_warmup_then_steps_matches_detectron2_1x():
    factor = WarmupMultiStepFactor(
        warmup_steps=1000, warmup_factor=0.001, milestones=[60_000, 80_000], gamma=0.1
    )
    assert factor(0) == pytest.approx(0.001)
    assert factor(500) == pytest.approx(0.001 * 0.5 + 0.5)
    assert factor(1000) == 1.0
    assert factor(59_999) == 1.0
    assert factor(60_000) == pytest.approx(0.1)
    assert factor(80_000) == pytest.approx(0.01)


def test_schedule_state_survives_a_round_trip():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.02)
    scheduler = warmup_multistep(optimizer, 10, 0.1, [20], 0.1)
    for _ in range(25):
        optimizer.step()
        scheduler.step()
    restored_optimizer = torch.optim.SGD([parameter], lr=0.02)
    restored = warmup_multistep(restored_optimizer, 1, 1.0, [], 1.0)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.lr_lambdas[0].milestones == [20]
    assert restored.get_last_lr() == pytest.approx([0.002])


def test_unsorted_milestones_are_rejected():
    with pytest.raises(ValueError, match="increasing"):
        WarmupMultiStepFactor(10, 0.1, [80, 60], 0.1)
