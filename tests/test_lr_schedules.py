import pytest
import torch

from lightning_modules.lr_schedules import LinearDecayLR, WarmupMultiStepLR


def _optimizer(lr: float = 0.02) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_warmup_then_steps_matches_detectron2_1x():
    scheduler = WarmupMultiStepLR(_optimizer(), [60_000, 80_000], 0.1, warmup_steps=1000, warmup_factor=0.001)
    assert scheduler.factor(0) == pytest.approx(0.001)
    assert scheduler.factor(500) == pytest.approx(0.001 * 0.5 + 0.5)
    assert scheduler.factor(1000) == 1.0
    assert scheduler.factor(59_999) == 1.0
    assert scheduler.factor(60_000) == pytest.approx(0.1)
    assert scheduler.factor(80_000) == pytest.approx(0.01)
    assert scheduler.get_last_lr() == pytest.approx([0.02 * 0.001])


def test_schedule_state_survives_a_round_trip():
    optimizer = _optimizer()
    scheduler = WarmupMultiStepLR(optimizer, [20], 0.1, warmup_steps=10, warmup_factor=0.1)
    for _ in range(25):
        optimizer.step()
        scheduler.step()
    restored = WarmupMultiStepLR(_optimizer(), [], 1.0, warmup_steps=1, warmup_factor=1.0)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.milestones == [20]
    assert restored.get_last_lr() == pytest.approx([0.002])
    restored.step()
    assert restored.get_last_lr() == pytest.approx([0.002])


def test_unsorted_milestones_are_rejected():
    with pytest.raises(ValueError, match="increasing"):
        WarmupMultiStepLR(_optimizer(), [80, 60])


def test_linear_decay_is_the_official_pix2pix_cyclegan_rule():
    """junyanz's lambda_rule with epoch_count 1, n_epochs 100, n_epochs_decay 100, written out here."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    schedule = LinearDecayLR(optimizer, constant_steps=100, decay_steps=100)
    rates = []
    for _ in range(200):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    official = [2e-4 * (1.0 - max(0, epoch + 1 - 100) / float(100 + 1)) for epoch in range(200)]
    assert rates == pytest.approx(official, rel=1e-12)
    assert rates[99] == 2e-4 and rates[100] == pytest.approx(2e-4 * 100 / 101)
    assert rates[-1] == pytest.approx(2e-4 / 101)
