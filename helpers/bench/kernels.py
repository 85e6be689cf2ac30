"""The ceiling of an efficiency: the two reference kernels (a dense square matmul and a dense 3x3
convolution), each timed best-of-repeats on the device, and the faster of the two."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from helpers.bench.probes import sync
from helpers.core.hardware import resolve_device

#: Side of the square matmul, one of the two reference kernels of the ceiling.
MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}
#: The reference 3x3 convolution, the other kernel of the ceiling: (batch, channels, side) of its
#: input; C -> C channels, stride 1, same padding. CPU: 9.7 GFLOP, about one 2048^3 matmul.
CONV_SHAPE = {"cpu": (8, 256, 32), "cuda": (64, 512, 64)}
#: Timed repeats of each reference kernel (the best counts); on CUDA each repeat runs it 10 times.
MATMUL_REPEATS = {"cpu": 5, "cuda": 5}
REFERENCE_INNER = {"cpu": 1, "cuda": 10}


def _best_seconds(kernel: Callable[[], Any], device: torch.device, repeats: int, inner: int) -> float:
    """Seconds of one call of ``kernel``: one untimed call (library initialisation, kernel choice,
    GPU clocks), then the best of ``repeats`` timed repeats of ``inner`` calls each, the device
    synchronised before the clock starts and before it stops."""
    kernel()
    sync(device)
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(inner):
            kernel()
        sync(device)
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def _default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bf16", torch.float32: "fp32", torch.float16: "fp16"}.get(dtype, str(dtype))


def measure_matmul_tflops(
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    size: int | None = None,
    repeats: int | None = None,
) -> float:
    """Dense matmul throughput in TFLOP/s (``2 n^3`` FLOPs per ``(n, n) @ (n, n)``), best of ``repeats``.

    Defaults: fp32 2048^3 on CPU (~0.1-0.8 s per product on 2 cores); bf16 8192^3 on CUDA, 10
    products per timed repeat. One of the two kernels of :func:`measure_ceiling`.
    """
    device = resolve_device(device)
    dtype = dtype or _default_dtype(device)
    n = size or MATMUL_SIZE.get(device.type, MATMUL_SIZE["cpu"])
    repeats = repeats or MATMUL_REPEATS.get(device.type, MATMUL_REPEATS["cpu"])
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=gen, device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    seconds = _best_seconds(lambda: torch.matmul(a, b, out=out), device, repeats, REFERENCE_INNER.get(device.type, 1))
    a = b = out = None  # free the operands before the next measurement
    return 2.0 * n**3 / seconds / 1e12


def conv_flops(batch: int, channels: int, side: int) -> float:
    """FLOPs of the reference convolution: 3x3, stride 1, same padding, ``channels`` -> ``channels``
    on a ``(batch, channels, side, side)`` input; 2 per multiply-accumulate, as
    :func:`helpers.models.cost.forward_flops` counts the model's."""
    return 2.0 * batch * side * side * channels * channels * 9


def measure_conv_tflops(
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    shape: tuple[int, int, int] | None = None,
    channels_last: bool = True,
    repeats: int | None = None,
) -> float:
    """Dense 3x3 convolution throughput in TFLOP/s (:func:`conv_flops`), best of ``repeats``.

    ``shape``: ``(batch, channels, side)`` of the input (default :data:`CONV_SHAPE` of the
    device); ``channels_last``: input and weight in NHWC, as the training step's model and batches
    when ``TrainConfig.channels_last``. Forward only, without autograd, no bias. On CUDA 10
    convolutions per timed repeat. One of the two kernels of :func:`measure_ceiling`.
    """
    device = resolve_device(device)
    dtype = dtype or _default_dtype(device)
    batch, channels, side = shape or CONV_SHAPE.get(device.type, CONV_SHAPE["cpu"])
    repeats = repeats or MATMUL_REPEATS.get(device.type, MATMUL_REPEATS["cpu"])
    layout = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, channels, side, side, generator=gen, device=device, dtype=dtype)
    w = torch.randn(channels, channels, 3, 3, generator=gen, device=device, dtype=dtype) / (3 * channels**0.5)
    x, w = x.contiguous(memory_format=layout), w.contiguous(memory_format=layout)
    with torch.no_grad():
        seconds = _best_seconds(
            lambda: torch.nn.functional.conv2d(x, w, padding=1), device, repeats, REFERENCE_INNER.get(device.type, 1)
        )
    x = w = None  # free the operands before the next measurement
    return conv_flops(batch, channels, side) / seconds / 1e12


def pick_ceiling(kernels: dict[str, float]) -> tuple[str, float]:
    """The fastest of the measured reference kernels ``{name: TFLOP/s}``: ``(name, TFLOP/s)``."""
    if not kernels:
        raise ValueError("pick_ceiling: no reference kernel was measured.")
    name = max(kernels, key=lambda k: kernels[k])
    return name, kernels[name]


def measure_ceiling(
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    channels_last: bool = True,
    matmul_size: int | None = None,
    conv_shape: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """The device's practical peak in ``dtype``: both reference kernels, the faster one the ceiling.

    Returns the row fields ``matmul_tflops``, ``matmul`` (description), ``conv_tflops``, ``conv``,
    ``ceiling_tflops`` (the larger of the two) and ``ceiling`` (``"matmul"`` or ``"conv"``).
    Neither kernel alone is a ceiling: which library runs faster depends on the device, precision
    and layout (on an AVX-512 CPU, oneDNN's fp32 convolutions outran the fp32 matmul so far that
    a CNN10-16k step reached 132 % of the matmul alone).
    """
    device = resolve_device(device)
    dtype = dtype or _default_dtype(device)
    n = matmul_size or MATMUL_SIZE.get(device.type, MATMUL_SIZE["cpu"])
    shape = tuple(conv_shape or CONV_SHAPE.get(device.type, CONV_SHAPE["cpu"]))
    measured = {
        "matmul": measure_matmul_tflops(device, dtype=dtype, size=n),
        "conv": measure_conv_tflops(device, dtype=dtype, shape=shape, channels_last=channels_last),
    }
    name, tflops = pick_ceiling(measured)
    batch, channels, side = shape
    return {
        "matmul_tflops": measured["matmul"],
        "matmul": f"{_dtype_name(dtype)} {n}^3",
        "conv_tflops": measured["conv"],
        "conv": (
            f"{_dtype_name(dtype)} 3x3 {channels}->{channels} ch, {batch}x{side}x{side}, "
            f"{'channels-last' if channels_last else 'NCHW'}"
        ),
        "ceiling_tflops": tflops,
        "ceiling": name,
    }


def reference_description(device: torch.device) -> str:
    """The two reference kernels of the ceiling on ``device`` in words (precision: the row's)."""
    batch, channels, side = CONV_SHAPE.get(device.type, CONV_SHAPE["cpu"])
    return (
        f"the faster of a dense {MATMUL_SIZE.get(device.type, MATMUL_SIZE['cpu'])}^3 matmul and a dense "
        f"3x3 convolution {channels}->{channels} channels on {batch}x{side}x{side} (channels-last when the "
        f"step is), in the row's precision, best of {MATMUL_REPEATS.get(device.type, MATMUL_REPEATS['cpu'])} "
        "repeats each, measured just before each row's timed steps"
    )
