"""The two-stage form of "background first, then species" (Kölle et al. 2023's "binary
presorting"): a call detector, then a species classifier for what it lets through.

Training data for the two stages come from the ordinary corpus:

    detector            relabel_to_calls(corpus)   every clip labelled "background" or "call"
    species classifier  calls_only(corpus)         the call clips only, their species labels

Both train with the ordinary engine (:func:`helpers.training.train`). Their run folders are named
by the ``TrainConfig`` alone, so give each stage its own ``corpus`` name (e.g.
``corpus="demo+call-detector"`` and ``corpus="demo+calls-only"``) while passing the relabelled
corpus to ``train``; otherwise the stages would land in the flat model's folder.

Scoring clips with both trained stages is :func:`stage_scores`. Combining them
(:func:`two_stage_predictions`): a clip is background when the detector's call
probability is under ``threshold``, otherwise the species classifier's answer. The threshold is
chosen on devel by :func:`choose_threshold` (the devel UAR it reports is therefore optimistic).

Scores (:func:`two_stage_scores`) follow the multi-task model's rule and convention
(:mod:`helpers.models.hierarchical`): P(background) = 1 - P(call), P(species k) = P(call) x
P(k | call), with P(k | call) the species classifier's scores (a distribution after softmax
training, each in [0, 1] after BCE). P(call) enters after a per-clip monotone recalibration that
puts the decision boundary at the threshold, so the argmax of the scores is exactly the
two-stage decision and every metric and table reading argmax agrees with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from helpers.data.corpora.views import DETECTOR_CLASSES, calls_only, relabel_to_calls  # noqa: F401 (the stages' corpora)
from helpers.evaluation.metrics import unweighted_average_recall
from helpers.evaluation.predict import load_for_inference
from helpers.evaluation.scoring import predict_scores
from helpers.models.hierarchical import call_positions

#: What :func:`choose_threshold` says about the devel score it reports.
OPTIMISTIC_NOTE = (
    "optimistic: the threshold was chosen to maximise this devel UAR; only a test (or other "
    "held-out) score is an unbiased estimate"
)


def stage_scores(
    detector_checkpoint: str | Path,
    species_checkpoint: str | Path,
    features: np.ndarray,
    classes: Sequence[str],
    background_class: str = "background",
    batch_size: int = 64,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Both stages' scores of log-mels ``features`` ``(n, time, mel)`` in dB (computed with the stages'
    front end, which must be the same for both): the detector's P(call) ``(n,)`` (its ``call``
    column, in [0, 1]) and the species classifier's scores ``(n, K-1)`` in its own score convention,
    columns in the order of ``classes`` without ``background_class``.

    ``detector_checkpoint``: trained on :func:`relabel_to_calls` of the corpus; ``species_checkpoint``:
    on :func:`calls_only` of it. Raises ValueError naming the checkpoint whose classes or front end
    do not fit."""
    classes = list(classes)
    if background_class not in classes:
        raise ValueError(f"classes {classes} lack {background_class!r}; pass background_class= the no-call class.")
    calls = [c for c in classes if c != background_class]
    detector, detector_classes, detector_settings, detector_score = load_for_inference(detector_checkpoint, device)
    species, species_classes, species_settings, species_score = load_for_inference(species_checkpoint, device)
    if detector_classes != list(DETECTOR_CLASSES):
        raise ValueError(
            f"{detector_checkpoint}: classes {detector_classes}, expected {list(DETECTOR_CLASSES)}; "
            "train the detector on relabel_to_calls(corpus)."
        )
    if species_classes != calls:
        raise ValueError(
            f"{species_checkpoint}: classes {species_classes}, expected the calls {calls}; train the "
            "species classifier on calls_only(corpus)."
        )
    if detector_settings != species_settings:
        raise ValueError(
            f"{detector_checkpoint} and {species_checkpoint} read different front ends "
            f"({detector_settings} vs {species_settings}); train both stages with one front end."
        )
    p_call = predict_scores(detector, features, batch_size=batch_size, score=detector_score)[:, 1]
    return p_call, predict_scores(species, features, batch_size=batch_size, score=species_score)


def two_stage_predictions(
    call_probability: np.ndarray, species_scores: np.ndarray, background_index: int, threshold: float
) -> np.ndarray:
    """Class indices ``(n,)`` in the full K-class order: ``background_index`` where
    ``call_probability < threshold``, else the call class with the highest species score.

    ``call_probability``: ``(n,)`` the detector's P(call) in [0, 1]; ``species_scores``:
    ``(n, K-1)`` the species classifier's scores, call classes in class order."""
    p = np.asarray(call_probability, dtype=np.float64).reshape(-1)
    q = np.asarray(species_scores, dtype=np.float64)
    if q.ndim != 2 or q.shape[0] != p.shape[0]:
        raise ValueError(f"call_probability {p.shape} and species_scores {q.shape} must be (n,) and (n, K-1).")
    positions = np.asarray(call_positions(q.shape[1] + 1, background_index))
    return np.where(p < threshold, background_index, positions[q.argmax(axis=1)])


