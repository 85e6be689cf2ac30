"""Fast scoring copies of a trained model: folded BatchNorm, bf16 autocast, or int8 on the CPU.

Scoring needs no batch statistics, so each BatchNorm that follows a convolution can be folded
into that convolution's weights and bias (one pass over the activations fewer). On top of that:

    precision  what runs                                   agrees with the unfolded fp32 model
    "fp32"     folded fp32 (the default everywhere)        to ~1e-6 in the scores (rounding only)
    "bf16"     folded model under bf16 autocast            to ~1e-2; CUDA, or CPUs with native bf16
                                                           (AVX512-BF16 / AMX), where it is ~2x fp32
    "int8"     static int8 quantisation (CPU, CNN6/CNN10)  to ~1e-2 after calibration (see below)

What each mode gains on a given CPU is measured in docs/benchmarks.md ("Scoring precisions").

int8 ("post-training static quantisation", ``torch.ao.quantization``, x86 backend): convolutions
are fused with their BatchNorm and ReLU, weights are quantised per output channel, and the
activation ranges are taken from ``calibration`` log-mels run through the model once (a few
hundred clips of the training data is the usual choice; they need no labels). ``bn0`` and the
classifier head stay in fp32. Only the plain CNNs (CNN6, CNN10) are supported: the residual
models would need quantised additions. int8 is a deviation from the trained model; compare its
scores with the fp32 ones on your devel set before relying on it (``agreement``).

:func:`prepare_for_inference` returns an :class:`InferenceModel`, which
:func:`helpers.evaluation.scoring.predict_scores`
takes like any model. The original model is never modified.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from helpers.models.registry import MODELS
from helpers.models.networks import BasicBlock, PlainCNN

PRECISIONS = ("fp32", "bf16", "int8")
#: Clips of calibration data used for int8 (more changes little and costs time).
INT8_CALIBRATION_CLIPS = 256
#: Batch of the calibration pass.
CALIBRATION_BATCH = 32
#: Training clips whose log-mels every checkpoint carries for int8 calibration (1.2 MB at 16 kHz in float16).
STORED_CALIBRATION_CLIPS = 64


def calibration_indices(labels: np.ndarray, n: int = STORED_CALIBRATION_CLIPS, seed: int = 0) -> np.ndarray:
    """Indices of up to ``n`` clips for int8 calibration, drawn without replacement and spread evenly
    over the classes of ``labels`` (class indices ``(n_clips,)``; a class with too few clips gives what
    it has, the rest is filled from the others), in a fixed order for a given ``seed``.

    The training engine stores these clips' log-mels in every checkpoint, so int8 scoring is
    calibrated on the model's own training data, never on the files being scored: a clip's int8
    score then does not depend on which other files are scored with it."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < min(n, len(labels)):
        for pool in pools:  # round-robin over classes: balanced as far as the classes allow
            if pool and len(picked) < n:
                picked.append(int(pool.pop()))
    return np.array(sorted(picked), dtype=np.int64)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 matrix products natively (AVX512-BF16 or AMX), so bf16
    autocast is faster than fp32 there; elsewhere it is emulated and slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def warn_if_bf16_is_emulated(what: str) -> None:
    """Warn (once per caller line) that ``what`` asks for bf16 on a CPU that only emulates it."""
    if not cpu_has_native_bf16():
        warnings.warn(
            f"{what} on a CPU without native bf16 (AVX512-BF16 or AMX): bf16 is emulated there and "
            "slower than fp32; use fp32 on this machine.",
            stacklevel=3,
        )


