"""The device's state around a measurement: synchronisation, name, memory in use and at its peak,
and handing back memory that earlier measurements freed."""

from __future__ import annotations

import ctypes
import gc
import platform
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (from /proc/cpuinfo on Linux)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: CPU features that decide which kernels are fast: int8 wants VNNI, bf16 wants AVX512-BF16 or AMX.
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_features() -> list[str] | None:
    """Which of :data:`CPU_FEATURES` the CPU has (Linux /proc/cpuinfo flags); None where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [name for name in CPU_FEATURES if name in flags]
    except OSError:
        pass
    return None


def _proc_status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``); None where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_in_use(device: torch.device) -> int | None:
    """Bytes in use now: CUDA tensors allocated, or this process's resident set size."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    rss = _proc_status_kib("VmRSS")
    return None if rss is None else rss * 1024


def reset_memory_peak(device: torch.device) -> str | None:
    """Restart the peak-memory counter; returns how the peak is measured, None when it cannot be."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda max_memory_allocated during the timed steps - allocated before the model"
    try:
        # "5" resets the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0).
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return "peak RSS (VmHWM) during the timed steps - RSS before the model"


def memory_peak(device: torch.device) -> int | None:
    """Bytes at the peak since :func:`reset_memory_peak`."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    hwm = _proc_status_kib("VmHWM")
    return None if hwm is None else hwm * 1024


def release(device: torch.device) -> None:
    """Free what earlier measurements left: cached CUDA blocks; on CPU, heap memory that the C
    allocator keeps after ``free`` (glibc ``malloc_trim``), which would otherwise be reused
    unseen by the next row and hide part of its memory from the resident-set-size measure."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> ctypes.CDLL | None:
    """glibc, for ``malloc_trim``; None elsewhere (macOS, musl), where rows may then undercount memory."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - AttributeError where the symbol is missing
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()
