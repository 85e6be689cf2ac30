"""Results tables from run folders: one row per run, summaries over seeds, the paper's tables.

Collectors read what :func:`helpers.training.train` and :func:`helpers.experiments.scheduler.run_trainings`
leave in run folders (``config.json``, ``metrics.json``, ``record.json``, ``history.csv``,
``failed.json``), never notebook outputs::

    from helpers.experiments.collect import collect_runs, summarise, table2, table3
    runs = collect_runs("runs/grid/demo")      # one row per run folder, failed ones included
    table3(runs)                               # ours (mean ± std (min-max, n) over seeds) beside the paper

Which checkpoint a number comes from is always named. ``best`` checkpoints are chosen by devel
UAR, so their devel scores are optimistic (the paper's numbers are of this kind); ``last`` is
the model after the final step, not selected on anything. A run with EMA reports the EMA
weights (``best_ema``/``last_ema``), a run without EMA the plain ones; the columns
``best_devel_uar``, ``last_devel_uar``, ... hold that choice and ``weights`` says which it was.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from helpers.experiments.grid import (
    ABLATION_SETTINGS,
    FULL_SETTING,
    FUSION_VARIANTS,
    PAPER_FUSION,
    PAPER_TABLE2,
    PAPER_TABLE3,
    fusion_variant_of,
    model_label,
    setting_of,
    width_of,
)
from helpers.evaluation.metrics import bootstrap_ci
from helpers.core import run_folder
from helpers.core.fileio import read_json
from helpers.training.config import TrainConfig

#: The checkpoints train() evaluates, and the splits whose columns always exist (NaN when absent).
SCORED_CHECKPOINTS = ("best_plain", "best_ema", "last_plain", "last_ema")
SCORED_SPLITS = ("devel", "test")
#: Config fields placed first in collect_runs' table (the rest follow in TrainConfig order).
LEADING_FIELDS = (
    "model",
    "sample_rate",
    "width",
    "seed",
    "sampler",
    "spec_augment",
    "mixup",
    "ema",
    "ema_mode",
    "time_stretch",
    "pitch_shift",
    "iterations",
    "run_name",
)
#: The metrics summarise() averages by default (fractions in 0..1, as in metrics.json).
DEFAULT_METRICS = [
    "best_devel_uar",
    "best_devel_map",
    "last_devel_uar",
    "last_devel_map",
    "best_test_uar",
    "last_test_uar",
]
FOLDER_STATUSES = run_folder.FOLDER_STATUSES
#: Fewest seeds for which :func:`summarise` gives a bootstrap interval of the mean (below it: range only).
MIN_SEEDS_FOR_CI = 5


# --- one row per run folder -------------------------------------------------------------------


def find_run_folders(paths_or_root: str | Path | Iterable[str | Path]) -> list[Path]:
    """Run folders (folders with a ``config.json``) at or below each given path, sorted, unique
    (:func:`helpers.core.run_folder.find`)."""
    return run_folder.find(paths_or_root)


def _flat_config(config: dict[str, Any]) -> dict[str, Any]:
    # dicts and lists (model_options) become JSON text, so the column is hashable for groupby
    return {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for k, v in config.items()}


def form_of(config: dict[str, Any]) -> str:
    """Which model form a run's config trains: ``"flat"`` (the paper's, and every fusion),
    ``"multi-task"``, or one stage of the two-stage system, ``"call-detector"`` or ``"calls-only"``
    (its corpus names a view, :mod:`helpers.data.corpora.views`). Only flat runs are rows of Tables 2 and 3."""
    from helpers.data.corpora.views import split_view

    view = split_view(str(config.get("corpus", "")))[1]
    if view is not None:
        return view
    return "multi-task" if config.get("hierarchy") == "multitask" else "flat"


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """One run folder as a flat dict: config fields, status, metrics, timings (see :func:`collect_runs`)."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / run_folder.CONFIG)
    row: dict[str, Any] = {"run_dir": str(run_dir), "run_folder": run_dir.name}
    row.update(_flat_config(config))
    try:
        row["key"] = TrainConfig.from_dict(config).key()
    except (ValueError, TypeError):
        row["key"] = None  # a config from another version of TrainConfig: still listed
    row["setting"] = setting_of(config)
    row["width"] = width_of(config.get("model_options")) if config.get("model") != "fusion" else 1.0
    row["form"] = form_of(config)
    row["fusion_variant"] = fusion_variant_of(config)
    row["weights"] = "ema" if config.get("ema", True) else "plain"
    metrics_path, record_path = run_dir / run_folder.METRICS, run_dir / run_folder.RECORD
    row["error"] = None
    row["last_step"] = run_folder.last_step(run_dir)
    row["resumable"] = (run_dir / run_folder.LAST_CHECKPOINT).is_file()
    row["status"] = run_folder.status(run_dir)
    if row["status"] == "failed":
        failed = run_folder.failure(run_dir) or {}
        row["error"] = f"{failed.get('error_type', 'Error')}: {failed.get('message', '')}"

    for ckpt in SCORED_CHECKPOINTS:
        row[f"{ckpt}_step"] = np.nan
        for split in SCORED_SPLITS:
            row[f"{ckpt}_{split}_uar"] = row[f"{ckpt}_{split}_map"] = np.nan
    row["n_parameters"] = row["n_trainable_parameters"] = np.nan
    row["train_seconds"] = np.nan
    if row["status"] == "finished":
        metrics = read_json(metrics_path)
        for ckpt, entry in (metrics.get("checkpoints") or {}).items():
            row[f"{ckpt}_step"] = entry.get("step", np.nan)
            for split, m in (entry.get("splits") or {}).items():
                m = m or {}  # None: the split has no labels (the challenge's hidden test set)
                for name in ("uar", "map"):
                    value = m.get(name)
                    row[f"{ckpt}_{split}_{name}"] = np.nan if value is None else float(value)
        row["n_parameters"] = metrics.get("n_parameters", np.nan)
        row["n_trainable_parameters"] = metrics.get("n_trainable_parameters", row["n_parameters"])
        timings = read_json(record_path).get("timings") or {}
        for name, seconds in timings.items():
            row[f"timing_{name}"] = seconds
        row["train_seconds"] = timings.get("training_loop", np.nan)
    kind = row["weights"]
    for when in ("best", "last"):
        for split in SCORED_SPLITS:
            for name in ("uar", "map"):
                row[f"{when}_{split}_{name}"] = row[f"{when}_{kind}_{split}_{name}"]
    return row


