"""A synthetic stand-in for the ComParE 2021 Primate corpus, in the challenge's own layout.

The real corpus is not freely redistributable, so tests, workshops and smoke runs use this
generator instead. :func:`make_synthetic_corpus` writes::

    out_dir/
        wav/train_00001.wav ... wav/devel_00001.wav ... wav/test_00001.wav ...
        lab/train.csv  lab/devel.csv  lab/test.csv     header ``filename,label``
        truth/test.csv                                 true test labels (only when hidden)
        corpus.json                                    generator, version, seed, parameters, counts
        README.txt                                     the same in words

Files are mono 16-bit PCM WAV, numbered from 00001 within each split, with label rows in file
order. As in the real corpus (docs/reference.md §1) test labels are ``?`` by default; the true ones
go to ``truth/test.csv``, outside ``lab/``, so that test can still be scored if one wishes.
Class proportions default to the real train proportions 3458/2217/158/874/208, durations vary
between 0.5 s and 2.99 s (the longest clip is exactly :data:`~helpers.data.audio.CLIP_SAMPLES_16K`
samples at 16 kHz).

What a clip sounds like
-----------------------
Every clip has a forest-like noise bed: Gaussian noise with a spectrum between pink and brown
(power ~ 1/f^a, a drawn in [1.0, 1.8]), a high-pass around 20-60 Hz, a broad "insect hiss" bump
at 3-6 kHz, a level that drifts slowly (about +-3 dB over half-second knots) and, in 40 % of the
clips, an insect-like narrowband trill (a 3.5-7 kHz tone gated at 25-60 Hz). Non-primate events
(a bird-like sweep of one to five 2.5-7 kHz notes, or one to three broadband branch cracks) are
added to 50 % of the background clips and 15 % of the primate clips, 3 dB louder than a call,
so that "an event is present" does not give the class away.

Primate classes add one call (30 %: two) at an SNR drawn uniformly from ``snr_db``, measured as
the call's power over its active samples against the noise bed's power. Every parameter below
is jittered per clip:

=================  =====================  ==================================================
call type          default class          acoustics
=================  =====================  ==================================================
``noise_only``     ``background``         the noise bed only (plus the occasional event)
``pant_hoot``      ``chimpanze``          4-10 harmonic tonal units (60-140 ms, 4-5 harmonics)
                                          whose f0 rises across the series from ~280-420 Hz to
                                          ~650-900 Hz, each unit with a small rise-fall, units
                                          getting shorter, closer and louder (build-up)
``pulse_train``    ``geunon``             4-16 short pulses (15-40 ms, sin^2 envelope) at
                                          10-15 pulses/s, carrier 2-4 kHz sweeping down
                                          200-600 Hz within each pulse
``grunt``          ``mandrille``          1-3 two-phase grunts: phase one 120-300 ms at f0
                                          150-300 Hz, phase two 150-350 ms at 60-85 % of that
                                          f0, rich harmonic stack (amplitudes k^-0.7 up to
                                          2.5 kHz) with a 20-40 Hz growl modulation
``whistle_bark``   ``redcap``             1-4 units, 70 % frequency-modulated whistles
                                          (100-350 ms, centre 1-2 kHz, +-100-350 Hz vibrato at
                                          4-10 Hz plus a sweep) and 30 % barks (50-120 ms,
                                          f0 0.7-1.2 kHz with harmonics and a noisy band)
=================  =====================  ==================================================

Custom label lists (``classes=[...]``) get call types cyclically: the first class is
``noise_only``, the following ones ``pant_hoot``, ``pulse_train``, ``grunt``,
``whistle_bark``, then again ``pant_hoot``... From the second cycle on, a repeated call type is
shifted up in frequency by a factor 1.4 per cycle (capped below Nyquist) so that its classes
stay separable, if less so than the first five.

Frequencies are capped at 0.45 x the sample rate, so at 8 kHz the 3.5-7 kHz insect trill, the
bird notes and the upper guenon band are squeezed below 3.6 kHz: the 8 kHz corpus is harder.

Reproducibility: clip ``k`` of split ``s`` is drawn from ``SeedSequence(seed, spawn_key=(1, s, k))``,
so its audio depends only on the seed, its label, its index and the sample rate, never on the
order of generation; the same arguments give byte-identical files.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from helpers.data.audio import SAMPLE_RATE, clip_samples
from helpers.data.corpus import SPLITS
from helpers.data.corpus_writer import CorpusWriter

#: Bumped whenever the same arguments would produce different audio or layout.
SYNTHETIC_VERSION = "1.0"
#: The real corpus's label spellings (sic), in the order used for proportions and call types.
DEFAULT_CLASSES = ("background", "chimpanze", "geunon", "mandrille", "redcap")
#: Train counts per class of the real corpus (docs/reference.md §1); the default proportions.
REAL_TRAIN_COUNTS = {"background": 3458, "chimpanze": 2217, "geunon": 158, "mandrille": 874, "redcap": 208}
#: Split names, in file-numbering and seeding order.
#: Call types, assigned to classes cyclically; the first one is the noise-only type.
CALL_TYPES = ("noise_only", "pant_hoot", "pulse_train", "grunt", "whistle_bark")
#: Shortest clip (s); the longest is the fixed clip length of :mod:`helpers.data.audio` (2.99 s).
MIN_CLIP_SECONDS = 0.5
#: Fraction of clips that get the full clip length (the real corpus has many full-length chunks).
FULL_LENGTH_FRACTION = 0.3
#: Label written in lab/test.csv when test labels are hidden (the challenge's convention).
HIDDEN_LABEL = "?"

_GENERATOR_NAME = "helpers.data.synthetic.make_synthetic_corpus"  # kept as it was: corpora made before the move name it
_MAX_FREQ_FRACTION = 0.45  # highest synthesised frequency, as a fraction of the sample rate
_EVENT_PROB_BACKGROUND = 0.5
_EVENT_PROB_PRIMATE = 0.15
_EVENT_EXTRA_DB = 3.0
_SECOND_CALL_PROB = 0.3
_INSECT_PROB = 0.4


# --------------------------------------------------------------------------------------------
# Small signal building blocks. All take and return float64 numpy arrays of shape (samples,).
# --------------------------------------------------------------------------------------------


def _fmax(sample_rate: int) -> float:
    return _MAX_FREQ_FRACTION * sample_rate


def _cap(freq: float | np.ndarray, sample_rate: int) -> float | np.ndarray:
    """Keep a frequency (Hz) below the synthesis ceiling, so nothing aliases."""
    return np.minimum(freq, _fmax(sample_rate))


def _n(seconds: float, sample_rate: int) -> int:
    return max(1, int(round(seconds * sample_rate)))


def _phase(freq_track: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Instantaneous phase (rad) of a tone following ``freq_track`` (Hz per sample)."""
    return 2.0 * np.pi * np.cumsum(freq_track) / sample_rate + rng.uniform(0, 2 * np.pi)


