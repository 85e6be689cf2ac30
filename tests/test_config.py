"""TrainConfig: validation, the run key (stable across versions: run folders are named by it) and
the options that reach the training set-up, the authors' EMA among them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.training.config import KEY_OMITTED_DEFAULTS, TrainConfig
from helpers.training.steps import build_training

TINY = {"channels": [4, 8, 16, 32]}


def test_run_keys_of_existing_run_folders_do_not_move():
    # Run folders on disk are named by these keys (computed by the code before the package was
    # split into subpackages); a change here would orphan every finished run.
    assert TrainConfig().key() == TrainConfig(cpu_amp=False).key()
    cfg = TrainConfig(
        corpus="unused",
        sample_rate=8000,
        iterations=40,
        eval_every=20,
        ema_start=10,
        checkpoint_every=20,
        batch_size=8,
        model="cnn10",
        model_options={"channels": [8, 16, 32, 64]},
        seed=3,
        device="cpu",
        num_threads=1,
    )
    assert cfg.key() == "6534de76c2"


def test_options_added_later_enter_the_key_only_when_set():
    base = TrainConfig()
    for name, default in KEY_OMITTED_DEFAULTS.items():
        assert TrainConfig(**{name: default}).key() == base.key()
    assert TrainConfig(ema_decay_schedule="warmup").key() != base.key()
    assert TrainConfig(ema_average_buffers=False).key() != base.key()
    assert TrainConfig(cpu_amp=True).key() != base.key()
    # paths, device and logging never change results, so they never change the key
    assert TrainConfig(out_dir="elsewhere", device="cpu", log_every=1, num_threads=1).key() == base.key()


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="ema_decay_schedule"):
        TrainConfig(ema_decay_schedule="linear")
    with pytest.raises(ValueError, match="sample_rate"):
        TrainConfig(sample_rate=22050)
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"lerning_rate": 1e-3})


def test_the_authors_ema_is_reachable_from_the_config():
    labels = np.repeat(np.arange(3), 4)
    for schedule, buffers in (("constant", True), ("warmup", False)):
        cfg = TrainConfig(
            model="cnn6",
            model_options=TINY,
            ema_decay_schedule=schedule,
            ema_average_buffers=buffers,
            ema_mode="reference",
            batch_size=4,
            device="cpu",
            channels_last=False,
        )
        ema = build_training(cfg, 3, torch.device("cpu"), labels).ema
        assert (ema.decay_schedule, ema.average_buffers, ema.mode) == (schedule, buffers, "reference")
        if schedule == "warmup":
            assert ema.current_decay(1) == pytest.approx(2 / 11)


def test_front_end_options_reach_the_feature_settings():
    default = TrainConfig().feature_settings()
    assert (default.clip_samples, default.n_mels, default.fmin, default.resolved_fmax) == (47_860, 64, 10.0, 8000.0)
    cfg = TrainConfig(sample_rate=8000, clip_seconds=5.0, n_mels=32, fmin=200.0, fmax=3000.0)
    s = cfg.feature_settings()
    assert (s.clip_samples, s.n_frames, s.n_mels, s.fmin, s.resolved_fmax) == (40_000, 126, 32, 200.0, 3000.0)
    assert cfg.key() != TrainConfig(sample_rate=8000).key()
    # the model is built for the configured number of mel bands
    setup = build_training(
        TrainConfig(model_options=TINY, n_mels=32, device="cpu"), 3, torch.device("cpu"), np.array([0, 1, 2])
    )
    assert setup.model.n_mels == 32


def test_impossible_front_ends_are_named():
    with pytest.raises(ValueError, match="fmax"):
        TrainConfig(sample_rate=8000, fmax=6000.0)
    with pytest.raises(ValueError, match="clip_seconds"):
        TrainConfig(clip_seconds=0.01)
