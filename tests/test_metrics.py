"""Tests of helpers.evaluation.metrics against scikit-learn, plus bootstrap intervals and the JSON summary."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from helpers.evaluation.metrics import (
    accuracy,
    bootstrap_ci,
    classification_metrics,
    confusion_matrix,
    mean_average_precision,
    per_class_average_precision,
    per_class_recall,
    unweighted_average_recall,
)

K = 5


def random_case(seed: int, n: int = 400, absent: int | None = 3):
    """Labels with one class absent from y_true (but predicted), and noisy scores."""
    rng = np.random.default_rng(seed)
    classes = [c for c in range(K) if c != absent]
    y_true = rng.choice(classes, size=n, p=np.linspace(4, 1, len(classes)) / np.linspace(4, 1, len(classes)).sum())
    scores = rng.normal(size=(n, K))
    scores[np.arange(n), y_true] += 1.2
    scores[:10] = np.round(scores[:10])  # a few ties
    return y_true, scores, scores.argmax(1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_uar_matches_balanced_accuracy(seed):
    y_true, _, y_pred = random_case(seed)
    assert 3 in y_pred and 3 not in y_true
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about the class absent from y_true
        expected = skm.balanced_accuracy_score(y_true, y_pred)
    assert unweighted_average_recall(y_true, y_pred, K) == pytest.approx(expected, abs=1e-12)
    r = per_class_recall(y_true, y_pred, K)
    assert np.isnan(r[3])
    present = [0, 1, 2, 4]
    np.testing.assert_allclose(r[present], skm.recall_score(y_true, y_pred, labels=present, average=None))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_matches_average_precision_score(seed):
    y_true, scores, _ = random_case(seed)
    per_class = [skm.average_precision_score(y_true == c, scores[:, c]) for c in range(K) if (y_true == c).any()]
    assert mean_average_precision(y_true, scores, K) == pytest.approx(np.mean(per_class), abs=1e-12)
    # all classes present: equals sklearn's macro average on one-hot targets
    y2, s2, _ = random_case(seed, absent=None)
    macro = skm.average_precision_score(np.eye(K)[y2], s2, average="macro")
    assert mean_average_precision(y2, s2, K) == pytest.approx(macro, abs=1e-12)


def test_confusion_matrix_matches_sklearn():
    y_true, _, y_pred = random_case(4)
    cm = confusion_matrix(y_true, y_pred, K)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=range(K)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = skm.confusion_matrix(y_true, y_pred, labels=range(K), normalize="true")
    norm = confusion_matrix(y_true, y_pred, K, normalize="true")
    np.testing.assert_allclose(norm, expected)
    np.testing.assert_allclose(norm.sum(1)[[0, 1, 2, 4]], 1.0)
    assert np.all(norm[3] == 0)


def test_accuracy_and_validation():
    assert accuracy(np.array([0, 1, 2]), np.array([0, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="outside 0..4"):
        unweighted_average_recall(np.array([0, 5]), np.array([0, 1]), K)


def test_undefined_values_are_nan_and_left_out_without_warnings():
    # The wrappers fix scikit-learn's conventions for undefined values: NaN, no warning.
    y_true, scores, y_pred = random_case(8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recalls = per_class_recall(y_true, y_pred, K)
        aps = per_class_average_precision(y_true, scores, K)
        assert np.isnan(recalls[3]) and np.isnan(aps[3])
        assert not np.isnan(np.delete(recalls, 3)).any() and not np.isnan(np.delete(aps, 3)).any()
        assert unweighted_average_recall(y_true, y_pred, K) == pytest.approx(np.delete(recalls, 3).mean(), abs=1e-15)
        assert mean_average_precision(y_true, scores, K) == pytest.approx(np.delete(aps, 3).mean(), abs=1e-15)
        empty = np.array([], dtype=np.int64)
        assert np.isnan(accuracy(empty, empty)) and np.isnan(unweighted_average_recall(empty, empty, K))
        assert np.isnan(per_class_recall(empty, empty, K)).all()
        assert np.isnan(mean_average_precision(empty, np.zeros((0, K)), K))
        counts = confusion_matrix(empty, empty, K)
        assert counts.dtype == np.int64 and counts.shape == (K, K) and not counts.any()
        assert confusion_matrix(empty, empty, K, normalize="true").dtype == np.float64


def test_input_checks():
    with pytest.raises(ValueError, match="normalize='pred' is unknown"):
        confusion_matrix(np.array([0, 1]), np.array([0, 1]), K, normalize="pred")
    with pytest.raises(ValueError, match="integer class indices"):
        per_class_recall(np.array([0.5, 1.0]), np.array([0, 1]), K)
    with pytest.raises(ValueError, match="2 clips but y_pred 3"):
        unweighted_average_recall(np.array([0, 1]), np.array([0, 1, 1]), K)
    with pytest.raises(ValueError, match=r"scores must have shape \(n_clips, n_classes\) = \(2, 5\)"):
        mean_average_precision(np.array([0, 1]), np.zeros((2, 4)), K)


def test_bootstrap_perfect_predictions():
    y = np.random.default_rng(0).integers(0, K, 300)
    assert bootstrap_ci(y, y, "uar") == (1.0, 1.0)
    assert bootstrap_ci(y, y, accuracy, n_boot=200) == (1.0, 1.0)


def test_bootstrap_contains_estimate_and_shrinks_with_n():
    widths = []
    for n in (200, 3200):
        y_true, _, y_pred = random_case(5, n=n)
        uar = unweighted_average_recall(y_true, y_pred, K)
        low, high = bootstrap_ci(y_true, y_pred, "uar", n_boot=1000, seed=0)
        assert low <= uar <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~1/sqrt(n): 16x the data, ~4x narrower


@pytest.mark.slow
def test_bootstrap_fast_path_equals_generic_path():
    y_true, scores, y_pred = random_case(6, n=300)
    fast = bootstrap_ci(y_true, y_pred, "uar", n_boot=300, seed=3)
    generic = bootstrap_ci(y_true, y_pred, lambda t, p: unweighted_average_recall(t, p, K), n_boot=300, seed=3)
    assert fast == pytest.approx(generic, abs=1e-12)
    assert bootstrap_ci(y_true, y_pred, unweighted_average_recall, n_boot=300, seed=3) == fast
    # generic path with 2-D scores (rows resampled)
    low, high = bootstrap_ci(y_true, scores, lambda t, s: mean_average_precision(t, s, K), n_boot=50)
    assert low <= mean_average_precision(y_true, scores, K) <= high


def test_classification_metrics_json_friendly():
    y_true, scores, y_pred = random_case(7)
    names = ["background", "chimpanze", "geunon", "mandrille", "redcap"]
    out = classification_metrics(y_true, scores, names, n_boot=100)
    json.dumps(out)  # serialisable (NaN became None)
    assert out["n"] == len(y_true)
    assert out["uar"] == pytest.approx(unweighted_average_recall(y_true, y_pred, K))
    assert out["map"] == pytest.approx(mean_average_precision(y_true, scores, K))
    assert out["accuracy"] == pytest.approx(accuracy(y_true, y_pred))
    assert list(out["per_class_recall"]) == names and out["per_class_recall"]["mandrille"] is None
    assert out["confusion_matrix"] == confusion_matrix(y_true, y_pred, K).tolist()
    assert out["uar_ci95"][0] <= out["uar"] <= out["uar_ci95"][1]
