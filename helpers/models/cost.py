"""Size and cost of a model: parameter counts and forward FLOPs (the bench's efficiency uses them)."""

from __future__ import annotations

import torch
from torch import nn

from helpers.models.networks import N_MELS


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters (only those with ``requires_grad`` unless ``trainable_only=False``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def forward_flops(model: nn.Module, time_frames: int, n_mels: int = N_MELS) -> float:
    """FLOPs (2 x multiply-accumulates) of the conv and linear layers for ONE clip of
    ``time_frames`` x ``n_mels`` log-mel frames, measured with forward hooks on a dummy input.

    BatchNorm, activations and pooling are left out (a few % at most). Example: CNN10 on a
    150 x 64 clip (16 kHz) -> about 3.85e9 FLOPs (1.92 GMAC).
    """
    macs = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:  # nn.Linear
            macs += output.numel() * module.in_features

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    modes = {m: m.training for m in model.modules()}
    parameter = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, time_frames, n_mels, device=parameter.device, dtype=parameter.dtype))
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return 2.0 * macs
