"""Command line: ``python -m helpers <command>``.

Commands:
  validate DIR                         print the validation report; exit 1 when there are errors
  corpus synthetic|demo --out DIR      build a corpus in the challenge layout
  corpus annotations --annotations DIR|FILE --audio DIR --out DIR
                                       cut a corpus from annotated long recordings
  annotations TABLES... [--audio DIR]  read and check Raven / Audacity / CSV annotations
  notebooks [--corpus demo] [--profile demo|paper] [--executor local|slurm --slurm-config FILE] [...]
                                       execute the notebook collection with papermill into
                                       runs/notebooks/<corpus>-<profile>/, saying where it is;
                                       the grid notebooks train locally or as SLURM jobs
  predict CHECKPOINT AUDIO...          per-clip prediction table for any audio files
  scan CHECKPOINT AUDIO... --out DIR   scan long recordings: window scores, detections as Raven /
                                       Audacity / CSV tables, resumable (helpers/recordings/scan.py)
  rescore CHECKPOINT SCAN_DIR [--out DIR]
                                       rescore a scan made with a head on a pretrained backbone with
                                       another head, from its stored window embeddings (no audio read)
  bench [--models ...] [--rates ...]   training/feature/evaluation speed vs. the device's ceiling
                                       (developer tool, helpers/bench/; options: bench --help)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _cmd_validate(args: argparse.Namespace) -> int:
    from helpers.data.corpus import validate_corpus

    report = validate_corpus(args.dir, clip_seconds=args.clip_seconds)
    print(report.format())
    return 0 if report.ok else 1


def _cmd_corpus(args: argparse.Namespace) -> int:
    if args.kind == "synthetic":
        from helpers.data.corpora.synthetic import make_synthetic_corpus

        path = make_synthetic_corpus(args.out, n_clips=args.n_clips, seed=args.seed, overwrite=args.overwrite)
    elif args.kind == "annotations":
        path = _corpus_from_annotations(args)
        if path is None:
            return 1
    else:
        from helpers.data.corpora.demo import build_demo_corpus

        path = build_demo_corpus(args.out, cache_dir=args.cache_dir, mirror=args.mirror, overwrite=args.overwrite)
    from helpers.data.corpus import validate_corpus

    report = validate_corpus(path)
    print(f"wrote {path}")
    print(report.format(max_lines=20))
    return 0 if report.ok else 1


def _read_checked_annotations(args: argparse.Namespace, exclude: bool):
    """Read and validate the annotation tables named on the command line; print notes and problems."""
    from helpers.data.annotations import read_annotations, validate_annotations

    annotations = read_annotations(args.annotations, audio_root=args.audio, label_column=args.label_column)
    for note in annotations.notes:
        print(note)
    report = validate_annotations(annotations, on_error="exclude" if exclude else "report")
    print(report.format(max_lines=50))
    return annotations, report


def _corpus_from_annotations(args: argparse.Namespace) -> Path | None:
    """``corpus annotations``: validate the annotations (faulty rows excluded and listed), then cut."""
    from helpers.data.cut import cut_corpus

    if not args.annotations or not args.audio:
        raise SystemExit("corpus annotations needs --annotations DIR|FILE and --audio DIR")
    _, report = _read_checked_annotations(args, exclude=True)
    if report.table.empty:
        print("no usable annotation left; fix the problems above and run again", file=sys.stderr)
        return None
    summary = cut_corpus(
        report.table,
        args.out,
        clip_seconds=args.clip_seconds,
        sample_rate=args.sample_rate,
        margin_seconds=args.margin,
        background_per_call=args.background_per_call,
        group_by=args.group_by,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=True,
    )
    print(summary.format())
    return summary.path


def _cmd_annotations(args: argparse.Namespace) -> int:
    annotations, report = _read_checked_annotations(args, exclude=args.exclude)
    print(annotations.counts().to_string())
    if args.out:
        report.table.drop(columns="extra").to_csv(args.out, index=False)
        print(f"wrote {len(report.table)} annotations to {args.out}")
    return 0 if (report.ok or args.exclude) else 1


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from helpers.experiments.notebooks import NotebookError, run_collection

    data_dir = Path(args.data_dir).resolve()
    from helpers.experiments.grid import profile_parameters

    extra = dict(args.param or [])
    # 03_train's run is Table 2's first run of its model (04 reuses it; 06 and 09 read it)
    params = {
        "corpus": args.corpus,
        "data_dir": str(data_dir),
        "cache_dir": str(data_dir / "cache"),
        **profile_parameters(args.profile, corpus=args.corpus, runs_root=extra.get("runs_root", "../runs/grid")),
        "executor": args.executor,
    }
    if args.slurm_config is not None:
        if args.executor != "slurm":
            print("--slurm-config needs --executor slurm", file=sys.stderr)
            return 2
        from helpers.core.slurm import read_slurm_options

        try:
            read_slurm_options(args.slurm_config)  # a wrong key fails now, not after the first notebooks
        except (OSError, ValueError) as exc:
            print(f"--slurm-config: {exc}", file=sys.stderr)
            return 2
        params["slurm_config"] = str(Path(args.slurm_config).resolve())  # the notebooks run in notebooks/
    params.update(args.param or [])
    try:
        run_collection(
            params,
            notebooks=args.only,
            log_output=args.log,
            output_dir=args.out,
            progress=not args.quiet,
            progress_every=args.progress_every,
        )
    except NotebookError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from helpers.evaluation.predict import predict_files

    from helpers.data.audio import AudioError

    errors: list[dict] = []
    try:
        table = predict_files(
            args.checkpoint,
            args.audio,
            device=args.device,
            precision=args.precision,
            errors=errors,
            calibration=args.calibration,
        )
    except (AudioError, FileNotFoundError, ValueError) as exc:
        print(f"predict: {exc}", file=sys.stderr)
        return 1
    for error in errors:
        print(f"predict: not scored: {error['path']}: {error['error']}", file=sys.stderr)
    for row in table[table["note"] != ""].itertuples():
        print(f"predict: note: {row.path}: {row.note}", file=sys.stderr)
    if args.out:
        from helpers.evaluation.scoring import write_table

        write_table(table, args.out)
        print(f"wrote {len(table)} predictions to {args.out}")
    else:
        print(table.to_csv(index=False), end="")
    return 0


def _parse_threshold(text: str) -> float | dict[str, float]:
    """``0.6`` or ``gibbon_male=0.7,great_argus=0.5`` (per class)."""
    try:
        if "=" not in text:
            return float(text)
        return {k.strip(): float(v) for k, v in (item.split("=", 1) for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--threshold {text!r}: give a number (0.5) or CLASS=NUMBER,... (gibbon_male=0.7,great_argus=0.5)"
        ) from None


def _cmd_scan(args: argparse.Namespace) -> int:
    from helpers.data.audio import AudioError
    from helpers.recordings.scan import scan

    channel = args.channel if args.channel == "mix" else int(args.channel)
    try:
        if not args.audio and not args.file_list:
            raise ValueError("give audio files or folders, or --file-list FILE")
        result = scan(
            args.checkpoint,
            args.audio,
            args.out,
            hop=args.hop,
            precision=args.precision,
            channel=channel,
            threshold=args.threshold,
            merge_gap=args.merge_gap,
            device=args.device,
            batch_size=args.batch_size,
            calibration=args.calibration,
            num_threads=args.threads,
            progress=not args.quiet,
            detection_score=args.detection_score,
            thresholds_from=args.thresholds_from,
            file_list=args.file_list,
            root=args.root,
            fingerprint=args.fingerprint,
            decode_workers=args.decode_workers,
            executor=args.executor,
            slurm=args.slurm_config,
            hours_per_job=args.hours_per_job,
            layout=args.layout,
        )
    except (AudioError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"scan: {exc}", file=sys.stderr)
        return 1
    print(result.format())
    return 0 if len(result.recordings) else 1


def _cmd_rescore(args: argparse.Namespace) -> int:
    from helpers.recordings.scan import rescore

    try:
        result = rescore(
            args.checkpoint,
            args.scan_dir,
            args.out,
            threshold=args.threshold,
            merge_gap=args.merge_gap,
            detection_score=args.detection_score,
            progress=not args.quiet,
            thresholds_from=args.thresholds_from,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"rescore: {exc}", file=sys.stderr)
        return 1
    print(result.format())
    print(f"rescored {len(result.recordings)} recording(s) from stored embeddings in {result.wall_seconds:.2f} s")
    return 0 if len(result.recordings) else 1


def parse_param(text: str) -> tuple[str, Any]:
    """``--param NAME=VALUE`` as ``(NAME, value)``: VALUE is the JSON value it parses as (``3``,
    ``true``, ``null``, ``"3"``, ``[1, 2]``, ``{"a": 1}``), anything else the plain string
    (``fusion``, ``b=c``: only the first ``=`` splits). argparse error without a ``=`` or a NAME."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE, got {text!r}; write e.g. --param model=fusion or --param iterations=200 "
            "(VALUE is read as JSON when it parses as JSON, else as a plain string)"
        )
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


