"""Training throughput of every model at batch 32 on the current device.

Measures the loop's own step (helpers.train.make_step_function: balanced sampler, first BN,
SpecAugment, MixUp, loss, Adam) on random log-mels held on the device, and prints one table:
s/step, clips/s, model GFLOP per step (3 x forward FLOPs x batch, counted from the layers), the
achieved GFLOP/s, and the same ratio to a dense matmul measured a moment before (fp32 on CPU).

    python benchmarks/bench_train.py [--models cnn10 ...] [--rates 16000 8000] [--steps 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from helpers.features import FeatureSettings
from helpers.hardware import configure_threads, resolve_device
from helpers.models import MODELS, create_model, forward_flops
from helpers.sampler import BalancedBatchSampler
from helpers.train import TrainConfig, make_step_function


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n ** 3 / ((time.perf_counter() - t) / repeats) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_model(name: str, sample_rate: int, device: torch.device, steps: int, warmup: int, n_classes: int = 5) -> dict:
    config = TrainConfig(model=name, sample_rate=sample_rate, device=str(device))
    settings = FeatureSettings(sample_rate=sample_rate)
    torch.manual_seed(0)
    model = create_model(name, n_classes=n_classes).to(device)
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator(device=device).manual_seed(0)
    step = make_step_function(model, optimizer, config, n_classes, device, gen)
    n_train = 2048
    features = torch.randn(n_train, settings.n_frames, settings.n_mels, device=device) * 20 - 50
    labels_np = np.random.default_rng(0).integers(0, n_classes, n_train)
    labels = torch.from_numpy(labels_np).to(device)
    sampler = BalancedBatchSampler(labels_np, config.batch_size * 2, seed=0, n_classes=n_classes)
    model.train()

    def one():
        idx = torch.from_numpy(sampler.next_batch()).to(device)
        return step(features[idx], labels[idx])

    for _ in range(warmup):
        one()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        loss = one()
    float(loss)
    _sync(device)
    s_per_step = (time.perf_counter() - t) / steps
    gflop_step = 3 * forward_flops(model, settings.n_frames) * config.batch_size / 1e9
    return {"model": name, "sample_rate": sample_rate, "device": str(device), "batch": config.batch_size,
            "s_per_step": round(s_per_step, 4), "clips_per_s": round(config.batch_size / s_per_step, 1),
            "gflop_per_step": round(gflop_step, 1), "achieved_gflops": round(gflop_step / s_per_step, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--rates", nargs="*", type=int, default=[16000, 8000])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    threads = configure_threads(args.threads)
    device = resolve_device(args.device)
    peak = matmul_gflops(device)
    print(f"device {device}, torch threads {threads}, dense matmul {peak:.0f} GFLOP/s "
          f"({'bf16' if device.type == 'cuda' else 'fp32'})")
    header = f"{'model':<12}{'rate':>6}{'s/step':>9}{'clips/s':>9}{'GFLOP/step':>12}{'GFLOP/s':>9}{'vs matmul':>10}"
    print(header)
    rows = []
    for name in args.models:
        for rate in args.rates:
            row = bench_model(name, rate, device, args.steps, args.warmup)
            row["matmul_gflops"] = round(peak, 1)
            row["efficiency"] = round(row["achieved_gflops"] / peak, 3)
            rows.append(row)
            print(f"{name:<12}{rate:>6}{row['s_per_step']:>9.3f}{row['clips_per_s']:>9.1f}{row['gflop_per_step']:>12.1f}"
                  f"{row['achieved_gflops']:>9.1f}{row['efficiency']:>10.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
