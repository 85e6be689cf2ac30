"""Classification metrics of the paper (docs/reference.md §5): UAR, mAP, confusion matrix, bootstrap CI.

numpy arrays in, plain floats / arrays out. Class labels are ints ``0..K-1``; ``scores`` are
``(n_clips, K)`` (probabilities, logits, anything monotonic per class).

The point metrics are thin wrappers over ``sklearn.metrics`` (``confusion_matrix``,
``accuracy_score``, ``recall_score``, ``average_precision_score``) that add this module's input
checks and error messages and fix two conventions where scikit-learn would warn or give a number:

- A class absent from ``y_true`` has no recall; it is left out of the UAR mean (as
  ``sklearn.metrics.balanced_accuracy_score`` does) and reported as NaN per class.
- A class with no positive clip has no average precision; it is left out of mAP and reported as
  NaN per class.

The bootstrap interval (:func:`bootstrap_ci`) is written here: scikit-learn has none.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import numpy as np
from sklearn import metrics as skm

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
        raise ValueError(
            f"{name} holds class {bad}, outside 0..{n_classes - 1}; drop unknown labels (< 0) or pass the right "
            "n_classes."
        )
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
    A wrapper of ``sklearn.metrics.confusion_matrix(labels=range(K))``, which has that
    convention for absent rows too.
    """
    y_true, y_pred = _pair(y_true, y_pred, n_classes)
    if normalize not in (None, "true"):
        raise ValueError(f"confusion_matrix normalize={normalize!r} is unknown; use None or 'true'.")
    labels = np.arange(n_classes)
    if y_true.size == 0:
        # sklearn returns int zeros for no clips whatever ``normalize`` says; keep one dtype per mode.
        return np.zeros((n_classes, n_classes), dtype=np.int64 if normalize is None else np.float64)
    matrix = skm.confusion_matrix(y_true, y_pred, labels=labels, normalize=normalize)
    return matrix.astype(np.int64 if normalize is None else np.float64, copy=False)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of clips whose predicted class equals the true one (NaN with no clip).

    ``sklearn.metrics.accuracy_score``, with NaN instead of its warning for no clip.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} clips but y_pred {y_pred.size}.")
    return float(skm.accuracy_score(y_true, y_pred)) if y_true.size else math.nan


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall of each class ``(K,)``: correct clips of the class / clips of the class; NaN if absent.

    ``sklearn.metrics.recall_score(labels=range(K), average=None, zero_division=nan)``: a class
    absent from ``y_true`` has 0/0 and so NaN, without a warning.
    """
    y_true, y_pred = _pair(y_true, y_pred, n_classes)
    return skm.recall_score(y_true, y_pred, labels=np.arange(n_classes), average=None, zero_division=np.nan).astype(
        np.float64, copy=False
    )


def unweighted_average_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """UAR: mean of the per-class recalls over the classes present in ``y_true`` (NaN with no clip).

    ``sklearn.metrics.recall_score(labels=<classes in y_true>, average="macro")``, which equals
    ``sklearn.metrics.balanced_accuracy_score`` (that one also leaves absent classes out, but
    warns whenever a predicted class is absent from ``y_true``). The challenge metric; chance
    level is ``1 / K``.
    """
    y_true, y_pred = _pair(y_true, y_pred, n_classes)
    present = np.unique(y_true)
    if present.size == 0:
        return math.nan
    return float(skm.recall_score(y_true, y_pred, labels=present, average="macro", zero_division=np.nan))


def average_precision(y_binary: np.ndarray, score: np.ndarray) -> float:
    """Average precision of one binary problem (NaN without positives).

    ``sklearn.metrics.average_precision_score``: ``AP = sum_k (R_k - R_{k-1}) P_k`` over the
    distinct score thresholds, highest first, tied scores forming one threshold (step-wise, not
    interpolated). Without positives sklearn warns and returns a number; here it is NaN.
    """
    y_binary = np.asarray(y_binary).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    if not y_binary.any():
        return math.nan
    return float(skm.average_precision_score(y_binary, score))


def per_class_average_precision(y_true: np.ndarray, scores: np.ndarray, n_classes: int) -> np.ndarray:
    """One-vs-rest average precision of each class ``(K,)``; NaN for a class without positives.

    One :func:`average_precision` per class rather than sklearn's ``average=None`` on one-hot
    targets, which gives a class without positives a number (with a warning) instead of NaN.
    """
    y_true = _labels(y_true, n_classes, "y_true")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (y_true.size, n_classes):
        raise ValueError(
            f"scores must have shape (n_clips, n_classes) = ({y_true.size}, {n_classes}), got {scores.shape}."
        )
    return np.array([average_precision(y_true == c, scores[:, c]) for c in range(n_classes)], dtype=np.float64)


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray, n_classes: int) -> float:
    """mAP: macro mean of the one-vs-rest average precisions over classes with positives.

    Per class it equals ``sklearn.metrics.average_precision_score(y_true == c, scores[:, c])``;
    with every class present, ``average_precision_score(one_hot(y_true), scores, average="macro")``.
    """
    ap = per_class_average_precision(y_true, scores, n_classes)
    present = ~np.isnan(ap)
    return float(ap[present].mean()) if present.any() else math.nan


# The bootstrap stays hand-written: scikit-learn has no bootstrap interval (sklearn.utils.resample
# draws one resample per call), and scipy.stats.bootstrap would draw other indices for the same
# seed (changing every stored interval) while still needing a vectorised UAR to be fast.
# UAR and accuracy keep their own bincount version over all resamples of a chunk: on 7,000 clips
# (5 classes) x 1,000 resamples it took 0.37-0.48 s, against 12.5 s calling
# unweighted_average_recall (sklearn recall_score) once per resample and 5.5 s calling
# sklearn.metrics.balanced_accuracy_score once per resample (2 shared CPU cores; same interval).
# test_bootstrap_fast_path_equals_generic_path checks it against the sklearn-backed point value.
def _bootstrap_vectorised(
    y_true: np.ndarray, y_pred: np.ndarray, kind: str, idx: np.ndarray, n_classes: int
) -> np.ndarray:
    """UAR or accuracy of each resample at once; ``idx`` is ``(n_rep, n_clips)``."""
    t, correct = y_true[idx], (y_true == y_pred)[idx]  # (n_rep, n_clips)
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
