"""What the benchmark prints and writes: the row's keys (:data:`ROW_KEYS`), the fixed-width table
with its ceiling warnings, the feature-extraction and evaluation lines, and the JSON file's path."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch

#: Every key of a table row (:func:`helpers.bench.measure.measure_training`), with its meaning and unit.
ROW_KEYS: dict[str, str] = {
    "model": "registry name (helpers.models.registry.MODELS)",
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
    "matmul_tflops": "dense square matmul throughput measured on the device just before the timed steps "
    "(best of repeats)",
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
    ("model", "model", 16, "s"),
    ("sample_rate", "rate", 5, "d"),
    ("device", "device", 6, "s"),
    ("precision", "precision", 13, "s"),
    ("batch", "batch", 5, "d"),
    ("s_per_step", "s/step", 7, "n"),
    ("clips_per_s", "clips/s", 7, "n"),
    ("gflop_per_step", "GFLOP/step", 10, "n"),
    ("achieved_tflops", "TFLOP/s", 7, "n"),
    ("matmul_tflops", "matmul TF/s", 11, "n"),
    ("conv_tflops", "conv TF/s", 9, "n"),
    ("ceiling", "ceiling", 7, "s"),
    ("efficiency", "eff.", 7, "%"),
    ("peak_mib", "peak MiB", 8, "n"),
)
#: Marks an efficiency cell above 100 % (see :func:`ceiling_warning`).
ABOVE_CEILING_MARK = "!"


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


def ceiling_warning(row: dict[str, Any]) -> str | None:
    """A WARNING line for a row whose step outran its ceiling (efficiency above 100 %), else None."""
    efficiency = row.get("efficiency")
    if efficiency is None or not (row.get("above_ceiling") or efficiency > 1):
        return None
    return (
        f"WARNING: {row['model']} {row['sample_rate']} {row['precision']}: the step ran at "
        f"{efficiency:.0%} of its ceiling ({_number(row.get('ceiling_tflops'))} TFLOP/s, {row.get('ceiling')}; "
        f"matmul {_number(row.get('matmul_tflops'))}, conv {_number(row.get('conv_tflops'))}). No step outruns "
        "the fastest dense kernel: the CEILING WAS MEASURED WRONG (too low) and this efficiency is not a result."
    )


def format_header() -> str:
    """The table's header line (see :func:`format_table`)."""
    return " ".join(
        f"{title:<{width}}" if kind == "s" else f"{title:>{width}}" for _, title, width, kind in _COLUMNS
    ).rstrip()


def format_row(row: dict[str, Any]) -> str:
    """One table line for a row of :func:`helpers.bench.measure.measure_training`."""
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
    lines = [
        f"feature extraction ({result['device']}, {result['n_clips']} clips, {result['fft_precision']} FFT): "
        f"log-mel of in-memory waveforms at {result['logmel_sample_rate'] // 1000} kHz, "
        + (
            f"blocks of {result['logmel_batch']} per worker thread"
            if result["device"] == "cpu"
            else f"batches of {result['logmel_batch']}"
        )
        + f": {_number(result['logmel_clips_per_s'])} clips/s"
    ]
    if result.get("pipeline_clips_per_s"):
        rates = ", ".join(
            f"{int(rate) // 1000} kHz {_number(value)} clips/s"
            for rate, value in result["pipeline_clips_per_s"].items()
        )
        lines.append(f"  read + resample + log-mel (extract_logmels, 16 kHz WAVs in the page cache): {rates}")
    return "\n".join(lines)


def format_evaluation(result: dict[str, Any]) -> str:
    """The devel-evaluation measurement in one line, saying when the total is extrapolated."""
    total = f"{result['target_clips']} clips: {_number(result['seconds_for_target'])} s" + (
        f" (EXTRAPOLATED from {result['n_clips']} clips)" if result["extrapolated"] else " (measured)"
    )
    return (
        f"devel evaluation (predict_scores, {result['model']} {result['sample_rate'] // 1000} kHz, "
        f"{result['precision']}, batch {result['batch_size']}): {result['n_clips']} clips in "
        f"{_number(result['seconds'])} s = {_number(result['clips_per_s'])} clips/s -> {total}"
    )


def default_json_path(device: torch.device) -> Path:
    """``runs/bench/bench-<device type>.json`` (relative to the working directory)."""
    return Path("runs") / "bench" / f"bench-{device.type}.json"


