"""Long recordings read in blocks: fixed-length windows at a hop, for scanning hours of audio.

:func:`window_batches` reads a file of any length, sample rate and channel count (any format
soundfile reads: WAV, FLAC, OGG, MP3...) block by block, mixes the channels down (or picks one),
resamples the stream to the model's rate (soxr's streaming resampler, HQ) and cuts windows of
``window`` samples every ``hop`` samples. Memory does not grow with the file's length: at most one
block, one window plus a batch of hops and one batch of windows are held at a time.

Window rule: windows start at 0, hop, 2 hop, ... and are kept while they fit in the recording;
when the last one that fits ends before the recording does, one more window **aligned to the
recording's end** covers the tail (it overlaps the window before it by more than usual). Only a
recording shorter than one window is zero-padded, at its end, as short clips are for training
(:func:`helpers.data.audio.pad_or_truncate`). A padded tail would be a bad idea: a model trained on
a corpus whose short clips are mostly of one class learns that the padding's silence (-100 dB)
means that class, and the demo model did flag the padded last window of every soundscape as a
chimpanzee (its clips are the demo's shortest). Each window carries its true span (``begin``,
``end`` in seconds; ``end`` capped at the recording's end for a padded window).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from helpers.data.audio import AudioError, audio_info

#: Frames read from the file per block (about 4 s at 48 kHz).
BLOCK_FRAMES = 1 << 18


@dataclass
class WindowBatch:
    """Consecutive windows of one recording: ``waves`` float32 ``(n, window)`` at the target rate,
    ``begin`` and ``end`` (seconds, ``(n,)``) of their spans in the recording."""

    waves: np.ndarray
    begin: np.ndarray
    end: np.ndarray


#: Header facts of a recording (``samplerate``, ``channels``, ``frames``, ``duration``); the one
#: reader of them is :func:`helpers.data.audio.audio_info`.
recording_info = audio_info


def _mono_blocks(path: Path, channel: str | int, block_frames: int) -> Iterator[tuple[np.ndarray, int]]:
    """``(mono float32 block, sample rate)`` of ``path``: channels averaged (``"mix"``) or one picked (0-based)."""
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(
            f"{path}: cannot be read as audio ({str(exc).splitlines()[0]}); replace it with a "
            "WAV/FLAC/OGG/MP3 file soundfile reads."
        ) from exc
    with f:
        if channel != "mix" and not (isinstance(channel, int) and 0 <= channel < f.channels):
            raise AudioError(
                f"{path}: has {f.channels} channel(s), so channel {channel!r} does not exist; "
                f"use 'mix' or 0..{f.channels - 1}."
            )
        done = 0
        while True:
            try:
                block = f.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(
                    f"{path}: decoding failed after {done / f.samplerate:.1f} s "
                    f"({str(exc).splitlines()[0]}); the file is damaged, copy it again."
                ) from exc
            if not len(block):
                return
            if not np.isfinite(block).all():
                raise AudioError(
                    f"{path}: NaN or Inf samples near {done / f.samplerate:.1f} s; re-export the "
                    "recording as integer PCM."
                )
            done += len(block)
            mono = block.mean(axis=1, dtype=np.float32) if channel == "mix" else block[:, channel]
            yield np.ascontiguousarray(mono, dtype=np.float32), f.samplerate


def _resampled(blocks: Iterator[tuple[np.ndarray, int]], target: int) -> Iterator[np.ndarray]:
    """The blocks as one stream at ``target`` Hz (streaming soxr HQ; unchanged when the rate matches)."""
    stream = None
    for block, rate in blocks:
        if rate == target:
            yield block
            continue
        if stream is None:
            stream = soxr.ResampleStream(rate, target, 1, dtype="float32", quality="HQ")
        yield stream.resample_chunk(block)
    if stream is not None:
        yield stream.resample_chunk(np.zeros(0, np.float32), last=True)


def window_batches(
    path: str | Path,
    sample_rate: int,
    window: int,
    hop: int,
    batch: int = 64,
    channel: str | int = "mix",
    block_frames: int = BLOCK_FRAMES,
) -> Iterator[WindowBatch]:
    """Batches of up to ``batch`` windows of ``window`` samples every ``hop`` samples at ``sample_rate``
    Hz over the whole of ``path`` (see the module docstring for the window rule). Raises
    :class:`~helpers.data.audio.AudioError` naming the file when it cannot be decoded, holds
    NaN/Inf or no samples, or has no channel ``channel``."""
    if window < 1 or hop < 1 or batch < 1:
        raise ValueError(f"window_batches: window, hop and batch must be >= 1, got {window}, {hop}, {batch}")
    path = Path(path)
    buf = np.zeros(0, np.float32)
    buf_start = 0  # absolute index (at sample_rate) of buf[0]
    next_start = 0  # start of the next window
    total = 0
    pending: list[tuple[np.ndarray, int, int]] = []

    def flush() -> WindowBatch:
        waves = np.stack([w for w, _, _ in pending])
        begin = np.array([s for _, s, _ in pending], np.float64) / sample_rate
        end = np.array([s + n for _, s, n in pending], np.float64) / sample_rate
        pending.clear()
        return WindowBatch(waves, begin, end)

    for chunk in _resampled(_mono_blocks(path, channel, block_frames), sample_rate):
        buf = np.concatenate([buf, chunk]) if len(buf) else chunk
        total += len(chunk)
        while next_start + window <= total:
            offset = next_start - buf_start
            pending.append((buf[offset : offset + window].copy(), next_start, window))
            next_start += hop
            if len(pending) == batch:
                yield flush()
        # Samples before the next window are never needed again, except the last `window` ones,
        # which an end-aligned tail window may need.
        drop = max(0, min(next_start, total - window)) - buf_start
        if drop > 0:
            buf, buf_start = buf[drop:], buf_start + drop
    if total == 0:
        raise AudioError(f"{path}: holds no samples; replace it with the real recording.")
    last_end = next_start - hop + window if next_start else 0
    if total < window:  # shorter than one window: the only window, zero-padded at its end
        padded = np.zeros(window, np.float32)
        padded[:total] = buf[:total]
        pending.append((padded, 0, total))
    elif last_end < total:  # the tail after the last full window: one more, ending with the recording
        start = total - window
        pending.append((buf[start - buf_start : start - buf_start + window].copy(), start, window))
    if pending:
        yield flush()


def read_segment(path: str | Path, begin: float, end: float, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples of ``path`` between ``begin`` and ``end`` seconds (only that part is
    decoded), resampled to ``sample_rate`` when given; returns ``(samples, rate)``. For listening to
    a detection or drawing its spectrogram."""
    info = recording_info(path)
    rate = info["samplerate"]
    start, stop = max(0, int(begin * rate)), min(info["frames"], int(np.ceil(end * rate)))
    try:
        data, _ = sf.read(str(path), start=start, stop=max(start, stop), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: cannot read {begin:.2f}-{end:.2f} s ({exc}).") from exc
    mono = data.mean(axis=1, dtype=np.float32)
    if sample_rate and sample_rate != rate:
        return soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32), int(sample_rate)
    return mono, rate
