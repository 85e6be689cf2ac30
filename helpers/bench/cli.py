"""The ``bench`` command line: its own parser (``python -m helpers bench ARGS`` hands ARGS to
:func:`main`), and :func:`run_from_args`, which measures, prints the table and writes the JSON.
``bench scan ARGS`` is the scan benchmark, with its own parser (:func:`build_scan_parser`,
:func:`run_scan_from_args`)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from helpers.bench.kernels import reference_description
from helpers.bench.measure import DEFAULT_FEATURE_CLIPS, DEFAULT_RATES
from helpers.bench.probes import CPU_FEATURES, cpu_features, device_name
from helpers.bench.run import check_models, run_benchmark
from helpers.bench.scanning import (
    DEFAULT_MINUTES,
    RESCORE_TARGET_SECONDS_PER_HOUR,
    SCAN_REFERENCE,
    SCAN_TARGETS,
    SHORT_SECONDS,
    embedding_throughput,
    run_scan_benchmark,
    short_seconds_for,
)
from helpers.bench.table import (
    ABOVE_CEILING_MARK,
    ceiling_warning,
    default_json_path,
    default_scan_json_path,
    format_evaluation,
    format_feature_extraction,
    format_header,
    format_row,
    format_scan_header,
    format_scan_row,
    format_scan_targets,
    SCAN_ROW_KEYS,
)
from helpers.core.fileio import atomic_write, write_json_atomic
from helpers.core.hardware import configure_threads, resolve_device
from helpers.models.heads import is_head


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
    print(
        f"device {device} ({device_name(device)}), torch {torch.__version__}, {threads} torch threads "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); ceiling: "
        + reference_description(device)
        + (f"; model options {options}" if options else ""),
        flush=True,
    )
    print(format_header(), flush=True)
    result = run_benchmark(
        args.models,
        args.rates,
        device,
        args.steps,
        args.warmup,
        features=not args.no_features,
        feature_clips=args.feature_clips,
        evaluation=not args.no_eval,
        eval_clips=args.eval_clips,
        model_options=options,
        on_row=_print_row,
        cpu_amp=args.cpu_amp,
    )
    result["arguments"] = dict(vars(args))
    if result["feature_extraction"] is not None:
        print(format_feature_extraction(result["feature_extraction"]))
    for entry in result["evaluation"] or []:
        print(format_evaluation(entry))
    if result["warnings"]:
        print(
            f"WARNING: {len(result['warnings'])} row(s) above their ceiling (marked {ABOVE_CEILING_MARK} in "
            "eff.): their efficiency is not a result.",
            file=sys.stderr,
        )
    path = Path(args.json) if args.json else default_json_path(device)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    print(f"wrote {path}")
    return 0


def _json_object(text: str) -> dict:
    """``--model-options``: a JSON object, else an argparse error saying what was expected."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"channels\": [8, 16, 32, 64]}}', got {text!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m helpers bench``."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers bench",
        description="Training speed of each model against the device's ceiling, the faster of a dense matmul "
        "and a dense 3x3 convolution measured in the step's precision and layout just before "
        "(see helpers/bench/), plus feature-extraction and devel-evaluation speed. Prints one "
        "table and writes it as JSON. 'bench scan' instead measures the real-time factor of "
        "scanning long recordings (bench scan --help).",
    )
    parser.add_argument("--models", nargs="+", default=None, help="registry names (default: all models)")
    parser.add_argument("--rates", nargs="+", type=int, choices=[16000, 8000], default=list(DEFAULT_RATES))
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row (default: 3 on CPU, 50 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 on CPU, 10 on CUDA)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: OMP_NUM_THREADS or all cores)"
    )
    parser.add_argument("--json", default=None, help="output file (default: runs/bench/bench-<device>.json)")
    parser.add_argument(
        "--cpu-amp",
        action="store_true",
        help="on a CPU, also time each model under bf16 autocast (TrainConfig.cpu_amp)",
    )
    parser.add_argument(
        "--eval-clips",
        type=int,
        default=None,
        help="clips scored in the devel-evaluation timing (default: 7000 on CUDA, 512 on CPU, extrapolated to 7000)",
    )
    parser.add_argument(
        "--feature-clips", type=int, default=DEFAULT_FEATURE_CLIPS, help="clips of the feature-extraction timing"
    )
    parser.add_argument("--no-features", action="store_true", help="skip the feature-extraction timing")
    parser.add_argument("--no-eval", action="store_true", help="skip the devel-evaluation timing")
    parser.add_argument(
        "--model-options",
        type=_json_object,
        default=None,
        help="JSON constructor options for every model, e.g. '{\"channels\": [8, 16, 32, 64]}'",
    )
    return parser