def collect_runs(paths_or_root: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One row per run folder found at or below ``paths_or_root`` (a folder counts when it has ``config.json``).

    Columns: ``run_dir``, ``run_folder``, the config fields (:data:`LEADING_FIELDS` first;
    ``model_options`` as JSON text), ``key``, ``setting`` (the :data:`~helpers.experiments.grid.ABLATION_SETTINGS`
    name the config matches, else None), ``status`` (``finished`` when ``metrics.json`` and
    ``record.json`` exist, ``failed`` when ``failed.json`` does, with ``error`` = its type and
    message; else ``unfinished``, with ``last_step`` from ``history.csv`` when there is one and
    ``resumable`` when ``checkpoints/last.pt`` exists), ``{checkpoint}_{split}_{uar|map}`` for
    checkpoints :data:`SCORED_CHECKPOINTS` and splits devel, test (fractions 0..1; NaN when absent,
    e.g. a hidden test set or a run without EMA), ``{checkpoint}_step``, ``weights`` (``ema``
    or ``plain``) and ``best_*``/``last_*`` columns taken from those weights, ``n_parameters``,
    ``train_seconds`` (the training loop, from ``record.json``) and ``timing_*`` (every timing).
    """
    rows = [read_run(p) for p in find_run_folders(paths_or_root)]
    if not rows:
        return pd.DataFrame(columns=["run_dir", "run_folder", *LEADING_FIELDS, "key", "setting", "status", "error"])
    df = pd.DataFrame(rows)
    lead = [
        "run_dir",
        "run_folder",
        *[f for f in LEADING_FIELDS if f in df],
        "key",
        "setting",
        "status",
        "error",
        "last_step",
        "weights",
    ]
    return df[lead + [c for c in df.columns if c not in lead]]


# --- summaries over seeds ---------------------------------------------------------------------


def summarise(
    df: pd.DataFrame,
    by: list[str] | None = None,
    metric_cols: list[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Mean ± std over the finished runs (seeds) of each group, with a bootstrap CI of the mean.

    Args:
        df: :func:`collect_runs`' table.
        by: the columns that define a setting (default model, sample_rate, width when the table has
            it, setting).
        metric_cols: columns to average (default :data:`DEFAULT_METRICS`).
        n_boot: bootstrap resamples of the seeds (0: no interval).
        alpha: the interval holds the central ``1 - alpha`` of the resampled means.

    Returns:
        One row per group: ``by``; ``n_finished``, ``n_failed``, ``n_unfinished`` (every run is
        counted, so failures stay visible), ``seeds`` (of the finished runs); per metric ``m``:
        ``m_n`` (finished runs with a value), ``m_mean``, ``m_std`` (sample std, ddof=1; NaN with
        one value), ``m_min``, ``m_max`` (the range over seeds), ``m_ci_low``, ``m_ci_high``
        (NaN with fewer than :data:`MIN_SEEDS_FOR_CI` values).

    The interval is a percentile bootstrap of the mean over seeds: seeds are resampled with
    replacement. With few seeds it means little (with 3 seeds there are only 10 distinct
    resamples, and the interval cannot reach beyond the smallest and largest value), so it is
    only given from :data:`MIN_SEEDS_FOR_CI` seeds on; below that the range (min-max) says more.
    It says nothing about the uncertainty from the finite devel/test set, which the per-run
    ``uar_ci95`` in ``metrics.json`` covers.
    """
    if by is None:
        by = ["model", "sample_rate", *(["width"] if "width" in df.columns else []), "setting"]
    by = list(by)
    metric_cols = DEFAULT_METRICS if metric_cols is None else list(metric_cols)
    missing = [c for c in by + metric_cols if c not in df.columns]
    if missing:
        raise KeyError(f"summarise: column(s) {missing} not in the runs table; it has {list(df.columns)}")
    rows = []
    for keys, group in df.groupby(by, dropna=False, sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row: dict[str, Any] = dict(zip(by, keys))
        status = group["status"]
        for s in FOLDER_STATUSES:
            row[f"n_{s}"] = int((status == s).sum())
        finished = group[status == "finished"]
        row["seeds"] = sorted(int(s) for s in finished["seed"]) if "seed" in finished else []
        for col in metric_cols:
            values = pd.to_numeric(finished[col], errors="coerce").dropna().to_numpy(dtype=float)
            row[f"{col}_n"] = len(values)
            row[f"{col}_mean"] = float(values.mean()) if len(values) else np.nan
            row[f"{col}_std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
            row[f"{col}_min"] = float(values.min()) if len(values) else np.nan
            row[f"{col}_max"] = float(values.max()) if len(values) else np.nan
            low = high = np.nan
            if len(values) >= MIN_SEEDS_FOR_CI and n_boot > 0:
                low, high = bootstrap_ci(values, values, _mean_of_first, n_boot=n_boot, alpha=alpha, seed=seed)
            row[f"{col}_ci_low"], row[f"{col}_ci_high"] = low, high
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_of_first(values: np.ndarray, _unused: np.ndarray) -> float:
    """The resampled mean, in bootstrap_ci's ``f(y_true, y_pred)`` form."""
    return float(np.mean(values))


# --- the paper's tables -----------------------------------------------------------------------

#: Our columns in the display tables: (summary metric, column name). Names say which checkpoint.
OUR_COLUMNS = [
    ("best_devel_map", "devel mAP, best (selected on devel: optimistic)"),
    ("best_devel_uar", "devel UAR, best (selected on devel: optimistic)"),
    ("last_devel_map", "devel mAP, last"),
    ("last_devel_uar", "devel UAR, last"),
    ("best_test_uar", "test UAR, best"),
    ("last_test_uar", "test UAR, last"),
]
PAPER_COLUMNS = [("devel_map", "paper devel mAP"), ("devel_uar", "paper devel UAR"), ("test_uar", "paper test UAR")]


def spread_text(row: pd.Series | None, metric: str, as_text: bool = True) -> Any:
    """Our value in %: text ``mean ± std (min-max, n=N)``, plus ``[95 % CI low, high]`` from
    :data:`MIN_SEEDS_FOR_CI` seeds on; one seed reads ``value (n=1)``. ``as_text=False``: the mean."""
    n = 0 if row is None else int(row.get(f"{metric}_n", 0))
    if n == 0:
        return "" if as_text else np.nan
    mean = 100 * row[f"{metric}_mean"]
    if not as_text:
        return mean
    if n == 1:
        return f"{mean:.1f} (n=1)"
    low, high = 100 * row[f"{metric}_min"], 100 * row[f"{metric}_max"]
    text = f"{mean:.1f} ± {100 * row[f'{metric}_std']:.1f} ({low:.1f}-{high:.1f}, n={n})"
    low, high = row.get(f"{metric}_ci_low", np.nan), row.get(f"{metric}_ci_high", np.nan)
    if not (math.isnan(low) or math.isnan(high)):
        text += f" [95 % CI {100 * low:.1f}, {100 * high:.1f}]"
    return text


def _weights_text(group: pd.DataFrame) -> str:
    kinds = sorted(set(group["weights"])) if len(group) else []
    return "/".join({"ema": "EMA", "plain": "plain (no EMA)"}[k] for k in kinds)


def _our_columns(summary_row: pd.Series | None, runs: pd.DataFrame, as_text: bool) -> dict[str, Any]:
    out: dict[str, Any] = {name: spread_text(summary_row, metric, as_text) for metric, name in OUR_COLUMNS}
    out["weights"] = _weights_text(runs)
    out["seeds finished"] = 0 if summary_row is None else summary_row["n_finished"]
    out["failed"] = 0 if summary_row is None else summary_row["n_failed"]
    out["unfinished"] = 0 if summary_row is None else summary_row["n_unfinished"]
    return out


def _widths(runs: pd.DataFrame) -> pd.Series:
    """The runs' channel multipliers (1.0 where the table has no ``width`` column: the paper's networks)."""
    if "width" not in runs:
        return pd.Series(1.0, index=runs.index)
    return pd.to_numeric(runs["width"], errors="coerce").fillna(1.0)


def _summary_lookup(runs: pd.DataFrame, n_boot: int, seed: int) -> dict[tuple, pd.Series]:
    """``{(model, sample_rate, width, setting): summary row}`` over ``runs``."""
    if runs.empty:
        return {}
    runs = runs.assign(width=_widths(runs))
    s = summarise(runs, by=["model", "sample_rate", "width", "setting"], n_boot=n_boot, seed=seed)
    return {(r["model"], int(r["sample_rate"]), float(r["width"]), r["setting"]): r for _, r in s.iterrows()}


def _runs_of(runs: pd.DataFrame, model: str, sample_rate: int, width: float) -> pd.DataFrame:
    return runs[(runs["model"] == model) & (runs["sample_rate"] == sample_rate) & (_widths(runs) == width)]


def table2(df: pd.DataFrame, as_text: bool = True, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paper Table 2 beside ours: one row per model, sample rate and width, the paper's rows first.

    Our runs are those of the full recipe (setting :data:`~helpers.experiments.grid.FULL_SETTING`), averaged
    over seeds (:func:`summarise`); values in %, as ``mean ± std (min-max, n=N)`` text
    (``as_text=False``: the means as numbers). A narrowed network (``model_options`` ``width``;
    the demo profile's) gets its own row, labelled ``CNN10-8k (¼ width)``, right after the paper's
    row of that model with the paper's numbers beside it. Rows of ours the paper does not have come
    last; paper rows we did not run have empty cells. ``seeds finished``/``failed``/``unfinished``
    count our runs, so a missing number is explained.
    """
    runs = _single_models(df)
    runs = runs[runs["setting"] == FULL_SETTING] if "setting" in runs else runs.iloc[0:0]
    lookup = _summary_lookup(runs, n_boot, seed)
    rows = []
    seen = set()
    for name, paper in PAPER_TABLE2.items():
        ours = (
            sorted((k for k in lookup if (k[0], k[1]) == (paper["model"], paper["sample_rate"])), key=lambda k: -k[2])
            if paper["model"]
            else []
        )
        for key in ours or [(paper["model"], paper["sample_rate"], 1.0, FULL_SETTING)]:
            seen.add(key)
            label = name if key[2] == 1.0 or not paper["model"] else model_label(key[0], key[1], key[2])
            row = {"model": label, **{col: paper[k] for k, col in PAPER_COLUMNS}}
            mine = _runs_of(runs, key[0], key[1], key[2]) if paper["model"] else runs.iloc[0:0]
            row.update(_our_columns(lookup.get(key), mine, as_text))
            row.update(_cost_columns(mine))
            rows.append(row)
    for key, summary_row in lookup.items():
        if key in seen:
            continue
        mine = _runs_of(runs, key[0], key[1], key[2])
        row = {"model": model_label(key[0], key[1], key[2]), **{col: None for _, col in PAPER_COLUMNS}}
        row.update(_our_columns(summary_row, mine, as_text))
        row.update(_cost_columns(mine))
        rows.append(row)
    return pd.DataFrame(rows)


def _single_models(df: pd.DataFrame) -> pd.DataFrame:
    """The runs of flat single models: fusion runs have their own table (:func:`fusion_table`), and
    multi-task runs and two-stage stages theirs (:mod:`helpers.experiments.hierarchy`)."""
    if "model" in df:
        df = df[df["model"] != "fusion"]
    return df[df["form"] == "flat"] if "form" in df else df


def _cost_columns(runs: pd.DataFrame) -> dict[str, Any]:
    """Parameters (millions) and mean training-loop time (s) of the finished runs in ``runs``."""
    done = runs[runs["status"] == "finished"] if "status" in runs else runs.iloc[0:0]
    params = pd.to_numeric(done.get("n_parameters", pd.Series(dtype=float)), errors="coerce").dropna()
    seconds = pd.to_numeric(done.get("train_seconds", pd.Series(dtype=float)), errors="coerce").dropna()
    return {
        "parameters (M)": round(float(params.iloc[0]) / 1e6, 2) if len(params) else np.nan,
        "training time (s)": round(float(seconds.mean()), 1) if len(seconds) else np.nan,
    }


def table3(
    df: pd.DataFrame,
    as_text: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    paper_models: bool = True,
    models: list[tuple] | None = None,
) -> pd.DataFrame:
    """Paper Table 3 beside ours: one row per (model, sample rate, width, setting), settings in
    :data:`~helpers.experiments.grid.ABLATION_SETTINGS` order.

    Models: those of our ablation runs, and (``paper_models=True``) the paper's ResNet22-8k and
    CNN10-16k even when we ran neither. Settings of a model: the paper's six, plus any extra
    setting we ran. Values as in :func:`table2`; a narrowed network is labelled so and shown beside
    the paper's numbers of its full-width model. The "no EMA" row reports plain weights (column
    ``weights``); the paper's numbers are devel only (``paper test UAR`` is empty). ``models``:
    only these (model, sample rate[, width]) tuples, in this order (e.g. :func:`ablation_models`
    of the runs, which leaves out Table 2 runs of models that were not ablated).
    """
    only = models
    runs = _single_models(df)
    runs = runs[runs["setting"].notna()] if "setting" in runs else runs.iloc[0:0]
    lookup = _summary_lookup(runs, n_boot, seed)
    chosen: list[tuple[str, int, float]] = [(m, r, 1.0) for m, r in PAPER_TABLE3] if paper_models else []
    for model, sr, width, _ in lookup:
        if (model, sr, width) not in chosen:
            chosen.append((model, sr, width))
    if only is not None:
        chosen = [(m[0], int(m[1]), float(m[2]) if len(m) > 2 else 1.0) for m in only]
    rows = []
    for model, sr, width in chosen:
        paper = PAPER_TABLE3.get((model, sr), {})
        for setting in ABLATION_SETTINGS:
            key = (model, sr, width, setting)
            if setting not in paper and key not in lookup:
                continue
            numbers = paper.get(setting, {})
            row = {
                "model": model_label(model, sr, width),
                "setting": setting,
                **{col: numbers.get(k) for k, col in PAPER_COLUMNS},
            }
            mine = _runs_of(runs, model, sr, width)
            mine = mine[mine["setting"] == setting]
            row.update(_our_columns(lookup.get(key), mine, as_text))
            if not row["weights"]:  # no run of ours: say which weights the setting reports
                row["weights"] = "EMA" if ABLATION_SETTINGS[setting]["ema"] else "plain (no EMA)"
            rows.append(row)
    return pd.DataFrame(rows)


def ablation_models(df: pd.DataFrame) -> list[tuple[str, int, float]]:
    """The (model, sample rate, width) of runs with an ablation setting other than the full recipe
    (Table 2 runs alone do not make a model part of the ablation), sorted."""
    runs = _single_models(df)
    if "setting" not in runs or runs.empty:
        return []
    ablated = runs[runs["setting"].notna() & (runs["setting"] != FULL_SETTING)]
    return sorted(
        {(m, int(r), float(w)) for m, r, w in zip(ablated["model"], ablated["sample_rate"], _widths(ablated))}
    )


def ablation_gains(
    summary: pd.DataFrame, metric: str = "best_devel_uar", baseline: str = "bal, no-aug"
) -> pd.DataFrame:
    """Per (model, setting): our mean, std and bootstrap CI over seeds, the paper's value, and the
    gain over ``baseline`` of the same model, all in %; input :func:`summarise` by model,
    sample_rate, setting. Settings in :data:`~helpers.experiments.grid.ABLATION_SETTINGS` order; ``model`` is
    the display label (``"CNN10-16k"``), as :func:`helpers.reporting.plots.plot_ablation_gains` wants it.
    The paper's numbers are devel scores of the best checkpoint (``metric`` ``best_devel_uar`` or
    ``best_devel_map``); for any other metric ``paper`` is NaN."""
    paper_key = {"best_devel_uar": "devel_uar", "best_devel_map": "devel_map"}.get(metric)
    order = {name: i for i, name in enumerate(ABLATION_SETTINGS)}
    rows = []
    for _, r in summary.iterrows():
        if r["setting"] not in order:
            continue
        model, sr = r["model"], int(r["sample_rate"])
        width = float(r["width"]) if "width" in r and r["width"] == r["width"] else 1.0
        paper = PAPER_TABLE3.get((model, sr), {}).get(r["setting"], {})
        rows.append(
            {
                "model": model_label(model, sr, width),
                "setting": r["setting"],
                "order": order[r["setting"]],
                "seeds": r[f"{metric}_n"],
                "ours_mean": 100 * r[f"{metric}_mean"],
                "ours_std": 100 * r[f"{metric}_std"],
                "ours_min": 100 * r[f"{metric}_min"],
                "ours_max": 100 * r[f"{metric}_max"],
                "ci_low": 100 * r[f"{metric}_ci_low"],
                "ci_high": 100 * r[f"{metric}_ci_high"],
                "paper": paper.get(paper_key, np.nan) if paper_key else np.nan,
            }
        )
    out = pd.DataFrame(
        rows,
        columns=[
            "model",
            "setting",
            "order",
            "seeds",
            "ours_mean",
            "ours_std",
            "ours_min",
            "ours_max",
            "ci_low",
            "ci_high",
            "paper",
        ],
    )
    out = out.sort_values(["model", "order"], kind="stable").drop(columns="order").reset_index(drop=True)
    base = out[out["setting"] == baseline].set_index("model")
    out[f"gain over {baseline}"] = out["ours_mean"] - out["model"].map(base["ours_mean"])
    out[f"paper gain over {baseline}"] = out["paper"] - out["model"].map(base["paper"])
    return out


def fusion_table(
    df: pd.DataFrame, branches: list[tuple], as_text: bool = True, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """The fusion experiment beside both single models (notebook 07).

    ``df``: :func:`collect_runs` over the single-model runs and the fusion runs; ``branches``: the
    two (model, sample rate[, width]) that were fused (width 1.0 when left out). Rows: each branch with the
    full recipe (as in
    :func:`table2`), then each :data:`~helpers.experiments.grid.FUSION_VARIANTS` variant we ran. The paper's
    numbers: Table 2 for the single models, section 5 for the frozen fusion with both
    augmentations (it gives none for the other variants). Columns as in :func:`table2`, plus
    ``trainable parameters (M)``.
    """
    rows = []
    singles = _single_models(df)
    singles = singles[singles["setting"] == FULL_SETTING] if "setting" in singles else singles.iloc[0:0]
    lookup = _summary_lookup(singles, n_boot, seed)
    branches = [(b[0], int(b[1]), float(b[2]) if len(b) > 2 else 1.0) for b in branches]
    for model, sr, width in branches:
        paper = next((v for v in PAPER_TABLE2.values() if (v["model"], v["sample_rate"]) == (model, sr)), {})
        mine = _runs_of(singles, model, sr, width)
        row = {
            "model": model_label(model, sr, width),
            "variant": "single model, specA+MixUp",
            **{col: paper.get(k) for k, col in PAPER_COLUMNS},
        }
        row.update(_our_columns(lookup.get((model, sr, width, FULL_SETTING)), mine, as_text))
        row.update(_cost_columns(mine))
        row["trainable parameters (M)"] = row["parameters (M)"]
        rows.append(row)
    fused = df[df["fusion_variant"].notna()] if "fusion_variant" in df else df.iloc[0:0]
    summary = {}
    if len(fused):
        s = summarise(fused, by=["fusion_variant"], n_boot=n_boot, seed=seed)
        summary = {r["fusion_variant"]: r for _, r in s.iterrows()}
    label = " + ".join(model_label(m, r, w) for m, r, w in branches)
    for variant in FUSION_VARIANTS:
        if variant not in summary:
            continue
        mine = fused[fused["fusion_variant"] == variant]
        paper = PAPER_FUSION.get(variant, {})
        row = {"model": f"fusion {label}", "variant": variant, **{col: paper.get(k) for k, col in PAPER_COLUMNS}}
        row.update(_our_columns(summary[variant], mine, as_text))
        row.update(_cost_columns(mine))
        done = mine[mine["status"] == "finished"]
        trainable = pd.to_numeric(done["n_trainable_parameters"], errors="coerce").dropna()
        row["trainable parameters (M)"] = round(float(trainable.iloc[0]) / 1e6, 3) if len(trainable) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def latest_finished_run(root: str | Path) -> Path:
    """The most recently finished run folder below ``root`` (:func:`helpers.core.run_folder.latest_finished`)."""
    return run_folder.latest_finished(root)
