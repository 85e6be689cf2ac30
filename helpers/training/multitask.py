"""Targets and loss of the multi-task model (:class:`helpers.models.hierarchical.MultiTaskModel`).

The training step builds class targets ``y`` ``(batch, K)`` as the flat model does: one-hot rows,
mixed pairwise by MixUp (``lam * y_a + (1 - lam) * y_b``), the balanced sampler unchanged. From
them (:func:`call_and_species_targets`)::

    call target     c = 1 - y[:, background]                  (batch,)     in [0, 1]
    species target  s = y[:, calls] / c  where c > 0, else 0  (batch, K-1) rows sum to 1 (or 0)

A background clip mixed with a chimpanzee clip at lam = 0.3 is "30 % call", and all of that call
is chimpanzee. The loss (:func:`multitask_loss`)::

    loss = w * call_loss + (1 - w) * species_loss,   w = TrainConfig.call_loss_weight

``call_loss``: BCE of sigmoid(call logit) against ``c``, mean over the batch. ``species_loss``: per
clip, cross-entropy of softmax(species logits) against ``s`` (score ``"softmax"``) or BCE of
sigmoid(species logits) against ``s`` averaged over the K-1 species (score ``"sigmoid"``, the
MixUp convention); then the mean over clips weighted by ``c``: clips with no call mass add
nothing, a half-call clip counts half. A batch with no call mass has species loss 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from helpers.models.hierarchical import SCORE_CONVENTIONS, call_positions


def call_and_species_targets(targets: torch.Tensor, background_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Call target ``(batch,)`` and species target ``(batch, K-1)`` from class targets ``(batch, K)``
    (one-hot or MixUp-mixed, rows summing to 1); see the module docstring."""
    positions = call_positions(targets.shape[1], background_index)
    call = 1.0 - targets[:, background_index]
    species_mass = targets[:, positions]
    # Divide only where there is call mass: 0 / 0 would be NaN, and those rows get zero weight anyway.
    has_call = call > 0
    species = torch.where(
        has_call[:, None],
        species_mass / torch.where(has_call, call, torch.ones_like(call))[:, None],
        torch.zeros_like(species_mass),
    )
    return call, species


def multitask_loss(
    call_logit: torch.Tensor,
    species_logits: torch.Tensor,
    targets: torch.Tensor,
    background_index: int,
    call_loss_weight: float,
    score: str,
) -> torch.Tensor:
    """Weighted sum of the call and species losses (module docstring), a scalar tensor.

    ``call_logit`` ``(batch,)``, ``species_logits`` ``(batch, K-1)`` (from
    :meth:`~helpers.models.hierarchical.MultiTaskModel.heads_normalized`), ``targets`` ``(batch, K)``
    class targets, ``score`` the run's convention (``"sigmoid"`` with MixUp, else ``"softmax"``).
    """
    if score not in SCORE_CONVENTIONS:
        raise ValueError(f"score must be one of {SCORE_CONVENTIONS}, not {score!r}")
    call_logit, species_logits, targets = call_logit.float(), species_logits.float(), targets.float()
    call, species = call_and_species_targets(targets, background_index)
    call_loss = F.binary_cross_entropy_with_logits(call_logit, call, reduction="mean")
    if score == "softmax":
        per_clip = -(species * F.log_softmax(species_logits, dim=1)).sum(dim=1)
    else:
        per_clip = F.binary_cross_entropy_with_logits(species_logits, species, reduction="none").mean(dim=1)
    species_loss = (call * per_clip).sum() / call.sum().clamp_min(1e-12)
    return call_loss_weight * call_loss + (1.0 - call_loss_weight) * species_loss
