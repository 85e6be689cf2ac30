"""Augmentation of log-mels in the training step: SpecAugment, MixUp and their losses
(waveform augmentations: :mod:`helpers.training.wave_augment`).

Where each augmentation runs (docs/reference.md §4, paper section 3.3):

- The training loop draws a batch of cached log-mels ``(batch, time, mel)`` on the device, calls
  ``z = model.normalize(x)`` (the model's first BatchNorm, giving ``(batch, 1, time, mel)``),
  then :func:`spec_augment`, then :func:`mixup`, then ``model.forward_normalized(z)``.
  Masking after the BatchNorm means a masked bin holds 0, the normalised mean, not -100 dB.
- SpecAugment and MixUp are pure tensor operations on the tensor's device: no Python loop over
  the batch and no ``.item()``, so they never wait for the GPU.
- Time stretching and pitch shifting act on waveforms and therefore imply recomputing the
  log-mels; they run at feature-computation time on the CPU (numpy, librosa) and need not be
  fast. The paper tried them and found no gain. The first librosa call in a process takes
  several seconds (numba compiles its kernels); later calls take tens of milliseconds.

Randomness and devices
----------------------
Every random draw takes an explicit ``torch.Generator`` so that a run is reproducible. Random
numbers are drawn on ``generator.device``; the few small tensors that result (stripe positions,
widths, lambdas) are then moved to the data's device. The fastest choice on a GPU is a generator
on the same device, ``torch.Generator(device="cuda").manual_seed(s)``: nothing crosses the bus.
A CPU generator with CUDA data also works: the small tensors are pinned and copied without
blocking. CPU and CUDA generators seeded alike give different numbers, so a run is reproducible
for a given (seed, generator device) pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F


SpecAugmentMode = Literal["batch", "per_example"]
SPEC_AUGMENT_MODES = ("batch", "per_example")


# ---------------------------------------------------------------------------------------------
# Device helpers
# ---------------------------------------------------------------------------------------------


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a small random tensor to ``device`` without making the host wait for the GPU.

    A plain host-to-device copy from pageable memory synchronises the CUDA stream; pinning the
    (tiny) source first lets the copy be queued asynchronously.
    """
    device = torch.device(device)
    if t.device == device:
        return t
    if t.device.type == "cpu" and device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    # e.g. a CUDA generator with CPU data: correct but synchronising; avoid in hot loops.
    return t.to(device)


