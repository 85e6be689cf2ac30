"""The measurements of the benchmark: one training-step row (:func:`measure_training`), feature
extraction (:func:`measure_feature_extraction`) and devel evaluation (:func:`measure_evaluation`).
The table columns of a row are described by :data:`helpers.bench.table.ROW_KEYS`."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from helpers.bench.kernels import measure_ceiling
from helpers.bench.probes import memory_in_use, memory_peak, release, reset_memory_peak, sync
from helpers.core.hardware import resolve_device
from helpers.data import audio as audio
from helpers.evaluation.inference import cpu_has_native_bf16, int8_supported, prepare_for_inference
from helpers.evaluation.scoring import predict_scores
from helpers.features.extract import CPU_BLOCK_CLIPS, extract_logmels, logmels_of_waveforms
from helpers.features.frontend import FeatureSettings, LogMel
from helpers.models.cost import forward_flops
from helpers.models.registry import create_model
from helpers.training.config import autocast_enabled, eval_batch_size, TrainConfig
from helpers.training.steps import build_training, TrainingSetup

#: Classes of the challenge corpus (docs/reference.md §1); only the head's size depends on it.
N_CLASSES = 5
#: Random log-mel clips held on the device that the sampler draws training batches from.
BANK_CLIPS = 1024
#: Devel evaluation: clips scored per device by default, and the count reported (devel: 6,918).
DEFAULT_EVAL_CLIPS = {"cpu": 512, "cuda": 7000}
EVAL_TARGET_CLIPS = 7000
#: Clips of the feature-extraction measurement.
DEFAULT_FEATURE_CLIPS = 256
DEFAULT_RATES = (16_000, 8_000)


# --------------------------------------------------------------------------------------------
# Training step
# --------------------------------------------------------------------------------------------
def training_precision(config: TrainConfig, device: torch.device) -> str:
    """``"bf16-autocast"`` where the training step autocasts
    (:func:`helpers.training.config.autocast_enabled`), else ``"fp32"``."""
    return "bf16-autocast" if autocast_enabled(config, device) else "fp32"


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
    del net, optimizer, ema, step_fn  # the caller's release() then trims the heap


def _random_bank(
    config: TrainConfig, settings: FeatureSettings, device: torch.device
) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """:data:`BANK_CLIPS` random log-mels in dB on ``device`` and their labels (every class
    present), as numpy for the sampler and as a tensor on the device."""
    rng = np.random.default_rng(config.seed)
    gen_cpu = torch.Generator(device="cpu").manual_seed(config.seed)
    features = (torch.randn(BANK_CLIPS, settings.n_frames, settings.n_mels, generator=gen_cpu) * 20 - 50).to(device)
    labels_np = rng.permutation(np.arange(BANK_CLIPS) % N_CLASSES)
    return features, labels_np, torch.from_numpy(labels_np).to(device)


def _loop_step(
    setup: TrainingSetup, features: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> Callable[[], torch.Tensor]:
    """One step of the training loop as a call: sampled indices, the step function, the EMA update."""
    net, ema, sampler, step_fn = setup.model, setup.ema, setup.sampler, setup.step
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

    return training_step


def _run_steps(training_step: Callable[[], torch.Tensor], count: int, device: torch.device) -> float | None:
    """``count`` steps, then the only host synchronisation: the last loss as a float (None when
    no step ran) and a device synchronize."""
    loss = None
    for _ in range(count):
        loss = training_step()
    value = None if loss is None else float(loss)
    sync(device)
    return value


def _peak_mib(memory_measure: str | None, peak: int | None, before: int | None) -> float | None:
    """Peak memory of the step in MiB above what was in use before the model; None if unmeasured."""
    if memory_measure is None or peak is None or before is None:
        return None
    return max(0.0, (peak - before) / 2**20)


def measure_training(
    model: str,
    sample_rate: int,
    device: str | torch.device = "auto",
    steps: int = 3,
    warmup: int = 1,
    model_options: dict[str, Any] | None = None,
    matmul_size: int | None = None,
    cpu_amp: bool = False,
    conv_shape: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
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
    config = TrainConfig(
        model=model,
        sample_rate=sample_rate,
        device=str(device),
        model_options=dict(model_options or {}),
        cpu_amp=cpu_amp,
    )
    settings = FeatureSettings(sample_rate=sample_rate)
    precision = training_precision(config, device)
    features, labels_np, labels = _random_bank(config, settings, device)
    if device.type == "cpu":
        _touch_kernels(config, settings)
    release(device)
    memory_before = memory_in_use(device)

    # The set-up of helpers.training.train itself (minus data loading and checkpoints).
    setup = build_training(config, N_CLASSES, device, labels_np)
    gflop_per_step = 3 * forward_flops(setup.model, settings.n_frames, settings.n_mels) * config.batch_size / 1e9
    training_step = _loop_step(setup, features, labels, device)
    _run_steps(training_step, warmup, device)
    ceiling = measure_ceiling(
        device,
        torch.bfloat16 if precision == "bf16-autocast" else torch.float32,
        channels_last=config.channels_last,
        matmul_size=matmul_size,
        conv_shape=conv_shape,
    )
    memory_measure = reset_memory_peak(device)
    start = time.perf_counter()
    final_loss = _run_steps(training_step, steps, device)
    s_per_step = (time.perf_counter() - start) / steps
    peak_mib = _peak_mib(memory_measure, memory_peak(device), memory_before)

    achieved = gflop_per_step / s_per_step / 1e3
    row = {
        "model": model,
        "sample_rate": int(sample_rate),
        "device": str(device),
        "precision": precision,
        "batch": config.batch_size,
        "steps": steps,
        "warmup": warmup,
        "s_per_step": s_per_step,
        "clips_per_s": config.batch_size / s_per_step,
        "gflop_per_step": gflop_per_step,
        "achieved_tflops": achieved,
        **ceiling,
        "efficiency": achieved / ceiling["ceiling_tflops"],
        "above_ceiling": achieved > ceiling["ceiling_tflops"],
        "peak_mib": peak_mib,
        "memory_measure": memory_measure or "unavailable on this platform",
        "loss": final_loss,
        "model_options": dict(config.model_options),
    }
    del setup, training_step, features, labels
    release(device)
    return row


# --------------------------------------------------------------------------------------------
# Feature extraction
# --------------------------------------------------------------------------------------------
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


def _logmel_seconds(
    module: LogMel, waves: torch.Tensor, settings: FeatureSettings, batch: int, device: torch.device
) -> float:
    """Seconds to log-mel ``waves`` after an untimed first batch: on CPU as extraction does it
    (worker blocks), on CUDA in batches of ``batch``."""
    if device.type == "cpu":
        logmels_of_waveforms(waves[:8].numpy(), settings)
        start = time.perf_counter()
        logmels_of_waveforms(waves.numpy(), settings)
        return time.perf_counter() - start
    with torch.inference_mode():
        module(waves[:batch])
        sync(device)
        start = time.perf_counter()
        for first in range(0, len(waves), batch):
            module(waves[first : first + batch])
        sync(device)
        return time.perf_counter() - start


def _pipeline_clips_per_s(n_clips: int, rates: Sequence[int], device: torch.device) -> dict[str, float]:
    """Clips/s of :func:`extract_logmels` on ``n_clips`` temporary 16 kHz WAVs, per target rate."""
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-wavs-") as tmp:
        paths = _write_random_wavs(Path(tmp), n_clips)
        for rate in rates:
            target = FeatureSettings(sample_rate=rate)
            extract_logmels(paths[:8], target, device=device, progress=False)
            start = time.perf_counter()
            extract_logmels(paths, target, device=device, progress=False)
            result[str(rate)] = n_clips / (time.perf_counter() - start)
    return result


def measure_feature_extraction(
    device: str | torch.device = "auto",
    n_clips: int = DEFAULT_FEATURE_CLIPS,
    pipeline: bool = True,
    pipeline_rates: Sequence[int] = DEFAULT_RATES,
) -> dict[str, Any]:
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
    logmel_seconds = _logmel_seconds(module, waves, settings, batch, device)
    del waves
    result: dict[str, Any] = {
        "device": str(device),
        "n_clips": n_clips,
        "fft_precision": settings.fft_precision,
        "logmel_sample_rate": settings.sample_rate,
        "logmel_batch": batch,
        "logmel_clips_per_s": n_clips / logmel_seconds,
        "pipeline_clips_per_s": None,
    }
    if pipeline:
        result["pipeline_clips_per_s"] = _pipeline_clips_per_s(n_clips, pipeline_rates, device)
        result["pipeline_source"] = (
            f"{audio.SAMPLE_RATE} Hz 16-bit WAV files, {settings.clip_samples} samples, in the page cache"
        )
    release(device)
    return result


# --------------------------------------------------------------------------------------------
# Devel evaluation
# --------------------------------------------------------------------------------------------
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


def measure_evaluation(
    device: str | torch.device = "auto",
    n_clips: int | None = None,
    model: str = "cnn10",
    sample_rate: int = 16_000,
    model_options: dict[str, Any] | None = None,
    target_clips: int = EVAL_TARGET_CLIPS,
    precision: str | None = None,
) -> dict[str, Any]:
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
    config = TrainConfig(
        model=model, sample_rate=sample_rate, device=str(device), model_options=dict(model_options or {})
    )
    precision = precision or ("bf16" if autocast_enabled(config, device) else "fp32")
    settings = FeatureSettings(sample_rate=sample_rate)
    torch.manual_seed(config.seed)
    net = create_model(config.model, n_classes=N_CLASSES, **config.model_options).to(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    features = (torch.randn(n_clips, settings.n_frames, settings.n_mels, generator=gen) * 20 - 50).to(device)
    scorer = prepare_for_inference(
        net,
        precision,
        calibration=features[:256].cpu() if precision == "int8" else None,
        channels_last=config.channels_last,
    )
    batch = eval_batch_size(config, device)
    kwargs = dict(batch_size=batch, score="sigmoid" if config.mixup else "softmax")
    # Untimed: one full batch on CUDA (kernel selection), a few clips on CPU.
    predict_scores(scorer, features[: min(n_clips, batch if device.type == "cuda" else 8)], **kwargs)
    sync(device)
    start = time.perf_counter()
    scores = predict_scores(scorer, features, **kwargs)  # ends with the copy to the host
    seconds = time.perf_counter() - start
    result = {
        "model": model,
        "sample_rate": int(sample_rate),
        "device": str(device),
        "precision": precision,
        "batch_size": batch,
        "n_clips": n_clips,
        "seconds": seconds,
        "clips_per_s": n_clips / seconds,
        "target_clips": target_clips,
        "seconds_for_target": seconds * target_clips / n_clips,
        "extrapolated": n_clips != target_clips,
        "model_options": dict(config.model_options),
        "scores_shape": list(scores.shape),
    }
    del net, scorer, features
    release(device)
    return result
