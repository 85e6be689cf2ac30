"""Has a run's devel curve flattened? Learning curves read from a run's ``history.csv``.

A number taken from a run that was still improving says more about the schedule than about the
setting, so the notebooks check every curve before they compare runs. The check is deliberately
simple and noise-tolerant: the devel UAR of small corpora jumps by a clip at a time, so single
evaluations are not compared; the mean over the last ``tail`` of the steps is compared with the
mean over the ``tail`` before it. A curve is called flat when that gain is at most ``tolerance``
(fractions of UAR, 0.03 = 3 points).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers.core.run_folder import HISTORY

#: Share of the training steps in each compared window (the last quarter against the one before).
TAIL = 0.25
#: Largest mean gain (UAR as a fraction) between the two windows of a flat curve.
TOLERANCE = 0.03


def devel_curve(history: pd.DataFrame) -> pd.DataFrame:
    """The evaluated rows of a ``history.csv`` table as columns ``step`` and ``uar``: the EMA
    model's devel UAR where it exists, the plain model's before the EMA starts (or without EMA).
    """
    if "step" not in history or "uar_plain" not in history:
        raise KeyError(
            f"devel_curve: a history table needs the columns 'step' and 'uar_plain'; "
            f"this one has {list(history.columns)}"
        )
    uar = history["uar_ema"].fillna(history["uar_plain"]) if "uar_ema" in history else history["uar_plain"]
    rows = pd.DataFrame({"step": history["step"], "uar": uar}).dropna()
    return rows.reset_index(drop=True)


def curve_flatness(history: pd.DataFrame, tail: float = TAIL, tolerance: float = TOLERANCE) -> dict:
    """How much one run's devel UAR still rose at the end of its training.

    Returns ``last step``, ``final devel UAR`` (last evaluation), ``mean, last window`` and
    ``mean, window before`` (means of the evaluations within the last ``tail`` share of the
    steps and within the share before it), ``gain`` (their difference) and ``flat`` (gain at most
    ``tolerance``; None when either window holds no evaluation: evaluate more often).
    """
    if not 0 < tail <= 0.5:
        raise ValueError(f"curve_flatness: tail={tail} must lie in (0, 0.5]: two windows of that share of the steps")
    curve = devel_curve(history)
    if curve.empty:
        return {
            "last step": None,
            "final devel UAR": None,
            "mean, last window": None,
            "mean, window before": None,
            "gain": None,
            "flat": None,
        }
    last = float(curve["step"].iloc[-1])
    width = tail * last
    recent = curve[curve["step"] > last - width]["uar"]
    before = curve[(curve["step"] > last - 2 * width) & (curve["step"] <= last - width)]["uar"]
    gain = float(recent.mean() - before.mean()) if len(recent) and len(before) else None
    return {
        "last step": int(last),
        "final devel UAR": float(curve["uar"].iloc[-1]),
        "mean, last window": float(recent.mean()),
        "mean, window before": float(before.mean()) if len(before) else None,
        "gain": gain,
        "flat": None if gain is None else bool(gain <= tolerance),
    }


def training_length(
    history: pd.DataFrame, training: dict | None = None, tail: float = TAIL, tolerance: float = TOLERANCE
) -> str:
    """One sentence on how long a run trained and why it stopped there: ``training`` is the
    ``training`` entry of its ``metrics.json`` (None for runs written before it existed, which
    trained a fixed number of steps), followed by the flatness of its devel curve."""
    flat = curve_flatness(history, tail, tolerance)
    steps = int(training["steps"]) if training else flat["last step"]
    if training and training.get("stopped_when_flat"):
        why = (
            f"stopped at the first devel evaluation from step {training['min_iterations']} on where its devel "
            f"curve was flat (stop_when_flat; the cap was {training['iterations']})"
        )
    elif training and training.get("stop_when_flat"):
        why = f"reached the cap of {training['iterations']} steps before its devel curve was flat (stop_when_flat)"
    else:
        why = "a fixed number of steps"
    if flat["gain"] is None:
        verdict = "too few evaluations to tell whether the curve is flat"
    else:
        verdict = (
            f"mean devel UAR of the last {tail:.0%} of the steps {flat['gain'] * 100:+.1f} points against "
            f"the {tail:.0%} before: {'flat' if flat['flat'] else 'still rising'}"
        )
    return f"Trained {steps} steps, {why}; {verdict}."


def run_histories(run_dirs: dict[str, str | Path]) -> dict[str, pd.DataFrame | None]:
    """Each run's ``history.csv`` by label; None for a run folder without one (not started)."""
    return {
        label: pd.read_csv(Path(d) / HISTORY) if (Path(d) / HISTORY).is_file() else None
        for label, d in run_dirs.items()
    }


def flatness_table(
    histories: dict[str, pd.DataFrame | None], tail: float = TAIL, tolerance: float = TOLERANCE
) -> pd.DataFrame:
    """:func:`curve_flatness` for several runs, one row per label, with a ``verdict`` column in
    words ("flat", "still rising", "too few evaluations", or "no history" for None: a run that
    has not started, listed rather than left out)."""
    rows = {}
    for label, history in histories.items():
        if history is None:
            rows[label] = {"flat": None, "verdict": "no history"}
            continue
        row = curve_flatness(history, tail, tolerance)
        row["verdict"] = {True: "flat", False: "still rising", None: "too few evaluations"}[row["flat"]]
        rows[label] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "run"
    return table


def flatness_summary(table: pd.DataFrame, tail: float = TAIL, tolerance: float = TOLERANCE) -> str:
    """One sentence on a :func:`flatness_table`: how many runs are flat and which still rose."""
    rising, unknown, flat = [], [], 0
    for label, row in table.iterrows():
        if row["flat"] is None or pd.isna(row["flat"]):
            unknown.append(str(label))
        elif bool(row["flat"]):
            flat += 1
        else:
            rising.append(f"{label} (+{row['gain'] * 100:.1f} points)")
    share = f"last {tail:.0%} of the steps against the {tail:.0%} before"
    text = (
        f"{flat} of {len(table)} curves are flat (mean devel UAR of the {share} "
        f"gained at most {tolerance * 100:.0f} points)"
    )
    if rising:
        text += "; still rising: " + ", ".join(rising)
    if unknown:
        text += "; cannot tell (not started, or too few evaluations): " + ", ".join(unknown)
    return text + "."
