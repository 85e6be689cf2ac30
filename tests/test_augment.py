"""Tests of helpers.training.augment: SpecAugment (paper and authors' variants), MixUp, losses, waveform
augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.training.augment import (
    ce_loss,
    draw_spec_augment_stripes,
    mixup,
    mixup_bce_loss,
    sample_mixup_lambda,
    spec_augment,
    spec_augment_mask,
    SpecAugmentConfig,
    SpecAugmentStripes,
    stripes_to_mask,
)
from helpers.training.wave_augment import pitch_shift, random_wave_augment, time_stretch

T, M = 150, 64  # 16 kHz log-mel shape (time, mel)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- SpecAugment, paper ("batch")
def test_batch_mode_counts_and_widths_over_many_draws():
    g = gen(1)
    counts_t, counts_f = set(), set()
    max_tw = max_fw = 0
    for _ in range(400):
        s = draw_spec_augment_stripes(T, M, g, batch_size=8, mode="batch")
        assert s.time_count.shape == (1,) and s.time_start.shape == (1, 2)
        counts_t.add(int(s.time_count))
        counts_f.add(int(s.freq_count))
        assert int((s.time_width > 0).sum()) <= int(s.time_count)
        max_tw = max(max_tw, int(s.time_width.max()))
        max_fw = max(max_fw, int(s.freq_width.max()))
        # stripes lie inside the axes
        assert bool(((s.time_start + s.time_width) <= T).all()) and bool(((s.freq_start + s.freq_width) <= M).all())
    assert counts_t == {0, 1, 2} and counts_f == {0, 1, 2}
    # widths 0..W inclusive: the maximum is reached over 400 draws
    assert max_tw == 16 and max_fw == 8


def test_batch_mode_mask_is_shared_and_bounded():
    g = gen(2)
    for _ in range(50):
        m = spec_augment_mask((6, 1, T, M), g)
        assert m.shape == (6, 1, T, M) and m.dtype == torch.bool
        assert bool((m == m[0:1]).all())
        time_masked = m[0, 0].all(dim=1).sum()  # fully masked frames
        freq_masked = m[0, 0].all(dim=0).sum()  # fully masked mel bins
        assert time_masked <= 2 * 16 and freq_masked <= 2 * 8


def test_spec_augment_applies_mask_out_of_place_3d_and_4d():
    z = torch.randn(4, 1, T, M)
    z0 = z.clone()
    out = spec_augment(z, gen(3), mask_value=-7.0)
    mask = spec_augment_mask(z.shape, gen(3))
    assert torch.equal(z, z0)  # input untouched
    assert torch.equal(out[mask], torch.full((int(mask.sum()),), -7.0))
    assert torch.equal(out[~mask], z[~mask])
    out3 = spec_augment(z[:, 0], gen(3), mask_value=-7.0)
    assert out3.shape == (4, T, M) and torch.equal(out3, out[:, 0])


def test_determinism_with_same_seed_and_difference_otherwise():
    z = torch.randn(8, 1, T, M)
    for mode in ("batch", "per_example"):
        a = spec_augment(z, gen(5), mode=mode)
        b = spec_augment(z, gen(5), mode=mode)
        assert torch.equal(a, b)
    masks = [spec_augment_mask(z.shape, gen(s), mode="per_example") for s in range(3)]
    assert not torch.equal(masks[0], masks[1]) or not torch.equal(masks[1], masks[2])


# ---------------------------------------------------------------- SpecAugment, authors' code
def test_per_example_mode_exactly_two_plus_two_stripes_widths_below_w():
    g = gen(4)
    max_tw = 0
    for _ in range(100):
        s = draw_spec_augment_stripes(T, M, g, batch_size=16, mode="per_example")
        assert s.time_count.shape == (16,)
        assert bool((s.time_count == 2).all()) and bool((s.freq_count == 2).all())
        assert bool((s.time_width <= 15).all()) and bool((s.freq_width <= 7).all())
        # PANNs: start in 0..size-w-1
        assert bool(((s.time_start + s.time_width) <= T - 1).all())
        max_tw = max(max_tw, int(s.time_width.max()))
    assert max_tw == 15


def test_per_example_masks_differ_across_examples():
    m = spec_augment_mask((16, 1, T, M), gen(6), mode="per_example")
    distinct = {m[i, 0].numpy().tobytes() for i in range(16)}
    assert len(distinct) > 8


def test_min_stripes_and_config_presets():
    s = draw_spec_augment_stripes(T, M, gen(0), batch_size=4, mode="batch", min_stripes=2)
    assert int(s.time_count) == 2
    with pytest.raises(ValueError, match="min_stripes"):
        draw_spec_augment_stripes(T, M, gen(0), min_stripes=3)
    with pytest.raises(ValueError, match="mode"):
        spec_augment(torch.zeros(2, T, M), gen(0), mode="nope")
    z = torch.randn(4, 1, T, M)
    assert torch.equal(SpecAugmentConfig(enabled=False).apply(z, gen(0)), z)
    cfg = SpecAugmentConfig.authors(time_width=64)
    assert cfg.mode == "per_example" and cfg.min_stripes == 2
    assert torch.equal(cfg.apply(z, gen(9)), spec_augment(z, gen(9), mode="per_example", time_width=64))
    assert torch.equal(SpecAugmentConfig.paper().apply(z, gen(9)), spec_augment(z, gen(9)))


def test_stripes_to_mask_by_hand():
    L = torch.tensor
    s = SpecAugmentStripes(L([1]), L([[2, 0]]), L([3, 0]).view(1, 2), L([2]), L([[0, 4]]), L([[1, 0]]))
    m = stripes_to_mask(s, 8, 5)[0]
    expected = torch.zeros(8, 5, dtype=torch.bool)
    expected[2:5] = True
    expected[:, 0:1] = True
    assert torch.equal(m, expected)


def test_short_axis_does_not_fail():
    m = spec_augment_mask((2, 5, 4), gen(0), time_width=16, freq_width=8)
    assert m.shape == (2, 5, 4)


def test_gradient_flows_through_unmasked_bins():
    z = torch.randn(2, 1, 20, 10, requires_grad=True)
    spec_augment(z, gen(1), min_stripes=2).sum().backward()
    mask = spec_augment_mask(z.shape, gen(1), min_stripes=2)
    assert torch.equal(z.grad != 0, ~mask)


# ---------------------------------------------------------------- MixUp
def test_mixup_pairs_and_exact_targets():
    z = torch.randn(8, 1, 6, 5)
    y = F.one_hot(torch.tensor([0, 1, 2, 2, 4, 3, 1, 0]), 5).float()
    zm, ym = mixup(z, y, 0.3)
    assert zm.shape == (4, 1, 6, 5) and ym.shape == (4, 5)
    torch.testing.assert_close(zm, 0.3 * z[0::2] + 0.7 * z[1::2])
    torch.testing.assert_close(ym[0], torch.tensor([0.3, 0.7, 0, 0, 0]))
    torch.testing.assert_close(ym[1], torch.tensor([0, 0, 1.0, 0, 0]))
    torch.testing.assert_close(ym.sum(1), torch.ones(4))


def test_mixup_per_example_lambdas():
    z = torch.randn(6, 1, 4, 3)
    y = torch.eye(6)
    lam = sample_mixup_lambda(1.0, gen(0), per_example=True, batch_size=3)
    assert lam.shape == (3,)
    zm, ym = mixup(z, y, lam)
    for i in range(3):
        torch.testing.assert_close(zm[i], lam[i] * z[2 * i] + (1 - lam[i]) * z[2 * i + 1])
        torch.testing.assert_close(ym[i, 2 * i], lam[i])
    with pytest.raises(ValueError, match="even"):
        mixup(z[:5], y[:5], 0.5)


def test_lambda_distribution():
    g = gen(0)
    lam = sample_mixup_lambda(1.0, g, per_example=True, batch_size=20000)
    assert float(lam.min()) >= 0 and float(lam.max()) <= 1
    assert abs(float(lam.mean()) - 0.5) < 0.01
    assert abs(float(lam.var()) - 1 / 12) < 0.005  # Beta(1, 1) = U(0, 1)
    small = sample_mixup_lambda(0.2, g, per_example=True, batch_size=20000)
    # Beta(0.2, 0.2) is U-shaped: variance 1 / (4 (2a + 1)) = 0.1786
    assert abs(float(small.var()) - 1 / (4 * 1.4)) < 0.01 and not bool(torch.isnan(small).any())
    one = sample_mixup_lambda(1.0, gen(3))
    assert one.ndim == 0
    assert torch.equal(one, sample_mixup_lambda(1.0, gen(3)))


# ---------------------------------------------------------------- losses
def test_bce_loss_equals_manual_formula():
    logits = torch.randn(4, 5)
    y = torch.rand(4, 5)
    p = torch.sigmoid(logits)
    manual = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    torch.testing.assert_close(mixup_bce_loss(logits, y), manual)


def test_ce_loss():
    logits = torch.randn(4, 5)
    idx = torch.tensor([0, 3, 2, 4])
    manual = -torch.log_softmax(logits, 1)[torch.arange(4), idx].mean()
    torch.testing.assert_close(ce_loss(logits, idx), manual)


# ---------------------------------------------------------------- waveform augmentations
def _tone(sr: int = 16000, f: float = 1000.0, n: int = 16000) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[spec.argmax()])


@pytest.mark.slow
def test_pitch_shift_quarter_tones_and_length():
    x = _tone()
    y = pitch_shift(x, 2, 16000)  # 2 quarter tones = 1 semitone
    assert y.shape == x.shape and y.dtype == np.float32
    assert abs(_peak_hz(y) - 1000 * 2 ** (1 / 12)) < 5
    assert np.array_equal(pitch_shift(x, 0, 16000), x)


def test_time_stretch_keeps_length_and_pitch():
    x = _tone(n=8000)
    y = time_stretch(x, 1.1, 16000)
    assert y.shape == x.shape
    assert abs(_peak_hz(y[:4000]) - 1000) < 10
    z = time_stretch(x, 0.9, 16000)
    assert z.shape == x.shape


def test_random_wave_augment_reproducible():
    x = _tone(n=8000)
    a = random_wave_augment(x, 16000, np.random.default_rng(0))
    b = random_wave_augment(x, 16000, np.random.default_rng(0))
    assert a.shape == x.shape and np.array_equal(a, b)
    assert np.array_equal(
        random_wave_augment(x, 16000, np.random.default_rng(0), stretch=None, pitch_quarter_tones=None), x
    )