# --------------------------------------------------------------------------------------------
# bench scan
# --------------------------------------------------------------------------------------------
def _targets_line() -> str:
    parts = [
        f"{t['model'].upper()}-{t['sample_rate'] // 1000}k {t['precision'] or 'any precision'} "
        f">= {t['realtime_factor']:,}x on " + (f"{t['threads']} CPU cores" if t["device"] == "cpu" else "a GPU")
        for t in SCAN_TARGETS
    ]
    return "targets (default hop, full width): " + "; ".join(parts) + f" ({SCAN_REFERENCE})"


def _features_text(features: list[str] | None) -> str:
    """``features avx2 (no avx512f, ...)``: the kernels' CPU features present and missing."""
    if features is None:
        return "CPU features unknown"
    missing = [name for name in CPU_FEATURES if name not in features]
    return f"features {', '.join(features) or 'none'}" + (f" (no {', '.join(missing)})" if missing else "")


def _write_scan_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """The scan rows as CSV (the target as its text, model options as JSON)."""
    with atomic_write(path, "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(SCAN_ROW_KEYS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "target": row["target"]["text"] if row.get("target") else "",
                    "model_options": json.dumps(row["model_options"]),
                }
            )


def run_archive_from_args(args: argparse.Namespace) -> int:
    """``bench scan --archive N``: :func:`helpers.bench.archive.run_archive_benchmark`, printed and written."""
    from helpers.bench.archive import run_archive_benchmark

    threads = configure_threads(args.threads)
    print(
        f"CPU {device_name(torch.device('cpu'))}, {os.cpu_count()} cores, {threads} torch threads; model "
        f"{args.models[0]} at {args.rates[0]} Hz, untrained",
        flush=True,
    )
    slurm = (
        "auto" if not args.no_slurm and args.slurm_config is None else (None if args.no_slurm else args.slurm_config)
    )
    try:
        result = run_archive_benchmark(
            args.archive,
            args.models[0],
            args.rates[0],
            threads,
            args.compare_files,
            args.decode_workers,
            args.formats,
            slurm,
            args.model_options or None,
        )
    except (ValueError, RuntimeError) as exc:
        print(f"bench scan --archive: {exc}", file=sys.stderr)
        return 1
    result["arguments"] = dict(vars(args))
    path = Path(args.json) if args.json else Path("runs") / "bench" / f"bench-archive-{args.archive}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    with atomic_write(path.with_suffix(".csv"), "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=sorted({k for r in result["rows"] for k in r}), lineterminator="\n")
        writer.writeheader()
        writer.writerows(result["rows"])
    print(f"wrote {path} and {path.with_suffix('.csv')}")
    return 0


