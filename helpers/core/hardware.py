"""Device choice and thread settings, made explicit rather than left to library defaults.

On 2-core machines a BLAS or OpenMP pool larger than the cores, or two processes each using all
cores, can collapse throughput about tenfold (docs/reference.md §7), so every entry point calls
:func:`configure_threads` once.
"""

from __future__ import annotations

import os

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but CUDA is not available; use 'auto' or 'cpu'.")
    return dev


def configure_threads(n_threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``n_threads`` (default: ``OMP_NUM_THREADS`` or the CPU count).

    Returns the number set. Inter-op threads are kept at 1: our work is one large op at a time.
    """
    if n_threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        n_threads = int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)
    torch.set_num_threads(n_threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # can only be set once, before any parallel work; keep what is there
    return n_threads
