"""Speed of training, feature extraction and evaluation, measured against the device's own limit.

``python -m helpers bench`` times the training loop's own step for every model and sample rate
and prints ONE table, written also as JSON (default ``runs/bench/bench-<device>.json``):

    model, rate      the registry name and the sample rate in Hz (16 kHz: 150 x 64 log-mels, 8 kHz: 75 x 64)
    precision        fp32 on CPU (with ``--cpu-amp`` a bf16-autocast row too); bf16-autocast on
                     CUDA when ``TrainConfig.amp`` (the default)
    s/step, clips/s  mean wall-clock seconds per timed step; batch / s_per_step
    GFLOP/step       model FLOPs of one training step: 3 x forward FLOPs of one clip x batch
                     (forward 1x, backward 2x; :func:`helpers.models.networks.forward_flops` counts the
                     conv and linear layers, 2 FLOPs per multiply-accumulate)
    TFLOP/s          GFLOP/step / s_per_step / 1000
    matmul, conv     the two reference kernels, TFLOP/s, measured on the same device just before
                     the row's timed steps, in the row's precision (fp32; bf16 for a bf16-autocast
                     row) and, for the convolution, in the step's memory layout (channels-last when
                     ``TrainConfig.channels_last``, the default); best of a few repeats each:
                     a dense square matmul (2048^3 on CPU, 8192^3 on CUDA; 2 n^3 FLOPs) and a dense
                     3x3 convolution, stride 1, same padding, C -> C channels (CPU: batch 8, 256
                     channels, 32 x 32; CUDA: batch 64, 512 channels, 64 x 64; 2 FLOPs per
                     multiply-accumulate, as the model's count)
    ceiling          which of the two was faster; its TFLOP/s is the row's ceiling: the fastest
                     dense kernel the device runs in that precision and layout at that moment
    eff.             TFLOP/s / ceiling TFLOP/s: the share of the machine's practical peak that the
                     training step reaches. Both are measured in one run a moment apart, so the
                     ratio holds on a shared, noisy machine where absolute speeds do not. A step
                     cannot outrun the fastest dense kernel, so a value above 100 % means the
                     ceiling was measured wrong (too low: a slow repeat, a kernel the library does
                     not run at full speed): the cell is marked ``!`` and a WARNING line follows
                     the row; the row's ``above_ceiling`` is true in the JSON.
    peak MiB         memory of the step. CUDA: ``torch.cuda.max_memory_allocated`` over the timed
                     steps (stats reset just before) minus what was allocated before the model was
                     built. CPU: the peak resident set size over the timed steps (Linux VmHWM,
                     reset just before through /proc/self/clear_refs) minus the resident size
                     before the model was built, taken after glibc ``malloc_trim`` handed back
                     the heap that earlier rows freed and after an untimed batch-of-2 step mapped
                     the kernels' one-time memory. Both cover weights, gradients, Adam state, the
                     EMA copy and activations, not the bank of random log-mels. The CPU figure is
                     approximate (repeats differ by ~10 %); "-" where it cannot be measured.

The step is the training loop's (:func:`helpers.training.train`): indices from
:class:`helpers.training.sampler.BalancedBatchSampler` (2 x 32 for MixUp), the step function of
:func:`helpers.training.loop.make_step_function` with ``TrainConfig`` defaults (first BN, SpecAugment,
MixUp, rest of the model, BCE loss, Adam) and the EMA update, on random log-mels held on the
device. Warm-up steps are not timed; the host waits for the device only once, at the end of the
timed steps (``float(loss)``, CUDA synchronize).

Under the table, two more measurements (also in the JSON):

* feature extraction, clips/s: :class:`helpers.features.frontend.LogMel` on in-memory random 16 kHz
  waveforms, batched, on the device; and the whole read + resample + log-mel pipeline
  (:func:`helpers.features.extract_logmels`) on temporary 16 kHz WAV files, at 16 and 8 kHz
  (the files were just written, so they are read from the OS page cache);
* devel evaluation time: :func:`helpers.evaluation.scoring.predict_scores` of CNN10-16k on random clips,
  7000 on CUDA (about the 6,918 devel clips); on CPU 512 by default, extrapolated to 7000 and
  labelled so. One line per scoring precision of :func:`helpers.evaluation.inference.prepare_for_inference`
  that the device offers: CUDA bf16 and fp32; CPU fp32 (folded BatchNorm, what training uses),
  bf16 where the CPU has native bf16, and int8 (CNN6/CNN10).

Run from the repository root::

    python -m helpers bench                                   # every model, 16 and 8 kHz
    python -m helpers bench --models cnn10 --rates 16000 --steps 3 --warmup 1 --eval-clips 256
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from helpers.data import audio as audio
from helpers.evaluation.scoring import predict_scores
from helpers.features.extract import CPU_BLOCK_CLIPS, extract_logmels, logmels_of_waveforms
from helpers.features.frontend import FeatureSettings, LogMel
from helpers.core.fileio import write_json_atomic
from helpers.core.hardware import configure_threads, resolve_device
from helpers.evaluation.inference import cpu_has_native_bf16, int8_supported, prepare_for_inference
from helpers.models.registry import create_model, MODELS
from helpers.models.cost import forward_flops
from helpers.core.provenance import environment_record
from helpers.training.config import autocast_enabled, eval_batch_size, TrainConfig
from helpers.training.steps import build_training

#: Classes of the challenge corpus (docs/reference.md §1); only the head's size depends on it.
N_CLASSES = 5
#: Random log-mel clips held on the device that the sampler draws training batches from.
BANK_CLIPS = 1024
#: Side of the square matmul, one of the two reference kernels of the ceiling.
MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}
#: The reference 3x3 convolution, the other kernel of the ceiling: (batch, channels, side) of its
#: input; C -> C channels, stride 1, same padding. CPU: 9.7 GFLOP, about one 2048^3 matmul.
CONV_SHAPE = {"cpu": (8, 256, 32), "cuda": (64, 512, 64)}
#: Timed repeats of each reference kernel (the best counts); on CUDA each repeat runs it 10 times.
MATMUL_REPEATS = {"cpu": 5, "cuda": 5}
REFERENCE_INNER = {"cpu": 1, "cuda": 10}
#: Default timed and warm-up training steps per device (a CPU step of ResNet22 takes seconds).
DEFAULT_STEPS = {"cpu": 3, "cuda": 50}
DEFAULT_WARMUP = {"cpu": 1, "cuda": 10}
#: Devel evaluation: clips scored per device by default, and the count reported (devel: 6,918).
DEFAULT_EVAL_CLIPS = {"cpu": 512, "cuda": 7000}
EVAL_TARGET_CLIPS = 7000
#: Clips of the feature-extraction measurement.
DEFAULT_FEATURE_CLIPS = 256
DEFAULT_RATES = (16_000, 8_000)

#: Every key of a table row (:func:`measure_training`), with its meaning and unit.
ROW_KEYS: dict[str, str] = {
    "model": "registry name (helpers.models.networks.MODELS)",
    "sample_rate": "Hz; 16000 -> 150 x 64 log-mels, 8000 -> 75 x 64",
    "device": "torch device of the run",
    "precision": "fp32, or bf16-autocast (CUDA with TrainConfig.amp, CPU with TrainConfig.cpu_amp)",
    "batch": "examples per optimiser step after MixUp (TrainConfig.batch_size; 2x as many are drawn)",
    "steps": "timed steps",
    "warmup": "untimed steps before them",
    "s_per_step": "mean wall-clock seconds per timed training step",
    "clips_per_s": "batch / s_per_step",
    "gflop_per_step": "3 x forward FLOPs of one clip (conv + linear, 2 per MAC) x batch, in 1e9",
    "achieved_tflops": "gflop_per_step / s_per_step / 1000",
    "matmul_tflops": "dense square matmul throughput measured on the device just before the timed steps (best of repeats)",
    "matmul": "the reference matmul: dtype and size",
    "conv_tflops": "dense 3x3 convolution throughput (2 FLOPs per MAC) measured just before the timed steps, "
                   "in the step's memory layout (best of repeats)",
    "conv": "the reference convolution: dtype, channels, input shape and layout",
    "ceiling_tflops": "the faster of matmul_tflops and conv_tflops: the device's practical peak",
    "ceiling": "which kernel gave ceiling_tflops: 'matmul' or 'conv'",
    "efficiency": "achieved_tflops / ceiling_tflops",
    "above_ceiling": "true when efficiency > 1: the ceiling was measured wrong, the efficiency is not a result",
    "peak_mib": "peak memory of the step in MiB, see memory_measure",
    "memory_measure": "how peak_mib was measured",
    "loss": "loss of the last timed step (a sanity check, random data)",
    "model_options": "constructor options passed to create_model (empty: the paper's model)",
}

#: The table: (row key, header, width, format).
_COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    ("model", "model", 11, "s"), ("sample_rate", "rate", 5, "d"), ("device", "device", 6, "s"),
    ("precision", "precision", 13, "s"), ("batch", "batch", 5, "d"), ("s_per_step", "s/step", 7, "n"),
    ("clips_per_s", "clips/s", 7, "n"), ("gflop_per_step", "GFLOP/step", 10, "n"),
    ("achieved_tflops", "TFLOP/s", 7, "n"), ("matmul_tflops", "matmul TF/s", 11, "n"),
    ("conv_tflops", "conv TF/s", 9, "n"), ("ceiling", "ceiling", 7, "s"), ("efficiency", "eff.", 7, "%"),
    ("peak_mib", "peak MiB", 8, "n"),
)
#: Marks an efficiency cell above 100 % (see :func:`ceiling_warning`).
ABOVE_CEILING_MARK = "!"


# --------------------------------------------------------------------------------------------
# Small pieces
# --------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_precision(config: TrainConfig, device: torch.device) -> str:
    """``"bf16-autocast"`` where the training step autocasts (:func:`helpers.training.loop.autocast_enabled`), else ``"fp32"``."""
    return "bf16-autocast" if autocast_enabled(config, device) else "fp32"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (from /proc/cpuinfo on Linux)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _proc_status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``); None where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _memory_in_use(device: torch.device) -> int | None:
    """Bytes in use now: CUDA tensors allocated, or this process's resident set size."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    rss = _proc_status_kib("VmRSS")
    return None if rss is None else rss * 1024


