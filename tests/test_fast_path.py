"""The fast path (channels-last memory layout) computes the same thing as the plain path: same
losses and weights, fp32 on CPU, same seed.

Dropout is switched off in both: torch draws a dropout mask in memory order, so the two layouts
drop different (equally distributed) elements from the same random stream. Everything else,
BatchNorm, SpecAugment, MixUp, the loss and Adam, must agree to float rounding."""

from __future__ import annotations

import pytest
import torch

from helpers.models.registry import create_model
from helpers.training.steps import make_step_function
from helpers.training.config import TrainConfig

# Trains models, runs notebooks or starts processes: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

TINY = {"channels": [8, 16, 32, 64]}


def _run(config: TrainConfig, steps: int = 4):
    torch.manual_seed(0)
    model = create_model("cnn10", 5, **TINY)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    step = make_step_function(model, optimizer, config, 5, torch.device("cpu"), gen)
    data = torch.Generator().manual_seed(2)
    x = torch.randn(steps, 64, 75, 64, generator=data) * 20 - 50
    y = torch.randint(0, 5, (steps, 64), generator=data)
    torch.manual_seed(3)  # dropout draws from the global generator
    losses = [float(step(x[i], y[i])) for i in range(steps)]
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("mixup", [True, False])
def test_channels_last_matches_plain(mixup):
    plain = TrainConfig(channels_last=False, mixup=mixup)
    fast = TrainConfig(channels_last=True, mixup=mixup)
    loss_a, w_a = _run(plain)
    loss_b, w_b = _run(fast)
    # The first step sees identical weights: only summation order differs.
    assert loss_a[0] == pytest.approx(loss_b[0], rel=1e-5)
    # Later steps: Adam divides by |gradient|, so rounding in near-zero gradients is amplified
    # into whole lr-sized steps; compare the gap between paths with how far training moved.
    assert loss_a == pytest.approx(loss_b, rel=2e-3)
    torch.manual_seed(0)
    w0 = create_model("cnn10", 5, **TINY).state_dict()
    moved = sum(float((w_a[k] - w0[k]).float().norm() ** 2) for k in w_a if w_a[k].is_floating_point()) ** 0.5
    gap = sum(float((w_a[k] - w_b[k]).float().norm() ** 2) for k in w_a if w_a[k].is_floating_point()) ** 0.5
    assert moved > 0.05, "the runs did not move: the comparison would be empty"
    assert gap < 0.01 * moved, f"fast and plain paths differ by {gap:.2e} against a movement of {moved:.2e}"


def test_cpu_amp_is_an_approximation_of_the_fp32_path():
    # bf16 autocast (TrainConfig.cpu_amp) is a deliberate deviation, not the same computation:
    # its losses follow the fp32 ones to bf16 rounding (8 bits of mantissa), no closer.
    loss_fp32, w_fp32 = _run(TrainConfig(channels_last=True))
    loss_bf16, w_bf16 = _run(TrainConfig(channels_last=True, cpu_amp=True))
    assert loss_bf16[0] == pytest.approx(loss_fp32[0], rel=2e-2)
    assert loss_bf16 != loss_fp32, "cpu_amp changed nothing: autocast is not applied on the CPU"
    assert all(torch.isfinite(v).all() for v in w_bf16.values() if v.is_floating_point())


def test_new_options_at_their_defaults_keep_run_keys():
    base = TrainConfig()
    assert TrainConfig(cpu_amp=False).key() == base.key()
    assert TrainConfig(cpu_amp=True).key() != base.key()
    # Scoring batch size does not change results, so it never enters the key.
    assert TrainConfig(eval_batch_size=7).key() == base.key()
