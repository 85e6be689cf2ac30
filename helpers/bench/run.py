"""The whole benchmark as one call: every training row, then feature extraction and devel
evaluation, gathered into the record that the JSON file holds (:func:`run_benchmark`)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from helpers.bench.kernels import reference_description
from helpers.bench.measure import (
    BANK_CLIPS,
    DEFAULT_FEATURE_CLIPS,
    DEFAULT_RATES,
    evaluation_precisions,
    measure_evaluation,
    measure_feature_extraction,
    measure_training,
)
from helpers.bench.probes import device_name
from helpers.bench.table import ceiling_warning, ROW_KEYS
from helpers.core.hardware import resolve_device
from helpers.core.provenance import environment_record
from helpers.models.registry import MODELS

#: Default timed and warm-up training steps per device (a CPU step of ResNet22 takes seconds).
DEFAULT_STEPS = {"cpu": 3, "cuda": 50}
DEFAULT_WARMUP = {"cpu": 1, "cuda": 10}


def check_models(models: Sequence[str] | None) -> list[str]:
    """``models`` as a list (None or empty: every model of :data:`MODELS`); ValueError naming unknown ones."""
    models = list(models) if models else list(MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; valid names: {', '.join(MODELS)}")
    return models


def run_benchmark(
    models: Sequence[str] | None = None,
    rates: Sequence[int] = DEFAULT_RATES,
    device: str | torch.device = "auto",
    steps: int | None = None,
    warmup: int | None = None,
    features: bool = True,
    feature_clips: int = DEFAULT_FEATURE_CLIPS,
    evaluation: bool = True,
    eval_clips: int | None = None,
    model_options: dict[str, Any] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    cpu_amp: bool = False,
) -> dict[str, Any]:
    """Every measurement of the benchmark; returns what the JSON file holds.

    ``models``: default all of :data:`helpers.models.registry.MODELS`; ``steps``/``warmup``: default
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
            for amp_row in [False, True] if cpu_amp and device.type == "cpu" else [False]:
                row = measure_training(name, rate, device, steps, warmup, model_options, cpu_amp=amp_row)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "settings": {
            "models": models,
            "rates": list(rates),
            "steps": steps,
            "warmup": warmup,
            "cpu_amp": cpu_amp,
            "model_options": dict(model_options or {}),
            "bank_clips": BANK_CLIPS,
            "reference_kernels": reference_description(device),
        },
        "columns": ROW_KEYS,
        "rows": rows,
        "warnings": [w for w in map(ceiling_warning, rows) if w],
        "feature_extraction": measure_feature_extraction(device, feature_clips) if features else None,
        "evaluation": (
            [
                measure_evaluation(device, eval_clips, model_options=model_options, precision=p)
                for p in evaluation_precisions(device)
            ]
            if evaluation
            else None
        ),
        "environment": environment_record(),
    }