def _reset_memory_peak(device: torch.device) -> str | None:
    """Restart the peak-memory counter; returns how the peak is measured, None when it cannot be."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda max_memory_allocated during the timed steps - allocated before the model"
    try:
        # "5" resets the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0).
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return "peak RSS (VmHWM) during the timed steps - RSS before the model"


def _memory_peak(device: torch.device) -> int | None:
    """Bytes at the peak since :func:`_reset_memory_peak`."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    hwm = _proc_status_kib("VmHWM")
    return None if hwm is None else hwm * 1024


def _release(device: torch.device) -> None:
    """Free what earlier measurements left: cached CUDA blocks; on CPU, heap memory that the C
    allocator keeps after ``free`` (glibc ``malloc_trim``), which would otherwise be reused
    unseen by the next row and hide part of its memory from the resident-set-size measure."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> ctypes.CDLL | None:
    """glibc, for ``malloc_trim``; None elsewhere (macOS, musl), where rows may then undercount memory."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - AttributeError where the symbol is missing
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


def _touch_kernels(config: TrainConfig, settings: FeatureSettings) -> None:
    """Two optimisation steps of a throw-away copy of the model on batches of 2 (CPU, untimed).

    The first use of a kernel, thread pool or cache maps memory that stays resident for the
    rest of the process: without this, the first row of a process would report ~100-250 MiB
    more than the same measurement repeated. Its time is mostly that one-time set-up, which
    the warm-up steps would otherwise pay; the rest is about 1/16 of a training step.
    """
    tiny = dataclasses.replace(config, batch_size=2)
    labels = np.arange(2 * N_CLASSES) % N_CLASSES  # the sampler needs every class present
    setup = build_training(tiny, N_CLASSES, torch.device("cpu"), labels)
    net, optimizer, ema, step_fn = setup.model, setup.optimizer, setup.ema, setup.step
    x = torch.randn(2 * tiny.batch_size, settings.n_frames, settings.n_mels) * 20 - 50
    y = torch.from_numpy(labels[: 2 * tiny.batch_size])
    for step in range(2):
        float(step_fn(x, y))
        if ema is not None:
            ema.update(net, step)
    del net, optimizer, ema, step_fn  # the caller's _release() then trims the heap


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------
def _best_seconds(kernel: Callable[[], Any], device: torch.device, repeats: int, inner: int) -> float:
    """Seconds of one call of ``kernel``: one untimed call (library initialisation, kernel choice,
    GPU clocks), then the best of ``repeats`` timed repeats of ``inner`` calls each, the device
    synchronised before the clock starts and before it stops."""
    kernel()
    _sync(device)
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(inner):
            kernel()
        _sync(device)
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def _default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bf16", torch.float32: "fp32", torch.float16: "fp16"}.get(dtype, str(dtype))


