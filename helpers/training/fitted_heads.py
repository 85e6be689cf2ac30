"""Fitting the linear heads on frozen embeddings (``birdnet-logistic``, ``birdnet-svm``), C chosen on devel.

For each C of the grid a scikit-learn model is fitted on the standardised training embeddings
(the head's own ``normalize``, so the saved head computes exactly what was fitted), with
``class_weight="balanced"`` (inverse class frequency: the closed-form counterpart of the balanced
sampler): ``LogisticRegression`` (multinomial, lbfgs) or ``LinearSVC`` (one-vs-rest, squared
hinge). The rule that picks C, applied before any test score is computed and recorded with
the run (:data:`SELECTION_RULE`):

1. the highest devel UAR;
2. among equals, the lowest devel log loss of the softmax of the head's logits (on a small corpus
   devel UAR saturates at 1.0 over a whole range of C, and the log loss still tells them apart);
3. among equals, the smallest C (the strongest regularisation).

The chosen C's devel score is therefore selected on and optimistic; the run says so.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from helpers.evaluation.metrics import unweighted_average_recall
from helpers.models.heads import EmbeddingHead

DEFAULT_CS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)
SELECTION_RULE = (
    "C with the highest devel UAR; ties broken by the lowest devel log loss of softmax(logits), "
    "then by the smallest C; chosen before any test score is computed"
)
MAX_ITER = 5000


def _log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def _full_coefficients(estimator, n_classes: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``coef_``/``intercept_`` with one row per class of the corpus (two-class models keep their one row);
    a class absent from training gets zero weights and an intercept below every other (never predicted)."""
    coef, intercept, seen = estimator.coef_, estimator.intercept_, estimator.classes_
    if coef.shape[0] == 1 and len(seen) == 2 and n_classes == 2:
        return coef, intercept
    if coef.shape[0] == 1:  # two seen classes of a larger corpus: expand to both margins
        half = 0.5 if kind == "logistic" else 1.0
        coef, intercept = (
            np.concatenate([-half * coef, half * coef]),
            np.concatenate([-half * intercept, half * intercept]),
        )
    full_coef = np.zeros((n_classes, coef.shape[1]))
    full_intercept = np.full(n_classes, float(intercept.min()) - 1e3)
    full_coef[seen], full_intercept[seen] = coef, intercept
    return full_coef, full_intercept


def fit_linear_head(
    head: EmbeddingHead,
    x_train: torch.Tensor,
    y_train: np.ndarray,
    x_devel: torch.Tensor,
    y_devel: np.ndarray,
    Cs: Sequence[float] = DEFAULT_CS,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit ``head`` (logistic or SVM, standardisation already set) over ``Cs`` and keep the C that
    :data:`SELECTION_RULE` picks. Returns one row per C: ``C``, ``train_uar``, ``devel_uar``,
    ``devel_log_loss``, ``converged``, ``chosen``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if head.kind not in ("logistic", "svm"):
        raise ValueError(f"fit_linear_head fits birdnet-logistic and birdnet-svm, not {head.head}")
    if not Cs:
        raise ValueError(f"{head.head}: model_options['Cs'] is empty; give at least one C.")
    with torch.no_grad():
        z_train = head.normalize(x_train.cpu()).numpy().astype(np.float64)
        z_devel = head.normalize(x_devel.cpu()).numpy().astype(np.float64)
    k = head.n_classes
    rows, fitted = [], []
    for c in Cs:
        if head.kind == "logistic":
            estimator = LogisticRegression(C=float(c), class_weight="balanced", max_iter=MAX_ITER)
        else:
            estimator = LinearSVC(
                C=float(c), class_weight="balanced", dual="auto", max_iter=MAX_ITER, random_state=seed
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            estimator.fit(z_train, y_train)
        coef, intercept = _full_coefficients(estimator, k, head.kind)
        head.set_linear(coef, intercept)
        with torch.no_grad():
            logits_train = head.forward_normalized(torch.from_numpy(z_train).float())[0].numpy()
            logits_devel = head.forward_normalized(torch.from_numpy(z_devel).float())[0].numpy()
        rows.append(
            {
                "C": float(c),
                "train_uar": unweighted_average_recall(y_train, logits_train.argmax(axis=1), k),
                "devel_uar": unweighted_average_recall(y_devel, logits_devel.argmax(axis=1), k),
                "devel_log_loss": _log_loss(logits_devel, y_devel),
                "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught),
            }
        )
        fitted.append((coef, intercept))
    table = pd.DataFrame(rows)
    # lexsort: the last key is the primary one
    order = np.lexsort((table["C"].to_numpy(), table["devel_log_loss"].to_numpy(), -table["devel_uar"].to_numpy()))
    chosen = int(order[0])
    table["chosen"] = np.arange(len(table)) == chosen
    head.set_linear(*fitted[chosen])
    return table