def run_scan_from_args(args: argparse.Namespace) -> int:
    """``bench scan`` on parsed arguments (:func:`build_scan_parser`): measure, print the table, the
    targets and whether each was met, write the JSON and the CSV beside it."""
    if args.archive:
        return run_archive_from_args(args)
    try:
        check_models([m for m in args.models if not is_head(m)] or ["cnn10"])
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        print(f"bench scan: {exc}", file=sys.stderr)
        return 2
    threads = configure_threads(args.threads)
    options = args.model_options or {}
    print(
        f"device {device} ({device_name(device)}); CPU {device_name(torch.device('cpu'))}, {os.cpu_count()} cores, "
        f"{_features_text(cpu_features())}; "
        f"torch {torch.__version__}, {threads} torch threads (OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')})" + (f"; model options {options}" if options else ""),
        flush=True,
    )
    short = (
        args.short_seconds
        if args.short_seconds is not None
        else short_seconds_for(args.batch_size, args.hop, args.rates)
    )
    print(
        f"recordings: {args.minutes:g} min and {short:g} s, 48 kHz mono 16-bit WAV (noise with tone "
        "bursts); each scanned in a fresh process; untrained checkpoints",
        flush=True,
    )
    print(_targets_line(), flush=True)
    print(format_scan_header(), flush=True)
    try:
        result = run_scan_benchmark(
            args.models,
            args.rates,
            args.precisions,
            args.minutes,
            args.hop,
            device,
            threads,
            args.batch_size,
            args.short_seconds,
            options,
            on_row=lambda row: print(format_scan_row(row), flush=True),
        )
    except (ValueError, RuntimeError) as exc:
        print(f"bench scan: {exc}", file=sys.stderr)
        return 1
    result["arguments"] = dict(vars(args))
    for line in result["notes"] + format_scan_targets(result):
        print(line)
    for row in result["rows"]:
        if row.get("rescore_seconds_per_hour") is not None:
            met = row["rescore_seconds_per_hour"] < RESCORE_TARGET_SECONDS_PER_HOUR
            print(
                f"{row['model']}: rescoring from stored embeddings took {row['rescore_seconds']:.2f} s for "
                f"{row['audio_minutes']:g} min of audio, {row['rescore_seconds_per_hour']:.2f} s per hour: target < "
                f"{RESCORE_TARGET_SECONDS_PER_HOUR:g} s per hour {'met' if met else 'NOT met'}"
            )
    if any(is_head(m) for m in args.models):
        print("BirdNET embedding throughput (48 kHz 3-s windows; first call left out):")
        result["embedding_throughput"] = embedding_throughput(threads=sorted({1, threads}))
        for row in result["embedding_throughput"]:
            print(
                f"  {row['threads']} thread(s), batch {row['batch']:>2}, {row['kind']:<15} {row['clips_per_s']:6.1f} "
                f"clips/s ({row['ms_per_clip']:.1f} ms a clip; first call {row['first_call_s']:.2f} s)"
            )
    path = Path(args.json) if args.json else default_scan_json_path(device)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    _write_scan_csv(path.with_suffix(".csv"), result["rows"])
    print(f"wrote {path} and {path.with_suffix('.csv')}")
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def build_scan_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m helpers bench scan``."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers bench scan",
        description="Real-time factor of scanning long recordings (helpers.recordings.scan) with an untrained "
        "checkpoint of each model at full width: a long and a short 48 kHz 16-bit WAV of noise "
        "with tone bursts, each scanned in a fresh process, per precision: wall seconds, x real "
        "time, windows/s and the peak resident memory of the short and the long scan, beside the "
        "targets. Writes the table as JSON and CSV.",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=["cnn10"],
        help="registry names or BirdNET heads (birdnet-logistic, ...; 48 kHz) (default: cnn10)",
    )
    parser.add_argument("--rates", nargs="+", type=int, choices=[16000, 8000], default=[8000])
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=["fp32", "bf16", "int8"],
        default=["fp32", "int8"],
        help="scoring precisions (bf16 only on CUDA or a CPU with native bf16; int8 on the CPU)",
    )
    parser.add_argument(
        "--minutes", type=_positive_float, default=DEFAULT_MINUTES, help="length of the long recording in minutes"
    )
    parser.add_argument(
        "--short-seconds",
        type=_positive_float,
        default=None,
        help=f"length of the short recording in seconds, whose peak memory is the baseline (default: "
        f"{SHORT_SECONDS:g}, or enough to fill one scoring batch: 100 s at the default hop "
        "and batch)",
    )
    parser.add_argument(
        "--hop",
        type=_positive_float,
        default=None,
        help="seconds between windows (default: scan's, half the model's clip)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: OMP_NUM_THREADS or all cores)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="windows per scoring batch (scan's default 64)")
    parser.add_argument(
        "--json",
        default=None,
        help="output file (default: runs/bench/bench-scan-<device>.json; the CSV goes beside it)",
    )
    parser.add_argument(
        "--model-options",
        type=_json_object,
        default=None,
        help="JSON constructor options for every model (a narrow model for a quick check; no target applies then)",
    )
    archive = parser.add_argument_group("archive of many files (helpers/bench/archive.py)")
    archive.add_argument(
        "--archive",
        type=int,
        default=None,
        metavar="N",
        help="build N one-minute 48 kHz recordings (a few broken) and measure the archive scan: "
        "decoding workers, the single-file rate, memory, the rerun, SLURM with two shards",
    )
    archive.add_argument(
        "--compare-files",
        type=int,
        default=20,
        metavar="K",
        help="recordings the decoding comparison scans (default 20)",
    )
    archive.add_argument("--decode-workers", type=int, nargs="+", default=[0, 1, 2], metavar="W")
    archive.add_argument("--formats", nargs="+", choices=["wav", "flac"], default=["wav", "flac"])
    archive.add_argument(
        "--slurm-config",
        default=None,
        metavar="FILE",
        help="SLURM options for the two-shard row (default: the local SLURM when one answers)",
    )
    archive.add_argument("--no-slurm", action="store_true", help="leave the SLURM row out")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m helpers bench ARGS``; ``argv`` are the ARGS (default: ``sys.argv[1:]``); ARGS that
    begin with ``scan`` run the scan benchmark. Exit status: 0, 1 when a scan failed, 2 for bad
    arguments (argparse exits with 2 itself)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["scan"]:
        return run_scan_from_args(build_scan_parser().parse_args(argv[1:]))
    return run_from_args(build_parser().parse_args(argv))
