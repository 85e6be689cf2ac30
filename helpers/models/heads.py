"""Classifier heads on a frozen pretrained backbone's embeddings (BirdNET 2.4: 1024-d).

One module serves every head, so a head is saved, loaded, scored and scanned like the log-mel
networks (same checkpoint format, same ``(logits, embedding)`` outputs)::

    birdnet-logistic   multinomial logistic regression (scikit-learn, C chosen on devel)
    birdnet-svm        linear SVM, one-vs-rest (scikit-learn, C chosen on devel)
    birdnet-mlp        one hidden ReLU layer, trained by the engine's own loop (balanced sampler,
                       MixUp on embeddings as an option, EMA, seeds)

Input ``(batch, in_features)`` embeddings. :meth:`EmbeddingHead.normalize` standardises them with
the training set's mean and standard deviation (buffers set once before training), the same
place where the log-mel networks' ``bn0`` sits, so training augments between the two halves of
the forward pass exactly as it does there. The linear heads store the fitted scikit-learn
coefficients as their one ``nn.Linear``; with two classes the single decision function ``f``
becomes the logits ``(-f/2, f/2)`` (logistic: their softmax is scikit-learn's probability) or
``(-f, f)`` (SVM: the one-vs-rest margins of both classes).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

#: Head name -> (backbone, kind): the ``TrainConfig.model`` values of pretrained starting points.
HEADS: dict[str, tuple[str, str]] = {
    "birdnet-logistic": ("birdnet-2.4", "logistic"),
    "birdnet-svm": ("birdnet-2.4", "svm"),
    "birdnet-mlp": ("birdnet-2.4", "mlp"),
}
#: Heads fitted in closed form by scikit-learn (the others train by gradient steps).
FITTED_KINDS = ("logistic", "svm")
MLP_HIDDEN = 256
MLP_DROPOUT = 0.2


def is_head(model_name: str) -> bool:
    """Whether a ``TrainConfig.model`` name is a head on a pretrained backbone."""
    return model_name in HEADS


class EmbeddingHead(nn.Module):
    """A head on ``in_features``-d embeddings: linear (``hidden=0``) or one hidden ReLU layer."""

    name: ClassVar[str] = "embedding_head"

    def __init__(
        self,
        head: str,
        n_classes: int,
        in_features: int = 1024,
        hidden: int | None = None,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)}")
        kind = HEADS[head][1]
        hidden = (MLP_HIDDEN if kind == "mlp" else 0) if hidden is None else int(hidden)
        dropout = (MLP_DROPOUT if kind == "mlp" else 0.0) if dropout is None else float(dropout)
        if kind != "mlp" and hidden:
            raise ValueError(f"{head} is linear; hidden={hidden} is only for birdnet-mlp.")
        self.head, self.kind, self.n_classes = head, kind, int(n_classes)
        self.in_features, self.hidden = int(in_features), hidden
        self.embedding_dim = hidden or self.in_features
        self.config: dict[str, Any] = {
            "name": head,
            "n_classes": self.n_classes,
            "in_features": self.in_features,
            "hidden": hidden,
            "dropout": dropout,
        }
        self.register_buffer("mean", torch.zeros(self.in_features))
        self.register_buffer("scale", torch.ones(self.in_features))
        self.dropout = nn.Dropout(dropout)
        if hidden:
            self.fc_hidden = nn.Linear(self.in_features, hidden)
        self.fc_logits = nn.Linear(self.embedding_dim, self.n_classes)

    def set_standardisation(self, train_embeddings: np.ndarray | torch.Tensor) -> None:
        """Mean and standard deviation of the training embeddings ``(n, in_features)`` (zero std -> 1)."""
        x = torch.as_tensor(np.asarray(train_embeddings, np.float64))
        std = x.std(dim=0, unbiased=False)
        self.mean.copy_(x.mean(dim=0).float())
        self.scale.copy_(torch.where(std > 0, std, torch.ones_like(std)).float())

    def set_linear(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        """Load a scikit-learn linear model's ``coef_`` ``(k, in)`` and ``intercept_`` ``(k,)`` (k = classes,
        or 1 for two classes: see the module docstring)."""
        coef, intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
        if coef.shape[0] == 1 and self.n_classes == 2:
            half = 0.5 if self.kind == "logistic" else 1.0
            coef, intercept = (
                np.concatenate([-half * coef, half * coef]),
                np.concatenate([-half * intercept, half * intercept]),
            )
        if coef.shape != (self.n_classes, self.in_features):
            raise ValueError(f"{self.head}: coefficients {coef.shape}, expected ({self.n_classes}, {self.in_features})")
        with torch.no_grad():
            self.fc_logits.weight.copy_(torch.from_numpy(coef).float())
            self.fc_logits.bias.copy_(torch.from_numpy(intercept).float())

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(batch, in_features)`` -> standardised ``(batch, in_features)``."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"{self.head} expects embeddings (batch, {self.in_features}), got {tuple(x.shape)}")
        return (x.float() - self.mean) / self.scale

    def forward_normalized(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised embeddings -> logits ``(batch, n_classes)``, embedding ``(batch, embedding_dim)``."""
        h = torch.relu(self.fc_hidden(self.dropout(z))) if self.hidden else z
        return self.fc_logits(self.dropout(h)), h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_normalized(self.normalize(x))


def head_from_config(config: dict[str, Any]) -> EmbeddingHead:
    """Rebuild a head from its ``config`` (what a checkpoint stores)."""
    return EmbeddingHead(
        config["name"],
        config["n_classes"],
        config.get("in_features", 1024),
        config.get("hidden"),
        config.get("dropout"),
    )