def measure_matmul_tflops(device: str | torch.device = "auto", dtype: torch.dtype | None = None,
                          size: int | None = None, repeats: int | None = None) -> float:
    """Dense matmul throughput in TFLOP/s (``2 n^3`` FLOPs per ``(n, n) @ (n, n)``), best of ``repeats``.

    Defaults: fp32 2048^3 on CPU (~0.1-0.8 s per product on 2 cores); bf16 8192^3 on CUDA, 10
    products per timed repeat. One of the two kernels of :func:`measure_ceiling`.
    """
    device = resolve_device(device)
    dtype = dtype or _default_dtype(device)
    n = size or MATMUL_SIZE.get(device.type, MATMUL_SIZE["cpu"])
    repeats = repeats or MATMUL_REPEATS.get(device.type, MATMUL_REPEATS["cpu"])
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=gen, device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    seconds = _best_seconds(lambda: torch.matmul(a, b, out=out), device, repeats,
                            REFERENCE_INNER.get(device.type, 1))
    del a, b, out
    return 2.0 * n ** 3 / seconds / 1e12


def conv_flops(batch: int, channels: int, side: int) -> float:
    """FLOPs of the reference convolution: 3x3, stride 1, same padding, ``channels`` -> ``channels``
    on a ``(batch, channels, side, side)`` input; 2 per multiply-accumulate, as
    :func:`helpers.models.cost.forward_flops` counts the model's."""
    return 2.0 * batch * side * side * channels * channels * 9


def measure_conv_tflops(device: str | torch.device = "auto", dtype: torch.dtype | None = None,
                        shape: tuple[int, int, int] | None = None, channels_last: bool = True,
                        repeats: int | None = None) -> float:
    """Dense 3x3 convolution throughput in TFLOP/s (:func:`conv_flops`), best of ``repeats``.

    ``shape``: ``(batch, channels, side)`` of the input (default :data:`CONV_SHAPE` of the
    device); ``channels_last``: input and weight in NHWC, as the training step's model and batches
    when ``TrainConfig.channels_last``. Forward only, without autograd, no bias. On CUDA 10
    convolutions per timed repeat. One of the two kernels of :func:`measure_ceiling`.
    """
    device = resolve_device(device)
    dtype = dtype or _default_dtype(device)
    batch, channels, side = shape or CONV_SHAPE.get(device.type, CONV_SHAPE["cpu"])
    repeats = repeats or MATMUL_REPEATS.get(device.type, MATMUL_REPEATS["cpu"])
    layout = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, channels, side, side, generator=gen, device=device, dtype=dtype)
    w = torch.randn(channels, channels, 3, 3, generator=gen, device=device, dtype=dtype) / (3 * channels ** 0.5)
    x, w = x.contiguous(memory_format=layout), w.contiguous(memory_format=layout)
    with torch.no_grad():
        seconds = _best_seconds(lambda: torch.nn.functional.conv2d(x, w, padding=1), device, repeats,
                                REFERENCE_INNER.get(device.type, 1))
    del x, w
    return conv_flops(batch, channels, side) / seconds / 1e12