def two_stage_scores(
    call_probability: np.ndarray, species_scores: np.ndarray, background_index: int, threshold: float = 0.5
) -> np.ndarray:
    """Class scores ``(n, K)`` of the two-stage system (module docstring), float64.

    P(call) ``p`` is recalibrated per clip, monotonically, so that ``p = threshold`` lands where
    background and the best species tie (``b = 1 / (1 + m)``, ``m`` the clip's highest species score):
    ``p' = b p / t`` below the threshold, ``b + (1 - b)(p - t)/(1 - t)`` above. Then
    ``scores[:, background] = 1 - p'`` and ``scores[:, species k] = p' q_k``: rows sum to 1 when the
    species scores do (softmax), each lies in [0, 1] when they are per-class sigmoids, and the argmax
    equals :func:`two_stage_predictions` (up to exact ties at ``p == threshold``). With
    ``threshold=0.5`` and ``m = 1`` the recalibration is the identity.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold {threshold} must lie strictly between 0 and 1; use choose_threshold on devel.")
    p = np.clip(np.asarray(call_probability, dtype=np.float64).reshape(-1), 0.0, 1.0)
    q = np.asarray(species_scores, dtype=np.float64)
    if q.ndim != 2 or q.shape[0] != p.shape[0]:
        raise ValueError(f"call_probability {p.shape} and species_scores {q.shape} must be (n,) and (n, K-1).")
    positions = call_positions(q.shape[1] + 1, background_index)
    b = 1.0 / (1.0 + q.max(axis=1))
    recalibrated = np.where(p < threshold, b * p / threshold, b + (1.0 - b) * (p - threshold) / (1.0 - threshold))
    scores = np.empty((p.shape[0], q.shape[1] + 1), dtype=np.float64)
    scores[:, background_index] = 1.0 - recalibrated
    scores[:, positions] = recalibrated[:, None] * q
    return scores


@dataclass(frozen=True)
class ThresholdChoice:
    """The detector threshold chosen on devel, the devel UAR it gives (optimistic, see ``note``) and
    the candidates tried with their UARs."""

    threshold: float
    devel_uar: float
    candidates: np.ndarray
    uars: np.ndarray
    note: str = OPTIMISTIC_NOTE


def choose_threshold(
    call_probability: np.ndarray,
    is_call: np.ndarray,
    species_scores: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    background_index: int = 0,
    candidates: Sequence[float] | None = None,
) -> ThresholdChoice:
    """The detector threshold that maximises UAR on devel. OPTIMISTIC: the devel UAR returned is the
    maximum over the candidates, so it overstates what the threshold gives on unseen clips.

    ``call_probability`` ``(n,)``: the detector's P(call) on devel; ``is_call`` ``(n,)`` bool: the
    truth. Without ``species_scores``, the UAR maximised is the detector's own (2 classes,
    background vs call). With ``species_scores`` ``(n, K-1)`` and ``labels`` ``(n,)`` (full K-class
    indices), it is the UAR of the combined two-stage decision over all K classes.

    ``candidates`` default: midpoints between consecutive distinct call probabilities (every
    distinct decision is reached once), within (0, 1). Among equally good candidates the one
    closest to 0.5 wins (the least extreme).
    """
    p = np.asarray(call_probability, dtype=np.float64).reshape(-1)
    truth = np.asarray(is_call, dtype=bool).reshape(-1)
    if p.shape != truth.shape or p.size == 0:
        raise ValueError(f"call_probability {p.shape} and is_call {truth.shape} must be the same non-empty (n,).")
    if candidates is None:
        distinct = np.unique(np.clip(p, 0.0, 1.0))
        mids = (distinct[:-1] + distinct[1:]) / 2
        edges = [min(distinct[0] / 2, 0.5), max((1 + distinct[-1]) / 2, 0.5)]
        candidates = np.unique(np.clip(np.concatenate([mids, edges]), 1e-6, 1 - 1e-6))
    candidates = np.asarray(candidates, dtype=np.float64)
    if species_scores is None:
        uars = np.array([unweighted_average_recall(truth.astype(int), (p >= t).astype(int), 2) for t in candidates])
    else:
        if labels is None:
            raise ValueError(
                "choose_threshold: species_scores needs labels (full K-class indices) to score the "
                "combined decision; pass labels=devel class indices."
            )
        labels = np.asarray(labels).reshape(-1)
        n_classes = np.asarray(species_scores).shape[1] + 1
        if not np.array_equal(labels != background_index, truth):
            raise ValueError(
                "choose_threshold: is_call disagrees with labels != background_index; pass the same "
                "clips in the same order."
            )
        uars = np.array(
            [
                unweighted_average_recall(
                    labels, two_stage_predictions(p, species_scores, background_index, t), n_classes
                )
                for t in candidates
            ]
        )
    best = np.flatnonzero(uars == np.nanmax(uars))
    pick = best[np.argmin(np.abs(candidates[best] - 0.5))]
    return ThresholdChoice(
        threshold=float(candidates[pick]), devel_uar=float(uars[pick]), candidates=candidates, uars=uars
    )
