"""Audio windows -> what a checkpoint's model reads: log-mels, or a pretrained backbone's embeddings.

A checkpoint's ``feature_settings`` says which: :func:`settings_from_record` rebuilds
:class:`~helpers.features.frontend.FeatureSettings` or, when the record names a ``backbone``,
:class:`~helpers.features.birdnet.EmbeddingSettings`; :func:`front_end` gives the callable that
``predict`` and ``scan`` apply to batches of windows ``(n, clip_samples)`` at the settings' rate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from helpers.features.birdnet import DEFAULT_BATCH, EmbeddingSettings, is_embedding_settings, shared_backbone
from helpers.features.frontend import FeatureSettings, LogMel


def settings_from_record(record: dict[str, Any], origin: str = "checkpoint") -> FeatureSettings | EmbeddingSettings:
    """The front-end settings a stored ``feature_settings`` dict describes (the backbone's file checked)."""
    if is_embedding_settings(record):
        settings = EmbeddingSettings(**record)
        settings.check_installed(origin)
        return settings
    return FeatureSettings(**record)


class EmbeddingFrontEnd:
    """Windows ``(n, 144000)`` at 48 kHz (torch or numpy) -> embeddings ``(n, dim)`` float32 on ``device``."""

    def __init__(
        self,
        settings: EmbeddingSettings,
        device: torch.device | str = "cpu",
        num_threads: int | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self.settings, self.device = settings, torch.device(device)
        self.backbone = shared_backbone(num_threads, batch)

    def to(self, device: torch.device | str) -> "EmbeddingFrontEnd":
        self.device = torch.device(device)
        return self

    def __call__(self, waves: torch.Tensor | np.ndarray) -> torch.Tensor:
        array = waves.detach().cpu().numpy() if torch.is_tensor(waves) else np.asarray(waves)
        return torch.from_numpy(self.backbone.embed(array)).to(self.device)


def front_end(
    settings: FeatureSettings | EmbeddingSettings, device: torch.device | str = "cpu", num_threads: int | None = None
):
    """The callable that turns windows into the model's input: :class:`LogMel` or :class:`EmbeddingFrontEnd`."""
    if isinstance(settings, EmbeddingSettings):
        return EmbeddingFrontEnd(settings, device, num_threads)
    return LogMel.from_settings(settings).to(device)
