"""Exponential moving average (EMA) of model weights (paper section 3.4, docs/reference.md §4).

The paper: "we create a separate model which is the EMA variant of the model being trained",
decay 0.995, updates from iteration 15k on. :class:`ExponentialMovingAverage` keeps that separate
model in ``.shadow`` and, in the default ``mode="correct"``, never changes the model being
trained.

The authors' code differs in three ways, each available as an explicit option:

- ``decay_schedule="warmup"``: decay ``min(decay, (1 + n) / (10 + n))`` where ``n`` is the
  number of EMA updates so far, this one included (``n = 1`` at the first update, whose decay is
  2/11), counted from ``start_step``.
- ``average_buffers=False``: only parameters are averaged; the shadow's BatchNorm running
  statistics are copied from the live model at every update, which is what evaluating "the EMA
  model" meant there (EMA parameters with the live running statistics).
- ``mode="reference"``: the store/restore bug. Around each evaluation of the EMA weights the
  authors' code "stores" the live parameters as references instead of copies, copies the EMA
  parameters into the live model, evaluates, and "restores" the references, which are the EMA
  values by then. Net effect: at every evaluation from ``start_step`` on (every 200 iterations),
  the live model's parameters are overwritten by the EMA parameters and training continues from
  them (optimiser state and live BatchNorm buffers untouched). :meth:`after_evaluation`
  reproduces exactly that; in ``"correct"`` mode it does nothing.

``ExponentialMovingAverage(model, mode="reference", decay_schedule="warmup",
average_buffers=False)`` is the authors' behaviour.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from torch import nn

EmaMode = Literal["correct", "reference"]
DecaySchedule = Literal["constant", "warmup"]
EMA_MODES = ("correct", "reference")
DECAY_SCHEDULES = ("constant", "warmup")


#: The paper's EMA: decay 0.995, updated from step 15,000 on (docs/reference.md).
PAPER_EMA_DECAY = 0.995
PAPER_EMA_START = 15_000


class ExponentialMovingAverage:
    """A shadow copy of ``model`` whose weights are an exponential moving average of the live ones.

    Call :meth:`update` after every optimiser step and :meth:`after_evaluation` after every
    evaluation. Before ``start_step`` the shadow simply follows the live weights, so averaging
    starts from them; from ``start_step`` on, ``shadow = d * shadow + (1 - d) * live`` for
    parameters and floating-point buffers (BatchNorm running mean / var), while integer buffers
    (``num_batches_tracked``) are copied.

    Pass the plain ``nn.Module`` (not a ``torch.compile`` wrapper) to the constructor; tensors are
    matched by order of ``parameters()`` / ``buffers()``.

    Args:
        model: the model being trained; deep-copied into ``.shadow`` (eval mode, no grad).
        decay: ``d`` in the formula above (0.995 in the paper).
        start_step: first training step (0-based count of optimiser steps) that averages.
        mode: ``"correct"`` or ``"reference"`` (the authors' bug, see the module docstring).
        decay_schedule: ``"constant"`` (the paper) or ``"warmup"`` (the authors' code).
        average_buffers: average floating-point buffers too (True) or copy them (authors' code).
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float = PAPER_EMA_DECAY,
        start_step: int = PAPER_EMA_START,
        mode: EmaMode = "correct",
        decay_schedule: DecaySchedule = "constant",
        average_buffers: bool = True,
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay={decay} must lie in [0, 1].")
        if mode not in EMA_MODES:
            raise ValueError(f"EMA mode {mode!r} is unknown; use one of {EMA_MODES}.")
        if decay_schedule not in DECAY_SCHEDULES:
            raise ValueError(f"EMA decay_schedule {decay_schedule!r} is unknown; use one of {DECAY_SCHEDULES}.")
        self.decay = float(decay)
        self.start_step = int(start_step)
        self.mode = mode
        self.decay_schedule = decay_schedule
        self.average_buffers = bool(average_buffers)
        self.num_updates = 0  # averaging updates since start_step
        self.shadow = copy.deepcopy(model).eval()
        self.shadow.requires_grad_(False)
        self._shadow_params = list(self.shadow.parameters())
        self._shadow_buffers = list(self.shadow.buffers())
        # Which buffers are averaged (float, e.g. BN running_mean / running_var) and which copied
        # (integer counters such as num_batches_tracked, or all of them without average_buffers).
        averaged = [i for i, b in enumerate(self._shadow_buffers) if self.average_buffers and b.is_floating_point()]
        copied = [i for i in range(len(self._shadow_buffers)) if i not in averaged]
        self._buffer_split = (averaged, copied)

    # -- settings -------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "start_step": self.start_step,
            "mode": self.mode,
            "decay_schedule": self.decay_schedule,
            "average_buffers": self.average_buffers,
        }

    def current_decay(self, n: int | None = None) -> float:
        """Decay used by the ``n``-th averaging update (1-based; default: the next one)."""
        n = self.num_updates + 1 if n is None else int(n)
        if self.decay_schedule == "warmup":
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    # -- live <-> shadow ----------------------------------------------------------------------
    def _live_tensors(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params = [p.detach() for p in model.parameters()]
        buffers = [b.detach() for b in model.buffers()]
        if len(params) != len(self._shadow_params) or len(buffers) != len(self._shadow_buffers):
            raise ValueError(
                f"EMA: the model has {len(params)} parameters / {len(buffers)} buffers but the shadow "
                f"{len(self._shadow_params)} / {len(self._shadow_buffers)}; pass the same (uncompiled) model "
                "that built the ExponentialMovingAverage."
            )
        return params, buffers

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Set every shadow parameter and buffer to the live value."""
        params, buffers = self._live_tensors(model)
        torch._foreach_copy_(self._shadow_params, params)
        torch._foreach_copy_(self._shadow_buffers, buffers)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold the live weights in after optimiser step ``step`` (0-based).

        ``step < start_step``: the shadow copies the live weights. Otherwise, with ``d`` from
        :meth:`current_decay`: ``shadow = d * shadow + (1 - d) * live`` for parameters (and
        floating-point buffers when ``average_buffers``), other buffers copied.
        """
        if step < self.start_step:
            self.copy_from(model)
            return
        params, buffers = self._live_tensors(model)
        d = self.current_decay()
        # lerp(shadow, live, 1 - d) = shadow + (1 - d) (live - shadow) = d shadow + (1 - d) live,
        # one fused multi-tensor kernel instead of one Python call per tensor.
        torch._foreach_lerp_(self._shadow_params, params, 1.0 - d)
        averaged, copied = self._buffer_split
        if averaged:
            torch._foreach_lerp_([self._shadow_buffers[i] for i in averaged], [buffers[i] for i in averaged], 1.0 - d)
        if copied:
            torch._foreach_copy_([self._shadow_buffers[i] for i in copied], [buffers[i] for i in copied])
        self.num_updates += 1

    @torch.no_grad()
    def after_evaluation(self, model: nn.Module, step: int) -> bool:
        """Hook for the end of an evaluation at training step ``step``.

        ``"correct"`` mode: nothing. ``"reference"`` mode, ``step >= start_step``: the live
        model's parameters (not its buffers) are overwritten with the shadow's, as the authors'
        store/restore bug does. Returns True when the live model was changed.
        """
        if self.mode != "reference" or step < self.start_step:
            return False
        params, _ = self._live_tensors(model)
        torch._foreach_copy_(params, self._shadow_params)
        return True

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Shadow weights, update count and settings, for a checkpoint."""
        return {"shadow": self.shadow.state_dict(), "num_updates": self.num_updates, **self._settings()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the settings must equal this object's."""
        for key, value in self._settings().items():
            if key in state and state[key] != value:
                raise ValueError(
                    f"EMA checkpoint has {key}={state[key]!r} but this ExponentialMovingAverage has {value!r}; "
                    f"build it with {key}={state[key]!r} to resume that run."
                )
        self.shadow.load_state_dict(state["shadow"])
        self.num_updates = int(state["num_updates"])
