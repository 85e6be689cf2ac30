"""Audio loading: mono, resampled, padded or truncated, deterministic, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from helpers.data.audio import AudioError, CLIP_SAMPLES_16K, clip_samples, load_clip, pad_or_truncate, resample
from tests.conftest import write_tone


def test_clip_lengths():
    assert clip_samples(16000) == CLIP_SAMPLES_16K == 47860
    assert clip_samples(8000) == 23930


def test_load_clip_pads_truncates_downmixes_resamples(tmp_path):
    write_tone(tmp_path / "short.wav", 440, seconds=1.0)
    x = load_clip(tmp_path / "short.wav")
    assert x.shape == (47860,) and x.dtype == np.float32 and np.all(x[16000:] == 0)
    write_tone(tmp_path / "long.wav", 440, seconds=4.0, sr=44100, channels=2)
    y = load_clip(tmp_path / "long.wav", sample_rate=8000)
    assert y.shape == (23930,) and np.abs(y).max() > 0.25
    assert load_clip(tmp_path / "short.wav", length=0).shape == (16000,)
    assert np.array_equal(load_clip(tmp_path / "long.wav"), load_clip(tmp_path / "long.wav"))


def test_resample_keeps_frequency():
    sr = 16000
    t = np.arange(sr) / sr
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    y = resample(x, sr, 8000)
    spectrum = np.abs(np.fft.rfft(y))
    assert y.shape == (8000,) and abs(np.argmax(spectrum) * 8000 / len(y) - 1000) < 2


def test_pad_or_truncate():
    assert pad_or_truncate(np.ones(3, np.float32), 5).tolist() == [1, 1, 1, 0, 0]
    assert pad_or_truncate(np.ones(7, np.float32), 5).shape == (5,)


def test_errors_name_the_file(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"nope")
    with pytest.raises(AudioError, match="bad.wav"):
        load_clip(tmp_path / "bad.wav")
    x = np.zeros(100, np.float32)
    x[5] = np.inf
    sf.write(tmp_path / "inf.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="inf.wav.*NaN or Inf"):
        load_clip(tmp_path / "inf.wav")
