"""Figures of the field-recordings notebook: detections on a spectrogram, event precision-recall,
listening effort; each draws what it is given (spans, points, lines)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from helpers.reporting.plots import plot_detections, plot_event_precision_recall, plot_listening_effort

CLASSES = ["background", "a", "b"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_detections_are_shaded_and_scores_drawn():
    windows = pd.DataFrame(
        {
            "begin": np.arange(0, 9, 1.0),
            "end": np.arange(2, 11, 1.0),
            "score_background": 0.5,
            "score_a": np.linspace(0, 1, 9),
            "score_b": 0.1,
        }
    )
    events = pd.DataFrame({"begin": [6.0], "end": [10.0], "label": ["a"], "score": [1.0]})
    truth = pd.DataFrame({"begin": [6.5, 1.0], "end": [8.0, 2.0], "label": ["a", "b"]})
    fig = plot_detections(
        np.random.default_rng(0).normal(0, 0.1, 8000 * 10), 8000, windows, events, CLASSES, threshold=0.5, truth=truth
    )
    spec, score = fig.axes[0], fig.axes[1]
    assert len(spec.patches) == 1  # one shaded detection
    assert len(spec.lines) == 2  # two truth bars
    assert len(score.lines) == 3  # two call classes and the threshold; background is not drawn
    np.testing.assert_allclose(score.lines[0].get_xdata(), windows["begin"] + 1.0)


def test_event_precision_recall_and_listening_effort():
    curve = pd.DataFrame(
        {
            "threshold": [0.1, 0.5, 0.9, 0.1],
            "class": ["all", "all", "all", "a"],
            "precision": [0.2, 0.6, 1.0, 0.3],
            "recall": [1.0, 0.7, 0.2, 1.0],
        }
    )
    fig = plot_event_precision_recall(curve, chosen=0.5)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1.0, 0.7, 0.2])
    np.testing.assert_allclose(ax.lines[1].get_xdata(), [0.7])  # the chosen threshold's point
    effort = pd.DataFrame({"reviewed_fraction": [0.1, 0.2, 0.5], "recall": [0.5, 0.9, 1.0]})
    ax = plot_listening_effort(effort).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.0, 0.5, 0.9, 1.0])
    assert list(ax.lines[1].get_xdata()) == [0, 1]