# --------------------------------------------------------------------------------------------
# Scan benchmark (helpers.bench.scanning)
# --------------------------------------------------------------------------------------------
#: Every key of a scan-benchmark row (:func:`helpers.bench.scanning.run_scan_benchmark`).
SCAN_ROW_KEYS: dict[str, str] = {
    "model": "registry name; an untrained checkpoint of it (speed does not depend on the weights)",
    "sample_rate": "Hz the model reads; the 48 kHz recordings are resampled to it",
    "device": "torch device the windows were scored on (int8: always the CPU)",
    "precision": "scoring precision: fp32, bf16 or int8",
    "threads": "torch threads of the scanning process",
    "hop_seconds": "seconds between window starts",
    "default_hop": "true when the hop is scan's default, half the model's clip",
    "audio_minutes": "minutes of audio in the long recording",
    "wall_seconds": "seconds scan took for the long recording (ScanResult.wall_seconds)",
    "realtime_factor": "audio seconds / wall seconds of the long recording (ScanResult.realtime_factor)",
    "windows": "windows scored in the long recording",
    "windows_per_s": "windows / wall_seconds",
    "peak_mib_short": "peak resident set (MiB) of a fresh process that scanned only the short recording",
    "peak_mib_long": "the same for the long recording; close to peak_mib_short when the scan streams",
    "short_seconds": "seconds of audio in the short recording",
    "short_realtime_factor": "real-time factor of the short recording (start-up weighs more there)",
    "rss_before_mib": "resident set of the long recording's process before the scan (libraries imported)",
    "cuda_peak_mib_short": "CUDA tensors at their peak (MiB) in the short scan; None on a CPU",
    "cuda_peak_mib_long": "the same in the long scan",
    "model_options": "constructor options passed to create_model (empty: the paper's model at full width)",
    "gflop_per_window": "forward FLOPs of the model for one window (conv and linear layers, helpers.models.cost)",
    "achieved_tflops": "windows_per_s x gflop_per_window: the model's arithmetic rate during the scan",
    "ceiling_tflops": "the device's measured fp32 peak (helpers.bench.kernels.measure_ceiling); fp32 rows only",
    "rtf_at_ceiling": "the real-time factor if every window ran at ceiling_tflops and nothing else took time: "
    "the most this model, hop and device allow in fp32",
    "rescore_seconds": "heads on BirdNET: seconds to rescore the long scan with another head from its stored "
    "embeddings (no audio read, no backbone pass)",
    "rescore_seconds_per_hour": "rescore_seconds per hour of scanned audio",
    "target": "the project's speed target for this row and whether it was met (helpers.bench.scanning.scan_target); "
    "None when no target applies",
}

#: The scan table: (row key, header, width, format).
_SCAN_COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    ("model", "model", 16, "s"),
    ("sample_rate", "rate", 5, "d"),
    ("device", "device", 6, "s"),
    ("precision", "precision", 9, "s"),
    ("threads", "thr", 3, "d"),
    ("hop_seconds", "hop s", 5, "n"),
    ("audio_minutes", "audio min", 9, "n"),
    ("wall_seconds", "wall s", 6, "n"),
    ("realtime_factor", "x real time", 11, "n"),
    ("windows_per_s", "windows/s", 9, "n"),
    ("peak_mib_short", "peak MiB short", 14, "n"),
    ("peak_mib_long", "peak MiB long", 13, "n"),
    ("achieved_tflops", "TFLOP/s", 7, "n"),
    ("rtf_at_ceiling", "x at ceiling", 12, "n"),
    ("rescore_seconds_per_hour", "rescore s/h", 11, "n"),
    ("target", "target", 16, "t"),
)


def _target_cell(target: dict[str, Any] | None) -> str:
    if not target:
        return "-"
    return f">={target['realtime_factor']}x {'met' if target['met'] else 'NOT met'}" + (
        "" if target["comparable"] else "*"
    )


def format_scan_header() -> str:
    """The header line of the scan table (see :func:`format_scan_row`)."""
    return " ".join(
        f"{title:<{width}}" if kind in "st" else f"{title:>{width}}" for _, title, width, kind in _SCAN_COLUMNS
    ).rstrip()


def format_scan_row(row: dict[str, Any]) -> str:
    """One line of the scan table; the target cell ends in ``*`` when the run's setting is not the target's."""
    cells = []
    for key, _, width, kind in _SCAN_COLUMNS:
        value = row.get(key)
        if kind == "s":
            cells.append(f"{value!s:<{width}}")
        elif kind == "t":
            cells.append(f"{_target_cell(value):<{width}}")
        elif kind == "d":
            cells.append(f"{value:>{width}d}")
        else:
            cells.append(f"{_number(value):>{width}}")
    return " ".join(cells).rstrip()


def format_scan_table(rows: Sequence[dict[str, Any]]) -> str:
    """The scan table: a header line and one line per row."""
    return "\n".join([format_scan_header()] + [format_scan_row(row) for row in rows])


def format_scan_targets(result: dict[str, Any]) -> list[str]:
    """The lines under the scan table: one per row that has a target (met or NOT met, plainly),
    the reference figure, and a line when no row had a target."""
    lines = [
        f"{row['model']}-{row['sample_rate'] // 1000}k {row['precision']} ({row['device']}, "
        f"{row['threads']} threads): {row['target']['text']}"
        for row in result["rows"]
        if row.get("target")
    ]
    if not lines:
        lines.append("no row matches a target (targets: CNN10-8k, full width, default hop)")
    return lines + [f"for comparison: {result['reference']}"]


def default_scan_json_path(device: torch.device) -> Path:
    """``runs/bench/bench-scan-<device type>.json`` (relative to the working directory)."""
    return Path("runs") / "bench" / f"bench-scan-{device.type}.json"
