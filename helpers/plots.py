"""Figures for the notebooks: class counts, durations, log-mels, learning curves, confusions.

Every function returns the matplotlib Figure (and draws on ``ax`` when given) so notebooks can
show it and :func:`save_figure` can write it to ``figures/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .fileio import atomic_write


def save_figure(fig: matplotlib.figure.Figure, name: str, figures_dir: str | Path = "figures",
                dpi: int = 120) -> Path:
    """Write ``fig`` as ``figures_dir/name.png`` (atomically) and return the path."""
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return path


def plot_class_counts(counts: pd.DataFrame, log: bool = False, ax=None):
    """Bar chart of clips per class (rows of ``counts``) and split (columns)."""
    fig, ax = _fig_ax(ax, (7, 3.5))
    long = counts.reset_index().melt(id_vars=counts.index.name or "index", var_name="split", value_name="clips")
    sns.barplot(data=long, x=counts.index.name or "index", y="clips", hue="split", ax=ax)
    ax.set_xlabel("class")
    if log:
        ax.set_yscale("log")
    ax.set_title("Clips per class and split")
    for container in ax.containers:
        ax.bar_label(container, fontsize=7)
    return fig


def plot_durations(table: pd.DataFrame, clip_seconds: float | None = None, ax=None):
    """Histogram of clip durations (s) per class; a line at the fixed clip length."""
    fig, ax = _fig_ax(ax, (7, 3.5))
    known = table[table["class_index"] >= 0]
    sns.histplot(data=known, x="duration", hue="label", element="step", bins=30, ax=ax, stat="count")
    if clip_seconds:
        ax.axvline(clip_seconds, color="k", ls="--", lw=1)
        ax.text(clip_seconds, ax.get_ylim()[1] * 0.95, " clip length", va="top", fontsize=8)
    ax.set_xlabel("duration (s)")
    ax.set_title("Clip durations per class")
    return fig


def plot_logmel(logmel: np.ndarray, sample_rate: int, hop_length: int = 320, title: str = "",
                ax=None, vmin: float | None = -100.0, vmax: float | None = None):
    """Show one log-mel ``(time, mel)`` in dB with time in seconds and mel bin on the y axis."""
    fig, ax = _fig_ax(ax, (5, 2.5))
    seconds = logmel.shape[0] * hop_length / sample_rate
    im = ax.imshow(logmel.T, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax,
                   extent=(0, seconds, 0, logmel.shape[1]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel bin")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="dB")
    return fig


def plot_logmel_grid(logmels: Sequence[np.ndarray], titles: Sequence[str], sample_rate: int,
                     hop_length: int = 320, ncols: int = 3):
    """Several log-mels ``(time, mel)`` side by side on a shared colour scale (dB)."""
    n = len(logmels)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.6 * nrows), squeeze=False)
    vmax = float(max(np.max(m) for m in logmels))
    for ax, m, t in zip(axes.flat, logmels, titles):
        seconds = m.shape[0] * hop_length / sample_rate
        ax.imshow(m.T, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 100, vmax=vmax,
                  extent=(0, seconds, 0, m.shape[1]))
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("mel bin")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_mean_logmel_per_class(features: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                               ax=None, title: str = "Mean log-mel spectrum per class"):
    """Mean over clips and time of ``features (n, time, mel)`` per class: one curve per class (dB)."""
    fig, ax = _fig_ax(ax, (6, 3.5))
    for k, name in enumerate(classes):
        sel = labels == k
        if sel.any():
            ax.plot(features[sel].mean(axis=(0, 1)), label=f"{name} (n={int(sel.sum())})")
    ax.set_xlabel("mel bin")
    ax.set_ylabel("mean level (dB)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def plot_learning_curves(history: pd.DataFrame, metric: str = "uar", ax=None):
    """Devel ``metric`` over iterations for the plain and the EMA model (columns ``step``,
    ``{metric}_plain``, ``{metric}_ema``), plus the training loss on a second axis."""
    fig, ax = _fig_ax(ax, (7, 3.5))
    for col, style in ((f"{metric}_plain", "-"), (f"{metric}_ema", "--")):
        if col in history and history[col].notna().any():
            ax.plot(history["step"], history[col], style, label=col.replace("_", " "))
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"devel {metric.upper()}")
    ax.set_ylim(0, 1.02)
    if "train_loss" in history:
        ax2 = ax.twinx()
        ax2.plot(history["step"], history["train_loss"], color="0.6", lw=0.8, label="train loss")
        ax2.set_ylabel("train loss")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Learning curves")
    return fig


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], normalize: bool = True, ax=None,
                   title: str = "Confusion matrix"):
    """Heat map of a confusion matrix (rows: true class, columns: predicted), row-normalised."""
    fig, ax = _fig_ax(ax, (4.8, 4))
    m = np.asarray(matrix, dtype=float)
    if normalize:
        m = m / np.clip(m.sum(axis=1, keepdims=True), 1, None)
    sns.heatmap(m, annot=True, fmt=".2f" if normalize else ".0f", cmap="Blues", xticklabels=classes,
                yticklabels=classes, vmin=0, vmax=1 if normalize else None, ax=ax, cbar=False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


def _fig_ax(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size)
    else:
        fig = ax.figure
    return fig, ax


def plot_tsne(points: np.ndarray, labels: np.ndarray, classes: Sequence[str], ax=None,
              title: str = "t-SNE of the devel embeddings"):
    """Scatter of a 2-d map ``points (n, 2)`` (e.g. :func:`helpers.embeddings.tsne_2d`) coloured
    by class; ``labels (n,)`` are class indices, -1 (unknown) drawn in grey. The axes have no
    unit: t-SNE keeps neighbourhoods, not distances."""
    fig, ax = _fig_ax(ax, (5.5, 5))
    points = np.asarray(points)
    labels = np.asarray(labels)
    palette = sns.color_palette("tab10", n_colors=max(len(classes), 1))
    for k, name in enumerate(classes):
        sel = labels == k
        if sel.any():
            ax.scatter(points[sel, 0], points[sel, 1], s=6, alpha=0.7, color=palette[k % len(palette)],
                       label=f"{name} (n={int(sel.sum())})")
    unknown = labels < 0
    if unknown.any():
        ax.scatter(points[unknown, 0], points[unknown, 1], s=6, alpha=0.5, color="0.6",
                   label=f"unknown (n={int(unknown.sum())})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(fontsize=7, markerscale=2, loc="best")
    return fig


def plot_svm_c_curve(table: pd.DataFrame, ax=None, title: str = "Linear SVM: UAR against C"):
    """Train and devel UAR per C (columns ``C``, ``devel_uar``, optional ``train_uar`` and
    ``chosen``) on a log C axis; the chosen C is marked. The gap between the curves shows
    over-fitting as C grows (weaker regularisation)."""
    fig, ax = _fig_ax(ax, (5.5, 3.5))
    t = table.sort_values("C")
    if "train_uar" in t:
        ax.plot(t["C"], t["train_uar"], "o--", color="0.5", label="train UAR")
    ax.plot(t["C"], t["devel_uar"], "o-", label="devel UAR")
    if "chosen" in t and t["chosen"].any():
        best = t[t["chosen"]].iloc[0]
        ax.axvline(best["C"], color="C3", lw=0.8, ls=":")
        ax.plot([best["C"]], [best["devel_uar"]], "*", color="C3", ms=12,
                label=f"chosen C={best['C']:g} (devel UAR optimistic)")
    ax.set_xscale("log")
    ax.set_xlabel("C (inverse regularisation)")
    ax.set_ylabel("UAR")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return fig
