"""The ``bench`` command line: its own parser (``python -m helpers bench ARGS`` hands ARGS to
:func:`main`), and :func:`run_from_args`, which measures, prints the table and writes the JSON."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from helpers.bench.kernels import reference_description
from helpers.bench.measure import DEFAULT_FEATURE_CLIPS, DEFAULT_RATES
from helpers.bench.probes import device_name
from helpers.bench.run import check_models, run_benchmark
from helpers.bench.table import (ABOVE_CEILING_MARK, ceiling_warning, default_json_path, format_evaluation,
                                 format_feature_extraction, format_header, format_row)
from helpers.core.fileio import write_json_atomic
from helpers.core.hardware import configure_threads, resolve_device


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
                    "(see helpers/bench/), plus feature-extraction and devel-evaluation speed. Prints one "
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