def _harmonic_tone(
    f0_track: np.ndarray, amps: Sequence[float], sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Sum of harmonics ``k * f0`` with amplitudes ``amps[k-1]``; harmonics above the ceiling are dropped."""
    # wrap the phase in float64, then work in float32: sin is much faster and 1e-6 rad is plenty
    phase = np.mod(_phase(f0_track, sample_rate, rng), 2 * np.pi).astype(np.float32)
    f0_max = float(f0_track.max())
    ks = np.arange(1, len(amps) + 1)
    keep = ks * f0_max < _fmax(sample_rate)
    ks, a = ks[keep], np.asarray(amps, dtype=float)[keep]
    if ks.size == 0:  # f0 itself above the ceiling: should not happen after _cap, but stay safe
        return np.zeros_like(f0_track)
    offsets = rng.uniform(0, 2 * np.pi, size=ks.size).astype(np.float32)
    partials = np.sin(ks.astype(np.float32)[:, None] * phase[None, :] + offsets[:, None])
    return np.einsum("k,kl->l", a, partials.astype(np.float64))  # einsum: no BLAS threads


def _window(n: int, attack: float = 0.2) -> np.ndarray:
    """Smooth on/off envelope: raised-cosine attack and release over ``attack`` of the length each."""
    env = np.ones(n)
    m = max(1, int(n * attack))
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
    env[:m] = ramp
    env[n - m :] = np.minimum(env[n - m :], ramp[::-1])
    return env


def _smooth_noise(n: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """White noise low-passed by a moving average of ``width`` samples, scaled to unit RMS."""
    x = rng.standard_normal(n + width)
    c = np.cumsum(x)
    y = (c[width:] - c[:-width])[:n]
    return y / (np.sqrt(np.mean(y**2)) + 1e-12)


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: a length pocketfft transforms quickly."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


@functools.lru_cache(maxsize=64)
def _noise_grid(n_fft: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rfft bin frequencies (Hz), their log (floored at 1 Hz) and their square, cached per length."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    f = np.maximum(freqs, 1.0)
    out = (freqs, np.log(f), f**2)
    for a in out:
        a.flags.writeable = False
    return out


def _concat(pieces: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(pieces) if pieces else np.zeros(1)


# --------------------------------------------------------------------------------------------
# The noise bed and non-primate events
# --------------------------------------------------------------------------------------------


def forest_noise(n_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Forest-like background of ``n_samples`` samples at unit RMS.

    Spectrally shaped Gaussian noise (between pink and brown, high-passed, with an insect-hiss
    bump at 3-6 kHz), a slowly drifting level and sometimes an insect trill. Shape ``(samples,)``.
    """
    n = n_samples
    n_fft = _fast_len(n)  # arbitrary lengths can be prime, and an FFT of prime length is slow
    freqs, log_f, f_sq = _noise_grid(n_fft, sample_rate)
    alpha = rng.uniform(1.0, 1.8)
    f_hp = rng.uniform(20.0, 60.0)
    shape = np.exp((-alpha / 2) * log_f) * (f_sq / (f_sq + f_hp**2))
    hiss_fc = _cap(rng.uniform(3000.0, 6000.0), sample_rate)
    hiss_bw = rng.uniform(500.0, 1500.0)
    # the hiss bump is set relative to the pink level at 1 kHz, so its weight does not depend on alpha
    hiss_gain = rng.uniform(0.05, 0.4) * 1000.0 ** (-alpha / 2)
    band = slice(*np.searchsorted(freqs, [hiss_fc - 4 * hiss_bw, hiss_fc + 4 * hiss_bw]))
    shape[band] += hiss_gain * np.exp(-0.5 * ((freqs[band] - hiss_fc) / hiss_bw) ** 2)
    spectrum = rng.standard_normal((freqs.size, 2)).view(np.complex128)[:, 0] * shape
    noise = np.fft.irfft(spectrum, n_fft)[:n]
    noise /= np.sqrt(np.mean(noise**2)) + 1e-12  # not np.dot: threaded BLAS stalls on busy cores

    # slow level drift: +-3 dB between knots half a second apart
    n_knots = max(2, int(n / sample_rate / 0.5) + 2)
    knot_gains = 10 ** (rng.normal(0.0, 1.5, size=n_knots).clip(-3.0, 3.0) / 20)
    noise *= np.interp(np.arange(n), np.linspace(0, n, n_knots), knot_gains)

    if rng.random() < _INSECT_PROB:
        length = int(n * rng.uniform(0.3, 1.0))
        start = int(rng.integers(0, n - length + 1))
        fc = _cap(rng.uniform(3500.0, 7000.0), sample_rate)
        rate = rng.uniform(25.0, 60.0)
        t = np.arange(length) / sample_rate
        gate = np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)) > rng.uniform(-0.3, 0.3)
        trill = np.sin(_phase(np.full(length, fc), sample_rate, rng)) * gate * _window(length, 0.1)
        level = 10 ** (rng.uniform(-6.0, 3.0) / 20) * np.sqrt(2)
        noise[start : start + length] += level * trill
    return noise


