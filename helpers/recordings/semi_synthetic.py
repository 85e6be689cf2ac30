"""Semi-synthetic long recordings with exact truth, for measuring a call detector on long files.

A detector trained on clips is meant to run over hours of field recordings; measuring it on the
training clips says little about that. :func:`make_long_recording` builds a long file from clips of
a split the model was NOT trained on (``test`` by default, or ``devel`` if test labels are hidden)
and writes, next to it, the exact time and label of every call it inserted::

    out_dir/rec.wav          mono 16-bit PCM at ``sample_rate``
    out_dir/rec.truth.csv    file,begin,end,label,snr_db,source,source_split (one row per call)

The truth CSV is in the plain annotation format, so
:func:`helpers.data.annotations.read_annotations` reads it (the extra columns go to ``extra``).

The rules (deterministic: the same seed and corpus give bit-identical files):

1. **Background bed.** The files of ``background_files`` if given, else the split's clips labelled
   ``background_label``; each read mono at ``sample_rate``, concatenated in a seeded random order
   (a fresh order per pass), passes repeated until ``duration`` s are filled, the last piece cut.
   Consecutive pieces overlap by an equal-power (sin/cos) crossfade of :data:`CROSSFADE_SECONDS`
   (shortened to half of the shorter piece), which keeps the level of uncorrelated noise steady.
2. **Calls.** ``n_calls`` clips of the split's labelled, non-background clips: round-robin over its
   call classes in a seeded order, within a class clips without replacement while they last (then
   again in a new order), so class counts differ by at most one. They are put in a seeded random
   order at seeded random times, uniform over all placements in which no two overlap and
   consecutive calls are at least ``min_gap`` s apart (end of one to begin of the next).
3. **Level.** Each clip gets a raised-cosine fade in and out of :data:`FADE_SECONDS` (at most a
   quarter of the clip; against clicks) and is scaled so that its SNR, drawn uniformly from
   ``snr_db``, is ``20*log10(rms(scaled clip) / rms(bed samples under it))``; it is then ADDED to
   the bed. If the mix peaks above :data:`PEAK`, the whole recording is scaled down to that peak,
   which leaves every SNR unchanged (both terms scale alike).

The recording is built in memory as float64, 8 bytes per sample; :data:`MAX_SAMPLES` (one hour at
16 kHz: 0.46 GB, about 1 GB at the peak while writing, 0.46 GB more with ``return_bed``) is the limit.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.core.fileio import atomic_write
from helpers.data.audio import load_clip, write_wav
from helpers.data.corpus import UNKNOWN_LABEL, Corpus

#: Seconds of the equal-power crossfade between consecutive background pieces.
CROSSFADE_SECONDS = 0.05
#: Seconds of the raised-cosine fade in and out of every inserted call.
FADE_SECONDS = 0.01
#: Largest absolute sample value of the written recording; a louder mix is scaled down to it
#: (a little below full scale, since 16-bit PCM stops at 32767/32768).
PEAK = 0.99
#: Longest recording in samples (one hour at 16 kHz), to keep the in-memory build within ~1.5 GB.
MAX_SAMPLES = 3600 * 16_000
#: Columns of the truth table, in order; the first four are the plain CSV annotation format.
TRUTH_COLUMNS = ["file", "begin", "end", "label", "snr_db", "source", "source_split"]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _snr_range(snr_db: float | Sequence[float]) -> tuple[float, float]:
    """``snr_db`` as a ``(low, high)`` pair of finite floats (a number gives ``(x, x)``)."""
    pair = (snr_db, snr_db) if isinstance(snr_db, (int, float, np.number)) else tuple(snr_db)
    if len(pair) != 2 or not all(math.isfinite(float(v)) for v in pair) or float(pair[0]) > float(pair[1]):
        raise ValueError(f"snr_db={snr_db!r}: give a number of dB or a (low, high) pair with low <= high.")
    return float(pair[0]), float(pair[1])


def _bed(paths: list[str], n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The background bed ``(n,)`` float64: ``paths`` read mono at ``sample_rate`` Hz, in a fresh
    seeded order per pass, joined by equal-power crossfades until ``n`` samples are filled."""
    bed = np.zeros(n)
    longest = int(round(CROSSFADE_SECONDS * sample_rate))
    cache: dict[int, np.ndarray] = {}  # each file is decoded once, however often it repeats
    end = prev_len = 0  # samples written so far; length of the last piece
    while end < n:
        before = end
        for i in rng.permutation(len(paths)):
            if end >= n:
                break
            if i not in cache:
                cache[i] = load_clip(paths[i], sample_rate, length=0).astype(np.float64)
            piece = cache[i].copy()
            if piece.size == 0:
                continue
            # Half of the shorter piece at most, so that a piece's two crossfades never overlap.
            x = min(longest, prev_len // 2, piece.size // 2) if end else 0
            start = end - x
            if x:
                ramp = (np.arange(x) + 0.5) / x * (np.pi / 2)
                bed[start:end] *= np.cos(ramp)
                piece[:x] *= np.sin(ramp)
            stop = min(n, start + piece.size)
            bed[start:stop] += piece[: stop - start]
            end, prev_len = start + piece.size, piece.size
        if end == before:
            raise ValueError(f"the background files hold no samples ({paths[:3]}...); pass recordings with audio.")
    return bed


def _pick_calls(calls: pd.DataFrame, n_calls: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n_calls`` rows of ``calls``: round-robin over the labels in a seeded order, each label's rows
    without replacement (a new seeded order once used up), returned in a seeded random order."""
    labels = list(rng.permutation(sorted(calls["label"].unique())))
    by_label = {lab: calls.index[calls["label"] == lab].to_numpy() for lab in labels}
    queues: dict[str, list[int]] = {lab: [] for lab in labels}
    chosen = []
    for k in range(n_calls):
        lab = labels[k % len(labels)]
        if not queues[lab]:
            queues[lab] = list(rng.permutation(by_label[lab]))
        chosen.append(queues[lab].pop())
    return calls.loc[[chosen[i] for i in rng.permutation(n_calls)]].reset_index(drop=True)


def make_long_recording(
    corpus: Corpus,
    out_path: str | Path,
    split: str = "test",
    duration: float = 120.0,
    n_calls: int = 10,
    snr_db: float | tuple[float, float] = (-5.0, 15.0),
    background_label: str = "background",
    background_files: Sequence[str | Path] | None = None,
    sample_rate: int = 16000,
    min_gap: float = 1.0,
    seed: int = 0,
    *,
    return_bed: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Write a long recording of ``split``'s calls over a background bed, and its exact truth.

    Args:
        corpus: the corpus whose ``split`` gives the calls (and the bed, unless ``background_files``).
        out_path: the WAV to write (``.wav``; its folder is created); the truth goes beside it as
            ``<stem>.truth.csv``. Both are written atomically (temporary file, then ``os.replace``).
        split: a split the detector was not trained on.
        duration: seconds of the recording (at most :data:`MAX_SAMPLES` samples).
        n_calls: calls to insert (0 gives a bed only).
        snr_db: dB, a fixed value or a ``(low, high)`` range drawn uniformly per call; SNR as in the
            module docstring (rule 3).
        background_label: the label of the split's background clips.
        background_files: long background recordings to use for the bed instead of those clips.
        sample_rate: Hz of the written recording; every file is resampled to it.
        min_gap: seconds, at least, from the end of one call to the begin of the next.
        seed: non-negative integer; the bed, the clips, the times and the SNRs each come from their
            own stream of it, so e.g. the bed does not change with ``n_calls``.
        return_bed: also return the bed as it is in the written file (float64 ``(samples,)``, scaled
            like the mix, before 16-bit rounding), so that ``written - bed`` is the calls alone.

    Returns:
        The truth table, columns :data:`TRUTH_COLUMNS` (``begin``/``end`` in s: the inserted clip's
        span, fades included; ``snr_db`` the realised SNR; ``source`` the clip's corpus filename),
        sorted by ``begin``; with ``return_bed``, ``(truth, bed)``.

    Raises:
        ValueError: unusable arguments, a split without calls or background, or calls that do not
            fit into ``duration``; the message says which and how to fix it.
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".wav":
        raise ValueError(f"out_path={str(out_path)!r}: give a file name ending in .wav.")
    lo, hi = _snr_range(snr_db)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1:
        raise ValueError(f"sample_rate={sample_rate!r}: give a positive integer rate in Hz (e.g. 16000).")
    n = int(round(float(duration) * sample_rate)) if math.isfinite(float(duration)) else 0
    if not 0 < n <= MAX_SAMPLES:
        raise ValueError(
            f"duration={duration!r} s at {sample_rate} Hz: give 0 < duration <= "
            f"{MAX_SAMPLES / sample_rate:.0f} s (the in-memory limit); make several files for more."
        )
    if isinstance(n_calls, bool) or not isinstance(n_calls, (int, np.integer)) or n_calls < 0:
        raise ValueError(f"n_calls={n_calls!r}: give a non-negative integer.")
    if not min_gap >= 0:
        raise ValueError(f"min_gap={min_gap!r}: give a non-negative number of seconds.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: give a non-negative integer.")
    rows = corpus.split(split)
    if rows.empty:
        raise ValueError(
            f"the corpus {corpus.root} has no clips in split {split!r} (it has {corpus.splits}); "
            "pass one of those as split=."
        )
    labelled = rows[rows["label"] != UNKNOWN_LABEL]
    bed_rng, pick_rng, time_rng, snr_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))

    if background_files is None:
        paths = labelled.loc[labelled["label"] == background_label, "path"].tolist()
        if not paths:
            hidden = " (its labels are hidden: '?')" if labelled.empty else ""
            raise ValueError(
                f"split {split!r} of {corpus.root} has no clips labelled {background_label!r}{hidden}; "
                "pass background_files=[long background recordings], or the right background_label."
            )
    else:
        paths = [str(p) for p in background_files]
        if not paths:
            raise ValueError("background_files is empty; pass at least one recording, or None to use the corpus.")
    mix = _bed(paths, n, sample_rate, bed_rng)

    calls = labelled[labelled["label"] != background_label]
    if n_calls and calls.empty:
        why = "its labels are hidden ('?')" if labelled.empty else f"it holds only {background_label!r} clips"
        raise ValueError(
            f"split {split!r} of {corpus.root} has no calls to insert: {why}. Use a split with "
            "labelled calls (e.g. split='devel', or a synthetic corpus made with hidden_test_labels=False)."
        )
    picked = _pick_calls(calls, int(n_calls), pick_rng) if n_calls else calls.iloc[:0]
    # A clip drawn twice (a class with fewer clips than its share) is decoded once.
    cache = {p: load_clip(p, sample_rate, length=0).astype(np.float64) for p in dict.fromkeys(picked["path"])}
    clips = [cache[p] for p in picked["path"]]
    lengths = np.array([c.size for c in clips], dtype=np.int64)
    gap = int(math.ceil(min_gap * sample_rate - 1e-9))  # round up: a gap is never below min_gap
    slack = n - int(lengths.sum()) - gap * max(len(clips) - 1, 0)
    if slack < 0:
        raise ValueError(
            f"n_calls={n_calls} calls ({lengths.sum() / sample_rate:.1f} s of clips) with min_gap="
            f"{min_gap} s between them need {(n - slack) / sample_rate:.1f} s, more than duration="
            f"{duration} s; raise duration, or lower n_calls or min_gap."
        )
    # Sorted uniform offsets spread the slack: every valid placement (in this order) is equally likely.
    starts = np.sort(time_rng.integers(0, slack, size=len(clips), endpoint=True))
    starts += np.concatenate([[0], np.cumsum(lengths[:-1] + gap)]).astype(np.int64)[: len(clips)]
    bed = mix.copy() if return_bed else None

    records = []
    for (_, row), clip, start in zip(picked.iterrows(), clips, starts):
        f = min(int(round(FADE_SECONDS * sample_rate)), clip.size // 4)
        if f:
            ramp = np.sin((np.arange(f) + 0.5) / f * (np.pi / 2)) ** 2
            clip = clip.copy()
            clip[:f] *= ramp
            clip[-f:] *= ramp[::-1]
        # Calls never overlap, so the samples under this one are still the bed alone.
        under, level = _rms(mix[start : start + clip.size]), _rms(clip)
        if under == 0 or level == 0:
            what = f"the background at {start / sample_rate:.2f} s" if under == 0 else f"the clip {row['path']}"
            raise ValueError(f"{what} is digital silence, so an SNR cannot be set; remove it from the material.")
        scaled = clip * (10 ** (snr_rng.uniform(lo, hi) / 20) * under / level)
        mix[start : start + clip.size] += scaled
        records.append(
            {
                "file": out_path.name,
                "begin": start / sample_rate,
                "end": (start + clip.size) / sample_rate,
                "label": row["label"],
                "snr_db": 20 * math.log10(_rms(scaled) / under),
                "source": row["filename"],
                "source_split": split,
            }
        )
    peak = float(np.max(np.abs(mix)))
    if peak > PEAK:  # scaling bed and calls alike leaves every SNR as it is
        mix *= PEAK / peak
        if bed is not None:
            bed *= PEAK / peak
    truth = pd.DataFrame(records, columns=TRUTH_COLUMNS)  # already sorted: starts increase

    out_path.parent.mkdir(parents=True, exist_ok=True)
    # write_wav picks the format from the extension, so the temporary name ends in .wav too.
    tmp = out_path.with_name(f".{out_path.stem}.{secrets.token_hex(6)}.tmp.wav")
    try:
        write_wav(tmp, mix, sample_rate)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with atomic_write(out_path.with_name(f"{out_path.stem}.truth.csv"), "w") as fh:
        truth.to_csv(fh, index=False, lineterminator="\n")
    return (truth, bed) if return_bed else truth
