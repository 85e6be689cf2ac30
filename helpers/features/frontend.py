"""The log-mel front end: its settings, the torch module and a one-call helper.

The front end (docs/reference.md §2): clips padded/truncated to 2.99 s, STFT with a 1024-sample
periodic Hann window and FFT, hop 320, centred with reflect padding, power 2; 64 mel bands on
the Slaney scale with Slaney (area) normalisation between 10 Hz and half the sample rate;
``10 * log10(max(S, 1e-10))`` with reference 1.0 and no top_db. Zero padding gives -100 dB.
At 16 kHz a clip gives 150 frames x 64 bands; at 8 kHz (same window and hop, fmax 4 kHz) 75 x 64.
The definition the values are checked against is librosa's (``tests/test_features.py``, 1e-3 dB).

Filterbank. ``torchaudio.functional.melscale_fbanks(norm="slaney", mel_scale="slaney")`` builds
it, in float64 (:func:`mel_filterbank`), then it is rounded to float32 once. torchaudio builds it
in the default dtype, float32: its band edges and bin frequencies then carry relative errors of
~6e-8, which move weights near a triangle's foot by up to ~1e-7 absolute (3e-6 of the largest
weight) and changed the log-mels of real clips by up to 3.2e-3 dB at 16 kHz (5.5e-4 dB at
8 kHz) against librosa's filterbank, beyond the 1e-3 dB tolerance. Built in float64 it equals
``librosa.filters.mel(htk=False, norm="slaney")`` to ~1e-16 and both round to the same float32
weights, so the log-mels are bit-identical to those of the librosa filterbank used before
(measured on 311 clips cut from the demo corpus's 43 source recordings and on white noise, at
16 and 8 kHz); :data:`FEATURE_VERSION` therefore stayed 1.

Precision. The FFT runs in float64 by default. A float32 FFT makes an absolute error in every
bin of about 1e-7 times the frame's total magnitude, so bands whose power lies 60 dB or more
below their frame's come out wrong by 1e-3 to 0.2 dB (measured on a chirp with little noise).
librosa does not have this problem because it multiplies the float32 signal by a float64
window and so runs its FFT in float64 too. ``fft_precision="float32"`` keeps the faster float32
FFT for users who accept that error (it is below 2e-4 dB once the noise floor is within ~45 dB
of the signal, as in field recordings). The FFT output is rounded to complex64, as librosa
does; the squares, mel sums and log then add relative errors of about 1e-7, i.e. ~1e-6 dB.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from torchaudio.functional import melscale_fbanks

from helpers.data import audio as audio

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

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one clip's features: ``(n_frames, n_mels)``."""
        return (self.n_frames, self.n_mels)

    @property
    def cache_label(self) -> str:
        """What names this front end in a cache file name (``{split}-{label}-{key}.npy``)."""
        return f"{self.sample_rate}hz"

    @property
    def feature_version(self) -> int:
        return FEATURE_VERSION

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
# Mel filterbank
# --------------------------------------------------------------------------------------------
class _Float64Factories(TorchFunctionMode):
    """While active, torch factories called without a dtype make float64 tensors.

    torchaudio's ``melscale_fbanks`` takes no dtype and builds its frequency grids with
    ``torch.linspace`` in the default dtype. ``torch.set_default_dtype(torch.float64)`` would do
    the same but for the whole process, so tensors made meanwhile in other threads (training,
    reader threads) would come out float64 too; a torch-function mode is active in the thread
    that entered it only.
    """

    _FACTORIES = frozenset({torch.linspace, torch.zeros, torch.ones, torch.empty})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._FACTORIES and kwargs.get("dtype") is None:
            kwargs = {**kwargs, "dtype": torch.float64}
        return func(*args, **kwargs)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised mel filterbank, float64 ``(n_fft // 2 + 1, n_mels)``.

    ``torchaudio.functional.melscale_fbanks(norm="slaney", mel_scale="slaney")`` evaluated in
    float64 (see the module docstring: in float32 it misses librosa's by up to 3.2e-3 dB); equal
    to ``librosa.filters.mel(htk=False, norm="slaney").T`` to ~1e-16. ``power @ bank`` maps
    ``(..., freq)`` power spectra to ``(..., mel)``.
    """
    if sample_rate % 2:
        # torchaudio places the FFT bins on 0 .. sample_rate // 2, which is half a hertz short of
        # the true Nyquist frequency for an odd rate.
        raise ValueError(
            f"mel_filterbank: sample_rate {sample_rate} Hz is odd; torchaudio's filterbank needs an even rate."
        )
    with _Float64Factories():
        bank = melscale_fbanks(
            int(n_fft) // 2 + 1,
            float(fmin),
            float(fmax),
            int(n_mels),
            int(sample_rate),
            norm="slaney",
            mel_scale="slaney",
        )
    if bank.dtype != torch.float64:  # torchaudio changed how it builds the bank: do not lose precision silently
        raise RuntimeError(f"mel_filterbank: torchaudio returned a {bank.dtype} filterbank, expected float64.")
    return bank


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
        # torchaudio's filterbank built in float64 (equal to librosa's, the definition the
        # features are checked against, docs/reference.md §2), stored as (n_freqs, n_mels) so
        # that power @ mel_basis maps (batch, time, freq) to (batch, time, mel) without a transpose.
        mel_basis = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax)
        # persistent=False: the buffers are derived from the constructor arguments, so they need
        # not bloat (or be restored from) the state_dict of a model that embeds this module.
        self.register_buffer("window", window, persistent=False)
        mel_basis = mel_basis.to(torch.float32).contiguous()  # (freq, mel), rounded once
        self.register_buffer("mel_basis", mel_basis, persistent=False)
        # Each row twice, to be applied to interleaved (real^2, imag^2) pairs: the sum
        # real^2 + imag^2 then happens inside the matmul instead of as a separate strided pass
        # over the spectrum, which measured slower than the matmul itself.
        self.register_buffer("_mel_basis_pairs", mel_basis.repeat_interleave(2, dim=0).contiguous(), persistent=False)

    @classmethod
    def from_settings(cls, settings: FeatureSettings) -> "LogMel":
        """The front end described by ``settings``."""
        return cls(
            sample_rate=settings.sample_rate,
            n_fft=settings.n_fft,
            hop_length=settings.hop_length,
            n_mels=settings.n_mels,
            fmin=settings.fmin,
            fmax=settings.fmax,
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