def _bird_event(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    notes = []
    for _ in range(int(rng.integers(1, 6))):
        m = _n(rng.uniform(0.03, 0.09), sample_rate)
        f1, f2 = _cap(rng.uniform(2500.0, 7000.0, size=2), sample_rate)
        track = np.geomspace(f1, f2, m)
        notes.append(np.sin(_phase(track, sample_rate, rng)) * _window(m, 0.3))
        notes.append(np.zeros(_n(rng.uniform(0.04, 0.12), sample_rate)))
    return _concat(notes[:-1])


def _crack_event(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    pieces = []
    for _ in range(int(rng.integers(1, 4))):
        tau = rng.uniform(0.003, 0.015)
        m = _n(6 * tau, sample_rate)
        pieces.append(rng.standard_normal(m) * np.exp(-np.arange(m) / (tau * sample_rate)))
        pieces.append(np.zeros(_n(rng.uniform(0.02, 0.2), sample_rate)))
    return _concat(pieces[:-1])


# --------------------------------------------------------------------------------------------
# Primate-like calls. Each returns the call alone, ``(samples,)``, of its own length.
# ``scale`` multiplies all frequencies (1.0 for the first five classes).
# --------------------------------------------------------------------------------------------


def _pant_hoot(sample_rate: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    n_units = int(rng.integers(4, 11))
    f_start = rng.uniform(280.0, 420.0) * scale
    f_end = rng.uniform(650.0, 900.0) * scale
    centres = np.geomspace(f_start, f_end, n_units) * (1 + 0.03 * rng.standard_normal(n_units))
    durs = np.linspace(rng.uniform(0.10, 0.14), rng.uniform(0.06, 0.09), n_units)
    gaps = np.linspace(rng.uniform(0.08, 0.14), rng.uniform(0.03, 0.06), n_units)
    gains = np.linspace(rng.uniform(0.4, 0.7), 1.0, n_units)
    amps = np.array([1.0, 0.6, 0.35, 0.2, 0.1]) * rng.uniform(0.7, 1.3, size=5)
    pieces = []
    for c, d, g, a in zip(centres, durs, gaps, gains):
        m = _n(d, sample_rate)
        u = np.linspace(0.0, 1.0, m)
        track = _cap(c * (1 + rng.uniform(0.04, 0.12) * np.sin(np.pi * u)), sample_rate)
        pieces.append(a * _harmonic_tone(track, amps, sample_rate, rng) * _window(m, 0.25))
        pieces.append(np.zeros(_n(g, sample_rate)))
    return _concat(pieces[:-1])


def _pulse_train(sample_rate: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    rate = rng.uniform(10.0, 15.0)
    n_pulses = int(rng.integers(4, 17))
    width = rng.uniform(0.015, 0.04)
    fc = rng.uniform(2000.0, 4000.0) * scale
    sweep = rng.uniform(200.0, 600.0)
    m = _n(n_pulses / rate, sample_rate)
    t = np.arange(m) / sample_rate
    k = np.minimum((t * rate).astype(int), n_pulses - 1)
    tau = t - k / rate
    inside = tau < width
    env = np.where(inside, np.sin(np.pi * np.minimum(tau, width) / width) ** 2, 0.0)
    env *= rng.uniform(0.6, 1.0, size=n_pulses)[k]
    # each pulse sweeps down from fc + sweep/2 to fc - sweep/2; keep the top below the ceiling
    top = min(fc + sweep / 2, _fmax(sample_rate))
    track = top - sweep * np.clip(tau / width, 0.0, 1.0)
    return np.sin(_phase(track, sample_rate, rng)) * env


def _grunt(sample_rate: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    n_bouts = int(rng.integers(1, 4))
    pieces = []
    k = np.arange(1, 41)
    for _ in range(n_bouts):
        f0_a = rng.uniform(150.0, 300.0) * scale
        f0_b = f0_a * rng.uniform(0.6, 0.85)
        for f0, dur in ((f0_a, rng.uniform(0.12, 0.30)), (f0_b, rng.uniform(0.15, 0.35))):
            m = _n(dur, sample_rate)
            t = np.arange(m) / sample_rate
            wobble = 1 + 0.03 * _smooth_noise(m, _n(0.03, sample_rate), rng)
            track = _cap(f0 * wobble * np.linspace(1.05, 0.95, m), sample_rate)
            amps = k**-0.7 * (k * f0 < 2500.0 * scale)
            growl = 1 + rng.uniform(0.3, 0.7) * np.sin(2 * np.pi * rng.uniform(20.0, 40.0) * t)
            pieces.append(_harmonic_tone(track, amps, sample_rate, rng) * growl * _window(m, 0.15))
            pieces.append(np.zeros(_n(rng.uniform(0.03, 0.08), sample_rate)))
        pieces[-1] = np.zeros(_n(rng.uniform(0.10, 0.30), sample_rate))
    return _concat(pieces[:-1])


def _whistle_bark(sample_rate: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    pieces = []
    for _ in range(int(rng.integers(1, 5))):
        if rng.random() < 0.7:  # frequency-modulated whistle
            m = _n(rng.uniform(0.10, 0.35), sample_rate)
            t = np.arange(m) / sample_rate
            fc = rng.uniform(1000.0, 2000.0) * scale
            dev = rng.uniform(100.0, 350.0) * scale
            fm = rng.uniform(4.0, 10.0)
            sweep = rng.uniform(-300.0, 300.0) * scale * np.linspace(-0.5, 0.5, m)
            track = _cap(fc + dev * np.sin(2 * np.pi * fm * t + rng.uniform(0, 2 * np.pi)) + sweep, sample_rate)
            unit = _harmonic_tone(track, [1.0, rng.uniform(0.1, 0.4)], sample_rate, rng) * _window(m, 0.2)
        else:  # bark: short, harmonic, with a noisy band around its second harmonic
            m = _n(rng.uniform(0.05, 0.12), sample_rate)
            f0 = rng.uniform(700.0, 1200.0) * scale
            track = _cap(f0 * np.linspace(1.1, 0.9, m), sample_rate)
            tone = _harmonic_tone(track, [1.0, 0.7, 0.4], sample_rate, rng)
            band = _smooth_noise(m, _n(1 / 400, sample_rate), rng) * np.sin(
                _phase(_cap(2 * track, sample_rate), sample_rate, rng)
            )
            decay = np.exp(-np.arange(m) / (m / 3))
            unit = (tone + rng.uniform(0.3, 0.8) * band) * decay * _window(m, 0.1)
        pieces.append(unit)
        pieces.append(np.zeros(_n(rng.uniform(0.08, 0.30), sample_rate)))
    return _concat(pieces[:-1])


_CALL_GENERATORS = {
    "pant_hoot": _pant_hoot,
    "pulse_train": _pulse_train,
    "grunt": _grunt,
    "whistle_bark": _whistle_bark,
}


def _active_power(x: np.ndarray) -> float:
    """Mean power over the samples where the signal is on (gaps between units do not count)."""
    mag = np.abs(x)
    on = mag > 1e-3 * (mag.max() + 1e-12)
    return float(np.mean(x[on] ** 2)) if on.any() else 0.0


def _place(clip: np.ndarray, event: np.ndarray, gain: float, rng: np.random.Generator) -> None:
    """Add ``gain * event`` at a random position; an event longer than the clip is cropped at random."""
    n, m = clip.size, event.size
    if m > n:
        start = int(rng.integers(0, m - n + 1))
        event = event[start : start + n]
        m = n
    onset = int(rng.integers(0, n - m + 1))
    clip[onset : onset + m] += gain * event


def synthesize_clip(
    call_type: str,
    n_samples: int,
    sample_rate: int = SAMPLE_RATE,
    snr_db: tuple[float, float] = (0.0, 12.0),
    rng: np.random.Generator | int | None = None,
    freq_scale: float = 1.0,
) -> np.ndarray:
    """One synthetic clip: forest noise plus, unless ``call_type == "noise_only"``, primate calls.

    ``call_type`` is one of :data:`CALL_TYPES`; ``n_samples`` the clip length in samples at
    ``sample_rate`` Hz; the call SNR (dB) is drawn uniformly from ``snr_db``; ``freq_scale``
    multiplies the call frequencies; ``rng`` is a Generator or an integer seed (None: fresh
    entropy). Returns float32 ``(n_samples,)`` with peak <= 0.98.
    """
    if call_type not in CALL_TYPES:
        raise ValueError(f"call_type {call_type!r} is not one of {', '.join(CALL_TYPES)}.")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    noise = forest_noise(n_samples, sample_rate, rng)
    noise_power = 1.0  # forest_noise returns unit RMS before drift and trills, near enough
    clip = noise.copy()

    def add(event: np.ndarray, snr: float) -> None:
        power = _active_power(event)
        if power > 0:
            _place(clip, event, np.sqrt(noise_power * 10 ** (snr / 10) / power), rng)

    lo, hi = snr_db
    if call_type != "noise_only":
        generator = _CALL_GENERATORS[call_type]
        for _ in range(1 + int(rng.random() < _SECOND_CALL_PROB)):
            add(generator(sample_rate, rng, freq_scale), rng.uniform(lo, hi))
    event_prob = _EVENT_PROB_BACKGROUND if call_type == "noise_only" else _EVENT_PROB_PRIMATE
    if rng.random() < event_prob:
        event = _bird_event(sample_rate, rng) if rng.random() < 0.6 else _crack_event(sample_rate, rng)
        add(event, rng.uniform(lo, hi) + _EVENT_EXTRA_DB)

    # recording level: noise bed between -42 and -24 dBFS RMS, then keep the peak inside [-1, 1]
    clip *= 10 ** (rng.uniform(-42.0, -24.0) / 20)
    peak = np.abs(clip).max()
    if peak > 0.98:
        clip *= 0.98 / peak
    return clip.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Corpus layout: counts, labels, files
# --------------------------------------------------------------------------------------------


def _largest_remainder(total: int, weights: np.ndarray, minimum: int = 0) -> np.ndarray:
    """Integer counts summing to ``total``, proportional to ``weights``, each at least ``minimum``.

    Hamilton's method: floors first, then the largest remainders get one more (ties to the
    earlier class). Classes below ``minimum`` are topped up from the largest counts.
    """
    w = np.asarray(weights, dtype=float)
    quotas = total * w / w.sum()
    counts = np.floor(quotas).astype(int)
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    for i in np.flatnonzero(counts < minimum):
        while counts[i] < minimum:
            donor = int(np.argmax(np.where(counts > minimum, counts, -1)))
            counts[donor] -= 1
            counts[i] += 1
    return counts


def _resolve_classes(classes: Sequence[str] | None) -> tuple[str, ...]:
    if classes is None:
        return DEFAULT_CLASSES
    if isinstance(classes, str):
        raise ValueError(f"classes must be a list of label strings, not the string {classes!r}.")
    labels = tuple(classes)
    if not labels:
        raise ValueError("classes is empty; give at least one label, e.g. ['background', 'call'].")
    for label in labels:
        if not isinstance(label, str) or not label.strip() or label != label.strip():
            raise ValueError(f"classes: label {label!r} must be a non-empty string without surrounding spaces.")
        if any(ch in label for ch in ',"\n\r') or label == HIDDEN_LABEL:
            raise ValueError(
                f"classes: label {label!r} cannot hold a comma, quote or newline, nor be {HIDDEN_LABEL!r}."
            )
    if len(set(labels)) != len(labels):
        dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
        raise ValueError(f"classes: labels {', '.join(dupes)} appear more than once.")
    return labels


def _resolve_proportions(
    classes: tuple[str, ...], class_proportions: Sequence[float] | Mapping[str, float] | None
) -> np.ndarray:
    if class_proportions is None:
        if classes == DEFAULT_CLASSES:
            return np.array([REAL_TRAIN_COUNTS[c] for c in classes], dtype=float)
        return np.ones(len(classes))  # custom labels: no real counts to borrow, so uniform
    if isinstance(class_proportions, Mapping):
        missing = [c for c in classes if c not in class_proportions]
        extra = [c for c in class_proportions if c not in classes]
        if missing or extra:
            raise ValueError(
                f"class_proportions: keys must be exactly the classes {', '.join(classes)}"
                f" (missing: {missing}, unknown: {extra})."
            )
        weights = np.array([class_proportions[c] for c in classes], dtype=float)
    else:
        weights = np.asarray(list(class_proportions), dtype=float)
        if weights.shape != (len(classes),):
            raise ValueError(
                f"class_proportions has {weights.size} values for {len(classes)} classes"
                f" ({', '.join(classes)}); give one weight per class."
            )
    if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ValueError(
            f"class_proportions {weights.tolist()}: every weight must be positive and finite"
            " (each class needs clips in train and devel)."
        )
    return weights


def _split_counts(n_clips: int, split_fractions: Sequence[float], n_classes: int) -> np.ndarray:
    fractions = np.asarray(list(split_fractions), dtype=float)
    if (
        fractions.shape != (3,)
        or not np.all(np.isfinite(fractions))
        or np.any(fractions < 0)
        or fractions[0] <= 0
        or fractions[1] <= 0
    ):
        raise ValueError(
            f"split_fractions {list(split_fractions)}: give three non-negative weights for"
            " (train, devel, test), train and devel positive, e.g. (1/3, 1/3, 1/3)."
        )
    counts = _largest_remainder(n_clips, fractions)
    for name, count in zip(SPLITS[:2], counts[:2]):
        if count < n_classes:
            raise ValueError(
                f"n_clips={n_clips} with split_fractions {fractions.tolist()} gives {name}"
                f" {count} clips, fewer than the {n_classes} classes that must each appear"
                f" there; raise n_clips (at least about {n_classes} / fraction of {name})."
            )
    return counts


def call_types_for(classes: Sequence[str]) -> dict[str, tuple[str, float]]:
    """Call type and frequency scale of each class: ``{label: (call_type, freq_scale)}``.

    The first class is ``noise_only``; the others cycle through the four primate call types,
    each further cycle shifted up in frequency by 1.4x.
    """
    out = {}
    for i, label in enumerate(classes):
        if i == 0:
            out[label] = ("noise_only", 1.0)
        else:
            cycle, kind = divmod(i - 1, len(CALL_TYPES) - 1)
            out[label] = (CALL_TYPES[1 + kind], 1.4**cycle)
    return out


def _clip_length(rng: np.random.Generator, sample_rate: int) -> int:
    longest = clip_samples(sample_rate)
    if rng.random() < FULL_LENGTH_FRACTION:
        return longest
    return int(rng.integers(int(round(MIN_CLIP_SECONDS * sample_rate)), longest + 1))


def _check_target(out_dir: Path, overwrite: bool) -> bool:
    """Return whether an existing ``out_dir`` must be replaced; raise when it must not be touched."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder; choose another --out path.")
    if not any(out_dir.iterdir()):
        return True
    if not overwrite:
        raise FileExistsError(
            f"{out_dir} is not empty; choose an empty or new folder, or pass"
            " overwrite=True (--overwrite) to replace a corpus made by this generator."
        )
    try:
        made_here = json.loads((out_dir / "corpus.json").read_text()).get("generator") == _GENERATOR_NAME
    except (OSError, ValueError, AttributeError):
        made_here = False
    if not made_here:
        # overwrite deletes the folder; refuse unless it is recognisably ours (it could be real data)
        raise FileExistsError(
            f"{out_dir} is not empty and holds no corpus.json from {_GENERATOR_NAME};"
            " refusing to delete it even with overwrite=True. Choose another folder"
            " or remove this one yourself."
        )
    return True


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="\n", encoding="utf-8") as fh:
        fh.write("filename,label\n")
        fh.writelines(f"{name},{label}\n" for name, label in rows)


def plan_labels(
    n_clips: int = 1000,
    seed: int = 0,
    class_proportions: Sequence[float] | Mapping[str, float] | None = None,
    split_fractions: Sequence[float] = (1 / 3, 1 / 3, 1 / 3),
    classes: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """The label of every clip, per split, as :func:`make_synthetic_corpus` will write them.

    Returns ``{"train": [label of train_00001, ...], "devel": [...], "test": [...]}``. Split
    sizes and per-class counts come from largest-remainder rounding of ``split_fractions`` and
    ``class_proportions`` (every class at least once in train and devel); the order within a
    split is a permutation drawn from ``seed``. No audio is made, so this is cheap.
    """
    labels = _resolve_classes(classes)
    weights = _resolve_proportions(labels, class_proportions)
    if isinstance(n_clips, bool) or not isinstance(n_clips, (int, np.integer)) or n_clips < 1:
        raise ValueError(f"n_clips={n_clips!r}: give a positive integer number of clips.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: give a non-negative integer.")
    split_sizes = _split_counts(int(n_clips), split_fractions, len(labels))
    plan = {}
    for s, (split, size) in enumerate(zip(SPLITS, split_sizes)):
        per_class = _largest_remainder(int(size), weights, minimum=1 if split != "test" else 0)
        split_labels = np.repeat(np.arange(len(labels)), per_class)
        order = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0, s))).permutation(
            split_labels.size
        )
        plan[split] = [labels[i] for i in split_labels[order]]
    return plan


def make_synthetic_corpus(
    out_dir: str | Path,
    n_clips: int = 1000,
    seed: int = 0,
    class_proportions: Sequence[float] | Mapping[str, float] | None = None,
    split_fractions: Sequence[float] = (1 / 3, 1 / 3, 1 / 3),
    sample_rate: int = SAMPLE_RATE,
    snr_db: tuple[float, float] = (0.0, 12.0),
    hidden_test_labels: bool = True,
    classes: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic primate corpus in the challenge layout and return its folder.

    Parameters
    ----------
    out_dir: folder to create (it may exist if empty). Written via a hidden temporary sibling
        folder that is renamed at the end, so an interrupted run leaves no half corpus.
    n_clips: total number of clips over train, devel and test.
    seed: integer seed; the same arguments give byte-identical files.
    class_proportions: one positive weight per class (sequence in ``classes`` order or a
        ``{label: weight}`` mapping), normalised. Default: the real train counts
        :data:`REAL_TRAIN_COUNTS` for the default classes, uniform for custom classes. Each
        split gets counts by largest remainder, with at least one clip per class in train and devel.
    split_fractions: weights of (train, devel, test), normalised; test may be 0.
    sample_rate: Hz. Durations are 0.5 s up to :func:`helpers.data.audio.clip_samples` (2.99 s).
    snr_db: (low, high) range of the call SNR in dB (call power over its active samples
        against the noise bed).
    hidden_test_labels: write ``?`` as test labels (the challenge's convention) and the true
        ones to ``truth/test.csv``; if False, ``lab/test.csv`` holds the true labels.
    classes: label strings; default :data:`DEFAULT_CLASSES`. The first is noise only, the rest
        get primate call types cyclically (see the module docstring).
    overwrite: replace an existing non-empty ``out_dir``, which must hold a ``corpus.json``
        written by this generator (anything else is refused rather than deleted).

    Raises ``FileExistsError`` for a non-empty ``out_dir`` without ``overwrite`` and
    ``ValueError`` for unusable arguments.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    plan = plan_labels(n_clips, seed, class_proportions, split_fractions, classes)
    snr = _check_rate_and_snr(sample_rate, snr_db)
    n_clips, sample_rate, seed = int(n_clips), int(sample_rate), int(seed)
    labels = _resolve_classes(classes)
    call_types = call_types_for(labels)
    replace = _check_target(out_dir, overwrite)
    meta = _corpus_meta(
        plan,
        seed,
        n_clips,
        _resolve_proportions(labels, class_proportions),
        split_fractions,
        sample_rate,
        snr,
        hidden_test_labels,
        labels,
        call_types,
    )
    with CorpusWriter(out_dir, replace=replace, splits=SPLITS) as corpus:
        _write_splits(corpus, plan, seed, sample_rate, snr, call_types, hidden_test_labels)
        corpus.write_text("corpus.json", json.dumps(meta, indent=2) + "\n")
        corpus.write_text("README.txt", _readme(meta))
    return out_dir


def _check_rate_and_snr(sample_rate: int, snr_db: tuple[float, float]) -> tuple[float, float]:
    """ValueError for an unusable ``sample_rate`` or ``snr_db``; else ``snr_db`` as ``(low, high)`` floats."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 4000:
        raise ValueError(f"sample_rate={sample_rate!r}: give an integer rate of at least 4000 Hz (e.g. 16000 or 8000).")
    try:
        lo, hi = (float(v) for v in snr_db)
    except (TypeError, ValueError):
        lo, hi = np.nan, np.nan
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(f"snr_db={snr_db!r}: give (low, high) in dB with low <= high, e.g. (0, 12).")
    return lo, hi


def _write_splits(
    corpus: CorpusWriter,
    plan: dict[str, list[str]],
    seed: int,
    sample_rate: int,
    snr: tuple[float, float],
    call_types: dict[str, tuple[str, float]],
    hidden_test_labels: bool,
) -> None:
    """Every clip of ``plan`` into ``corpus`` (and ``truth/test.csv`` when test labels are hidden). Clip ``k``
    of split ``s`` is drawn from ``SeedSequence(seed, spawn_key=(1, s, k))`` alone."""
    for s, split in enumerate(SPLITS):
        rows = []
        for k, label in enumerate(plan[split]):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, s, k)))
            call_type, freq_scale = call_types[label]
            n = _clip_length(rng, sample_rate)
            wave = synthesize_clip(call_type, n, sample_rate, snr, rng, freq_scale)
            name = f"{split}_{k + 1:05d}.wav"
            hidden = split == "test" and hidden_test_labels
            corpus.add_wave(split, name, HIDDEN_LABEL if hidden else label, wave, sample_rate)
            rows.append((name, label))
        if split == "test" and hidden_test_labels:
            _write_csv(corpus.path("truth/test.csv"), rows)


def _corpus_meta(
    plan: dict[str, list[str]],
    seed: int,
    n_clips: int,
    weights: np.ndarray,
    split_fractions: Sequence[float],
    sample_rate: int,
    snr: tuple[float, float],
    hidden_test_labels: bool,
    labels: tuple[str, ...],
    call_types: dict[str, tuple[str, float]],
) -> dict:
    """What ``corpus.json`` holds: generator, version, seed, parameters, call types and the
    clips per split and class of ``plan``."""
    lo, hi = snr
    counts = {split: {lab: plan[split].count(lab) for lab in labels} for split in SPLITS}
    return {
        "generator": _GENERATOR_NAME,
        "version": SYNTHETIC_VERSION,
        "seed": seed,
        "parameters": {
            "n_clips": n_clips,
            "class_proportions": (weights / weights.sum()).round(6).tolist(),
            "split_fractions": [float(f) for f in split_fractions],
            "sample_rate": sample_rate,
            "snr_db": [lo, hi],
            "hidden_test_labels": bool(hidden_test_labels),
            "classes": list(labels),
        },
        "call_types": {lab: {"call_type": ct, "freq_scale": fs} for lab, (ct, fs) in call_types.items()},
        "counts": counts,
    }


def _readme(meta: dict) -> str:
    p = meta["parameters"]
    lines = [
        "Synthetic primate-vocalisation corpus (NOT real recordings).",
        f"Made by {meta['generator']} version {meta['version']}, seed {meta['seed']}.",
        f"{p['n_clips']} clips, mono 16-bit WAV at {p['sample_rate']} Hz, "
        f"call SNR {p['snr_db'][0]:g}-{p['snr_db'][1]:g} dB.",
        "Layout as the ComParE 2021 Primate corpus: wav/{split}_NNNNN.wav, lab/{split}.csv (filename,label).",
        "Test labels in lab/test.csv are '?'; the true ones are in truth/test.csv."
        if p["hidden_test_labels"]
        else "lab/test.csv holds the true test labels.",
        "",
        "Clips per split and class:",
    ]
    for split, per_class in meta["counts"].items():
        lines.append(f"  {split}: " + ", ".join(f"{lab} {n}" for lab, n in per_class.items()))
    lines.append("")
    lines.append(
        "Call type per class: " + ", ".join(f"{lab} = {v['call_type']}" for lab, v in meta["call_types"].items())
    )
    lines.append("All parameters: corpus.json. Call acoustics: docstring of helpers/data/corpora/synthetic.py.")
    return "\n".join(lines) + "\n"
