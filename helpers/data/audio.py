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


def _open_binary(path: str | Path):
    return open(path, "rb")


def _wav_declared_frames(fh) -> int | None:
    """Frames a RIFF/WAVE header declares in its ``data`` chunk, when the file holds fewer bytes than
    that (a copy or a recorder cut short); None when the file is not WAV or is complete."""
    fh.seek(0, 2)
    size = fh.tell()
    fh.seek(0)
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    block_align = None
    position = 12
    while position + 8 <= size:
        fh.seek(position)
        chunk = fh.read(8)
        if len(chunk) < 8:
            return None
        chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:], "little")
        if chunk_id == b"fmt ":
            fmt = fh.read(min(chunk_size, 16))
            block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else None
        elif chunk_id == b"data":
            available = size - (position + 8)
            if chunk_size in (0, 0xFFFFFFFF) or not block_align or chunk_size <= available:
                return None  # complete, or a streaming header that declares no length
            return chunk_size // block_align
        position += 8 + chunk_size + (chunk_size & 1)
    return None


def audio_info(path: str | Path) -> dict:
    """Header facts of an audio file: ``samplerate`` (Hz), ``channels``, ``frames``, ``duration`` (s),
    and ``declared_frames``: for a WAV cut short (its header declares more audio than the file holds),
    the frames the header declares, else None (``frames`` is what the file holds; libsndfile reads a
    truncated WAV without a word, so the header is checked here)."""
    try:
        with _open_binary(path) as fh:
            declared = _wav_declared_frames(fh)
    except PermissionError:
        raise AudioError(
            f"{path}: permission denied; make the file readable (chmod a+r) or run as a user who may read it."
        ) from None
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file; it was moved or deleted since it was listed.") from None
    except OSError as exc:
        raise AudioError(
            f"{path}: cannot be opened ({exc.strerror or exc}); check the disk or the network share it is on."
        ) from None
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(
            f"{path}: cannot be read as audio ({str(exc).splitlines()[0]}); replace the file with a "
            "valid WAV/FLAC/OGG/MP3."
        ) from exc
    return {
        "samplerate": int(info.samplerate),
        "channels": int(info.channels),
        "frames": int(info.frames),
        "duration": info.frames / info.samplerate if info.samplerate else 0.0,
        "declared_frames": declared,
    }


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a whole file as float32 in [-1, 1].

    Returns ``(samples, sample_rate)`` with samples of shape ``(frames, channels)``.
    """
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(
            f"{path}: cannot be read as audio ({exc}); replace the file with a valid WAV/FLAC/OGG."
        ) from exc
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