def pick_ceiling(kernels: dict[str, float]) -> tuple[str, float]:
    """The fastest of the measured reference kernels ``{name: TFLOP/s}``: ``(name, TFLOP/s)``."""
    if not kernels:
        raise ValueError("pick_ceiling: no reference kernel was measured.")
    name = max(kernels, key=lambda k: kernels[k])
    return name, kernels[name]


def measure_ceiling(device: str | torch.device = "auto", dtype: torch.dtype | None = None,
                    channels_last: bool = True, matmul_size: int | None = None,
                    conv_shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """The device's practical peak in ``dtype``: both reference kernels, the faster one the ceiling.

    Returns the row fields ``matmul_tflops``, ``matmul`` (description), ``conv_tflops``, ``conv``,
    ``ceiling_tflops`` (the larger of the two) and ``ceiling`` (``"matmul"`` or ``"conv"``).
    Neither kernel alone is a ceiling: which library runs faster depends on the device, precision
    and layout (on an AVX-512 CPU, oneDNN's fp32 convolutions outran the fp32 matmul so far that
    a CNN10-16k step reached 132 % of the matmul alone).
    """
    device = resolve_device(device)
    dtype = dtype or _default_dtype(device)
    n = matmul_size or MATMUL_SIZE.get(device.type, MATMUL_SIZE["cpu"])
    shape = tuple(conv_shape or CONV_SHAPE.get(device.type, CONV_SHAPE["cpu"]))
    measured = {"matmul": measure_matmul_tflops(device, dtype=dtype, size=n),
                "conv": measure_conv_tflops(device, dtype=dtype, shape=shape, channels_last=channels_last)}
    name, tflops = pick_ceiling(measured)
    batch, channels, side = shape
    return {
        "matmul_tflops": measured["matmul"], "matmul": f"{_dtype_name(dtype)} {n}^3",
        "conv_tflops": measured["conv"],
        "conv": (f"{_dtype_name(dtype)} 3x3 {channels}->{channels} ch, {batch}x{side}x{side}, "
                 f"{'channels-last' if channels_last else 'NCHW'}"),
        "ceiling_tflops": tflops, "ceiling": name,
    }


def measure_training(model: str, sample_rate: int, device: str | torch.device = "auto", steps: int = 3,
                     warmup: int = 1, model_options: dict[str, Any] | None = None,
                     matmul_size: int | None = None, cpu_amp: bool = False,
                     conv_shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """Time the training loop's step of ``model`` at ``sample_rate`` Hz; one table row (:data:`ROW_KEYS`).

    Everything the loop does per step, with ``TrainConfig(model=..., sample_rate=...)`` defaults:
    balanced sampling of 2 x 32 indices, the step function (first BN, SpecAugment, MixUp, model,
    BCE loss, Adam), the EMA update. Inputs: :data:`BANK_CLIPS` random log-mels
    ``(clip, time, mel)`` in dB on the device. ``warmup`` untimed steps, then the ceiling
    (:func:`measure_ceiling`: a dense matmul and a dense 3x3 convolution in the step's precision,
    the convolution in the step's memory layout; the faster counts), then ``steps`` timed steps
    with a single host synchronisation at their end. ``model_options`` go to ``create_model`` (as
    ``TrainConfig.model_options``), e.g. ``{"channels": [8, 16, 32, 64]}`` for a narrow CNN;
    ``matmul_size`` and ``conv_shape`` override :data:`MATMUL_SIZE` and :data:`CONV_SHAPE`
    (smaller kernels under-report the peak); ``cpu_amp`` times the step under bf16 autocast on a
    CPU (``TrainConfig.cpu_amp``), against bf16 kernels. ``efficiency`` above 1 sets
    ``above_ceiling``: the ceiling was measured wrong.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"measure_training: need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}.")
    device = resolve_device(device)
    config = TrainConfig(model=model, sample_rate=sample_rate, device=str(device),
                         model_options=dict(model_options or {}), cpu_amp=cpu_amp)
    settings = FeatureSettings(sample_rate=sample_rate)
    precision = training_precision(config, device)
    kernel_dtype = torch.bfloat16 if precision == "bf16-autocast" else torch.float32

    rng = np.random.default_rng(config.seed)
    gen_cpu = torch.Generator(device="cpu").manual_seed(config.seed)
    features = (torch.randn(BANK_CLIPS, settings.n_frames, settings.n_mels, generator=gen_cpu) * 20 - 50).to(device)
    labels_np = rng.permutation(np.arange(BANK_CLIPS) % N_CLASSES)  # every class present
    labels = torch.from_numpy(labels_np).to(device)
    if device.type == "cpu":
        _touch_kernels(config, settings)
    _release(device)
    memory_before = _memory_in_use(device)

    # The set-up of helpers.training.train itself (minus data loading and checkpoints).
    setup = build_training(config, N_CLASSES, device, labels_np)
    net, ema, sampler, step_fn = setup.model, setup.ema, setup.sampler, setup.step
    gflop_per_step = 3 * forward_flops(net, settings.n_frames, settings.n_mels) * config.batch_size / 1e9
    net.train()
    step = 0

    def training_step() -> torch.Tensor:
        nonlocal step
        idx = torch.from_numpy(sampler.next_batch()).to(device, non_blocking=True)
        loss = step_fn(features[idx], labels[idx])
        if ema is not None:
            ema.update(net, step)
        step += 1
        return loss

    loss = None
    for _ in range(warmup):
        loss = training_step()
    if loss is not None:
        float(loss)
    _sync(device)

    ceiling = measure_ceiling(device, kernel_dtype, channels_last=config.channels_last,
                              matmul_size=matmul_size, conv_shape=conv_shape)
    memory_measure = _reset_memory_peak(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = training_step()
    final_loss = float(loss)  # the only host synchronisation of the timed steps
    _sync(device)
    s_per_step = (time.perf_counter() - start) / steps
    peak = _memory_peak(device)

    peak_mib = None
    if memory_measure is not None and peak is not None and memory_before is not None:
        peak_mib = max(0.0, (peak - memory_before) / 2 ** 20)
    achieved = gflop_per_step / s_per_step / 1e3
    row = {
        "model": model, "sample_rate": int(sample_rate), "device": str(device), "precision": precision,
        "batch": config.batch_size, "steps": steps, "warmup": warmup,
        "s_per_step": s_per_step, "clips_per_s": config.batch_size / s_per_step,
        "gflop_per_step": gflop_per_step, "achieved_tflops": achieved, **ceiling,
        "efficiency": achieved / ceiling["ceiling_tflops"],
        "above_ceiling": achieved > ceiling["ceiling_tflops"], "peak_mib": peak_mib,
        "memory_measure": memory_measure or "unavailable on this platform",
        "loss": final_loss, "model_options": dict(config.model_options),
    }
    del net, setup, ema, step_fn, features, labels
    _release(device)
    return row


def _write_random_wavs(folder: Path, count: int, sample_rate: int = audio.SAMPLE_RATE, seed: int = 0) -> list[Path]:
    """``count`` full-length (2.99 s) mono 16-bit WAVs of noise in ``folder``; their paths."""
    rng = np.random.default_rng(seed)
    n = audio.clip_samples(sample_rate)
    paths = []
    for i in range(count):
        path = folder / f"clip_{i:05d}.wav"
        audio.write_wav(path, 0.1 * rng.standard_normal(n), sample_rate)
        paths.append(path)
    return paths


def measure_feature_extraction(device: str | torch.device = "auto", n_clips: int = DEFAULT_FEATURE_CLIPS,
                               pipeline: bool = True, pipeline_rates: Sequence[int] = DEFAULT_RATES) -> dict[str, Any]:
    """Log-mel throughput in clips/s on ``device``.

    ``logmel_clips_per_s``: :class:`LogMel` (16 kHz, float64 FFT, the default) on ``n_clips``
    random waveforms already on the device, after one untimed batch: on CUDA in batches of 256,
    on CPU as extraction does it (:func:`helpers.features.extract.logmels_of_waveforms`: one worker per
    core on blocks of :data:`helpers.features.extract.CPU_BLOCK_CLIPS`). ``pipeline_clips_per_s``, per target rate:
    :func:`extract_logmels` (read, resample, pad, log-mel; its default workers and threads) on
    ``n_clips`` temporary 16 kHz WAV files, after an untimed call on 8 of them; at 8 kHz it
    includes resampling, at 16 kHz there is none (the corpus's rate).
    """
    device = resolve_device(device)
    if n_clips < 1:
        raise ValueError(f"measure_feature_extraction: n_clips must be >= 1, got {n_clips}.")
    settings = FeatureSettings(sample_rate=audio.SAMPLE_RATE)
    module = LogMel.from_settings(settings).to(device)
    batch = 256 if device.type == "cuda" else CPU_BLOCK_CLIPS
    gen = torch.Generator(device="cpu").manual_seed(0)
    waves = ((torch.rand(n_clips, settings.clip_samples, generator=gen) - 0.5) * 0.6).to(device)
    if device.type == "cpu":
        logmels_of_waveforms(waves[:8].numpy(), settings)
        start = time.perf_counter()
        logmels_of_waveforms(waves.numpy(), settings)
        logmel_seconds = time.perf_counter() - start
    else:
        with torch.inference_mode():
            module(waves[:batch])
            _sync(device)
            start = time.perf_counter()
            for first in range(0, n_clips, batch):
                module(waves[first:first + batch])
            _sync(device)
            logmel_seconds = time.perf_counter() - start
    del waves
    result: dict[str, Any] = {
        "device": str(device), "n_clips": n_clips, "fft_precision": settings.fft_precision,
        "logmel_sample_rate": settings.sample_rate, "logmel_batch": batch,
        "logmel_clips_per_s": n_clips / logmel_seconds, "pipeline_clips_per_s": None,
    }
    if pipeline:
        rates: dict[str, float] = {}
        with tempfile.TemporaryDirectory(prefix="bench-wavs-") as tmp:
            paths = _write_random_wavs(Path(tmp), n_clips)
            for rate in pipeline_rates:
                target = FeatureSettings(sample_rate=rate)
                extract_logmels(paths[:8], target, device=device, progress=False)
                start = time.perf_counter()
                extract_logmels(paths, target, device=device, progress=False)
                rates[str(rate)] = n_clips / (time.perf_counter() - start)
        result["pipeline_clips_per_s"] = rates
        result["pipeline_source"] = f"{audio.SAMPLE_RATE} Hz 16-bit WAV files, {settings.clip_samples} samples, in the page cache"
    _release(device)
    return result


def evaluation_precisions(device: torch.device, model: str = "cnn10") -> list[str]:
    """The scoring precisions worth timing on ``device``: CUDA bf16 and fp32; CPU fp32, bf16 where
    the CPU has native bf16, and int8 for the plain CNNs (:mod:`helpers.evaluation.inference`)."""
    if device.type == "cuda":
        return ["bf16", "fp32"]
    precisions = ["fp32"]
    if cpu_has_native_bf16():
        precisions.append("bf16")
    if int8_supported(model):
        precisions.append("int8")
    return precisions


def measure_evaluation(device: str | torch.device = "auto", n_clips: int | None = None, model: str = "cnn10",
                       sample_rate: int = 16_000, model_options: dict[str, Any] | None = None,
                       target_clips: int = EVAL_TARGET_CLIPS, precision: str | None = None) -> dict[str, Any]:
    """Time :func:`predict_scores` of ``model`` on ``n_clips`` random log-mels held on the device.

    As the training loop scores devel: the scoring copy of :func:`helpers.evaluation.inference.prepare_for_inference`
    (BatchNorm folded, channels-last) in ``precision`` (default: bf16 on CUDA, fp32 on CPU; int8
    is calibrated on up to 256 of the same clips first, untimed), batch ``eval_batch_size`` of the
    device, sigmoid scores (MixUp), one copy of the scores to the host at the end. ``n_clips``
    defaults to 7000 on CUDA and 512 on CPU; ``seconds_for_target`` is the time for
    ``target_clips``, scaled from the measured rate when ``n_clips`` differs (``extrapolated``).
    """
    device = resolve_device(device)
    n_clips = n_clips or DEFAULT_EVAL_CLIPS.get(device.type, DEFAULT_EVAL_CLIPS["cpu"])
    config = TrainConfig(model=model, sample_rate=sample_rate, device=str(device),
                         model_options=dict(model_options or {}))
    precision = precision or ("bf16" if autocast_enabled(config, device) else "fp32")
    settings = FeatureSettings(sample_rate=sample_rate)
    torch.manual_seed(config.seed)
    net = create_model(config.model, n_classes=N_CLASSES, **config.model_options).to(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    features = (torch.randn(n_clips, settings.n_frames, settings.n_mels, generator=gen) * 20 - 50).to(device)
    scorer = prepare_for_inference(net, precision, calibration=features[:256].cpu() if precision == "int8" else None,
                                   channels_last=config.channels_last)
    batch = eval_batch_size(config, device)
    kwargs = dict(batch_size=batch, score="sigmoid" if config.mixup else "softmax")
    # Untimed: one full batch on CUDA (kernel selection), a few clips on CPU.
    predict_scores(scorer, features[:min(n_clips, batch if device.type == "cuda" else 8)], **kwargs)
    _sync(device)
    start = time.perf_counter()
    scores = predict_scores(scorer, features, **kwargs)  # ends with the copy to the host
    seconds = time.perf_counter() - start
    result = {
        "model": model, "sample_rate": int(sample_rate), "device": str(device),
        "precision": precision, "batch_size": batch,
        "n_clips": n_clips, "seconds": seconds, "clips_per_s": n_clips / seconds,
        "target_clips": target_clips, "seconds_for_target": seconds * target_clips / n_clips,
        "extrapolated": n_clips != target_clips, "model_options": dict(config.model_options),
        "scores_shape": list(scores.shape),
    }
    del net, scorer, features
    _release(device)
    return result


def check_models(models: Sequence[str] | None) -> list[str]:
    """``models`` as a list (None or empty: every model of :data:`MODELS`); ValueError naming unknown ones."""
    models = list(models) if models else list(MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; valid names: {', '.join(MODELS)}")
    return models


def run_benchmark(models: Sequence[str] | None = None, rates: Sequence[int] = DEFAULT_RATES,
                  device: str | torch.device = "auto", steps: int | None = None, warmup: int | None = None,
                  features: bool = True, feature_clips: int = DEFAULT_FEATURE_CLIPS, evaluation: bool = True,
                  eval_clips: int | None = None, model_options: dict[str, Any] | None = None,
                  on_row: Callable[[dict[str, Any]], None] | None = None, cpu_amp: bool = False) -> dict[str, Any]:
    """Every measurement of the benchmark; returns what the JSON file holds.

    ``models``: default all of :data:`helpers.models.networks.MODELS`; ``steps``/``warmup``: default
    :data:`DEFAULT_STEPS`/:data:`DEFAULT_WARMUP` of the device; ``on_row`` is called with each
    table row as soon as it is measured; ``cpu_amp`` adds a bf16-autocast row after each CPU
    fp32 row. Keys: ``device``, ``device_name``, ``torch_threads``,
    ``settings``, ``columns`` (:data:`ROW_KEYS`), ``rows``, ``feature_extraction`` and
    ``evaluation`` (one entry per precision of :func:`evaluation_precisions`; None when switched off),
    ``warnings`` (:func:`ceiling_warning` of each row above its ceiling; empty when none),
    ``environment`` (versions, machine, commit).
    """
    device = resolve_device(device)
    models = check_models(models)
    steps = DEFAULT_STEPS.get(device.type, DEFAULT_STEPS["cpu"]) if steps is None else steps
    warmup = DEFAULT_WARMUP.get(device.type, DEFAULT_WARMUP["cpu"]) if warmup is None else warmup
    rows = []
    for name in models:
        for rate in rates:
            for amp_row in ([False, True] if cpu_amp and device.type == "cpu" else [False]):
                row = measure_training(name, rate, device, steps, warmup, model_options, cpu_amp=amp_row)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return {
        "device": str(device), "device_name": device_name(device), "torch_threads": torch.get_num_threads(),
        "settings": {"models": models, "rates": list(rates), "steps": steps, "warmup": warmup, "cpu_amp": cpu_amp,
                     "model_options": dict(model_options or {}), "bank_clips": BANK_CLIPS,
                     "reference_kernels": reference_description(device)},
        "columns": ROW_KEYS,
        "rows": rows,
        "warnings": [w for w in map(ceiling_warning, rows) if w],
        "feature_extraction": measure_feature_extraction(device, feature_clips) if features else None,
        "evaluation": ([measure_evaluation(device, eval_clips, model_options=model_options, precision=p)
                        for p in evaluation_precisions(device)] if evaluation else None),
        "environment": environment_record(),
    }


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def _number(x: float | None) -> str:
    """About 3-4 significant digits without exponent notation: 1234, 12.3, 1.23, 0.0123."""
    if x is None or not math.isfinite(x):
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def reference_description(device: torch.device) -> str:
    """The two reference kernels of the ceiling on ``device`` in words (precision: the row's)."""
    batch, channels, side = CONV_SHAPE.get(device.type, CONV_SHAPE["cpu"])
    return (f"the faster of a dense {MATMUL_SIZE.get(device.type, MATMUL_SIZE['cpu'])}^3 matmul and a dense "
            f"3x3 convolution {channels}->{channels} channels on {batch}x{side}x{side} (channels-last when the "
            f"step is), in the row's precision, best of {MATMUL_REPEATS.get(device.type, MATMUL_REPEATS['cpu'])} "
            "repeats each, measured just before each row's timed steps")


def ceiling_warning(row: dict[str, Any]) -> str | None:
    """A WARNING line for a row whose step outran its ceiling (efficiency above 100 %), else None."""
    efficiency = row.get("efficiency")
    if efficiency is None or not (row.get("above_ceiling") or efficiency > 1):
        return None
    return (f"WARNING: {row['model']} {row['sample_rate']} {row['precision']}: the step ran at "
            f"{efficiency:.0%} of its ceiling ({_number(row.get('ceiling_tflops'))} TFLOP/s, {row.get('ceiling')}; "
            f"matmul {_number(row.get('matmul_tflops'))}, conv {_number(row.get('conv_tflops'))}). No step outruns "
            "the fastest dense kernel: the CEILING WAS MEASURED WRONG (too low) and this efficiency is not a result.")


def format_header() -> str:
    """The table's header line (see :func:`format_table`)."""
    return " ".join(f"{title:<{width}}" if kind == "s" else f"{title:>{width}}" for _, title, width, kind in _COLUMNS).rstrip()


def format_row(row: dict[str, Any]) -> str:
    """One table line for a row of :func:`measure_training`."""
    cells = []
    for key, _, width, kind in _COLUMNS:
        value = row.get(key)
        if kind == "s":
            cells.append(f"{value!s:<{width}}")
        elif kind == "d":
            cells.append(f"{value:>{width}d}")
        elif kind == "%":
            text = "-" if value is None else f"{value:.1%}"
            if key == "efficiency" and ceiling_warning(row):
                text = ABOVE_CEILING_MARK + text  # not a result: see the WARNING line
            cells.append(f"{text:>{width}}")
        else:
            cells.append(f"{_number(value):>{width}}")
    return " ".join(cells).rstrip()


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The benchmark table: a header line, one line per row (fixed-width columns), then a
    :func:`ceiling_warning` line for each row whose efficiency is above 100 %."""
    warnings = [w for w in map(ceiling_warning, rows) if w]
    return "\n".join([format_header()] + [format_row(row) for row in rows] + warnings)


def format_feature_extraction(result: dict[str, Any]) -> str:
    """The feature-extraction measurement in one or two lines."""
    lines = [f"feature extraction ({result['device']}, {result['n_clips']} clips, {result['fft_precision']} FFT): "
             f"log-mel of in-memory waveforms at {result['logmel_sample_rate'] // 1000} kHz, "
             + (f"blocks of {result['logmel_batch']} per worker thread" if result["device"] == "cpu"
                else f"batches of {result['logmel_batch']}")
             + f": {_number(result['logmel_clips_per_s'])} clips/s"]
    if result.get("pipeline_clips_per_s"):
        rates = ", ".join(f"{int(rate) // 1000} kHz {_number(value)} clips/s"
                          for rate, value in result["pipeline_clips_per_s"].items())
        lines.append(f"  read + resample + log-mel (extract_logmels, 16 kHz WAVs in the page cache): {rates}")
    return "\n".join(lines)


def format_evaluation(result: dict[str, Any]) -> str:
    """The devel-evaluation measurement in one line, saying when the total is extrapolated."""
    total = (f"{result['target_clips']} clips: {_number(result['seconds_for_target'])} s"
             + (f" (EXTRAPOLATED from {result['n_clips']} clips)" if result["extrapolated"] else " (measured)"))
    return (f"devel evaluation (predict_scores, {result['model']} {result['sample_rate'] // 1000} kHz, "
            f"{result['precision']}, batch {result['batch_size']}): {result['n_clips']} clips in "
            f"{_number(result['seconds'])} s = {_number(result['clips_per_s'])} clips/s -> {total}")


def default_json_path(device: torch.device) -> Path:
    """``runs/bench/bench-<device type>.json`` (relative to the working directory)."""
    return Path("runs") / "bench" / f"bench-{device.type}.json"


def _print_row(row: dict[str, Any]) -> None:
    print(format_row(row), flush=True)
    warning = ceiling_warning(row)
    if warning:
        print(warning, flush=True)


def run_from_args(args: argparse.Namespace) -> int:
    """The ``bench`` command on parsed arguments (:func:`build_parser`): set threads, measure,
    print the table and extras, write the JSON."""
    try:
        check_models(args.models)
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    threads = configure_threads(args.threads)
    options = args.model_options or {}
    print(f"device {device} ({device_name(device)}), torch {torch.__version__}, {threads} torch threads "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); ceiling: "
          + reference_description(device) + (f"; model options {options}" if options else ""), flush=True)
    print(format_header(), flush=True)
    result = run_benchmark(args.models, args.rates, device, args.steps, args.warmup,
                           features=not args.no_features, feature_clips=args.feature_clips,
                           evaluation=not args.no_eval, eval_clips=args.eval_clips, model_options=options,
                           on_row=_print_row, cpu_amp=args.cpu_amp)
    result["arguments"] = dict(vars(args))
    if result["feature_extraction"] is not None:
        print(format_feature_extraction(result["feature_extraction"]))
    for entry in result["evaluation"] or []:
        print(format_evaluation(entry))
    if result["warnings"]:
        print(f"WARNING: {len(result['warnings'])} row(s) above their ceiling (marked {ABOVE_CEILING_MARK} in "
              "eff.): their efficiency is not a result.", file=sys.stderr)
    path = Path(args.json) if args.json else default_json_path(device)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------------
# Command line (``python -m helpers bench`` hands its arguments to main)
# --------------------------------------------------------------------------------------------
def _json_object(text: str) -> dict:
    """``--model-options``: a JSON object, else an argparse error saying what was expected."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"channels\": [8, 16, 32, 64]}}', got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m helpers bench``."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers bench",
        description="Training speed of each model against the device's ceiling, the faster of a dense matmul "
                    "and a dense 3x3 convolution measured in the step's precision and layout just before "
                    "(see helpers/bench.py), plus feature-extraction and devel-evaluation speed. Prints one "
                    "table and writes it as JSON.")
    parser.add_argument("--models", nargs="+", default=None, help="registry names (default: all models)")
    parser.add_argument("--rates", nargs="+", type=int, choices=[16000, 8000], default=list(DEFAULT_RATES))
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row (default: 3 on CPU, 50 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first (default: 1 on CPU, 10 on CUDA)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: OMP_NUM_THREADS or all cores)")
    parser.add_argument("--json", default=None, help="output file (default: runs/bench/bench-<device>.json)")
    parser.add_argument("--cpu-amp", action="store_true",
                        help="on a CPU, also time each model under bf16 autocast (TrainConfig.cpu_amp)")
    parser.add_argument("--eval-clips", type=int, default=None,
                        help="clips scored in the devel-evaluation timing (default: 7000 on CUDA, 512 on CPU, "
                             "extrapolated to 7000)")
    parser.add_argument("--feature-clips", type=int, default=DEFAULT_FEATURE_CLIPS,
                        help="clips of the feature-extraction timing")
    parser.add_argument("--no-features", action="store_true", help="skip the feature-extraction timing")
    parser.add_argument("--no-eval", action="store_true", help="skip the devel-evaluation timing")
    parser.add_argument("--model-options", type=_json_object, default=None,
                        help="JSON constructor options for every model, e.g. '{\"channels\": [8, 16, 32, 64]}'")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m helpers bench ARGS``; ``argv`` are the ARGS (default: ``sys.argv[1:]``).
    Exit status: 0, 2 for bad arguments (argparse exits with 2 itself)."""
    return run_from_args(build_parser().parse_args(None if argv is None else list(argv)))
