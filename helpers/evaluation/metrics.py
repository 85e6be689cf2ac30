"""Classification metrics of the paper (FACTS section 5): UAR, mAP, confusion matrix, bootstrap CI.

numpy arrays in, plain floats / arrays out. Class labels are ints ``0..K-1``; ``scores`` are
``(n_clips, K)`` (probabilities, logits, anything monotonic per class).

Conventions, chosen to match scikit-learn (the tests compare against it):

- A class absent from ``y_true`` has no recall; it is left out of the UAR mean (as
  ``sklearn.metrics.balanced_accuracy_score`` does) and reported as NaN per class.
- A class with no positive clip has no average precision; it is left out of mAP and reported as
  NaN per class.
"""
from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import numpy as np

#: Replicates resampled at once by bootstrap_ci; bounds memory to ~chunk * n_clips int64.
_BOOTSTRAP_CHUNK = 200


def _labels(y: np.ndarray, n_classes: int, name: str) -> np.ndarray:
    """Validate a ``(n_clips,)`` array of class indices in ``0..n_classes-1``."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_clips,), got shape {y.shape}.")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        bad = y[(y < 0) | (y >= n_classes)][0]
        raise ValueError(f"{name} holds class {bad}, outside 0..{n_classes - 1}; drop unknown labels (< 0) or pass the right n_classes.")
    return y


def _pair(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    y_true = _labels(y_true, n_classes, "y_true")
    y_pred = _labels(y_pred, n_classes, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} clips but y_pred {y_pred.size}.")
    return y_true, y_pred


def confusion_matrix(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    normalize: Literal["true"] | None = None,
) -> np.ndarray:
    """Confusion matrix ``(K, K)``: rows true class, columns predicted class.

    ``normalize=None`` gives int64 counts; ``"true"`` divides each row by its total (each row
    sums to 1, the paper's Figure 1), a row of a class absent from ``y_true`` being all zeros.
    """
    y_true, y_pred = _pair(y_true, y_pred, n_classes)
    counts = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    if normalize is None:
        return counts.astype(np.int64)
    if normalize != "true":
        raise ValueError(f"confusion_matrix normalize={normalize!r} is unknown; use None or 'true'.")
    rows = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros((n_classes, n_classes), dtype=np.float64), where=rows > 0)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of clips whose predicted class equals the true one (NaN with no clip)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} clips but y_pred {y_pred.size}.")
    return float(np.mean(y_true == y_pred)) if y_true.size else math.nan


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall of each class ``(K,)``: correct clips of the class / clips of the class; NaN if absent."""
    y_true, y_pred = _pair(y_true, y_pred, n_classes)
    support = np.bincount(y_true, minlength=n_classes)
    hits = np.bincount(y_true[y_true == y_pred], minlength=n_classes)
    return np.divide(hits, support, out=np.full(n_classes, np.nan), where=support > 0)


def unweighted_average_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """UAR: mean of the per-class recalls over the classes present in ``y_true``.

    Equals ``sklearn.metrics.balanced_accuracy_score`` (also in leaving absent classes out).
    The challenge metric; chance level is ``1 / K``.
    """
    recalls = per_class_recall(y_true, y_pred, n_classes)
    present = ~np.isnan(recalls)
    return float(recalls[present].mean()) if present.any() else math.nan


def average_precision(y_binary: np.ndarray, score: np.ndarray) -> float:
    """Average precision of one binary problem (NaN without positives).

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds, highest first; tied
    scores form one threshold. The same step-wise (non-interpolated) definition as
    ``sklearn.metrics.average_precision_score``.
    """
    y_binary = np.asarray(y_binary).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos = int(y_binary.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-score, kind="mergesort")
    s, y = score[order], y_binary[order]
    # Last position of each block of equal scores: one threshold per distinct score.
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_class_average_precision(y_true: np.ndarray, scores: np.ndarray, n_classes: int) -> np.ndarray:
    """One-vs-rest average precision of each class ``(K,)``; NaN for a class without positives."""
    y_true = _labels(y_true, n_classes, "y_true")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (y_true.size, n_classes):
        raise ValueError(f"scores must have shape (n_clips, n_classes) = ({y_true.size}, {n_classes}), got {scores.shape}.")
    return np.array([average_precision(y_true == c, scores[:, c]) for c in range(n_classes)])


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray, n_classes: int) -> float:
    """mAP: macro mean of the one-vs-rest average precisions over classes with positives.

    Per class it equals ``sklearn.metrics.average_precision_score(y_true == c, scores[:, c])``.
    """
    ap = per_class_average_precision(y_true, scores, n_classes)
    present = ~np.isnan(ap)
    return float(ap[present].mean()) if present.any() else math.nan


