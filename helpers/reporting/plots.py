"""Figures for the notebooks: class counts, durations, log-mels, learning curves, confusions,
t-SNE maps, SVM C curves, and the result figures of the grid notebooks (model comparison beside
the paper, ablation gains, learning curves of several runs).

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

from helpers.core.fileio import atomic_write


def save_figure(fig: matplotlib.figure.Figure, name: str, figures_dir: str | Path = "figures", dpi: int = 120) -> Path:
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


def plot_logmel(
    logmel: np.ndarray,
    sample_rate: int,
    hop_length: int = 320,
    title: str = "",
    ax=None,
    vmin: float | None = -100.0,
    vmax: float | None = None,
):
    """Show one log-mel ``(time, mel)`` in dB with time in seconds and mel bin on the y axis."""
    fig, ax = _fig_ax(ax, (5, 2.5))
    seconds = logmel.shape[0] * hop_length / sample_rate
    im = ax.imshow(
        logmel.T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=vmin,
        vmax=vmax,
        extent=(0, seconds, 0, logmel.shape[1]),
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel bin")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="dB")
    return fig


def plot_logmel_grid(
    logmels: Sequence[np.ndarray], titles: Sequence[str], sample_rate: int, hop_length: int = 320, ncols: int = 3
):
    """Several log-mels ``(time, mel)`` side by side on a shared colour scale (dB)."""
    n = len(logmels)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.6 * nrows), squeeze=False)
    vmax = float(max(np.max(m) for m in logmels))
    for ax, m, t in zip(axes.flat, logmels, titles):
        seconds = m.shape[0] * hop_length / sample_rate
        ax.imshow(
            m.T,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=vmax - 100,
            vmax=vmax,
            extent=(0, seconds, 0, m.shape[1]),
        )
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("mel bin")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_mean_logmel_per_class(
    features: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    ax=None,
    title: str = "Mean log-mel spectrum per class",
):
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


def plot_confusion(
    matrix: np.ndarray, classes: Sequence[str], normalize: bool = True, ax=None, title: str = "Confusion matrix"
):
    """Heat map of a confusion matrix (rows: true class, columns: predicted), row-normalised."""
    fig, ax = _fig_ax(ax, (4.8, 4))
    m = np.asarray(matrix, dtype=float)
    if normalize:
        m = m / np.clip(m.sum(axis=1, keepdims=True), 1, None)
    sns.heatmap(
        m,
        annot=True,
        fmt=".2f" if normalize else ".0f",
        cmap="Blues",
        xticklabels=classes,
        yticklabels=classes,
        vmin=0,
        vmax=1 if normalize else None,
        ax=ax,
        cbar=False,
    )
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


def plot_tsne(
    points: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    ax=None,
    title: str = "t-SNE of the devel embeddings",
):
    """Scatter of a 2-d map ``points (n, 2)`` (e.g. :func:`helpers.evaluation.embeddings.tsne_2d`) coloured
    by class; ``labels (n,)`` are class indices, -1 (unknown) drawn in grey. The axes have no
    unit: t-SNE keeps neighbourhoods, not distances."""
    fig, ax = _fig_ax(ax, (5.5, 5))
    points = np.asarray(points)
    labels = np.asarray(labels)
    palette = sns.color_palette("tab10", n_colors=max(len(classes), 1))
    for k, name in enumerate(classes):
        sel = labels == k
        if sel.any():
            ax.scatter(
                points[sel, 0],
                points[sel, 1],
                s=6,
                alpha=0.7,
                color=palette[k % len(palette)],
                label=f"{name} (n={int(sel.sum())})",
            )
    unknown = labels < 0
    if unknown.any():
        ax.scatter(
            points[unknown, 0],
            points[unknown, 1],
            s=6,
            alpha=0.5,
            color="0.6",
            label=f"unknown (n={int(unknown.sum())})",
        )
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
        ax.plot(
            [best["C"]],
            [best["devel_uar"]],
            "*",
            color="C3",
            ms=12,
            label=f"chosen C={best['C']:g} (devel UAR optimistic)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("C (inverse regularisation)")
    ax.set_ylabel("UAR")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return fig


# --- results of training runs (notebook 08_report) --------------------------------------------


def _numeric_column(table: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """``table[column]`` as floats (NaN for None), or an error naming the column and the fix."""
    if column not in table:
        raise KeyError(f"{what}: no column {column!r}; the table has {list(table.columns)}.")
    try:
        return pd.to_numeric(table[column], errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{what}: column {column!r} holds text ({exc}); pass numbers in %, e.g. "
            f"helpers.experiments.collect.table2(runs, as_text=False)."
        ) from exc


def plot_model_comparison(
    table: pd.DataFrame,
    ours: str,
    paper: str,
    label: str = "model",
    title: str = "Devel UAR: ours beside the paper",
    ax=None,
):
    """Grouped horizontal bars, one group per row of ``table`` (top to bottom in row order):
    our value (column ``ours``, UAR in %) and the paper's (column ``paper``, %).

    The group's name is the row's ``label`` column. A NaN value draws no bar (a model we did not
    run, or one the paper did not report); each bar carries its value.
    """
    fig, ax = _fig_ax(ax, (7, 0.8 + 0.5 * len(table)))
    what = "plot_model_comparison"
    if label not in table:
        raise KeyError(f"{what}: no label column {label!r}; the table has {list(table.columns)}.")
    series = [(_numeric_column(table, ours, what), "ours", "C0"), (_numeric_column(table, paper, what), "paper", "0.6")]
    y = np.arange(len(table), dtype=float)
    height = 0.38
    for k, (values, name, color) in enumerate(series):
        # Our bar above the paper's within a group (the y axis is inverted below).
        offset = (k - 0.5) * height
        keep = np.isfinite(values)
        if keep.any():
            bars = ax.barh(y[keep] + offset, values[keep], height=height, color=color, label=name)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_yticks(y, [str(v) for v in table[label]])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("UAR (%)")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_ablation_gains(
    summary: pd.DataFrame,
    metric: str = "uar",
    title: str = "Ablation: ours (mean ± std over seeds) beside the paper",
    ax=None,
    xlim: tuple[float, float] = (0, 100),
    xlabel: str | None = None,
):
    """One panel per model (side by side, shared settings axis): a horizontal bar per setting
    for our mean (%, error bar: std over seeds) and a black diamond for the paper's value (%).

    ``summary`` has columns ``model`` (display label, e.g. ``"CNN10-16k"``), ``setting``,
    ``ours_mean``, ``ours_std`` and ``paper`` (all in %; NaN where missing: no bar, no error
    bar or no diamond). Settings are drawn top to bottom in the order they first appear.
    ``xlim`` zooms the x axis (the bars start at 0, so a zoom cuts them). With ``ax``, the
    summary must hold one model only. ``xlabel`` replaces the default ``devel UAR (%)``, e.g. when
    the values are gains over a baseline (then give an ``xlim`` that includes negative values).
    """
    what = "plot_ablation_gains"
    for column in ("model", "setting"):
        if column not in summary:
            raise KeyError(f"{what}: no column {column!r}; the summary has {list(summary.columns)}.")
    means = _numeric_column(summary, "ours_mean", what)
    stds = _numeric_column(summary, "ours_std", what)
    papers = _numeric_column(summary, "paper", what)
    models = list(dict.fromkeys(summary["model"]))
    settings = list(dict.fromkeys(summary["setting"]))
    if ax is not None and len(models) > 1:
        raise ValueError(
            f"{what}: the summary holds {len(models)} models ({', '.join(map(str, models))}), "
            "and each needs its own panel; call it without ax (it makes a figure with "
            "one panel per model), or pass the rows of one model only."
        )
    if ax is None:
        fig, axes = plt.subplots(
            1,
            max(len(models), 1),
            sharey=True,
            squeeze=False,
            figsize=(4.2 * max(len(models), 1), 1.0 + 0.42 * len(settings)),
        )
        axes = list(axes[0])
    else:
        fig, axes = ax.figure, [ax]
    position = {s: float(i) for i, s in enumerate(settings)}
    model_col = summary["model"].to_numpy()
    setting_col = summary["setting"].to_numpy()
    for panel, model in zip(axes, models):
        rows = np.flatnonzero(model_col == model)
        y = np.array([position[s] for s in setting_col[rows]])
        mean, std, paper = means[rows], stds[rows], papers[rows]
        bar = np.isfinite(mean)
        if bar.any():
            # NaN std (a single seed) becomes 0: no error bar rather than a NaN warning.
            err = np.where(np.isfinite(std[bar]), std[bar], 0.0)
            panel.barh(
                y[bar], mean[bar], xerr=err, height=0.6, color="C0", ecolor="0.2", capsize=2, label="ours (mean ± std)"
            )
            for yi, value in zip(y[bar], mean[bar]):
                panel.text(
                    xlim[0] + 0.01 * (xlim[1] - xlim[0]), yi, f"{value:.1f}", va="center", fontsize=7, color="white"
                )
        dot = np.isfinite(paper)
        if dot.any():
            panel.plot(paper[dot], y[dot], "D", color="k", ms=5, ls="none", label="paper")
        panel.set_title(str(model), fontsize=10)
        panel.set_xlim(*xlim)
        panel.set_xlabel(xlabel or f"devel {metric.upper()} (%)")
        if xlim[0] < 0:
            panel.axvline(0, color="0.3", lw=0.8)
    first = axes[0]
    first.set_yticks(range(len(settings)), [str(s) for s in settings])
    first.set_ylim(len(settings) - 0.5, -0.5)  # first setting on top
    # One legend for all panels, "ours" first, kept off the bars.
    found: dict[str, object] = {}
    for panel in axes:
        for handle, name in zip(*panel.get_legend_handles_labels()):
            found.setdefault(name, handle)
    names = sorted(found, key=lambda n: n != "ours (mean ± std)")
    if ax is None:
        fig.suptitle(title)
        if names:
            fig.legend(
                [found[n] for n in names],
                names,
                fontsize=8,
                ncol=len(names),
                loc="lower center",
                bbox_to_anchor=(0.5, 0.0),
                frameon=False,
            )
        fig.tight_layout(rect=(0, 0.07 if names else 0, 1, 1))
    else:
        ax.set_title(f"{title}\n{models[0]}" if models else title, fontsize=10)
        if names:
            ax.legend([found[n] for n in names], names, fontsize=7, loc="best")
    return fig


def plot_learning_curve_overlay(
    histories: dict[str, pd.DataFrame],
    column: str = "uar_ema",
    fallback: str = "uar_plain",
    title: str = "Learning curves of several runs",
    ax=None,
):
    """Devel UAR (%) over iterations, one line per run: ``histories`` maps a run label to its
    ``history.csv`` table (columns ``step`` and ``column``, fractions in 0..1).

    A run whose ``column`` is absent or all NaN (e.g. trained without EMA) is drawn from
    ``fallback`` and labelled so. A run with no devel score in either column yet is not drawn,
    and a note under the axes names it.
    """
    fig, ax = _fig_ax(ax, (7, 3.8))
    empty: list[str] = []
    for label, history in histories.items():
        if "step" not in history or (column not in history and fallback not in history):
            raise KeyError(
                f"plot_learning_curve_overlay: run {label!r} has no 'step' or neither "
                f"{column!r} nor {fallback!r}; its columns are {list(history.columns)}."
            )
        used = column if column in history and history[column].notna().any() else fallback
        if used not in history or not history[used].notna().any():
            empty.append(str(label))
            continue
        # Rows between evaluations hold NaN; drop them so the line is not broken into dots.
        rows = history[["step", used]].dropna()
        ax.plot(rows["step"], rows[used] * 100, label=str(label) if used == column else f"{label} ({used})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("devel UAR (%)")
    ax.set_ylim(0, 102)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    if empty:
        ax.text(0, -0.22, "no devel scores yet: " + ", ".join(empty), transform=ax.transAxes, fontsize=7, va="top")
    return fig


# --------------------------------------------------------------------------------------------
# Long recordings: detections, event-based precision-recall, listening effort
# --------------------------------------------------------------------------------------------
#: :func:`plot_detections` writes each event's label and score only up to this many events.
MAX_EVENT_LABELS = 10


def plot_detections(
    wave: np.ndarray,
    sample_rate: int,
    windows: pd.DataFrame,
    events: pd.DataFrame,
    classes: Sequence[str],
    threshold: float | None = None,
    truth: pd.DataFrame | None = None,
    background: str | None = "background",
    fmax: float | None = None,
    title: str = "",
):
    """A recording's spectrogram with its detections, and the windows' scores under it.

    ``wave``: mono samples ``(n,)`` at ``sample_rate`` Hz; ``windows``: a scan's window table
    (``begin``, ``end`` in s, ``score_<class>``); ``events``: its detections (``begin``, ``end``,
    ``label``, ``score``); ``truth``: reference events to draw as bars above the spectrogram.
    Each window's score is drawn at its centre.
    """
    fig, (ax_spec, ax_score) = plt.subplots(
        2, 1, figsize=(11, 5.2), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]}
    )
    ax_spec.specgram(
        wave.astype(np.float64) + 1e-9, NFFT=1024, Fs=sample_rate, noverlap=512, cmap="magma", scale="dB", vmin=-120
    )
    top = fmax or sample_rate / 2
    ax_spec.set_ylim(0, top)
    ax_spec.set_ylabel("frequency (Hz)")
    calls = [c for c in classes if c != background]
    palette = dict(zip(calls, sns.color_palette("tab10", len(calls))))
    for ev in events.itertuples():
        color = palette.get(ev.label, "w")
        ax_spec.axvspan(ev.begin, ev.end, ymin=0.0, ymax=0.9, color=color, alpha=0.25, lw=0)
        if len(events) <= MAX_EVENT_LABELS:  # more labels than that overlap; the colours and legend remain
            ax_spec.text(ev.begin, top * 0.88, f"{ev.label} {ev.score:.2f}", color="w", fontsize=7, va="top")
    ax_spec.set_xlim(0, len(wave) / sample_rate)
    if truth is not None:
        for ev in truth.itertuples():
            ax_spec.plot(
                [ev.begin, ev.end], [top * 0.96] * 2, color=palette.get(ev.label, "w"), lw=4, solid_capstyle="butt"
            )
        ax_spec.text(0, top * 0.985, "truth", color="w", fontsize=7, va="top")
    ax_spec.set_title(title or "Detections (shaded) on the spectrogram")
    centre = (windows["begin"] + windows["end"]) / 2
    for c in calls:
        ax_score.plot(centre, windows[f"score_{c}"], label=c, color=palette[c], lw=1)
    if threshold is not None:
        ax_score.axhline(threshold, color="k", ls="--", lw=0.8, label="threshold")
    ax_score.set_ylim(0, 1.02)
    ax_score.set_ylabel("window score")
    ax_score.set_xlabel("time (s)")
    ax_score.legend(fontsize=7, ncol=min(5, len(calls) + 1), loc="upper right")
    ax_score.set_xlim(0, len(wave) / sample_rate)
    fig.tight_layout()
    return fig


def plot_event_precision_recall(
    curve: pd.DataFrame,
    chosen: float | None = None,
    ax=None,
    title: str = "Event-based precision and recall over the threshold",
):
    """Precision against recall of detected events (rows of ``class == "all"`` of
    :func:`helpers.recordings.event_scores.precision_recall_curve_events`), one point per threshold;
    ``chosen`` marks the threshold used for the tables."""
    fig, ax = _fig_ax(ax, (5, 4))
    rows = curve[curve["class"] == "all"].sort_values("threshold")
    ax.plot(rows["recall"], rows["precision"], marker=".", lw=1)
    for r in rows.iloc[:: max(1, len(rows) // 6)].itertuples():
        ax.annotate(
            f"{r.threshold:.2f}", (r.recall, r.precision), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    if chosen is not None:
        hit = rows.iloc[(rows["threshold"] - chosen).abs().argmin()]
        ax.plot(hit["recall"], hit["precision"], "o", color="C3", label=f"threshold {chosen:g}")
        ax.legend(fontsize=8)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (events found)")
    ax.set_ylabel("precision (detections that are calls)")
    ax.set_title(title)
    return fig


def plot_listening_effort(curve: pd.DataFrame, ax=None, title: str = "Listening needed to find the calls"):
    """Recall against the fraction of the audio reviewed when windows are reviewed in decreasing
    call score (the ``curve`` of :func:`helpers.recordings.event_scores.listening_effort`), beside the
    diagonal of reviewing in time order with no model (expected recall = fraction reviewed)."""
    fig, ax = _fig_ax(ax, (5, 4))
    ax.plot(np.r_[0.0, curve["reviewed_fraction"]], np.r_[0.0, curve["recall"]], lw=1.5, label="in score order")
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="no model (listen to everything)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("fraction of the audio listened to")
    ax.set_ylabel("recall (calls found)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    return fig


def plot_forms(
    scores: pd.DataFrame,
    metrics: Sequence[str] = ("uar", "calls_as_background"),
    names: dict[str, str] | None = None,
    title: str = "Flat, two-stage and multi-task, per seed",
):
    """One panel per metric: for each form (x) and split (colour), every seed as a dot and the mean
    over seeds as a bar, in %. ``scores``: :func:`helpers.experiments.hierarchy.compare_forms`' table
    (columns ``form``, ``split``, ``seed`` and the metrics, fractions). A form without a value on a
    split has neither dot nor bar."""
    for column in ("form", "split", *metrics):
        if column not in scores:
            raise KeyError(f"plot_forms: no column {column!r}; the table has {list(scores.columns)}")
    forms = list(dict.fromkeys(scores["form"]))
    splits = list(dict.fromkeys(scores["split"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.4), squeeze=False)
    width = 0.8 / max(len(splits), 1)
    colours = sns.color_palette("colorblind", len(splits))
    for ax, metric in zip(axes[0], metrics):
        for j, split in enumerate(splits):
            for i, form in enumerate(forms):
                values = (
                    100
                    * pd.to_numeric(
                        scores[(scores["form"] == form) & (scores["split"] == split)][metric], errors="coerce"
                    )
                    .dropna()
                    .to_numpy()
                )
                if not len(values):
                    continue
                x = i - 0.4 + width * (j + 0.5)
                ax.bar(
                    x, values.mean(), width=width * 0.9, color=colours[j], alpha=0.45, label=split if i == 0 else None
                )
                ax.plot(np.full(len(values), x), values, "o", color=colours[j], markersize=4)
        ax.set_xticks(range(len(forms)), forms)
        ax.set_ylabel(f"{(names or {}).get(metric, metric)} (%)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(title="split", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_starting_points(
    rows: pd.DataFrame,
    columns: Sequence[str] = ("test UAR", "event F1"),
    by: str = "starting point",
    title: str = "From scratch against pretrained",
):
    """One panel per column of ``columns`` (a UAR in %, an F1 in [0, 1]), one horizontal bar per value of
    ``by`` in first-seen order: the mean over the runs of ``rows`` with the seed spread (std) as an error
    bar where there are several. A NaN mean draws no bar (a split without labels)."""
    groups = rows.groupby(by, sort=False)
    names = list(groups.groups)
    fig, axes = plt.subplots(
        1, len(columns), figsize=(4.2 * len(columns), 0.9 + 0.45 * len(names)), sharey=True, squeeze=False
    )
    y = np.arange(len(names), dtype=float)
    for ax, column in zip(axes[0], columns):
        if column not in rows:
            raise KeyError(f"plot_starting_points: no column {column!r}; the table has {list(rows.columns)}.")
        mean = groups[column].mean().reindex(names).to_numpy(float)
        std = groups[column].std(ddof=1).reindex(names).fillna(0.0).to_numpy(float)
        keep = np.isfinite(mean)
        bars = ax.barh(y[keep], mean[keep], xerr=std[keep], color="C0", capsize=3)
        ax.bar_label(bars, fmt="%.2f" if "F1" in column else "%.1f", fontsize=7, padding=3)
        ax.set_xlim(0, 100 if "UAR" in column else 1.0)
        ax.set_xlabel(column + (" (%)" if "UAR" in column else ""))
    axes[0][0].set_yticks(y, names)
    axes[0][0].invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_event_spectrogram(
    wave: np.ndarray, sample_rate: int, offset: float, begin: float, end: float, title: str = "", ax=None
):
    """Spectrogram (dB) of a stretch of audio ``wave`` that starts at ``offset`` s in its recording, with
    the event's span ``begin``-``end`` (s, recording time) outlined: what a reviewer looks at."""
    fig, ax = _fig_ax(ax, (7, 2.6))
    n_fft = 512 if sample_rate <= 16_000 else 1024
    if len(wave) > n_fft:
        ax.specgram(
            wave,
            NFFT=n_fft,
            Fs=sample_rate,
            noverlap=n_fft // 2,
            cmap="magma",
            xextent=(offset, offset + len(wave) / sample_rate),
        )
    ax.axvspan(begin, end, color="cyan", alpha=0.15, lw=0)
    for x in (begin, end):
        ax.axvline(x, color="cyan", lw=1.2)
    ax.set_xlim(offset, offset + len(wave) / sample_rate)
    ax.set_xlabel("time in the recording (s)")
    ax.set_ylabel("Hz")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_review_rounds(
    rounds: pd.DataFrame,
    columns: Sequence[str] = ("event F1", "event precision", "event recall"),
    title: str = "Review rounds, measured on the report recording",
):
    """Each of ``columns`` against the round, mean over seeds with the seed spread (std) as error bars;
    ``rounds``: one row per (seed, round) with a ``round`` column."""
    fig, ax = _fig_ax(None, (6, 3))
    grouped = rounds.groupby("round")
    for column in columns:
        mean, std = grouped[column].mean(), grouped[column].std(ddof=1).fillna(0.0)
        ax.errorbar(mean.index, mean.to_numpy(), yerr=std.to_numpy(), marker="o", capsize=3, label=column)
    ax.set_xlabel("round (0: before any review)")
    ax.set_xticks(sorted(rounds["round"].unique()))
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_calibration(
    scores: np.ndarray,
    correct: np.ndarray,
    a: float | None,
    b: float | None,
    threshold: float | None = None,
    title: str = "",
    ax=None,
):
    """Reviewed events of one class: correct (1) or not (0) against score, the fitted logistic
    ``P(correct) = 1 / (1 + exp(-(a + b score)))`` and the threshold for the target precision."""
    fig, ax = _fig_ax(ax, (4, 2.8))
    jitter = np.random.default_rng(0).uniform(-0.03, 0.03, len(scores))
    ax.scatter(scores, np.asarray(correct, float) + jitter, s=14, alpha=0.6, color="C0", label="reviews")
    if a is not None and b is not None:
        x = np.linspace(0, 1, 200)
        ax.plot(x, 1 / (1 + np.exp(-(a + b * x))), color="C1", label="fitted P(correct)")
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="C3", ls="--", lw=1, label="threshold")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.1, 1.1)
    ax.set_xlabel("score")
    ax.set_ylabel("correct")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    return fig
