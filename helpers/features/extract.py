"""Batch extraction of log-mels: many audio files (:func:`extract_logmels`) or many in-memory
waveforms (:func:`logmels_of_waveforms`), in parallel worker blocks on the CPU or in batches on a
device. The front end itself is :mod:`helpers.features.frontend`; the on-disk cache that calls
this module is :mod:`helpers.features.cache`.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from helpers.core.progress import ProgressBar, progress_bar

from helpers.data import audio as audio
from helpers.features.frontend import FeatureSettings, LogMel

#: Clips per torch call on the CPU. Small blocks keep the (clips, frames, 1024) float64 frame
#: array (1.2 MB per 16 kHz clip) in cache: one thread's log-mel took 0.70 ms per clip in blocks
#: of 1, 1.14 ms in blocks of 2, 2.75 ms in blocks of 8. extract_logmels with 2 workers, 512
#: cached 16 kHz WAVs, three repeats: blocks of 2 gave 1,126-1,152 clips/s at 16 kHz and
#: 1,505-1,565 at 8 kHz; blocks of 1 945-1,133 / 1,027-1,425 (per-call overhead); blocks of 8
#: 812-1,176 / 1,404-1,690.
CPU_BLOCK_CLIPS = 2


# --------------------------------------------------------------------------------------------
# Batch extraction from files
# --------------------------------------------------------------------------------------------
def available_cores() -> int:
    """CPU cores this process may run on (respects taskset/cgroup affinity where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_num_workers(device: str | torch.device = "cpu") -> int:
    """Worker threads for :func:`extract_logmels`: one per core on CPU (at most 8), else up to 4 readers."""
    if torch.device(device).type == "cpu":
        return max(1, min(8, available_cores()))
    return max(1, min(4, available_cores()))


def _load_block(paths: Sequence[str | Path], start: int, stop: int, sample_rate: int, length: int) -> np.ndarray:
    """Clips ``paths[start:stop]`` as float32 ``(stop - start, length)`` via :func:`helpers.data.audio.load_clip`."""
    block = np.empty((stop - start, length), dtype=np.float32)
    for i in range(start, stop):
        block[i - start] = audio.load_clip(paths[i], sample_rate, length)
    return block


def extract_logmels(
    paths: Sequence[str | Path],
    settings: FeatureSettings | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    progress: bool = True,
    num_workers: int | None = None,
    num_threads: int | None = None,
) -> np.ndarray:
    """Log-mels of audio files: float32 ``(len(paths), settings.n_frames, settings.n_mels)`` in dB.

    Each file is read with :func:`helpers.data.audio.load_clip` (mono, resampled to
    ``settings.sample_rate`` Hz, zero-padded or truncated to ``settings.clip_samples``).

    On CPU, ``num_workers`` threads (None: one per core) each read a block of
    :data:`CPU_BLOCK_CLIPS` clips and transform it, and torch runs single-threaded inside each
    worker (``num_threads``, default 1, is set for the duration of the call and restored after).
    Parallel over clips rather than inside each FFT: on 2 cores shared with another busy
    process, a reader thread next to torch's 2 intra-op threads ran at ~100 clips/s (16 kHz),
    single-threaded torch at ~450, because torch's threads wait for each other at every op
    while the reader or the other process holds a core (docs/reference.md §7).

    On a GPU, ``num_workers`` reader threads (None: up to 4) fill the next batches of
    ``batch_size`` clips while the current batch is transformed on ``device``.

    Raises :class:`helpers.data.audio.AudioError` naming the first file that cannot be read.
    """
    settings = settings or FeatureSettings()
    return _compute_logmels(
        lambda a, b: _load_block(paths, a, b, settings.sample_rate, settings.clip_samples),
        len(paths),
        settings.clip_samples,
        settings,
        device,
        batch_size,
        progress,
        num_workers,
        num_threads,
    )


def logmels_of_waveforms(
    waves: np.ndarray, settings: FeatureSettings | None = None, num_workers: int | None = None
) -> np.ndarray:
    """Log-mels of waveforms already in memory at ``settings.sample_rate`` (``(n, samples)`` float32)
    on the CPU, computed as :func:`extract_logmels` does: worker threads (None: one per core) on
    blocks of :data:`CPU_BLOCK_CLIPS` clips, single-threaded torch in each. ``(n, time, mel)`` dB."""
    settings = settings or FeatureSettings()
    waves = np.ascontiguousarray(waves, dtype=np.float32)
    if waves.ndim != 2:
        raise ValueError(f"logmels_of_waveforms expects (n, samples) waveforms, got shape {waves.shape}.")
    return _compute_logmels(
        lambda a, b: waves[a:b],
        waves.shape[0],
        waves.shape[1],
        settings,
        "cpu",
        progress=False,
        num_workers=num_workers,
    )


def _compute_logmels(
    load: Callable[[int, int], np.ndarray],
    n: int,
    n_samples: int,
    settings: FeatureSettings,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    progress: bool = True,
    num_workers: int | None = None,
    num_threads: int | None = None,
) -> np.ndarray:
    """The log-mels of clips ``0 .. n-1``, where ``load(start, stop)`` gives their float32 waveforms
    ``(stop - start, n_samples)``; threads, workers and devices as :func:`extract_logmels` says."""
    device = torch.device(device)
    num_workers = default_num_workers(device) if num_workers is None else max(1, int(num_workers))
    out = np.empty((n, 1 + n_samples // settings.hop_length, settings.n_mels), dtype=np.float32)
    if n == 0:
        return out
    module = LogMel.from_settings(settings).to(device)
    bar = progress_bar(n, desc=f"log-mel {settings.sample_rate // 1000} kHz", unit="clip", enabled=progress)
    previous_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1 if num_threads is None else int(num_threads))
    elif num_threads is not None:
        torch.set_num_threads(int(num_threads))
    pool = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="logmel")
    try:
        if device.type == "cpu":
            _transform_blocks_on_cpu(load, n, module, out, pool, bar)
        else:
            _transform_batches_on_device(load, n, module, out, pool, bar, device, batch_size, num_workers)
    finally:
        # cancel_futures: after an error, do not read the rest of the corpus before raising.
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        torch.set_num_threads(previous_threads)
    return out


def _transform_blocks_on_cpu(
    load: Callable[[int, int], np.ndarray],
    n: int,
    module: LogMel,
    out: np.ndarray,
    pool: ThreadPoolExecutor,
    bar: ProgressBar,
) -> None:
    """Workers each load and transform whole blocks of :data:`CPU_BLOCK_CLIPS` clips, writing into
    ``out`` in place."""

    def read_and_transform(start: int, stop: int) -> int:
        block = load(start, stop)
        # inference_mode is per thread, so each worker enters it itself.
        with torch.inference_mode():
            out[start:stop] = module(torch.from_numpy(block)).numpy()
        return stop - start

    futures = [pool.submit(read_and_transform, a, min(a + CPU_BLOCK_CLIPS, n)) for a in range(0, n, CPU_BLOCK_CLIPS)]
    for future in futures:
        bar.update(future.result())  # in order; re-raises the first AudioError


def _transform_batches_on_device(
    load: Callable[[int, int], np.ndarray],
    n: int,
    module: LogMel,
    out: np.ndarray,
    pool: ThreadPoolExecutor,
    bar: ProgressBar,
    device: torch.device,
    batch_size: int,
    num_workers: int,
) -> None:
    """Reader threads fill batch k+1 while batch k is transformed on ``device``."""
    batch_starts = iter(range(0, n, batch_size))
    pending: deque = deque()

    def submit_next_batch() -> None:
        start = next(batch_starts, None)
        if start is None:
            return
        stop = min(start + batch_size, n)
        # One task per reader and batch rather than one per file: fewer futures, same overlap.
        step = -(-(stop - start) // num_workers)
        futures = [pool.submit(load, a, min(a + step, stop)) for a in range(start, stop, step)]
        pending.append((start, stop, futures))

    submit_next_batch()
    submit_next_batch()
    with torch.inference_mode():
        while pending:
            start, stop, futures = pending.popleft()
            blocks = [future.result() for future in futures]  # re-raises AudioError
            submit_next_batch()
            wave = torch.from_numpy(np.concatenate(blocks)).to(device, non_blocking=True)
            out[start:stop] = module(wave).cpu().numpy()
            bar.update(stop - start)
