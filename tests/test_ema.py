"""Tests of helpers.training.ema: arithmetic by hand, buffers, correct vs. the authors' reference mode, schedules,
checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers.training.ema import ExponentialMovingAverage


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def set_live(model: nn.Module, value: float) -> None:
    """Give every parameter and float buffer the value ``value`` (a stand-in for an optimiser step)."""
    with torch.no_grad():
        for t in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            t.fill_(value)
        model[1].num_batches_tracked.fill_(int(value * 10))


def shadow_value(ema: ExponentialMovingAverage) -> torch.Tensor:
    return ema.shadow[0].weight[0, 0].clone()


def test_before_start_the_shadow_copies_the_live_model():
    model = tiny()
    ema = ExponentialMovingAverage(model, decay=0.9, start_step=5)
    assert ema.shadow is not model and not ema.shadow.training
    assert all(not p.requires_grad for p in ema.shadow.parameters())
    for step in range(5):
        set_live(model, float(step))
        ema.update(model, step)
        for a, b in zip(ema.shadow.state_dict().values(), model.state_dict().values()):
            assert torch.equal(a, b)
    assert ema.num_updates == 0


def test_closed_form_after_k_updates_and_buffers_averaged():
    d, start = 0.9, 3
    model = tiny()
    ema = ExponentialMovingAverage(model, decay=d, start_step=start)
    values = [0.5, -1.0, 2.0, 4.0, 3.0, -2.0, 1.5]  # live value after each step
    for step, v in enumerate(values):
        set_live(model, v)
        ema.update(model, step)
    # shadow = d^k w_{start-1} + sum_{j=1..k} (1 - d) d^{k-j} w_{start-1+j}
    k = len(values) - start
    expected = d**k * values[start - 1] + sum((1 - d) * d ** (k - j) * values[start - 1 + j] for j in range(1, k + 1))
    assert ema.num_updates == k
    for t in list(ema.shadow.parameters()):
        torch.testing.assert_close(t, torch.full_like(t, expected))
    bn = ema.shadow[1]
    torch.testing.assert_close(bn.running_mean, torch.full_like(bn.running_mean, expected))
    torch.testing.assert_close(bn.running_var, torch.full_like(bn.running_var, expected))
    assert int(bn.num_batches_tracked) == int(values[-1] * 10)  # integer buffer copied


def test_average_buffers_false_copies_running_stats():
    model = tiny()
    ema = ExponentialMovingAverage(model, decay=0.5, start_step=1, average_buffers=False)
    set_live(model, 0.0)
    ema.update(model, 0)
    set_live(model, 2.0)
    ema.update(model, 1)
    assert torch.equal(ema.shadow[1].running_mean, model[1].running_mean)  # copied: 2
    torch.testing.assert_close(ema.shadow[0].bias, torch.full((2,), 1.0))  # averaged: .5*0 + .5*2


def test_correct_mode_never_touches_the_live_model():
    model = tiny()
    ema = ExponentialMovingAverage(model, decay=0.5, start_step=1)
    set_live(model, 1.0)
    ema.update(model, 0)
    set_live(model, 3.0)
    ema.update(model, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert ema.after_evaluation(model, step=1) is False
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert float(shadow_value(ema)) == pytest.approx(2.0)


def test_reference_mode_overwrites_live_parameters_at_evaluation():
    model = tiny()
    ema = ExponentialMovingAverage(model, decay=0.5, start_step=2, mode="reference")
    set_live(model, 1.0)
    ema.update(model, 0)
    set_live(model, 5.0)
    ema.update(model, 1)
    assert ema.after_evaluation(model, step=1) is False  # before start_step: untouched
    assert float(model[0].weight.detach()[0, 0]) == 5.0
    ema.update(model, 2)  # shadow 0.5*5 + 0.5*5 = 5
    set_live(model, 9.0)
    ema.update(model, 3)  # shadow 0.5*5 + 0.5*9 = 7
    assert ema.after_evaluation(model, step=3) is True
    for p in model.parameters():  # live parameters := EMA
        torch.testing.assert_close(p, torch.full_like(p, 7.0))
    assert float(model[1].running_mean[0]) == 9.0  # live buffers are not touched
    assert model[0].weight.requires_grad  # still trainable
    # Training now continues from 7, not 9: the next update differs from correct mode's.
    correct = ExponentialMovingAverage(tiny(), decay=0.5, start_step=2)
    m2 = tiny()
    for step, v in enumerate([1.0, 5.0, 5.0, 9.0]):
        set_live(m2, v)
        correct.update(m2, step)
    correct.after_evaluation(m2, 3)
    assert float(m2[0].weight.detach()[0, 0]) == 9.0
    ema.update(model, 4)
    correct.update(m2, 4)
    assert float(shadow_value(ema)) == pytest.approx(7.0)  # 0.5*7 + 0.5*7
    assert float(shadow_value(correct)) == pytest.approx(8.0)  # 0.5*7 + 0.5*9


def test_warmup_schedule_values():
    ema = ExponentialMovingAverage(tiny(), decay=0.995, start_step=0, decay_schedule="warmup")
    assert ema.current_decay() == pytest.approx(2 / 11)
    assert ema.current_decay(10) == pytest.approx(11 / 20)
    assert ema.current_decay(10_000) == pytest.approx(0.995)  # capped
    assert ExponentialMovingAverage(tiny(), decay_schedule="constant").current_decay(1) == 0.995
    model = tiny()
    ema = ExponentialMovingAverage(model, decay=0.995, start_step=0, decay_schedule="warmup")
    set_live(model, 0.0)
    ema.copy_from(model)
    set_live(model, 1.0)
    ema.update(model, 0)  # d = 2/11
    assert float(shadow_value(ema)) == pytest.approx(9 / 11)
    ema.update(model, 1)  # d = 3/12
    assert float(shadow_value(ema)) == pytest.approx(1 - (2 / 11) * (3 / 12))


def test_state_dict_round_trip_and_resume():
    model = tiny()
    ema = ExponentialMovingAverage(model, decay=0.8, start_step=1, decay_schedule="warmup")
    for step, v in enumerate([1.0, 2.0, 3.0]):
        set_live(model, v)
        ema.update(model, step)
    state = ema.state_dict()
    other = ExponentialMovingAverage(tiny(), decay=0.8, start_step=1, decay_schedule="warmup")
    other.load_state_dict(state)
    assert other.num_updates == ema.num_updates == 2
    for a, b in zip(other.shadow.state_dict().values(), ema.shadow.state_dict().values()):
        assert torch.equal(a, b)
    set_live(model, 4.0)
    ema.update(model, 3)
    other.update(model, 3)
    assert torch.equal(shadow_value(ema), shadow_value(other))
    with pytest.raises(ValueError, match="decay_schedule"):
        ExponentialMovingAverage(tiny(), decay=0.8, start_step=1).load_state_dict(state)


def test_bad_settings_and_mismatched_model():
    with pytest.raises(ValueError, match="mode"):
        ExponentialMovingAverage(tiny(), mode="buggy")
    ema = ExponentialMovingAverage(tiny())
    with pytest.raises(ValueError, match="same"):
        ema.update(nn.Linear(3, 2), 20_000)
