"""Tests of the results figures in helpers.reporting.plots (model comparison, ablation, learning-curve
overlay) on small fabricated tables: the right number of bars, markers, lines and panels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from helpers.reporting.plots import plot_ablation_gains, plot_learning_curve_overlay, plot_model_comparison


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def bars(ax) -> list[Rectangle]:
    # ax.patches holds the bars only (the axes background is ax.patch, not in the list).
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def ablation_summary(models=("CNN10-16k", "ResNet22-8k")) -> pd.DataFrame:
    rows = []
    for m in models:
        for k, setting in enumerate(["no-bal, no-aug", "bal, specA", "full"]):
            rows.append(
                {
                    "model": m,
                    "setting": setting,
                    "ours_mean": 80.0 + k,
                    "ours_std": np.nan if k == 0 else 1.5,
                    "paper": np.nan if k == 2 else 85.0 + k,
                }
            )
    return pd.DataFrame(rows)


def test_model_comparison_draws_one_bar_per_known_value():
    table = pd.DataFrame(
        {"model": ["CNN6-8k", "CNN10-8k", "ELM"], "ours": [85.0, 90.5, np.nan], "paper": [88.2, np.nan, 61.0]}
    )
    fig = plot_model_comparison(table, ours="ours", paper="paper")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(bars(ax)) == 4
    assert [t.get_text() for t in ax.get_yticklabels()] == ["CNN6-8k", "CNN10-8k", "ELM"]
    assert ax.get_xlim() == (0.0, 100.0)
    assert ax.get_xlabel() == "UAR (%)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ours", "paper"]


def test_model_comparison_on_given_ax_and_text_columns_explained():
    fig, ax = plt.subplots()
    table = pd.DataFrame({"name": ["a"], "o": [50.0], "p": [None]})
    assert plot_model_comparison(table, "o", "p", label="name", ax=ax) is fig
    assert len(bars(ax)) == 1
    text = pd.DataFrame({"model": ["a"], "o": ["85.0 ± 1.0"], "p": [80.0]})
    with pytest.raises(ValueError, match="as_text=False"):
        plot_model_comparison(text, "o", "p")


def test_ablation_gains_one_panel_per_model():
    fig = plot_ablation_gains(ablation_summary())
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(bars(ax)) == 3
        diamonds = [line for line in ax.get_lines() if line.get_marker() == "D"]
        assert len(diamonds) == 1 and len(diamonds[0].get_xdata()) == 2
        assert ax.get_xlabel() == "devel UAR (%)"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["no-bal, no-aug", "bal, specA", "full"]
    assert [ax.get_title() for ax in fig.axes] == ["CNN10-16k", "ResNet22-8k"]


def test_ablation_gains_single_model_on_given_ax():
    fig, ax = plt.subplots()
    assert plot_ablation_gains(ablation_summary(("CNN10-8k",)), metric="map", ax=ax) is fig
    assert len(fig.axes) == 1 and len(bars(ax)) == 3
    assert ax.get_xlabel() == "devel MAP (%)"


def test_ablation_gains_as_differences_from_a_baseline():
    gains = ablation_summary(("CNN10-8k",)).assign(ours_mean=[0.0, -3.0, 4.0])
    fig = plot_ablation_gains(gains, xlim=(-10, 10), xlabel="gain (points)")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "gain (points)" and ax.get_xlim() == (-10, 10)
    assert sorted(round(b.get_width(), 6) for b in bars(ax)) == [-3.0, 0.0, 4.0]
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.get_lines())  # the zero line


def test_ablation_gains_refuses_several_models_on_one_ax():
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="own"):
        plot_ablation_gains(ablation_summary(), ax=ax)


def test_learning_curve_overlay_uses_fallback_and_names_empty_runs():
    steps = np.arange(0, 50, 10)
    with_ema = pd.DataFrame(
        {"step": steps, "uar_ema": [np.nan, 0.5, 0.6, np.nan, 0.8], "uar_plain": [0.4, 0.5, 0.55, 0.6, 0.7]}
    )
    no_ema = pd.DataFrame({"step": steps, "uar_ema": np.nan, "uar_plain": [0.3, 0.4, 0.5, 0.6, 0.65]})
    nothing = pd.DataFrame({"step": steps, "uar_ema": np.nan, "uar_plain": np.nan})
    fig = plot_learning_curve_overlay({"ema run": with_ema, "plain run": no_ema, "early": nothing})
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 2
    assert [line.get_label() for line in lines] == ["ema run", "plain run (uar_plain)"]
    np.testing.assert_allclose(lines[0].get_ydata(), [50, 60, 80])  # NaN rows dropped, in %
    np.testing.assert_allclose(lines[1].get_ydata(), [30, 40, 50, 60, 65])
    assert ax.get_ylabel() == "devel UAR (%)"
    assert any("early" in t.get_text() for t in ax.texts)


def test_learning_curve_overlay_names_a_wrong_column():
    with pytest.raises(KeyError, match="run 'r'"):
        plot_learning_curve_overlay({"r": pd.DataFrame({"step": [0], "loss": [1.0]})})
