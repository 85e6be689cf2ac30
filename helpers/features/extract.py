"""Log-mel features as the authors' code computes them, and an on-disk cache of them per split.

The front end (FACTS section 2): clips padded/truncated to 2.99 s, STFT with a 1024-sample
periodic Hann window and FFT, hop 320, centred with reflect padding, power 2; 64 mel bands on
the Slaney scale with Slaney (area) normalisation between 10 Hz and half the sample rate;
``10 * log10(max(S, 1e-10))`` with reference 1.0 and no top_db. Zero padding gives -100 dB.
At 16 kHz a clip gives 150 frames x 64 bands; at 8 kHz (same window and hop, fmax 4 kHz) 75 x 64.

Precision. The FFT runs in float64 by default. A float32 FFT makes an absolute error in every
bin of about 1e-7 times the frame's total magnitude, so bands whose power lies 60 dB or more
below their frame's come out wrong by 1e-3 to 0.2 dB (measured on a chirp with little noise).
librosa does not have this problem because it multiplies the float32 signal by a float64
window and so runs its FFT in float64 too. ``fft_precision="float32"`` keeps the faster float32
FFT for users who accept that error (it is below 2e-4 dB once the noise floor is within ~45 dB
of the signal, as in field recordings). The FFT output is rounded to complex64, as librosa
does; the squares, mel sums and log then add relative errors of about 1e-7, i.e. ~1e-6 dB.

Cache. :func:`load_features` computes the features of one split once and stores them as
``cache_dir/corpus_name/{split}-{sr}hz-{key}.npy`` with a JSON sidecar. The key hashes the
settings, the feature code version and the SHA-256 of every audio file in row order, so
changing a setting or an audio file gives a new key and a recomputation.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import librosa
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from helpers.data import audio as audio
from helpers.core.fileio import atomic_write, sha256_file, write_json_atomic

#: Bump when the feature computation changes in a way that changes the numbers; it is part of
#: every cache key, so old caches are then ignored instead of being silently reused.
FEATURE_VERSION = 1

N_FFT = 1024  # samples; also the window length
HOP_LENGTH = 320  # samples (20 ms at 16 kHz)
N_MELS = 64
FMIN = 10.0  # Hz
#: Floor of the power spectrum before the log: 10*log10(1e-10) = -100 dB, the value of silence.
AMIN = 1e-10

FFT_PRECISIONS = {"float64": torch.float64, "float32": torch.float32}

#: Clips per torch call on the CPU. Small blocks keep the (clips, frames, 1024) float64 frame
#: array (1.2 MB per 16 kHz clip) in cache: one thread's log-mel took 0.70 ms per clip in blocks
#: of 1, 1.14 ms in blocks of 2, 2.75 ms in blocks of 8. extract_logmels with 2 workers, 512
#: cached 16 kHz WAVs, three repeats: blocks of 2 gave 1,126-1,152 clips/s at 16 kHz and
#: 1,505-1,565 at 8 kHz; blocks of 1 945-1,133 / 1,027-1,425 (per-call overhead); blocks of 8
#: 812-1,176 / 1,404-1,690.
CPU_BLOCK_CLIPS = 2

REQUIRED_COLUMNS = ("split", "filename", "path", "label", "class_index")


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FeatureSettings:
    """Everything that determines the log-mel features of a clip.

    ``sample_rate`` (Hz) is the rate the audio is resampled to; ``n_fft`` and ``hop_length`` are
    in samples at that rate; ``fmin``/``fmax`` in Hz (``fmax=None``: half the sample rate);
    ``clip_seconds`` is the fixed clip length (default 47,860 samples at 16 kHz);
    ``fft_precision`` is ``"float64"`` (exact to librosa) or ``"float32"`` (faster, see the
    module docstring).
    """

    sample_rate: int = audio.SAMPLE_RATE
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    fmin: float = FMIN
    fmax: float | None = None
    clip_seconds: float = audio.CLIP_SECONDS
    fft_precision: str = "float64"

    def __post_init__(self) -> None:
        if self.sample_rate not in audio.SUPPORTED_RATES:
            raise ValueError(
                f"FeatureSettings: sample_rate {self.sample_rate} Hz is not supported; "
                f"use one of {audio.SUPPORTED_RATES}."
            )
        if self.fft_precision not in FFT_PRECISIONS:
            raise ValueError(
                f"FeatureSettings: fft_precision {self.fft_precision!r} is not one of {sorted(FFT_PRECISIONS)}."
            )
        if not 0 <= self.fmin < self.resolved_fmax <= self.sample_rate / 2:
            raise ValueError(
                f"FeatureSettings: need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, "
                f"fmax={self.resolved_fmax}, sample_rate={self.sample_rate}."
            )
        if self.clip_samples <= self.n_fft // 2:
            raise ValueError(
                f"FeatureSettings: a clip of {self.clip_samples} samples is too short for reflect "
                f"padding of {self.n_fft // 2} samples; increase clip_seconds."
            )

    @property
    def resolved_fmax(self) -> float:
        """Upper mel edge in Hz: ``fmax``, or half the sample rate when ``fmax`` is None."""
        return float(self.sample_rate / 2 if self.fmax is None else self.fmax)

    @property
    def clip_samples(self) -> int:
        """Samples per clip at ``sample_rate`` (47,860 at 16 kHz, 23,930 at 8 kHz)."""
        return audio.clip_samples(self.sample_rate, self.clip_seconds)

    @property
    def n_frames(self) -> int:
        """STFT frames per clip with centred framing: ``1 + clip_samples // hop_length`` (150 / 75)."""
        return 1 + self.clip_samples // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict; ``FeatureSettings(**d)`` rebuilds the settings."""
        return dataclasses.asdict(self)

    def key(self) -> str:
        """Short stable hash (12 hex digits) of the settings and :data:`FEATURE_VERSION`.

        ``fmax=None`` and an explicit ``fmax`` of half the rate give the same key, as they give
        the same features.
        """
        canonical = self.to_dict()
        # Normalise types so that fmin=10 and fmin=10.0 (equal settings) hash alike.
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            canonical[name] = int(canonical[name])
        for name in ("fmin", "clip_seconds"):
            canonical[name] = float(canonical[name])
        canonical["fmax"] = self.resolved_fmax
        canonical["feature_version"] = FEATURE_VERSION
        text = json.dumps(canonical, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Log-mel front end
# --------------------------------------------------------------------------------------------
class LogMel(torch.nn.Module):
    """Waveforms ``(batch, samples)`` float32 in [-1, 1] -> log-mel ``(batch, time, mel)`` in dB.

    Power spectrum of a centred, reflect-padded STFT (periodic Hann window of ``n_fft`` samples,
    hop ``hop_length``), mapped to ``n_mels`` Slaney-scale, Slaney-normalised mel bands between
    ``fmin`` and ``fmax`` Hz (None: ``sample_rate / 2``), then ``10 * log10(max(S, 1e-10))``.
    ``time = 1 + samples // hop_length``. The module has no parameters; it runs on whatever
    device it is moved to, with the same code on CPU and CUDA (float64 FFTs are not available
    on Apple MPS; use ``fft_dtype=torch.float32`` there).
    """

    def __init__(
        self,
        sample_rate: int = audio.SAMPLE_RATE,
        n_fft: int = N_FFT,
        hop_length: int = HOP_LENGTH,
        n_mels: int = N_MELS,
        fmin: float = FMIN,
        fmax: float | None = None,
        fft_dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if fmax is None:
            fmax = sample_rate / 2
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.fmin = float(fmin)
        self.fmax = float(fmax)
        self.fft_dtype = fft_dtype
        # Periodic Hann computed in float64 and rounded once, so the float32 variant does not
        # add the error of a float32 cosine on top of its FFT error.
        window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float64).to(fft_dtype)
        # librosa's filterbank is the definition the features are checked against (FACTS 2);
        # built in float64 and stored as (n_freqs, n_mels) so that power @ mel_basis maps
        # (batch, time, freq) to (batch, time, mel) without a transpose.
        mel_basis = librosa.filters.mel(
            sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax,
            htk=False, norm="slaney", dtype=np.float64,
        )
        # persistent=False: the buffers are derived from the constructor arguments, so they need
        # not bloat (or be restored from) the state_dict of a model that embeds this module.
        self.register_buffer("window", window, persistent=False)
        mel_basis = torch.from_numpy(mel_basis.T.astype(np.float32)).contiguous()  # (freq, mel)
        self.register_buffer("mel_basis", mel_basis, persistent=False)
        # Each row twice, to be applied to interleaved (real^2, imag^2) pairs: the sum
        # real^2 + imag^2 then happens inside the matmul instead of as a separate strided pass
        # over the spectrum, which measured slower than the matmul itself.
        self.register_buffer("_mel_basis_pairs", mel_basis.repeat_interleave(2, dim=0).contiguous(), persistent=False)

    @classmethod
    def from_settings(cls, settings: FeatureSettings) -> "LogMel":
        """The front end described by ``settings``."""
        return cls(
            sample_rate=settings.sample_rate, n_fft=settings.n_fft, hop_length=settings.hop_length,
            n_mels=settings.n_mels, fmin=settings.fmin, fmax=settings.fmax,
            fft_dtype=FFT_PRECISIONS[settings.fft_precision],
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` waveform -> ``(batch, 1 + samples // hop_length, n_mels)`` float32 dB."""
        if waveform.dim() != 2:
            raise ValueError(f"LogMel expects (batch, samples), got shape {tuple(waveform.shape)}.")
        pad = self.n_fft // 2
        # Framing by hand (pad + unfold + rfft over the last axis) gives the same numbers as
        # torch.stft but leaves each frame's spectrum contiguous, so the mel projection is one
        # matmul with no transpose; on CPU it measured faster than torch.stft.
        x = torch.nn.functional.pad(waveform.to(torch.float32).unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        # float32 frames times the window in fft_dtype: the cast to float64 happens inside the
        # multiplication, with no separate pass over the data.
        # The .to() calls are no-ops unless a module-wide cast (model.half(), model.double())
        # changed the buffers' dtypes; they keep the FFT in fft_dtype and the output float32.
        window = self.window.to(self.fft_dtype)
        frames = x.unfold(-1, self.n_fft, self.hop_length) * window  # (batch, time, n_fft)
        spectrum = torch.fft.rfft(frames, dim=-1)  # (batch, time, freq) complex
        # Rounding the float64 FFT's output to complex64 is exactly what librosa does (it stores
        # its float64 FFT in a complex64 array): each bin keeps ~6e-8 relative accuracy; only
        # the FFT's internal sums need float64. From here on, relative errors stay ~1e-7
        # because the mel sums add non-negative terms.
        squares = torch.view_as_real(spectrum.to(torch.complex64)).square_()  # (batch, time, freq, 2)
        mel = torch.matmul(squares.flatten(-2), self._mel_basis_pairs.to(torch.float32))  # (batch, time, mel) power
        return mel.clamp_min_(AMIN).log10_().mul_(10.0)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
            f"n_mels={self.n_mels}, fmin={self.fmin}, fmax={self.fmax}, fft_dtype={self.fft_dtype}"
        )


def logmel(waveform: np.ndarray, settings: FeatureSettings | None = None, device: str = "cpu") -> np.ndarray:
    """Log-mel of waveforms already at ``settings.sample_rate``: ``(samples,)`` -> ``(time, mel)``
    or ``(batch, samples)`` -> ``(batch, time, mel)``, float32 dB. No padding or truncation."""
    settings = settings or FeatureSettings()
    module = LogMel.from_settings(settings).to(device)
    x = torch.as_tensor(np.asarray(waveform, dtype=np.float32), device=device)
    with torch.inference_mode():
        out = module(x[None] if x.dim() == 1 else x).cpu().numpy()
    return out[0] if x.dim() == 1 else out


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
    while the reader or the other process holds a core (FACTS section 7).

    On a GPU, ``num_workers`` reader threads (None: up to 4) fill the next batches of
    ``batch_size`` clips while the current batch is transformed on ``device``.

    Raises :class:`helpers.data.audio.AudioError` naming the first file that cannot be read.
    """
    settings = settings or FeatureSettings()
    return _compute_logmels(
        lambda a, b: _load_block(paths, a, b, settings.sample_rate, settings.clip_samples), len(paths),
        settings.clip_samples, settings, device, batch_size, progress, num_workers, num_threads)


def logmels_of_waveforms(waves: np.ndarray, settings: FeatureSettings | None = None,
                         num_workers: int | None = None) -> np.ndarray:
    """Log-mels of waveforms already in memory at ``settings.sample_rate`` (``(n, samples)`` float32)
    on the CPU, computed as :func:`extract_logmels` does: worker threads (None: one per core) on
    blocks of :data:`CPU_BLOCK_CLIPS` clips, single-threaded torch in each. ``(n, time, mel)`` dB."""
    settings = settings or FeatureSettings()
    waves = np.ascontiguousarray(waves, dtype=np.float32)
    if waves.ndim != 2:
        raise ValueError(f"logmels_of_waveforms expects (n, samples) waveforms, got shape {waves.shape}.")
    return _compute_logmels(lambda a, b: waves[a:b], waves.shape[0], waves.shape[1], settings, "cpu",
                            progress=False, num_workers=num_workers)


def _compute_logmels(load: Callable[[int, int], np.ndarray], n: int, n_samples: int, settings: FeatureSettings,
                     device: str | torch.device = "cpu", batch_size: int = 256, progress: bool = True,
                     num_workers: int | None = None, num_threads: int | None = None) -> np.ndarray:
    """The log-mels of clips ``0 .. n-1``, where ``load(start, stop)`` gives their float32 waveforms
    ``(stop - start, n_samples)``; threads, workers and devices as :func:`extract_logmels` says."""
    device = torch.device(device)
    num_workers = default_num_workers(device) if num_workers is None else max(1, int(num_workers))
    out = np.empty((n, 1 + n_samples // settings.hop_length, settings.n_mels), dtype=np.float32)
    if n == 0:
        return out
    module = LogMel.from_settings(settings).to(device)
    bar = tqdm(total=n, unit="clip", desc=f"log-mel {settings.sample_rate // 1000} kHz", disable=not progress)
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


def _transform_blocks_on_cpu(load: Callable[[int, int], np.ndarray], n: int, module: LogMel, out: np.ndarray,
                             pool: ThreadPoolExecutor, bar: tqdm) -> None:
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


def _transform_batches_on_device(load: Callable[[int, int], np.ndarray], n: int, module: LogMel, out: np.ndarray,
                                 pool: ThreadPoolExecutor, bar: tqdm, device: torch.device, batch_size: int,
                                 num_workers: int) -> None:
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


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FeatureSet:
    """The log-mels of one split with what identifies them.

    ``features``: float32 ``(n, time, mel)`` dB; ``filenames``: n file names in table order;
    ``labels``: int64 ``(n,)`` class indices, -1 where the label is unknown (test ``?``);
    ``cache_path``: the ``.npy`` file; ``key``: its cache key.
    """

    features: np.ndarray
    filenames: list[str]
    labels: np.ndarray
    split: str
    settings: FeatureSettings
    cache_path: Path
    key: str

    def __len__(self) -> int:
        return len(self.filenames)


#: Name of the checksum memo in each corpus cache folder.
CHECKSUM_MEMO = "audio-sha256-memo.json"


def audio_checksums(paths: Sequence[str | Path], memo_path: str | Path | None = None,
                    progress: bool = False, use_memo: bool = True) -> list[str]:
    """SHA-256 hex digests of ``paths``, in order, reusing ``memo_path`` where a file is unchanged.

    The memo maps an absolute path to ``[size, mtime_ns, sha256]``; a file whose size or
    modification time (ns) differ from the memo's is hashed again, and the memo is rewritten
    atomically when anything was added. Trade-off: hashing ~7,000 short WAVs costs seconds on
    every run, the memo makes it milliseconds, but a file rewritten with the same size AND its old
    modification time restored (``cp -p``, ``rsync -t``, ``touch -r``, some archive extractions)
    keeps its old checksum. ``use_memo=False`` (what ``load_features(recompute=True)`` does)
    hashes every file again.
    """
    memo: dict[str, list] = {}
    # Read the memo even when not trusting it, so that rewriting it keeps other splits' entries.
    if memo_path is not None and Path(memo_path).exists():
        try:
            memo = json.loads(Path(memo_path).read_text(encoding="utf-8"))
            if not isinstance(memo, dict):
                memo = {}
        except (OSError, ValueError):
            memo = {}  # a damaged memo only costs re-hashing
    changed = False
    digests = []
    for path in tqdm(paths, desc="sha256", unit="file", disable=not progress, leave=False):
        absolute = str(Path(path).resolve())
        try:
            stat = os.stat(absolute)
        except OSError as exc:
            raise audio.AudioError(f"{path}: cannot be read ({exc}); check the path column of the corpus table.") from exc
        entry = memo.get(absolute)
        if (use_memo and isinstance(entry, list) and len(entry) == 3
                and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns):
            digests.append(entry[2])
            continue
        digest = sha256_file(absolute)
        memo[absolute] = [stat.st_size, stat.st_mtime_ns, digest]
        changed = True
        digests.append(digest)
    if memo_path is not None and changed:
        Path(memo_path).parent.mkdir(parents=True, exist_ok=True)
        # Concurrent runs may overwrite each other's additions; that only costs re-hashing.
        write_json_atomic(memo_path, memo, indent=None)
    return digests


def cache_key(settings: FeatureSettings, filenames: Sequence[str], checksums: Sequence[str]) -> str:
    """16-hex-digit key of a split's features: settings key + (filename, audio SHA-256) in row order."""
    digest = hashlib.sha256()
    digest.update(settings.key().encode())
    for name, checksum in zip(filenames, checksums, strict=True):
        digest.update(b"\0" + str(name).encode() + b"\0" + checksum.encode())
    return digest.hexdigest()[:16]


def _read_valid_cache(npy_path: Path, json_path: Path, expected: dict[str, Any],
                      mmap_mode: str | None) -> np.ndarray | None:
    """The cached array if the sidecar matches ``expected`` and the data its checksum; else warn, None."""
    if not npy_path.exists() and not json_path.exists():
        return None

    def reject(reason: str) -> None:
        warnings.warn(f"Feature cache {npy_path}: {reason}; ignoring it and recomputing.", stacklevel=4)

    if not npy_path.exists():
        reject("the data file is missing (only its sidecar exists)")
        return None
    if not json_path.exists():
        reject(f"its sidecar {json_path.name} is missing (interrupted or foreign write)")
        return None
    try:
        sidecar = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reject(f"its sidecar {json_path.name} cannot be read ({exc})")
        return None
    for field, value in expected.items():
        if not isinstance(sidecar, dict) or sidecar.get(field) != value:
            reject(f"its sidecar does not match the requested features (field {field!r})")
            return None
    # The data checksum catches truncated or overwritten files, and a data file from one writer
    # paired with the sidecar of another; hashing costs ~0.2 s per 250 MB, little next to
    # re-extraction.
    if sha256_file(npy_path) != sidecar.get("data_sha256"):
        reject("its contents do not match the checksum in its sidecar (corrupt or truncated)")
        return None
    try:
        features = np.load(npy_path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reject(f"it cannot be loaded ({exc})")
        return None
    if list(features.shape) != expected["shape"] or features.dtype != np.float32:
        reject(f"it holds {features.dtype} {features.shape}, expected float32 {tuple(expected['shape'])}")
        return None
    return features


def load_features(
    table: pd.DataFrame,
    split: str,
    settings: FeatureSettings | None,
    cache_dir: str | Path,
    corpus_name: str,
    device: str | torch.device = "cpu",
    progress: bool = True,
    recompute: bool = False,
    mmap_mode: str | None = None,
    **extract_kwargs: Any,
) -> FeatureSet:
    """Log-mels of the rows of ``table`` whose ``split`` column equals ``split``, cached on disk.

    ``table`` needs columns ``split, filename, path, label, class_index`` (class_index -1 where
    the label is unknown); rows keep their table order. The features are read from
    ``cache_dir/corpus_name/{split}-{sr}hz-{key}.npy`` when that file and its ``.json`` sidecar
    exist and match, else extracted with :func:`extract_logmels` (``device``, ``progress`` and
    ``extract_kwargs`` are passed on) and written atomically. A cache file whose sidecar is
    missing or does not match, or whose data fail their checksum, is ignored with a warning and
    rebuilt. ``recompute=True`` re-hashes every audio file and re-extracts. ``mmap_mode`` is
    passed to :func:`numpy.load` for cache hits (e.g. ``"r"`` for a read-only memory map).
    """
    settings = settings or FeatureSettings()
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"load_features: the corpus table lacks column(s) {missing}; it needs {list(REQUIRED_COLUMNS)}.")
    rows = table[table["split"] == split]
    if rows.empty:
        available = sorted(map(str, table["split"].unique()))
        raise ValueError(f"load_features: no rows with split {split!r}; the table has splits {available}.")
    filenames = [str(name) for name in rows["filename"]]
    paths = [Path(p) for p in rows["path"]]
    labels = rows["class_index"].to_numpy(dtype=np.int64)

    folder = Path(cache_dir) / corpus_name
    folder.mkdir(parents=True, exist_ok=True)
    if "sha256" in rows.columns and not recompute and rows["sha256"].notna().all():
        # read_corpus hashed exactly these bytes while validating them: no need to hash twice.
        checksums = [str(c) for c in rows["sha256"]]
    else:
        checksums = audio_checksums(paths, folder / CHECKSUM_MEMO, progress=progress, use_memo=not recompute)
    key = cache_key(settings, filenames, checksums)
    stem = f"{split}-{settings.sample_rate}hz-{key}"
    npy_path, json_path = folder / f"{stem}.npy", folder / f"{stem}.json"
    expected = {
        "feature_version": FEATURE_VERSION,
        "key": key,
        "settings": settings.to_dict(),
        "filenames": filenames,
        "audio_sha256": checksums,
        "shape": [len(filenames), settings.n_frames, settings.n_mels],
    }

    features = None if recompute else _read_valid_cache(npy_path, json_path, expected, mmap_mode)
    if features is None:
        started = time.perf_counter()
        features = extract_logmels(paths, settings, device=device, progress=progress, **extract_kwargs)
        seconds = time.perf_counter() - started
        # Remove the old sidecar first: if we are interrupted between the two writes below, a new
        # data file never sits next to a sidecar that vouches for the old one. The data checksum
        # would catch that too; this keeps the warning message accurate.
        json_path.unlink(missing_ok=True)
        with atomic_write(npy_path) as f:
            np.save(f, features, allow_pickle=False)
        write_json_atomic(json_path, {
            **expected,
            "corpus_name": corpus_name,
            "split": split,
            "settings_key": settings.key(),
            "dtype": "float32",
            "data_sha256": sha256_file(npy_path),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "extraction_seconds": round(seconds, 3),
            "device": str(device),
            "versions": {"torch": torch.__version__, "librosa": librosa.__version__, "numpy": np.__version__},
        })
        if mmap_mode is not None:
            features = np.load(npy_path, mmap_mode=mmap_mode, allow_pickle=False)
    return FeatureSet(
        features=features, filenames=filenames, labels=labels, split=split,
        settings=settings, cache_path=npy_path, key=key,
    )
