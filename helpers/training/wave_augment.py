"""Waveform augmentations (time stretch, pitch shift; the paper tried them and found no gain) and
the bank of augmented log-mels the training loop draws from.

They act on waveforms and so imply new log-mels: they run once, when the bank is built (CPU,
numpy, librosa), never inside the training step. The first librosa call in a process takes
several seconds (numba compiles its kernels); later calls take tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from helpers.core.fileio import atomic_write
from helpers.core.progress import progress_bar
from helpers.data.audio import load_clip, pad_or_truncate
from helpers.data.corpus import Corpus
from helpers.features.frontend import FeatureSettings, LogMel
from helpers.training.config import TrainConfig


def time_stretch(wave: np.ndarray, rate: float, sample_rate: int) -> np.ndarray:
    """Stretch a mono waveform ``(samples,)`` in time by ``rate`` without changing its pitch.

    ``rate > 1`` speeds up (shorter sound), ``rate < 1`` slows down; the paper draws ``rate``
    uniformly in [0.9, 1.1]. librosa's phase vocoder does the work; the result is zero-padded or
    truncated back to the input length so cached feature shapes do not change. ``sample_rate``
    (Hz) is unused by the phase vocoder but kept so all waveform augmentations share a signature.
    Slow (tens of ms): run it when computing features, not in the training step.
    """
    del sample_rate
    if rate <= 0:
        raise ValueError(f"time_stretch rate={rate} must be > 0.")
    wave = np.asarray(wave, dtype=np.float32)
    if rate == 1.0:
        return wave.copy()
    import librosa  # imported lazily: only feature computation with augmentation needs it

    out = librosa.effects.time_stretch(wave, rate=float(rate))
    return pad_or_truncate(out.astype(np.float32), wave.shape[-1])


def pitch_shift(wave: np.ndarray, quarter_tones: float, sample_rate: int) -> np.ndarray:
    """Shift the pitch of a mono waveform ``(samples,)`` by ``quarter_tones`` (1 = 50 cents).

    The paper shifts by 0 to 3 quarter tones up or down; librosa is called with
    ``n_steps = quarter_tones / 2`` semitones. The output keeps the input length (padded or
    truncated). Slow: run it when computing features.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if quarter_tones == 0:
        return wave.copy()
    import librosa

    out = librosa.effects.pitch_shift(wave, sr=int(sample_rate), n_steps=quarter_tones / 2.0, bins_per_octave=12)
    return pad_or_truncate(out.astype(np.float32), wave.shape[-1])


def random_wave_augment(
    wave: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    stretch: tuple[float, float] | None = (0.9, 1.1),
    pitch_quarter_tones: int | None = 3,
) -> np.ndarray:
    """Randomly time-stretch then pitch-shift a mono waveform ``(samples,)``; same length out.

    ``rate ~ U[stretch[0], stretch[1]]`` and an integer shift uniform in
    ``{-pitch_quarter_tones, ..., +pitch_quarter_tones}`` quarter tones (0 included, as in
    "0 to 3 quarter-tones up or down"). ``None`` switches an augmentation off. ``rng`` is a numpy
    Generator: this runs on the CPU during feature computation (it implies recomputing log-mels).
    """
    out = np.asarray(wave, dtype=np.float32)
    if stretch is not None:
        low, high = stretch
        out = time_stretch(out, float(rng.uniform(low, high)), sample_rate)
    if pitch_quarter_tones is not None and pitch_quarter_tones > 0:
        q = int(rng.integers(-pitch_quarter_tones, pitch_quarter_tones + 1))
        out = pitch_shift(out, q, sample_rate)
    return out


def wave_augment_bank(corpus: Corpus, config: TrainConfig, settings: FeatureSettings, progress: bool) -> np.ndarray:
    """Log-mels ``(copies, n_train, time, mel)`` of randomly stretched/pitch-shifted train clips.

    Waveform augmentation needs a new log-mel per draw, far too slow inside the loop; instead a
    fixed number of augmented copies is computed once (and cached), and each training example
    picks the original or one of the copies uniformly. This is an approximation of per-draw
    augmentation, documented as such.
    """
    train = corpus.split("train")
    tag = json.dumps(
        {
            "stretch": config.time_stretch,
            "pitch": config.pitch_shift,
            "copies": config.wave_augment_copies,
            "seed": config.seed,
            "features": settings.key(),
            "audio": list(train["sha256"]),
        }
    )
    key = hashlib.sha256(tag.encode()).hexdigest()[:12]
    path = Path(config.cache_dir) / corpus.name / f"train-waveaug-{settings.sample_rate}hz-{key}.npy"
    if path.is_file():
        return np.load(path)
    logmel = LogMel.from_settings(settings)
    bank = np.empty((config.wave_augment_copies, len(train), settings.n_frames, settings.n_mels), np.float32)
    iterator = progress_bar(
        None,
        "wave augmentation",
        unit="clip",
        display=progress,
        iterable=range(config.wave_augment_copies * len(train)),
    )
    for flat in iterator:
        c, i = divmod(flat, len(train))
        rng = np.random.default_rng([config.seed, c, i])
        wave = load_clip(train.loc[i, "path"], sample_rate=settings.sample_rate, length=settings.clip_samples)
        wave = random_wave_augment(
            wave,
            settings.sample_rate,
            rng,
            stretch=(0.9, 1.1) if config.time_stretch else None,
            pitch_quarter_tones=3 if config.pitch_shift else None,
        )
        with torch.no_grad():
            bank[c, i] = logmel(torch.from_numpy(wave)[None])[0].numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        np.save(fh, bank)
    return bank
