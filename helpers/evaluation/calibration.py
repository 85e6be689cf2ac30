"""Thresholds per class from reviewed detections: a logistic calibration of "correct" against score.

A detector's scores are not probabilities and do not transfer from one class to another (Wood & Kahl
2024, J. Ornithol.): one threshold for all classes passes many false alarms of one and misses calls
of another. From the latest review of each event (:meth:`helpers.evaluation.review.ReviewTable.latest`)
:func:`calibrate` fits, per class, ``P(correct | score) = 1 / (1 + exp(-(a + b * score)))`` by
logistic regression, where an event is correct when reviewed ``call``, wrong when reviewed
``not_call`` or ``other`` (a call of another label is a false alarm of this one); ``unsure`` and
``skip`` are left out. The threshold for a target precision is the score at which the fitted
probability reaches the target: every detection above it is at least that likely to be right, so
the precision above it is at least the target as far as the fit holds. Its uncertainty is a
bootstrap over the reviews (percentile interval). A class is not calibrated, and says why, with
fewer than ``min_reviews`` reviews, with only right or only wrong ones, or when the fitted
probability does not rise with the score.

:func:`write_calibration` / :func:`read_calibration` store it as JSON;
:func:`calibrated_thresholds` gives the ``threshold`` mapping that ``scan`` and ``rescore`` take.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from helpers.core.fileio import read_json, write_json_atomic

CORRECT, WRONG = ("call",), ("not_call", "other")
MIN_REVIEWS = 10
N_BOOTSTRAP = 200
CALIBRATION_VERSION = 1


def _fit(scores: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """(a, b) of the logistic regression of ``correct`` on ``score`` (a light L2 penalty keeps a
    perfectly separated set finite)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=100.0, max_iter=1000).fit(scores.reshape(-1, 1), correct.astype(int))
    return float(model.intercept_[0]), float(model.coef_[0, 0])


def _threshold(a: float, b: float, target: float) -> float:
    return (math.log(target / (1 - target)) - a) / b


def calibrate(
    reviews: pd.DataFrame,
    target_precision: float = 0.9,
    min_reviews: int = MIN_REVIEWS,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """Per class of ``reviews`` (latest decision per event: columns label, score, decision), the fit, the
    threshold for ``target_precision`` with its 90 % bootstrap interval, and the counts it rests on.

    Returns ``{"target_precision", "rule", "classes": {label: {...}}}``; a class entry has ``n``,
    ``n_correct``, ``calibrated`` (bool), ``note``, and when calibrated ``a``, ``b``, ``threshold``,
    ``threshold_interval`` ``[low, high]``."""
    if not 0 < target_precision < 1:
        raise ValueError(f"target_precision must lie in (0, 1), not {target_precision!r}.")
    missing = [c for c in ("label", "score", "decision") if c not in reviews.columns]
    if missing:
        raise ValueError(f"calibrate: the reviews lack {missing}; give ReviewTable.latest().")
    used = reviews[reviews["decision"].isin(CORRECT + WRONG)]
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {
        "version": CALIBRATION_VERSION,
        "target_precision": target_precision,
        "rule": "logistic fit of correct (call) against score per class; threshold where the "
        "fitted P(correct) reaches the target; 90 % bootstrap interval",
        "classes": {},
    }
    for label in sorted(reviews["label"].astype(str).unique()):
        part = used[used["label"].astype(str) == label]
        scores = part["score"].to_numpy(float)
        correct = part["decision"].isin(CORRECT).to_numpy()
        entry: dict[str, Any] = {"n": int(len(part)), "n_correct": int(correct.sum()), "calibrated": False}
        if len(part) < min_reviews:
            entry["note"] = f"{len(part)} usable reviews, fewer than {min_reviews}: review more of its detections"
        elif correct.all() or not correct.any():
            entry["note"] = (
                f"all {len(part)} reviews say {'correct' if correct.all() else 'wrong'}: the score cannot "
                "be calibrated; review detections nearer the threshold (review_queue 'threshold')"
            )
        else:
            a, b = _fit(scores, correct)
            if b <= 0:
                entry["note"] = "P(correct) does not rise with the score in these reviews: no threshold serves it"
            else:
                boot = []
                for _ in range(n_bootstrap):
                    pick = rng.integers(0, len(part), len(part))
                    if correct[pick].all() or not correct[pick].any():
                        continue
                    ba, bb = _fit(scores[pick], correct[pick])
                    if bb > 0:
                        boot.append(_threshold(ba, bb, target_precision))
                threshold = _threshold(a, b, target_precision)
                note = f"from {len(part)} reviews ({int(correct.sum())} correct)"
                if threshold > 1.0:
                    note += (
                        f"; the fitted P(correct) reaches {target_precision:g} only above a score of 1, so no "
                        "detection of this class reaches the target: its threshold (clipped to 1) turns it off"
                    )
                entry.update(
                    calibrated=True,
                    a=a,
                    b=b,
                    threshold=threshold,
                    threshold_interval=[float(np.percentile(boot, 5)), float(np.percentile(boot, 95))]
                    if boot
                    else [float("nan"), float("nan")],
                    note=note,
                )
        out["classes"][label] = entry
    return out


def calibration_table(calibration: Mapping[str, Any]) -> pd.DataFrame:
    """One row per class: n, n_correct, calibrated, threshold, its interval, note."""
    rows = []
    for label, e in calibration["classes"].items():
        low, high = e.get("threshold_interval", [np.nan, np.nan])
        rows.append(
            {
                "class": label,
                "n": e["n"],
                "n_correct": e["n_correct"],
                "calibrated": e["calibrated"],
                "threshold": e.get("threshold", np.nan),
                "interval low": low,
                "interval high": high,
                "note": e["note"],
            }
        )
    return pd.DataFrame(rows)


def write_calibration(calibration: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    write_json_atomic(path, dict(calibration))
    return path


def read_calibration(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        calibration = read_json(path)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as a calibration ({exc}); write it with write_calibration.") from None
    if not isinstance(calibration, dict) or "classes" not in calibration:
        raise ValueError(f"{path}: not a calibration file (no 'classes'); write it with write_calibration.")
    return calibration


def calibrated_thresholds(
    calibration: Mapping[str, Any] | str | Path,
    classes: list[str],
    fallback: float | None = None,
    background: str | None = "background",
) -> dict[str, float]:
    """The per-class ``threshold`` for ``scan``/``rescore``: each calibrated class's threshold, clipped to
    [0, 1]; a call class without one gets ``fallback``, and without a fallback ValueError names it."""
    if not isinstance(calibration, Mapping):
        calibration = read_calibration(calibration)
    out, missing = {}, []
    for label in classes:
        if label == background:
            continue
        entry = calibration["classes"].get(label, {})
        if entry.get("calibrated"):
            out[label] = float(min(1.0, max(0.0, entry["threshold"])))
        elif fallback is not None:
            out[label] = float(fallback)
        else:
            missing.append(f"{label} ({entry.get('note', 'not reviewed')})")
    if missing:
        raise ValueError(
            "no calibrated threshold for " + "; ".join(missing) + "; review more detections or give a "
            "fallback threshold for them."
        )
    return out