#: ``python -m helpers --help``'s line for ``bench``, a developer tool (helpers/bench/) that owns
#: its parser: ``python -m helpers bench ARGS`` hands ARGS to ``helpers.bench.main``, imported only then.
BENCH_HELP = "time training, feature extraction and evaluation on this machine (developer tool; bench --help)"


def _run_bench(args: list[str]) -> int:
    from helpers.bench import main as bench_main

    return bench_main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="validate a corpus in the challenge layout")
    p.add_argument("dir")
    p.add_argument(
        "--clip-seconds",
        type=float,
        default=47_860 / 16_000,
        help="clip length the features will use (TrainConfig clip_seconds); longer files are reported",
    )
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("corpus", help="build a named corpus, or cut one from annotated recordings")
    p.add_argument("kind", choices=["synthetic", "demo", "annotations"])
    p.add_argument("--out", required=True)
    p.add_argument("--annotations", nargs="+", help="annotations: Raven / Audacity / CSV tables or folders")
    p.add_argument("--audio", help="annotations: folder holding the recordings (searched recursively)")
    p.add_argument("--label-column", default=None, help="annotations: label column (default: Species, Class, ...)")
    p.add_argument("--clip-seconds", type=float, default=47_860 / 16_000, help="annotations: clip length (s)")
    p.add_argument("--sample-rate", type=int, default=16_000, help="annotations: sample rate of the clips (Hz)")
    p.add_argument("--margin", type=float, default=1.0, help="annotations: background keeps this far from calls (s)")
    p.add_argument(
        "--background-per-call",
        type=float,
        default=1.0,
        help="annotations: background clips per call clip in each split",
    )
    p.add_argument("--group-by", default=None, help="annotations: split by this column instead of by recording")
    p.add_argument("--n-clips", type=int, default=1000, help="synthetic: total clips over the three splits")
    p.add_argument("--seed", type=int, default=0, help="synthetic: generator seed")
    p.add_argument("--cache-dir", default="data/downloads", help="demo: where downloads are kept")
    p.add_argument("--mirror", default=None, help="demo: mirror folder (default: $PRIMATE_DEMO_MIRROR)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_corpus)

    p = sub.add_parser("annotations", help="read and check Raven / Audacity / CSV annotation tables")
    p.add_argument("annotations", nargs="+", help="tables or folders of tables")
    p.add_argument("--audio", help="folder holding the recordings (searched recursively)")
    p.add_argument("--label-column", default=None)
    p.add_argument("--exclude", action="store_true", help="drop faulty rows (listed) instead of failing")
    p.add_argument("--out", default=None, help="write the checked table as CSV")
    p.set_defaults(func=_cmd_annotations)

    p = sub.add_parser("notebooks", help="execute the notebook collection headless")
    p.add_argument("--corpus", default="demo", help="demo, synthetic or a corpus folder")
    p.add_argument("--data-dir", default="data")
    p.add_argument(
        "--profile",
        default="demo",
        choices=["demo", "paper"],
        help="demo: minutes on a laptop CPU; paper: the paper's schedule and grid (needs a GPU)",
    )
    p.add_argument(
        "--executor",
        default="local",
        choices=["local", "slurm"],
        help="where the grid notebooks (04, 05, 07) train: local processes (default) or one SLURM job "
        "per run (README: Running on a cluster)",
    )
    p.add_argument(
        "--slurm-config",
        default=None,
        metavar="FILE",
        help="with --executor slurm: JSON or YAML file of SLURM options (partition, gpus_per_node, "
        "cpus_per_task, mem_gb, timeout_min, ...; keys in helpers/experiments/cluster.py)",
    )
    p.add_argument("--only", nargs="*", help="notebook numbers or names to run (default: all)")
    p.add_argument(
        "--param",
        action="append",
        type=parse_param,
        metavar="NAME=VALUE",
        help="extra parameter for the notebooks that define NAME; VALUE is read as JSON when it "
        "parses as JSON (3, true, null, '\"3\"', '{\"a\": 1}'), else as a plain string "
        "(model=fusion); repeatable",
    )
    p.add_argument("--log", action="store_true", help="stream cell output")
    p.add_argument(
        "--out", default=None, help="folder for the executed copies (default: runs/notebooks/<corpus>-<profile>/)"
    )
    p.add_argument("--quiet", action="store_true", help="only one line per notebook: no cell or progress-bar lines")
    p.add_argument(
        "--progress-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="least seconds between two terminal lines of one progress bar (default 10)",
    )
    p.set_defaults(func=_cmd_notebooks)

    p = sub.add_parser("predict", help="score audio files with a trained checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("audio", nargs="+", help="audio files or folders")
    p.add_argument("--out", help="CSV to write (default: print)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "int8"),
        default="fp32",
        help="scoring precision (helpers/evaluation/inference.py): fp32 (default), bf16 (CUDA or CPUs with "
        "native bf16), int8 (CPU, cnn6/cnn10, calibrated on the training clips stored in the checkpoint)",
    )
    p.add_argument(
        "--calibration",
        nargs="+",
        default=None,
        metavar="AUDIO",
        help="int8: calibrate on these audio files or folders (training clips) instead of those stored "
        "in the checkpoint (needed for checkpoints written before they were stored)",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("scan", help="scan long recordings: window scores and detections (Raven, Audacity, CSV)")
    p.add_argument("checkpoint")
    p.add_argument("audio", nargs="*", help="audio files or folders (walked recursively)")
    p.add_argument("--out", required=True, help="output folder (mirrors the recordings' relative paths)")
    p.add_argument(
        "--file-list",
        default=None,
        metavar="FILE",
        help="an archive listed once: a text file of paths (one per line) or a CSV with a path column",
    )
    p.add_argument(
        "--root",
        default=None,
        metavar="DIR",
        help="what the file list's relative paths are relative to (default: the list's folder)",
    )
    p.add_argument(
        "--decode-workers",
        type=int,
        default=None,
        metavar="N",
        help="threads that decode and resample ahead of the model (0: in turn with it; default: 1 "
        "on two cores or more)",
    )
    p.add_argument(
        "--executor",
        choices=("local", "slurm"),
        default="local",
        help="slurm: one SLURM job per shard of recordings (helpers/recordings/scan_slurm.py)",
    )
    p.add_argument(
        "--slurm-config",
        default=None,
        metavar="FILE",
        help="the SLURM options file the training grids use (JSON or YAML; helpers/experiments/cluster.py)",
    )
    p.add_argument(
        "--hours-per-job", type=float, default=1.0, metavar="H", help="slurm: hours of audio per shard job (default 1)"
    )
    p.add_argument(
        "--layout",
        choices=("files", "packed"),
        default=None,
        help="files: per-recording outputs (default); packed: packs of many recordings, for archives "
        "on cluster file systems (helpers/recordings/scan_store.py); a folder with results keeps its own",
    )
    p.add_argument(
        "--fingerprint",
        choices=("stat", "content"),
        default="stat",
        help="how a rerun knows a recording is unchanged: stat (size and modification time, no audio "
        "read; default) or content (SHA-256 of every file, read on every rerun)",
    )
    p.add_argument("--hop", type=float, default=None, help="seconds between windows (default: half a window)")
    p.add_argument(
        "--threshold",
        type=_parse_threshold,
        default=0.5,
        help="detection threshold: one score (0.5) or per class (gibbon_male=0.7,great_argus=0.5)",
    )
    p.add_argument("--merge-gap", type=float, default=0.0, help="merge detections of a class closer than this (s)")
    p.add_argument(
        "--detection-score",
        choices=("auto", "class", "call"),
        default="auto",
        help="what the threshold applies to: 'class' (the best call class's score), 'call' "
        "(1 - the background score, a call head's P(call)); auto: 'call' for a model with a call head",
    )
    p.add_argument(
        "--thresholds-from",
        default=None,
        metavar="CALIBRATION",
        help="per-class thresholds calibrated from reviewed detections (a calibration JSON); "
        "--threshold stays the threshold of classes it could not calibrate",
    )
    p.add_argument("--channel", default="mix", help="'mix' (average the channels) or a 0-based channel index")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32")
    p.add_argument(
        "--calibration",
        nargs="+",
        default=None,
        metavar="AUDIO",
        help="int8: calibrate on these training clips instead of those stored in the checkpoint",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_scan)

    p = sub.add_parser("rescore", help="rescore a backbone scan with another head, from its stored embeddings")
    p.add_argument("checkpoint", help="a head trained on the same backbone (RUN/checkpoints/*.pt)")
    p.add_argument("scan_dir", help="a folder written by scan with a head on a pretrained backbone")
    p.add_argument("--out", default=None, help="output folder (default: rewrite SCAN_DIR)")
    p.add_argument(
        "--threshold",
        type=_parse_threshold,
        default=0.5,
        help="detection threshold: one score (0.5) or per class (gibbon_male=0.7,great_argus=0.5)",
    )
    p.add_argument("--merge-gap", type=float, default=0.0, help="merge detections of a class closer than this (s)")
    p.add_argument("--detection-score", choices=("auto", "class", "call"), default="auto")
    p.add_argument(
        "--thresholds-from",
        default=None,
        metavar="CALIBRATION",
        help="per-class thresholds calibrated from reviewed detections (a calibration JSON); "
        "--threshold stays the threshold of classes it could not calibrate",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_rescore)

    # Listed for --help only: `bench ARGS` goes to helpers.bench's own parser before this one parses.
    sub.add_parser("bench", help=BENCH_HELP, add_help=False)

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return _run_bench(argv[1:])
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
