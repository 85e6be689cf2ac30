"""Throughput of the log-mel front end on this machine, in clips per second.

Stages, each timed separately (best of --repeats runs, after one warm-up run):
  read      read WAV + resample + pad (helpers.data.audio.load_clip), one thread, no log-mel
  logmel    LogMel on waveforms already in memory (CPU, and CUDA when available)
  pipeline  helpers.features.extract_logmels on a temporary folder of WAV files
            (read + resample + log-mel)
CPU configurations are written WORKERSxTHREADS: worker threads that each take blocks of clips,
times torch intra-op threads. On a shared machine the numbers move with the other processes'
load; the load average is printed first.

The clips are generated here: 16 kHz 16-bit mono WAVs of random length up to 2.99 s holding
tones and noise, like the challenge corpus. Run from the repository root:

    .venv/bin/python benchmarks/bench_features.py            # ~1 minute on 2 cores
    .venv/bin/python benchmarks/bench_features.py --clips 2048 --configs 2x1 1x2 1x1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import audio  # noqa: E402
from helpers.features.extract import available_cores, CPU_BLOCK_CLIPS, extract_logmels
from helpers.features.frontend import FeatureSettings, LogMel


def make_clips(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Write ``count`` random 16 kHz WAVs (0.5 to 2.99 s) into ``folder``; return their paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        n = int(rng.integers(audio.SAMPLE_RATE // 2, audio.CLIP_SAMPLES_16K + 1))
        t = np.arange(n) / audio.SAMPLE_RATE
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 4000) * t) + 0.05 * rng.standard_normal(n)
        path = folder / f"clip_{i:05d}.wav"
        audio.write_wav(path, wave, audio.SAMPLE_RATE)
        paths.append(path)
    return paths


def best_rate(fn, count: int, repeats: int) -> tuple[float, float]:
    """Throughput of ``fn()`` processing ``count`` clips: best of ``repeats`` after a warm-up.

    Returns ``(clips per wall-clock second, clips per CPU-second of this process)``. The second
    moves less when other processes share the machine; times the core count it bounds what an
    idle machine would reach.
    """
    fn()
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return count / best_wall, count / max(best_cpu, 1e-9)


def show(label: str, rates: tuple[float, float]) -> None:
    print(f"{label:<62} {rates[0]:7.0f} clips/s  ({rates[1]:6.0f} clips per CPU-s)")


def parse_config(text: str) -> tuple[int, int]:
    """'2x1' -> (2 worker threads, 1 torch thread)."""
    workers, threads = text.lower().split("x")
    return int(workers), int(threads)


def transform_rate(
    module: LogMel, waves: np.ndarray, device: str, workers: int, threads: int, repeats: int
) -> tuple[float, float]:
    """Clips/s of LogMel alone on waveforms in memory; on CPU ``workers`` threads share the blocks."""
    batch = torch.from_numpy(waves)
    block = CPU_BLOCK_CLIPS if device == "cpu" else 256

    def run_block(start: int) -> None:
        with torch.inference_mode():
            module(batch[start : start + block].to(device)).cpu()

    def transform() -> None:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run_block, range(0, len(batch), block)))
        if device == "cuda":
            torch.cuda.synchronize()

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return best_rate(transform, len(batch), repeats)
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    cores = available_cores()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=512, help="number of generated clips (default 512)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the best counts")
    parser.add_argument("--rates", type=int, nargs="+", default=list(audio.SUPPORTED_RATES))
    parser.add_argument("--precisions", nargs="+", default=["float64", "float32"])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=[f"{cores}x1", f"1x{cores}"],
        help="CPU configurations WORKERSxTORCHTHREADS to time (default: %(default)s); "
        f"{cores}x1 is what extract_logmels does by default here",
    )
    args = parser.parse_args()
    configs = [parse_config(c) for c in args.configs]

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {cores} CPU cores (load average {load:.1f} before start), "
        f"devices: {', '.join(devices)}, {args.clips} clips, best of {args.repeats}"
    )
    if torch.cuda.is_available():
        print(f"CUDA device: {torch.cuda.get_device_name(0)}")

    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        paths = make_clips(Path(tmp), args.clips)
        for rate in args.rates:
            length = audio.clip_samples(rate)
            print()
            show(
                f"{rate // 1000} kHz  read+resample+pad (1 thread)",
                best_rate(lambda: [audio.load_clip(p, rate, length) for p in paths], len(paths), args.repeats),
            )
            waves = np.stack([audio.load_clip(p, rate, length) for p in paths])
            for precision in args.precisions:
                settings = FeatureSettings(sample_rate=rate, fft_precision=precision)
                for device in devices:
                    module = LogMel.from_settings(settings).to(device)
                    for workers, threads in configs if device == "cpu" else [(1, torch.get_num_threads())]:
                        where = f"cpu {workers}x{threads}" if device == "cpu" else device
                        show(
                            f"{rate // 1000} kHz  log-mel {precision}, waveforms in memory ({where})",
                            transform_rate(module, waves, device, workers, threads, args.repeats),
                        )
                for device in devices:
                    for workers, threads in configs if device == "cpu" else [(None, None)]:
                        where = f"cpu {workers}x{threads}" if device == "cpu" else device

                        def pipeline() -> None:
                            extract_logmels(
                                paths, settings, device=device, progress=False, num_workers=workers, num_threads=threads
                            )

                        show(
                            f"{rate // 1000} kHz  pipeline {precision}, files -> log-mel ({where})",
                            best_rate(pipeline, len(paths), args.repeats),
                        )


if __name__ == "__main__":
    main()