def int8_supported(model_name: str) -> bool:
    """Whether :func:`quantize_int8` handles the registry model ``model_name`` (the plain CNNs)."""
    return model_name in MODELS and issubclass(MODELS[model_name], PlainCNN)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm that directly follows a convolution
    folded into it (the BN becomes ``nn.Identity``). ``bn0`` and BNs after pooling stay.

    Covers convolution-BN pairs inside ``nn.Sequential`` containers (CNN6/CNN10, conv blocks,
    MobileNet's pointwise convs, projection shortcuts) and in :class:`~helpers.models.networks.BasicBlock`
    (ResNet22, WRN); fusion models are handled through their branches.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(conv, bn)
                    module[i + 1] = nn.Identity()
        elif isinstance(module, BasicBlock):
            for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2")):
                conv, bn = getattr(module, conv_name), getattr(module, bn_name)
                if isinstance(bn, nn.BatchNorm2d):
                    setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                    setattr(module, bn_name, nn.Identity())
    return folded


class _QuantizedPlainCNN(nn.Module):
    """A PlainCNN whose backbone runs in int8: fp32 ``bn0``, quantise, int8 backbone, dequantise,
    fp32 head. Built by :func:`quantize_int8`."""

    def __init__(self, model: PlainCNN) -> None:
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.model = model
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.model.normalize(x)
        return self.model.head(self.dequant(self.model.backbone(self.quant(z))))


def _quantized_engine() -> str:
    engines = torch.backends.quantized.supported_engines
    for name in ("x86", "fbgemm", "onednn"):
        if name in engines:
            return name
    raise RuntimeError(
        f"int8 inference needs an x86 quantised engine; this torch build has {engines}. Use precision='fp32' or 'bf16'."
    )


def quantize_int8(
    model: nn.Module, calibration: torch.Tensor | np.ndarray, max_clips: int = INT8_CALIBRATION_CLIPS
) -> nn.Module:
    """An int8 copy of a CNN6/CNN10 ``model`` (CPU), its activation ranges calibrated on up to
    ``max_clips`` log-mels ``calibration`` ``(n, time, mel)`` in dB. Raises ValueError for other
    models or empty calibration data."""
    import torch.ao.quantization as tq

    if not isinstance(model, PlainCNN):
        raise ValueError(
            f"int8 inference is implemented for the plain CNNs (cnn6, cnn10), not "
            f"{getattr(model, 'name', type(model).__name__)!r}; use precision='fp32' or 'bf16'."
        )
    x = calibration if torch.is_tensor(calibration) else torch.from_numpy(np.ascontiguousarray(calibration))
    if x.dim() != 3 or x.shape[0] == 0:
        raise ValueError(
            f"int8 calibration needs log-mels (n >= 1, time, mel), got shape {tuple(x.shape)}; "
            "pass a few hundred training clips."
        )
    x = x[:max_clips].float().cpu()
    engine = _quantized_engine()
    torch.backends.quantized.engine = engine
    wrapper = _QuantizedPlainCNN(copy.deepcopy(model).cpu().eval()).eval()
    for block in wrapper.model.backbone:
        if isinstance(block, nn.Sequential):  # conv_bn_relu: (conv, bn, relu) * n
            names = [name for name, _ in block.named_children()]
            tq.fuse_modules(block, [names[i : i + 3] for i in range(0, len(names), 3)], inplace=True)
    wrapper.qconfig = tq.get_default_qconfig(engine)
    wrapper.model.bn0.qconfig = None
    wrapper.model.head.qconfig = None
    with warnings.catch_warnings():
        # torch.ao.quantization's eager mode warns that it is in maintenance; it is what runs
        # int8 convolutions on x86 CPUs without torch.compile.
        warnings.simplefilter("ignore")
        tq.prepare(wrapper, inplace=True)
        with torch.inference_mode():
            for start in range(0, x.shape[0], CALIBRATION_BATCH):
                wrapper(x[start : start + CALIBRATION_BATCH])
        tq.convert(wrapper, inplace=True)
    return wrapper.eval()


class InferenceModel(nn.Module):
    """A scoring-only copy of a model: ``(batch, time, mel)`` log-mels in dB -> ``(logits,
    embedding)`` in float32, like the model it was made from. Attributes ``precision`` and
    ``device``. Made by :func:`prepare_for_inference`."""

    def __init__(self, model: nn.Module, precision: str, device: torch.device, channels_last: bool) -> None:
        super().__init__()
        self.model = model
        self.precision = precision
        self.device = device
        self.channels_last = channels_last

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=True)
        if self.precision == "int8":
            logits, embedding = self.model(x.float())
            return logits.float(), embedding.float()
        z = self.model.normalize(x)
        if self.channels_last and z.dim() == 4:  # embedding heads take (batch, dim)
            z = z.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            logits, embedding = self.model.forward_normalized(z)
        return logits.float(), embedding.float()


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def prepare_for_inference(
    model: nn.Module,
    precision: str = "fp32",
    calibration: torch.Tensor | np.ndarray | None = None,
    channels_last: bool = True,
) -> InferenceModel:
    """A fast scoring copy of ``model`` (see the module docstring); ``model`` is left untouched.

    ``precision``: ``"fp32"``, ``"bf16"`` or ``"int8"``. int8 needs ``calibration`` log-mels and
    a CPU model; bf16 on a CPU without native bf16 works but is slower than fp32 (a warning says
    so). ``channels_last``: NHWC layout for the convolutions (faster with oneDNN and cuDNN).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    device = _model_device(model)
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError(
                f"int8 inference runs on the CPU; this model is on {device}. Use "
                "precision='bf16' on a GPU, or move the model to the CPU."
            )
        if calibration is None:
            raise ValueError(
                "precision='int8' needs calibration log-mels (n, time, mel), e.g. a few hundred "
                "training clips, to set the activation ranges."
            )
        return InferenceModel(quantize_int8(model, calibration), "int8", device, channels_last=False)
    if precision == "bf16" and device.type == "cpu":
        warn_if_bf16_is_emulated("precision='bf16'")
    folded = fold_batchnorm(model)
    if channels_last:
        folded = folded.to(memory_format=torch.channels_last)
    return InferenceModel(folded, precision, device, channels_last)


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """How far two score matrices ``(n, classes)`` of the same clips differ: largest absolute
    score difference and the fraction of clips whose top class is the same."""
    reference, other = np.asarray(reference), np.asarray(other)
    if reference.shape != other.shape or reference.ndim != 2:
        raise ValueError(
            f"agreement needs two (n, classes) score arrays of one shape, got {reference.shape} and {other.shape}"
        )
    if reference.shape[0] == 0:
        return {"max_abs_diff": 0.0, "top1_agreement": 1.0, "n": 0}
    return {
        "max_abs_diff": float(np.abs(reference - other).max()),
        "top1_agreement": float((reference.argmax(1) == other.argmax(1)).mean()),
        "n": int(reference.shape[0]),
    }
