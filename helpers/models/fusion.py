"""Fusion of two trained models (paper section 5): their embeddings feed one new classifier.

Building a fusion from two checkpoint files is :func:`helpers.models.checkpoint.fusion_from_checkpoints`;
rebuilding one from its config is :func:`helpers.models.registry.model_from_config`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from helpers.models.networks import HEAD_DROPOUT, init_weights


class FusionModel(nn.Module):
    """Two models side by side; their embeddings, concatenated, feed ONE linear classifier (paper
    section 5, "ResNet22-CNN10": embeddings 2048 + 512 -> FC to classes).

    Dropout 0.5 precedes the classifier, as before the last FC of each single model's head.

    ``freeze=True``: the branches' parameters get ``requires_grad=False`` and the branches stay in
    eval mode (BN running statistics fixed, dropout off) even after ``.train()`` on this model; only
    the classifier learns. ``freeze=False``: everything is fine-tuned.

    Normalisation: each branch has its own ``bn0``. :meth:`normalize` therefore returns one channel
    per branch, ``(batch, 2, time, mel)``: channel 0 is ``branch_a.normalize(x)``, channel 1
    ``branch_b.normalize(x)``, and :meth:`forward_normalized` hands each channel to its branch.
    SpecAugment and MixUp then act after the first BN exactly as for a single model, provided they
    treat dim 1 as channels (the same stripes masked and the same pairs mixed in both channels),
    rather than on raw dB values, where a zero mask (0 dB) would be a loud artefact. Both branches
    must read the same features (same ``n_mels``, same sample rate, e.g. CNN10-8k + ResNet22-8k).

    ``config`` holds ``name="fusion"``, ``n_classes``, ``freeze`` and both branch configs, so
    :func:`helpers.models.registry.model_from_config` rebuilds the architecture and the state_dict restores all weights.
    """

    name: ClassVar[str] = "fusion"

    def __init__(
        self,
        branch_a: nn.Module,
        branch_b: nn.Module,
        n_classes: int,
        freeze: bool = True,
        dropout: float = HEAD_DROPOUT,
    ) -> None:
        super().__init__()
        if branch_a.n_mels != branch_b.n_mels:
            raise ValueError(f"fusion branches read different features: n_mels {branch_a.n_mels} vs {branch_b.n_mels}")
        self.branch_a = branch_a
        self.branch_b = branch_b
        self.n_classes = int(n_classes)
        self.n_mels = branch_a.n_mels
        self.freeze = bool(freeze)
        self.embedding_dim = branch_a.embedding_dim + branch_b.embedding_dim
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.embedding_dim, self.n_classes)
        init_weights(self.classifier)
        self.config: dict[str, Any] = {
            "name": self.name,
            "n_classes": self.n_classes,
            "freeze": self.freeze,
            "dropout": dropout,
            "branch_a": dict(branch_a.config),
            "branch_b": dict(branch_b.config),
        }
        if self.freeze:
            for branch in (self.branch_a, self.branch_b):
                branch.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "FusionModel":
        """Set train/eval mode; frozen branches stay in eval mode whatever ``mode`` is."""
        super().train(mode)
        if self.freeze:
            self.branch_a.eval()
            self.branch_b.eval()
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, time, mel)`` in dB -> ``(batch, 2, time, mel)``: each branch's ``bn0`` output."""
        return torch.cat([self.branch_a.normalize(x), self.branch_b.normalize(x)], dim=1)

    def forward_normalized(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, 2, time, mel)`` from :meth:`normalize` -> logits ``(batch, n_classes)``,
        concatenated embeddings ``(batch, embedding_dim_a + embedding_dim_b)``."""
        _, embedding_a = self.branch_a.forward_normalized(z[:, 0:1])
        _, embedding_b = self.branch_b.forward_normalized(z[:, 1:2])
        embedding = torch.cat([embedding_a, embedding_b], dim=1)
        return self.classifier(self.dropout(embedding)), embedding

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel ``(batch, time, mel)`` in dB -> logits ``(batch, n_classes)``, embedding
        ``(batch, embedding_dim)``."""
        return self.forward_normalized(self.normalize(x))
