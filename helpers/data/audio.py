"""Audio input: read any file soundfile can decode, downmix, resample, pad or truncate.

Everything downstream (features, models) sees mono float32 waveforms at one of the supported
sample rates, padded with zeros at the end (or truncated) to a fixed clip length, as the authors'
code does (docs/reference.md §2). Resampling uses soxr's high-quality mode, which is deterministic.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

#: Native rate of the challenge corpus (Hz).
SAMPLE_RATE = 16_000
#: Rates the feature front end supports (Hz). 8 kHz is the paper's faster setting; 32 kHz is the rate
#: PANNs' AudioSet weights were trained at (fine-tuning from them, helpers.models.pretrained_init).
SUPPORTED_RATES = (16_000, 8_000, 32_000)
#: Clip length at 16 kHz in samples: the longest file of the challenge corpus (2.99 s).
CLIP_SAMPLES_16K = 47_860
#: The same length in seconds, used to scale the clip length to other rates.
CLIP_SECONDS = CLIP_SAMPLES_16K / SAMPLE_RATE


class AudioError(ValueError):
    """An audio file cannot be used; the message names the file and the fix."""


def clip_samples(sample_rate: int, clip_seconds: float = CLIP_SECONDS) -> int:
    """Number of samples of one fixed-length clip at ``sample_rate`` (47,860 at 16 kHz, 23,930 at 8 kHz)."""
    return int(round(clip_seconds * sample_rate))


def audio_info(path: str | Path) -> dict:
    """Header facts of an audio file: ``samplerate`` (Hz), ``channels``, ``frames``, ``duration`` (s)."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{path}: cannot be read as audio ({str(exc).splitlines()[0]}); replace the file with a "
                         "valid WAV/FLAC/OGG/MP3.") from exc
    return {
        "samplerate": int(info.samplerate),
        "channels": int(info.channels),
        "frames": int(info.frames),
        "duration": info.frames / info.samplerate if info.samplerate else 0.0,
    }


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a whole file as float32 in [-1, 1].

    Returns ``(samples, sample_rate)`` with samples of shape ``(frames, channels)``.
    """
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: cannot be read as audio ({exc}); replace the file with a valid WAV/FLAC/OGG.") from exc
    return data, int(sr)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Downmix ``(frames, channels)`` to ``(frames,)`` by averaging the channels."""
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    return samples.mean(axis=1, dtype=np.float64).astype(np.float32)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono waveform ``(samples,)`` from ``orig_sr`` to ``target_sr`` Hz (soxr HQ)."""
    if orig_sr == target_sr:
        return wave.astype(np.float32, copy=False)
    return soxr.resample(wave.astype(np.float32, copy=False), orig_sr, target_sr, quality="HQ").astype(np.float32)


def pad_or_truncate(wave: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad at the end, or cut the end off, so that ``wave`` has exactly ``length`` samples."""
    if wave.shape[-1] >= length:
        return np.ascontiguousarray(wave[..., :length])
    pad = [(0, 0)] * (wave.ndim - 1) + [(0, length - wave.shape[-1])]
    return np.pad(wave, pad)


def load_clip(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    length: int | None = None,
) -> np.ndarray:
    """Load one clip as the models see it.

    Reads ``path``, downmixes to mono, resamples to ``sample_rate`` Hz and pads or truncates to
    ``length`` samples (default: :func:`clip_samples` of the rate; ``length=0`` keeps the natural
    length). Returns float32 ``(samples,)``. Raises :class:`AudioError` naming the file when it
    cannot be read or holds NaN/Inf samples.
    """
    samples, sr = read_audio(path)
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: contains NaN or Inf samples; re-export the recording.")
    wave = resample(to_mono(samples), sr, sample_rate)
    if length is None:
        length = clip_samples(sample_rate)
    return pad_or_truncate(wave, length) if length else wave


def write_wav(path: str | Path, wave: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write a mono float waveform ``(samples,)`` in [-1, 1] as a WAV file (16-bit PCM by default)."""
    sf.write(str(path), np.clip(wave, -1.0, 1.0), sample_rate, subtype=subtype)
