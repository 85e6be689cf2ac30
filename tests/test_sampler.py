"""Tests of helpers.training.sampler: class balance, exclusion of unknown labels, no repeats before a class is used
up, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.training.sampler import BalancedBatchSampler, UniformBatchSampler

# Train-set-like imbalance (docs/reference.md §1), scaled down: 50 / 32 / 2.3 / 12.6 / 3 %.
SIZES = [346, 222, 16, 87, 21]


def make_labels(seed: int = 0, unknown: int = 0) -> np.ndarray:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(SIZES)] + [np.full(unknown, -1)])
    return np.random.default_rng(seed).permutation(labels)


def test_class_cycle_and_exact_balance():
    labels = make_labels()
    s = BalancedBatchSampler(labels, batch_size=32, seed=0)
    k = len(SIZES)
    batches = [next(s) for _ in range(k * 40)]  # 40 full cycles of K batches = 1280 cycles of K slots
    assert all(b.shape == (32,) and b.dtype == np.int64 for b in batches)
    stream = np.concatenate(batches)
    # slot j belongs to class j mod K, across batch boundaries
    assert np.array_equal(labels[stream], np.arange(stream.size) % k)
    counts = np.bincount(labels[stream], minlength=k)
    assert np.all(counts == stream.size // k)
    # a single batch: every class gets 6 or 7 of the 32 slots
    per_batch = np.bincount(labels[batches[0]], minlength=k)
    assert per_batch.min() >= 32 // k and per_batch.max() <= 32 // k + 1


def test_unknown_labels_excluded():
    labels = make_labels(unknown=50)
    s = BalancedBatchSampler(labels, batch_size=64, seed=1)
    stream = np.concatenate([next(s) for _ in range(100)])
    assert np.all(labels[stream] >= 0)
    assert s.class_sizes == SIZES


def test_every_example_used_before_repeats():
    labels = make_labels()
    s = BalancedBatchSampler(labels, batch_size=32, seed=2)
    stream = np.concatenate([next(s) for _ in range(200)])
    for c, n in enumerate(SIZES):
        drawn = stream[labels[stream] == c]
        full = drawn.size // n
        assert full >= 1
        for r in range(full):  # each pass is a permutation of the class
            assert np.array_equal(np.sort(drawn[r * n : (r + 1) * n]), np.flatnonzero(labels == c))
        assert np.unique(drawn[full * n :]).size == drawn.size - full * n
    # reshuffled between passes (the guenon list, 16 examples, is used many times)
    g = stream[labels[stream] == 2]
    assert not np.array_equal(g[:16], g[16:32])


def test_empty_class_raises_with_fix():
    labels = np.array([0, 0, 2, 2, -1])
    with pytest.raises(ValueError, match=r"class 1 has no example.*UniformBatchSampler"):
        BalancedBatchSampler(labels, 4, seed=0)
    with pytest.raises(ValueError, match="class 3"):
        BalancedBatchSampler(np.array([0, 1, 2]), 4, seed=0, n_classes=4)


def test_seed_determinism():
    labels = make_labels()
    a = BalancedBatchSampler(labels, 32, seed=7)
    b = BalancedBatchSampler(labels, 32, seed=7)
    c = BalancedBatchSampler(labels, 32, seed=8)
    sa = [next(a) for _ in range(20)]
    assert all(np.array_equal(x, next(b)) for x in sa)
    assert not all(np.array_equal(x, next(c)) for x in sa)


@pytest.mark.parametrize("kind", ["balanced", "uniform"])
def test_resume_gives_identical_batches(kind):
    labels = make_labels(unknown=5)

    def build():
        if kind == "balanced":
            return BalancedBatchSampler(labels, batch_size=64, seed=3)
        return UniformBatchSampler(len(labels), batch_size=64, seed=3)

    ref = build()
    reference = [next(ref) for _ in range(60)]
    run = build()
    for _ in range(23):  # interrupted after 23 batches (mid-epoch, mid-class lists)
        next(run)
    state = json.loads(json.dumps(run.state_dict()))  # through a JSON checkpoint
    resumed = build()
    next(resumed)  # a fresh sampler that already moved on
    resumed.load_state_dict(state)
    for i in range(23, 60):
        assert np.array_equal(next(resumed), reference[i]), f"batch {i} differs after resume"


def test_load_state_checks_compatibility():
    s = BalancedBatchSampler(make_labels(), 32, seed=0)
    other = BalancedBatchSampler(make_labels()[:500], 32, seed=0)
    with pytest.raises(ValueError, match="same training labels"):
        other.load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="kind"):
        UniformBatchSampler(10, 4, 0).load_state_dict(s.state_dict())


def test_uniform_epochs_without_replacement():
    n, bs = 50, 16
    s = UniformBatchSampler(n, bs, seed=0)
    stream = np.concatenate([next(s) for _ in range(25)])  # 400 = 8 epochs
    epochs = stream.reshape(8, n)
    assert all(np.array_equal(np.sort(e), np.arange(n)) for e in epochs)
    assert not np.array_equal(epochs[0], epochs[1])
    assert s.epoch == 7


def test_shuffled_slots_let_mixup_pairs_share_a_class_and_stay_reproducible():
    labels = np.array([0] * 10 + [1] * 10)
    plain = BalancedBatchSampler(labels, 8, seed=3)
    pairs = np.concatenate([labels[plain.next_batch()].reshape(-1, 2) for _ in range(20)])
    assert (pairs[:, 0] != pairs[:, 1]).all()  # the cycle: every consecutive pair mixes the two classes
    shuffled = BalancedBatchSampler(labels, 8, seed=3, shuffle_slots=True)
    batches = [shuffled.next_batch() for _ in range(20)]
    pairs = np.concatenate([labels[b].reshape(-1, 2) for b in batches])
    assert (pairs[:, 0] == pairs[:, 1]).any() and (pairs[:, 0] != pairs[:, 1]).any()
    assert all(np.bincount(labels[b], minlength=2).tolist() == [4, 4] for b in batches)  # still balanced
    again = BalancedBatchSampler(labels, 8, seed=3, shuffle_slots=True)
    for _ in range(5):
        again.next_batch()
    resumed = BalancedBatchSampler(labels, 8, seed=3, shuffle_slots=True)
    resumed.load_state_dict(again.state_dict())
    assert all((resumed.next_batch() == b).all() for b in batches[5:10])
