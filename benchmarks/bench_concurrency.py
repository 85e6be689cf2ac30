"""Total training throughput of several runs at once, as a grid runner would launch them.

For each level of concurrency C (default 1, 2, 4) this trains C real runs side by side with
:func:`helpers.experiments.scheduler.run_trainings` (one process each; on a GPU all on GPU 0 with
``max_per_gpu=C``, on CPU ``cpu_workers=C`` with ``cores // C`` threads each unless ``--threads``)
on a small synthetic corpus generated in a temporary folder, and prints one table:

* ``wall s``: wall-clock time of the whole call, process start-up and final evaluation included;
* ``steps/s total``: training steps per second summed over the runs, each run's rate taken from
  its own training-loop time (``record.json`` timings). The runs start together and do the same
  work, so their loops overlap and the sum is the grid's throughput;
* ``steps/s wall``: all steps over the wall time (a lower bound: start-up counts as idle);
* ``speed-up``: ``steps/s total`` over that of concurrency 1 (or of the first level given).

On a CPU more runs than cores (4 runs of 1 thread on 2 cores) oversubscribe the machine;
``run_trainings`` warns and the benchmark goes on, so the effect can be measured. On a machine
shared with other jobs, read the CPU figures with care: a 2-thread run under outside load can
collapse (docs/reference.md §7), and more processes also take a larger share of the CPU from the
other jobs, so part of a CPU "speed-up" is taken from them.

    OMP_NUM_THREADS=2 python benchmarks/bench_concurrency.py [--model cnn10]
        [--model-options '{"channels": [16, 32, 64, 128]}'] [--sample-rate 8000] [--iterations 20]
        [--concurrency 1 2 4] [--runs N] [--threads T] [--device auto] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from helpers.data.corpus import read_corpus
from helpers.features.frontend import FeatureSettings
from helpers.features.extract import available_cores
from helpers.features.cache import load_features
from helpers.core.hardware import resolve_device
from helpers.models.cost import count_parameters
from helpers.models.registry import create_model
from helpers.experiments.scheduler import run_trainings
from helpers.data.corpora.synthetic import make_synthetic_corpus
from helpers.training.config import TrainConfig


def level_configs(args: argparse.Namespace, level: int, n_runs: int, work: Path, device: str) -> list[TrainConfig]:
    """``n_runs`` configs that differ only in seed, in their own output folder for this level."""
    return [
        TrainConfig(
            corpus="bench",
            model=args.model,
            model_options=args.model_options,
            sample_rate=args.sample_rate,
            iterations=args.iterations,
            # one evaluation at the end: the loop time is training, not evaluation
            eval_every=args.iterations,
            ema_start=args.iterations,
            checkpoint_every=args.iterations,
            log_every=args.iterations,
            seed=100 * level + i,
            device=device,
            cache_dir=str(work / "cache"),
            out_dir=str(work / f"runs-c{level}"),
        )
        for i in range(n_runs)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn10")
    parser.add_argument(
        "--model-options",
        type=json.loads,
        default={},
        help="constructor options as JSON, e.g. '{\"channels\": [16, 32, 64, 128]}'",
    )
    parser.add_argument("--sample-rate", type=int, default=8000, choices=[8000, 16000])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--runs", type=int, default=None, help="runs per level (default: as many as the concurrency)")
    parser.add_argument("--threads", type=int, default=None, help="threads per run (default: cores // concurrency)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--n-clips", type=int, default=60, help="clips in the synthetic corpus (all splits)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (corpus and run folders)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    # All runs on one GPU: the question is how many small runs one GPU holds.
    run_device = "cuda:0" if device.type == "cuda" else "cpu"
    cores = available_cores()
    n_params = count_parameters(create_model(args.model, n_classes=5, **args.model_options))
    work = Path(tempfile.mkdtemp(prefix="bench_concurrency-"))
    try:
        root = make_synthetic_corpus(
            work / "corpus", n_clips=args.n_clips, seed=0, hidden_test_labels=False, class_proportions=[1, 1, 1, 1, 1]
        )
        corpus = read_corpus(root)
        # Fill the feature cache now, so that no level pays for the extraction.
        for split in corpus.splits:
            load_features(
                corpus.table,
                split,
                FeatureSettings(sample_rate=args.sample_rate),
                work / "cache",
                corpus.name,
                progress=False,
            )
        gpu = f", GPU {torch.cuda.get_device_name(0)}" if device.type == "cuda" else ""
        print(
            f"{args.model} {json.dumps(args.model_options) if args.model_options else ''} ({n_params:,} parameters), "
            f"{args.sample_rate} Hz, batch 32, {args.iterations} iterations per run; device {device}{gpu}; "
            f"{cores} cores; corpus {args.n_clips} synthetic clips",
            flush=True,
        )
        rows = []
        for level in args.concurrency:
            n_runs = args.runs or level
            configs = level_configs(args, level, n_runs, work, run_device)
            started = time.perf_counter()
            outcomes = run_trainings(
                configs,
                max_per_gpu=level,
                cpu_workers=level,
                threads_per_run=args.threads,
                corpus_root=str(root),
                progress=False,
            )
            wall = time.perf_counter() - started
            failed = [o for o in outcomes if o.status != "finished"]
            if failed:
                raise SystemExit(f"{len(failed)} run(s) at concurrency {level} did not finish:\n{failed[0].error}")
            loops = [json.loads((o.run_dir / "record.json").read_text())["timings"]["training_loop"] for o in outcomes]
            rows.append(
                {
                    "concurrency": level,
                    "runs": n_runs,
                    "threads_per_run": outcomes[0].config.num_threads,
                    "wall_s": round(wall, 1),
                    "steps_per_s_total": round(sum(args.iterations / s for s in loops), 3),
                    "steps_per_s_wall": round(n_runs * args.iterations / wall, 3),
                    "loop_s_per_run": [round(s, 1) for s in loops],
                }
            )
            print(f"  concurrency {level}: {n_runs} run(s) done in {wall:.1f} s", flush=True)
        base = rows[0]["steps_per_s_total"]
        for row in rows:
            row["speed_up"] = round(row["steps_per_s_total"] / base, 2)
        print(
            f"{'concurrency':>11}{'runs':>6}{'threads/run':>13}{'wall s':>9}{'steps/s total':>15}"
            f"{'steps/s wall':>14}{'speed-up':>10}"
        )
        for row in rows:
            print(
                f"{row['concurrency']:>11}{row['runs']:>6}{row['threads_per_run']:>13}{row['wall_s']:>9.1f}"
                f"{row['steps_per_s_total']:>15.3f}{row['steps_per_s_wall']:>14.3f}{row['speed_up']:>10.2f}"
            )
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
