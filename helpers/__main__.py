"""Command line: ``python -m helpers <command>``.

Commands:
  validate DIR                         print the validation report; exit 1 when there are errors
  corpus synthetic|demo --out DIR      build a corpus in the challenge layout
  notebooks [--corpus demo] [--profile demo|paper] [...]
                                       execute the notebook collection with papermill into runs/
  predict CHECKPOINT AUDIO...          per-clip prediction table for any audio files
  bench [--models ...] [--rates ...]   training/feature/evaluation speed vs. the device's matmul peak
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_validate(args: argparse.Namespace) -> int:
    from helpers.data.corpus import validate_corpus

    report = validate_corpus(args.dir)
    print(report.format())
    return 0 if report.ok else 1


def _cmd_corpus(args: argparse.Namespace) -> int:
    if args.kind == "synthetic":
        from helpers.data.synthetic import make_synthetic_corpus

        path = make_synthetic_corpus(args.out, n_clips=args.n_clips, seed=args.seed, overwrite=args.overwrite)
    else:
        from helpers.data.demo import build_demo_corpus

        path = build_demo_corpus(args.out, cache_dir=args.cache_dir, mirror=args.mirror, overwrite=args.overwrite)
    from helpers.data.corpus import validate_corpus

    report = validate_corpus(path)
    print(f"wrote {path}")
    print(report.format(max_lines=20))
    return 0 if report.ok else 1


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from helpers.experiments.notebooks import NotebookError, run_collection

    data_dir = Path(args.data_dir).resolve()
    from helpers.experiments.grid import notebook_parameters

    params = {"corpus": args.corpus, "data_dir": str(data_dir), "cache_dir": str(data_dir / "cache"),
              **notebook_parameters(args.profile)}
    for item in args.param or []:
        key, _, value = item.partition("=")
        params[key] = json.loads(value) if value[:1] in "[{0123456789-tfn\"" and value not in ("",) else value
    try:
        run_collection(params, notebooks=args.only, log_output=args.log)
    except NotebookError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from helpers.evaluation.predict import predict_files

    table = predict_files(args.checkpoint, args.audio, device=args.device, precision=args.precision)
    if args.out:
        from helpers.evaluation.scoring import write_table

        write_table(table, args.out)
        print(f"wrote {len(table)} predictions to {args.out}")
    else:
        print(table.to_csv(index=False), end="")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_from_args

    return run_from_args(args)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"channels\": [8, 16, 32, 64]}}', got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="validate a corpus in the challenge layout")
    p.add_argument("dir")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("corpus", help="build a named corpus")
    p.add_argument("kind", choices=["synthetic", "demo"])
    p.add_argument("--out", required=True)
    p.add_argument("--n-clips", type=int, default=1000, help="synthetic: total clips over the three splits")
    p.add_argument("--seed", type=int, default=0, help="synthetic: generator seed")
    p.add_argument("--cache-dir", default="data/downloads", help="demo: where downloads are kept")
    p.add_argument("--mirror", default=None, help="demo: mirror folder (default: $PRIMATE_DEMO_MIRROR)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_corpus)

    p = sub.add_parser("notebooks", help="execute the notebook collection headless")
    p.add_argument("--corpus", default="demo", help="demo, synthetic or a corpus folder")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--profile", default="demo", choices=["demo", "paper"],
                   help="demo: minutes on a laptop CPU; paper: the paper's schedule and grid (needs a GPU)")
    p.add_argument("--only", nargs="*", help="notebook numbers or names to run (default: all)")
    p.add_argument("--param", action="append", help="extra NAME=VALUE passed to notebooks that define NAME")
    p.add_argument("--log", action="store_true", help="stream cell output")
    p.set_defaults(func=_cmd_notebooks)

    p = sub.add_parser("predict", help="score audio files with a trained checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("audio", nargs="+", help="audio files or folders")
    p.add_argument("--out", help="CSV to write (default: print)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="scoring precision (helpers/evaluation/inference.py): fp32 (default), bf16 (CUDA or CPUs with "
                        "native bf16), int8 (CPU, cnn6/cnn10, calibrated on the files scored)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("bench", help="time training, feature extraction and evaluation on this machine",
                       description="Training speed of each model against a dense matmul measured on the same "
                                   "device just before (see helpers/bench.py), plus feature-extraction and "
                                   "devel-evaluation speed. Prints one table and writes it as JSON.")
    p.add_argument("--models", nargs="+", default=None, help="registry names (default: all models)")
    p.add_argument("--rates", nargs="+", type=int, choices=[16000, 8000], default=[16000, 8000])
    p.add_argument("--steps", type=int, default=None, help="timed steps per row (default: 3 on CPU, 50 on CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 on CPU, 10 on CUDA)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: OMP_NUM_THREADS or all cores)")
    p.add_argument("--json", default=None, help="output file (default: runs/bench/bench-<device>.json)")
    p.add_argument("--cpu-amp", action="store_true",
                   help="on a CPU, also time each model under bf16 autocast (TrainConfig.cpu_amp)")
    p.add_argument("--eval-clips", type=int, default=None,
                   help="clips scored in the devel-evaluation timing (default: 7000 on CUDA, 512 on CPU, "
                        "extrapolated to 7000)")
    p.add_argument("--feature-clips", type=int, default=256, help="clips of the feature-extraction timing")
    p.add_argument("--no-features", action="store_true", help="skip the feature-extraction timing")
    p.add_argument("--no-eval", action="store_true", help="skip the devel-evaluation timing")
    p.add_argument("--model-options", type=_json_object, default=None,
                   help="JSON constructor options for every model, e.g. '{\"channels\": [8, 16, 32, 64]}'")
    p.set_defaults(func=_cmd_bench)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