def _bootstrap_vectorised(
    y_true: np.ndarray, y_pred: np.ndarray, kind: str, idx: np.ndarray, n_classes: int
) -> np.ndarray:
    """UAR or accuracy of each resample at once; ``idx`` is ``(n_rep, n_clips)``."""
    t, correct = y_true[idx], (y_true == y_pred)[idx]          # (n_rep, n_clips)
    if kind == "accuracy":
        return correct.mean(axis=1)
    n_rep = idx.shape[0]
    # Offsetting each replicate's classes by rep * K lets one bincount count all replicates.
    keys = (np.arange(n_rep)[:, None] * n_classes + t).ravel()
    support = np.bincount(keys, minlength=n_rep * n_classes).reshape(n_rep, n_classes)
    hits = np.bincount(keys, weights=correct.ravel(), minlength=n_rep * n_classes).reshape(n_rep, n_classes)
    recall = np.divide(hits, support, out=np.full(support.shape, np.nan), where=support > 0)
    return np.nanmean(recall, axis=1)


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metric_fn: Callable[[np.ndarray, np.ndarray], float] | str = "uar",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval ``(low, high)`` of a metric over clips.

    Clips are resampled with replacement ``n_boot`` times; the interval holds the central
    ``1 - alpha`` of the resampled metric values. ``metric_fn`` is ``"uar"`` or ``"accuracy"``
    (or the functions :func:`unweighted_average_recall` / :func:`accuracy`), which are computed
    for all resamples at once with bincounts, or any ``f(y_true, y_pred) -> float``, called once
    per resample (``y_pred`` may then be 2-D scores, resampled by rows, e.g. for mAP). In a UAR
    resample a class that happens not to be drawn is left out of the mean, as in the point value.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    n = y_true.shape[0]
    if n == 0 or y_pred.shape[0] != n:
        raise ValueError(f"bootstrap_ci needs matching, non-empty y_true ({n}) and y_pred ({y_pred.shape[0]}).")
    if not 0 < alpha < 1:
        raise ValueError(f"bootstrap_ci alpha={alpha} must lie in (0, 1).")
    kind = None
    if metric_fn in ("uar", unweighted_average_recall):
        kind = "uar"
    elif metric_fn in ("accuracy", accuracy):
        kind = "accuracy"
    elif isinstance(metric_fn, str):
        raise ValueError(f"bootstrap_ci metric {metric_fn!r} is unknown; use 'uar', 'accuracy' or a function.")
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot, dtype=np.float64)
    if kind is not None:
        y_true_i = y_true.astype(np.int64)
        y_pred_i = y_pred.astype(np.int64)
        n_classes = int(max(y_true_i.max(), y_pred_i.max())) + 1
    for start in range(0, n_boot, _BOOTSTRAP_CHUNK):
        stop = min(start + _BOOTSTRAP_CHUNK, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        if kind is not None:
            values[start:stop] = _bootstrap_vectorised(y_true_i, y_pred_i, kind, idx, n_classes)
        else:
            values[start:stop] = [metric_fn(y_true[i], y_pred[i]) for i in idx]
    low, high = np.nanpercentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _json_float(x: float) -> float | None:
    """NaN (undefined metric) becomes None, which JSON can store."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def classification_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    n_boot: int = 0,
    seed: int = 0,
) -> dict:
    """All metrics of one evaluation as a JSON-friendly dict.

    Args:
        y_true: ``(n_clips,)`` true class indices.
        scores: ``(n_clips, K)`` class scores; the prediction is their argmax.
        class_names: ``K`` names, in class-index order.
        n_boot: when > 0, also a 95 % percentile bootstrap interval of the UAR (``uar_ci95``).

    Returns:
        ``{"n", "uar", "map", "accuracy", "class_names", "per_class_recall": {name: value},
        "per_class_ap": {name: value}, "confusion_matrix": [[counts]], ...}``; undefined values
        (a class absent from ``y_true``) are None.
    """
    names = list(class_names)
    k = len(names)
    scores = np.asarray(scores, dtype=np.float64)
    y_true = _labels(y_true, k, "y_true")
    if scores.shape != (y_true.size, k):
        raise ValueError(f"scores must have shape (n_clips, n_classes) = ({y_true.size}, {k}), got {scores.shape}.")
    y_pred = scores.argmax(axis=1)
    recalls = per_class_recall(y_true, y_pred, k)
    aps = per_class_average_precision(y_true, scores, k)
    out = {
        "n": int(y_true.size),
        "uar": _json_float(unweighted_average_recall(y_true, y_pred, k)),
        "map": _json_float(mean_average_precision(y_true, scores, k)),
        "accuracy": _json_float(accuracy(y_true, y_pred)),
        "class_names": names,
        "per_class_recall": {name: _json_float(float(r)) for name, r in zip(names, recalls)},
        "per_class_ap": {name: _json_float(float(a)) for name, a in zip(names, aps)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, k).tolist(),
    }
    if n_boot > 0:
        out["uar_ci95"] = list(bootstrap_ci(y_true, y_pred, "uar", n_boot=n_boot, seed=seed))
    return out
