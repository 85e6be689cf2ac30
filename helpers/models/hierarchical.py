"""Background first, then species: one trunk with a call head and a species head.

The paper's open question: most confusions are between background and every primate class, so
it proposes a hierarchical system, or "a single model trained on both objectives". This module
holds the single model (:class:`MultiTaskModel`) and the rule both hierarchical forms share to
turn "is it a call?" and "which species, given a call?" into ordinary class scores
(:func:`combine_call_and_species`); the two-stage form (a separate detector and species
classifier) is :mod:`helpers.evaluation.two_stage`.

The combination (K classes, one of them background at ``background_index``; the other K-1 are
the calls, in class order)::

    P(background) = 1 - P(call)
    P(species k)  = P(call) * P(k | call)

Score conventions. The project turns a model's logits into class scores with the run's score
function (:func:`helpers.evaluation.scoring.predict_scores`): ``"softmax"`` for models trained
with cross-entropy, ``"sigmoid"`` for MixUp + BCE. A hierarchical model outputs, in place of
logits, the inverse of that function applied to the combined probabilities, so the ordinary
scoring gives back the combined probabilities exactly (to float rounding):

    ``"softmax"``  P(k | call) = softmax(species logits); the K combined scores sum to 1; the model
                   outputs log P(class), and softmax(log p) = p because sum(p) = 1.
    ``"sigmoid"``  P(k | call) = sigmoid(species logit k), each in [0, 1] on its own (BCE trains
                   each species as a yes/no question, as the flat BCE model does); each combined
                   score lies in [0, 1] and they need not sum to 1; the model outputs
                   logit(p) = log p - log(1 - p), and sigmoid(logit(p)) = p.

In both, P(call) = sigmoid(call logit). Argmax, UAR, mAP, prediction tables, ``predict`` and
``scan`` therefore treat a hierarchical model like any other model.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from helpers.models.networks import HEAD_DROPOUT, init_weights

#: The two score conventions a hierarchical model's output follows (as ``SCORE_FUNCTIONS`` in scoring).
SCORE_CONVENTIONS = ("softmax", "sigmoid")
#: Largest log-probability passed to logit(): keeps sigmoid-convention outputs finite (|logit| <~ 16.6)
#: when P(class) rounds to 1 in float32.
_MAX_LOG_P = -6e-8


def call_positions(n_classes: int, background_index: int) -> list[int]:
    """Class indices of the K-1 call classes (all but ``background_index``), in class order: column j
    of the species head scores class ``call_positions(...)[j]``."""
    if not 0 <= background_index < n_classes:
        raise ValueError(f"background_index {background_index} is not a class index of {n_classes} classes.")
    if n_classes < 3:
        raise ValueError(
            f"a hierarchical model needs background and at least two call classes, got {n_classes} "
            "classes; use the flat model (hierarchy='flat')."
        )
    return [k for k in range(n_classes) if k != background_index]


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(a)) for a < 0, accurate at both ends (Maechler 2012)."""
    return torch.where(a > -0.6931471805599453, torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def combine_call_and_species(
    call_logit: torch.Tensor, species_logits: torch.Tensor, background_index: int, score: str
) -> torch.Tensor:
    """Class outputs ``(batch, K)`` of a hierarchical model from its heads (module docstring).

    ``call_logit``: ``(batch,)`` or ``(batch, 1)``, P(call) = sigmoid of it. ``species_logits``:
    ``(batch, K-1)``, the call classes in class order. ``score``: ``"softmax"`` -> returns
    log P(class) (softmax of it is the combined distribution); ``"sigmoid"`` -> returns
    logit P(class) (sigmoid of it is the combined score, each in [0, 1]). Computed in float32.
    """
    if score not in SCORE_CONVENTIONS:
        raise ValueError(f"score must be one of {SCORE_CONVENTIONS}, not {score!r}")
    c = call_logit.float().reshape(-1)
    s = species_logits.float()
    if s.dim() != 2 or s.shape[0] != c.shape[0]:
        raise ValueError(
            f"call logit {tuple(call_logit.shape)} and species logits {tuple(species_logits.shape)} "
            "must be (batch,) and (batch, K-1)."
        )
    n_classes = s.shape[1] + 1
    positions = call_positions(n_classes, background_index)
    log_p_call = F.logsigmoid(c)  # log P(call)
    if score == "softmax":
        log_p_species = log_p_call[:, None] + F.log_softmax(s, dim=1)
        background = F.logsigmoid(-c)  # log(1 - P(call))
    else:
        log_p_species = (log_p_call[:, None] + F.logsigmoid(s)).clamp(max=_MAX_LOG_P)
        log_p_species = log_p_species - _log1mexp(log_p_species)  # logit = log p - log(1 - p)
        background = -c  # logit(1 - sigmoid(c)) = -c
    out = torch.empty(c.shape[0], n_classes, dtype=torch.float32, device=c.device)
    out[:, background_index] = background
    out[:, positions] = log_p_species
    return out


class MultiTaskModel(nn.Module):
    """One trunk, two heads: call vs background (1 logit) and species among calls (K-1 logits).

    The trunk is any registry model (:func:`helpers.models.registry.create_model`) built with
    ``n_classes = K - 1``: its ``bn0``, backbone and embedding layer are shared, and its own last FC
    (``trunk.head.fc_logits``) is the species head. The call head is a new FC from the same
    embedding, after dropout ``dropout`` (as the species FC has).

    :meth:`forward` / :meth:`forward_normalized` return ``(outputs (batch, K), embedding (batch,
    embedding_dim))`` where ``outputs`` are the combined class outputs of
    :func:`combine_call_and_species` in the convention ``score`` (log-probabilities for
    ``"softmax"``, logits of the combined probabilities for ``"sigmoid"``); the scoring function of
    the same name recovers the combined scores. Training uses :meth:`heads_normalized`, the two
    heads' raw logits.

    ``config`` holds ``name="multitask"``, ``n_classes`` (K), ``background_index``, ``score``,
    ``dropout`` and the trunk's config, so :func:`helpers.models.registry.model_from_config`
    rebuilds it and the one checkpoint loader loads it.
    """

    name: ClassVar[str] = "multitask"

    def __init__(
        self, trunk: nn.Module, n_classes: int, background_index: int, score: str, dropout: float = HEAD_DROPOUT
    ) -> None:
        super().__init__()
        if score not in SCORE_CONVENTIONS:
            raise ValueError(
                f"MultiTaskModel score must be one of {SCORE_CONVENTIONS}, not {score!r}; use the "
                "run's score function ('sigmoid' with MixUp, else 'softmax')."
            )
        self.call_positions = call_positions(int(n_classes), int(background_index))
        if getattr(trunk, "n_classes", None) != n_classes - 1:
            raise ValueError(
                f"MultiTaskModel trunk must score the {n_classes - 1} call classes (n_classes - 1), "
                f"it has n_classes={getattr(trunk, 'n_classes', None)}; build it with "
                f"create_model(name, n_classes={n_classes - 1})."
            )
        self.trunk = trunk
        self.n_classes = int(n_classes)
        self.background_index = int(background_index)
        self.score = score
        self.n_mels = trunk.n_mels
        self.embedding_dim = trunk.embedding_dim
        self.call_dropout = nn.Dropout(dropout)
        self.call_head = nn.Linear(self.embedding_dim, 1)
        init_weights(self.call_head)
        self.config: dict[str, Any] = {
            "name": self.name,
            "n_classes": self.n_classes,
            "background_index": self.background_index,
            "score": score,
            "dropout": dropout,
            "trunk": dict(trunk.config),
        }

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, time, mel)`` in dB -> ``(batch, 1, time, mel)`` after the trunk's ``bn0``."""
        return self.trunk.normalize(x)

    def heads_normalized(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(batch, 1, time, mel)`` -> call logit ``(batch,)``, species logits ``(batch, K-1)`` (call classes
        in class order), embedding ``(batch, embedding_dim)``."""
        species_logits, embedding = self.trunk.forward_normalized(z)
        call_logit = self.call_head(self.call_dropout(embedding)).squeeze(1)
        return call_logit, species_logits, embedding

    def forward_normalized(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, 1, time, mel)`` -> combined class outputs ``(batch, K)`` (float32, see the class
        docstring), embedding ``(batch, embedding_dim)``."""
        call_logit, species_logits, embedding = self.heads_normalized(z)
        return combine_call_and_species(call_logit, species_logits, self.background_index, self.score), embedding

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel ``(batch, time, mel)`` in dB -> combined class outputs ``(batch, K)``, embedding."""
        return self.forward_normalized(self.normalize(x))

    @torch.no_grad()
    def call_probability(self, x: torch.Tensor) -> torch.Tensor:
        """P(call) ``(batch,)`` in [0, 1] for log-mels ``(batch, time, mel)`` in dB (the call head alone)."""
        call_logit, _, _ = self.heads_normalized(self.normalize(x))
        return torch.sigmoid(call_logit.float())