def _uniform_int(high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Integers uniform in ``{0, ..., high - 1}``, one per element of ``high`` (``high >= 1``).

    ``floor(u * high)`` with ``u ~ U[0, 1)`` lets every element have its own upper bound, which
    ``torch.randint`` (one scalar bound) cannot do. Drawn in float64 and clamped so that rounding
    can never produce ``high`` itself.
    """
    u = torch.rand(high.shape, generator=generator, device=generator.device, dtype=torch.float64)
    high = high.to(generator.device)
    return torch.minimum((u * high).floor().long(), high.long() - 1)


# ---------------------------------------------------------------------------------------------
# SpecAugment
# ---------------------------------------------------------------------------------------------


@dataclass
class SpecAugmentStripes:
    """Randomly drawn SpecAugment stripes, before they are turned into a mask.

    ``n`` is 1 in ``"batch"`` mode (one draw shared by the mini-batch) and the batch size in
    ``"per_example"`` mode. All tensors are int64 on the generator's device.

    - ``time_count``, ``freq_count``: ``(n,)`` number of active stripes per axis.
    - ``time_start``, ``time_width``: ``(n, max_time_stripes)`` first frame and width in frames;
      inactive stripes (index >= count) have width 0. A stripe covers frames
      ``start <= t < start + width``; an active stripe may also have width 0.
    - ``freq_start``, ``freq_width``: ``(n, max_freq_stripes)``, the same in mel bins.
    """

    time_count: torch.Tensor
    time_start: torch.Tensor
    time_width: torch.Tensor
    freq_count: torch.Tensor
    freq_start: torch.Tensor
    freq_width: torch.Tensor


def _draw_axis(
    n: int,
    size: int,
    max_stripes: int,
    min_stripes: int,
    width: int,
    inclusive: bool,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``(count (n,), start (n, max_stripes), width (n, max_stripes))`` for one axis.

    Always ``max_stripes`` stripes are drawn and the ones beyond ``count`` get width 0, so that
    every shape is fixed and nothing depends on a value living on the GPU.
    """
    dev = generator.device
    count = min_stripes + _uniform_int(
        torch.full((n,), max_stripes - min_stripes + 1, dtype=torch.long, device=dev), generator
    )
    # Paper: widths 0..W inclusive, start 0..size-w inclusive (the stripe lies inside the axis).
    # Authors' code (PANNs DropStripes): width = randint(0, W) -> 0..W-1 and
    # start = randint(0, size - w) -> 0..size-w-1, both exclusive.
    n_widths = width + 1 if inclusive else max(width, 1)
    widths = _uniform_int(torch.full((n, max_stripes), n_widths, dtype=torch.long, device=dev), generator)
    widths = widths.clamp(max=size)  # an axis shorter than the maximal width
    n_starts = size - widths + 1 if inclusive else (size - widths).clamp(min=1)
    starts = _uniform_int(n_starts, generator)
    active = torch.arange(max_stripes, device=dev)[None, :] < count[:, None]
    return count, starts, widths * active


def draw_spec_augment_stripes(
    n_time: int,
    n_mel: int,
    generator: torch.Generator,
    batch_size: int = 1,
    mode: SpecAugmentMode = "batch",
    max_time_stripes: int = 2,
    max_freq_stripes: int = 2,
    time_width: int = 16,
    freq_width: int = 8,
    min_stripes: int | None = None,
) -> SpecAugmentStripes:
    """Draw the stripes of SpecAugment for a ``(batch_size, time, mel)`` input.

    Args:
        n_time, n_mel: size of the time axis (frames) and the mel axis (bins).
        generator: source of all random numbers; the draws live on ``generator.device``.
        batch_size: number of examples; only used in ``"per_example"`` mode.
        mode: ``"batch"`` (the paper): stripe counts uniform in ``{min_stripes..max}``, widths
            uniform in ``0..W`` *inclusive*, starts uniform over the positions where the stripe
            fits, one draw for the whole mini-batch. ``"per_example"`` (the authors' code):
            one independent draw per example, widths uniform in ``0..W-1`` and starts in
            ``0..size-w-1`` as in PANNs' ``DropStripes``.
        max_time_stripes, max_freq_stripes: maximal number of stripes per axis.
        time_width, freq_width: ``W``, the width bound in frames / mel bins (see ``mode``).
        min_stripes: minimal number of stripes per axis. ``None`` means 0 in ``"batch"`` mode
            (the paper: "zero, one or two stripes") and the maximum in ``"per_example"`` mode
            (the authors' code always masks exactly 2 + 2 stripes).
    """
    if mode not in SPEC_AUGMENT_MODES:
        raise ValueError(f"SpecAugment mode {mode!r} is unknown; use one of {SPEC_AUGMENT_MODES}.")
    for name, value in (
        ("max_time_stripes", max_time_stripes),
        ("max_freq_stripes", max_freq_stripes),
        ("time_width", time_width),
        ("freq_width", freq_width),
    ):
        if value < 0:
            raise ValueError(f"SpecAugment {name}={value} must be >= 0.")
    if min_stripes is None:
        min_time = max_time_stripes if mode == "per_example" else 0
        min_freq = max_freq_stripes if mode == "per_example" else 0
    else:
        if min_stripes > min(max_time_stripes, max_freq_stripes):
            raise ValueError(
                f"SpecAugment min_stripes={min_stripes} exceeds max_time_stripes={max_time_stripes} "
                f"or max_freq_stripes={max_freq_stripes}; lower min_stripes or raise the maxima."
            )
        min_time = min_freq = min_stripes
    n = batch_size if mode == "per_example" else 1
    inclusive = mode == "batch"
    tc, ts, tw = _draw_axis(n, n_time, max_time_stripes, min_time, time_width, inclusive, generator)
    fc, fs, fw = _draw_axis(n, n_mel, max_freq_stripes, min_freq, freq_width, inclusive, generator)
    return SpecAugmentStripes(tc, ts, tw, fc, fs, fw)


def stripes_to_mask(
    stripes: SpecAugmentStripes, n_time: int, n_mel: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Turn stripes into a bool mask ``(n, time, mel)``, True where the input is masked.

    Built by broadcasting comparisons against ``arange`` (no loop over stripes or examples).
    """
    device = torch.device(device) if device is not None else stripes.time_start.device

    def axis_mask(start: torch.Tensor, width: torch.Tensor, size: int) -> torch.Tensor:
        start, width = _to_device(start, device), _to_device(width, device)
        pos = torch.arange(size, device=device)[None, None, :]  # (1, 1, size)
        inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # (n, S, size)
        return inside.any(dim=1)  # (n, size)

    time_mask = axis_mask(stripes.time_start, stripes.time_width, n_time)
    freq_mask = axis_mask(stripes.freq_start, stripes.freq_width, n_mel)
    return time_mask[:, :, None] | freq_mask[:, None, :]


def spec_augment_mask(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator,
    mode: SpecAugmentMode = "batch",
    max_time_stripes: int = 2,
    max_freq_stripes: int = 2,
    time_width: int = 16,
    freq_width: int = 8,
    min_stripes: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Bool SpecAugment mask of ``shape`` (True = masked).

    ``shape`` is ``(batch, time, mel)`` or ``(batch, channels, time, mel)``; the same mask is
    used for every channel. In ``"batch"`` mode the result is an expanded view of one
    ``(time, mel)`` mask, so ``mask[i]`` is identical for every ``i``. ``device`` defaults to the
    generator's device. See :func:`draw_spec_augment_stripes` for the other arguments.
    """
    if len(shape) not in (3, 4):
        raise ValueError(
            f"SpecAugment expects (batch, time, mel) or (batch, channels, time, mel), got shape {tuple(shape)}."
        )
    batch, n_time, n_mel = shape[0], shape[-2], shape[-1]
    stripes = draw_spec_augment_stripes(
        n_time,
        n_mel,
        generator,
        batch_size=batch,
        mode=mode,
        max_time_stripes=max_time_stripes,
        max_freq_stripes=max_freq_stripes,
        time_width=time_width,
        freq_width=freq_width,
        min_stripes=min_stripes,
    )
    mask = stripes_to_mask(stripes, n_time, n_mel, device=device)  # (n, time, mel)
    if len(shape) == 4:
        mask = mask[:, None]  # (n, 1, time, mel)
    return mask.expand(*shape)


def spec_augment(
    z: torch.Tensor,
    generator: torch.Generator,
    mode: SpecAugmentMode = "batch",
    max_time_stripes: int = 2,
    max_freq_stripes: int = 2,
    time_width: int = 16,
    freq_width: int = 8,
    min_stripes: int | None = None,
    mask_value: float = 0.0,
) -> torch.Tensor:
    """Mask random time and frequency stripes of normalised log-mels (out-of-place).

    Args:
        z: ``(batch, channels, time, mel)`` or ``(batch, time, mel)``, normally the output of the
            model's first BatchNorm, so that ``mask_value=0`` is the per-bin mean.
        generator: source of randomness (see the module docstring about devices).
        mode, max_*, *_width, min_stripes: see :func:`draw_spec_augment_stripes`. The paper's
            setting is the default; the authors' code is ``mode="per_example"`` with
            ``time_width=16`` (CNN10) or 64 (other models) and ``freq_width=8``.
        mask_value: value written into masked bins.

    Returns:
        A new tensor of the shape of ``z`` (gradients flow through the unmasked bins).
    """
    mask = spec_augment_mask(
        z.shape,
        generator,
        mode=mode,
        max_time_stripes=max_time_stripes,
        max_freq_stripes=max_freq_stripes,
        time_width=time_width,
        freq_width=freq_width,
        min_stripes=min_stripes,
        device=z.device,
    )
    # torch.where with a scalar is out-of-place, keeps z's dtype, and is about twice as fast
    # as masked_fill on the CPU.
    return torch.where(mask, mask_value, z)


@dataclass
class SpecAugmentConfig:
    """Flat SpecAugment settings; ``enabled=False`` makes :meth:`apply` the identity.

    ``SpecAugmentConfig()`` is the paper's setting; :meth:`authors` the authors' code.
    """

    enabled: bool = True
    mode: SpecAugmentMode = "batch"
    max_time_stripes: int = 2
    max_freq_stripes: int = 2
    time_width: int = 16
    freq_width: int = 8
    min_stripes: int | None = None
    mask_value: float = 0.0

    @classmethod
    def paper(cls) -> "SpecAugmentConfig":
        """0-2 stripes per axis, widths 0..16 frames / 0..8 bins, one mask per mini-batch."""
        return cls()

    @classmethod
    def authors(cls, time_width: int = 16) -> "SpecAugmentConfig":
        """Exactly 2 + 2 stripes per example, widths 0..W-1 (W_time 16 for CNN10, 64 for the others)."""
        return cls(mode="per_example", time_width=time_width, freq_width=8, min_stripes=2)

    def apply(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Apply :func:`spec_augment` with these settings to ``z`` ``(batch, [channels,] time, mel)``."""
        if not self.enabled:
            return z
        return spec_augment(
            z,
            generator,
            mode=self.mode,
            max_time_stripes=self.max_time_stripes,
            max_freq_stripes=self.max_freq_stripes,
            time_width=self.time_width,
            freq_width=self.freq_width,
            min_stripes=self.min_stripes,
            mask_value=self.mask_value,
        )


# ---------------------------------------------------------------------------------------------
# MixUp
# ---------------------------------------------------------------------------------------------


def sample_mixup_lambda(
    alpha: float,
    generator: torch.Generator,
    per_example: bool = False,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Draw MixUp weights ``lambda ~ Beta(alpha, alpha)`` on ``generator.device``.

    The paper draws one lambda per mini-batch (``per_example=False``, a 0-d tensor); with
    ``per_example=True`` it returns ``(batch_size,)`` independent lambdas, one per mixed pair.
    The authors' code uses ``alpha = 1.0`` (lambda uniform on [0, 1]); the paper says alpha < 1.

    Beta is sampled as ``X / (X + Y)`` with ``X, Y ~ Gamma(alpha)`` drawn from ``generator``
    (``torch.distributions.Beta`` cannot take a generator). Kept as a tensor so that a CUDA
    generator never forces a host sync; float32 on return.
    """
    if alpha <= 0:
        raise ValueError(f"MixUp alpha={alpha} must be > 0 (Beta(alpha, alpha)).")
    if per_example and (batch_size is None or batch_size < 1):
        raise ValueError("sample_mixup_lambda(per_example=True) needs batch_size >= 1.")
    n = batch_size if per_example else 1
    conc = torch.full((2, n), float(alpha), dtype=torch.float64, device=generator.device)
    g = torch._standard_gamma(conc, generator=generator)
    total = g[0] + g[1]
    # For very small alpha both gammas can underflow to 0; 0/0 would be NaN. Such a draw is
    # (almost surely) an extreme lambda, and the two extremes are equally likely: take 0.5
    # only as a harmless fallback for that measure-zero event.
    lam = torch.where(total > 0, g[0] / total.clamp_min(torch.finfo(torch.float64).tiny), 0.5)
    lam = lam.float()
    return lam if per_example else lam[0]


def mixup(
    z: torch.Tensor,
    targets_onehot: torch.Tensor,
    lam: float | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix consecutive pairs ``(0, 1), (2, 3), ...`` of a ``2B`` batch into ``B`` examples.

    As in the authors' code, the loop draws ``2B`` examples and MixUp halves the batch:
    ``z_mix = lam * z[0::2] + (1 - lam) * z[1::2]`` and the same for the targets.

    Args:
        z: ``(2B, ...)`` inputs, e.g. normalised log-mels ``(2B, 1, time, mel)``.
        targets_onehot: ``(2B, classes)`` one-hot (or soft) float targets.
        lam: a float, a 0-d tensor (one lambda for the mini-batch) or a ``(B,)`` tensor.

    Returns:
        ``(z_mix (B, ...), targets_mix (B, classes))``.
    """
    if z.shape[0] % 2 != 0:
        raise ValueError(
            f"mixup needs an even batch (pairs 0-1, 2-3, ...), got {z.shape[0]} examples; draw 2*B examples."
        )
    if targets_onehot.shape[0] != z.shape[0]:
        raise ValueError(f"mixup: {z.shape[0]} inputs but {targets_onehot.shape[0]} targets.")
    # Integer (class-index style) targets would make lerp fail; MixUp targets are soft anyway.
    t = targets_onehot if targets_onehot.is_floating_point() else targets_onehot.float()
    half = z.shape[0] // 2
    if not torch.is_tensor(lam):
        lz = ly = float(lam)  # a Python scalar needs no device copy
    else:
        lam_t = _to_device(lam.detach().float(), z.device)
        if lam_t.ndim == 0:
            lz, ly = lam_t.to(z.dtype), lam_t.to(t.dtype)
        elif lam_t.shape == (half,):
            lz = lam_t.to(z.dtype).view(half, *([1] * (z.ndim - 1)))
            ly = lam_t.to(t.dtype).view(half, *([1] * (t.ndim - 1)))
        else:
            raise ValueError(f"mixup: lam has shape {tuple(lam_t.shape)}; expected a scalar or ({half},).")
    # lerp(b, a, w) = b + w * (a - b) = w * a + (1 - w) * b, in one fused kernel.
    z_mix = torch.lerp(z[1::2], z[0::2], lz)
    y_mix = torch.lerp(t[1::2], t[0::2], ly)
    return z_mix, y_mix


def mixup_bce_loss(logits: torch.Tensor, mixed_targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``sigmoid(logits)`` against soft targets, mean over batch and classes.

    ``logits``, ``mixed_targets``: ``(batch, classes)``. The authors apply ``F.binary_cross_entropy``
    to sigmoid outputs; the with-logits form is the same quantity computed stably (log-sum-exp),
    without the clamping of ``log(0)``.
    """
    return F.binary_cross_entropy_with_logits(logits, mixed_targets.to(logits.dtype), reduction="mean")


def ce_loss(logits: torch.Tensor, class_idx: torch.Tensor) -> torch.Tensor:
    """Categorical cross-entropy, mean over the batch; ``logits (batch, classes)``, ``class_idx (batch,)`` int64."""
    return F.cross_entropy(logits, class_idx)
