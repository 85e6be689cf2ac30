"""Dividing the planned clips among the splits (:mod:`helpers.data.cut` rules 3 and 4): groups of
recordings, :func:`assign_splits`, and the background clips drawn for each split.
"""

from __future__ import annotations

import math
import zlib
from collections import deque
from dataclasses import replace

import numpy as np
import pandas as pd

from helpers.data.corpus import SPLITS
from helpers.data.cut.input import CutError
from helpers.data.cut.plan import Clip, Recording


def split_clips(
    table: pd.DataFrame,
    recordings: dict[str, Recording],
    group_by: str | None,
    fractions: tuple[float, float, float],
    background_label: str,
    per_call: float | None,
    cap: int | None,
    seed: int,
) -> tuple[list[Clip], list[str]]:
    """Every clip to write, call clips then background, with its split and group; and the warnings
    (labels missing from a split, background short of its quota)."""
    groups = groups_of(table, recordings, group_by)
    counts = group_label_counts(recordings, groups)
    assignment, warnings = assign_splits(counts, fractions, seed)
    clips = calls_with_splits(recordings, groups, assignment)
    background, short = pick_background(recordings, groups, assignment, clips, background_label, per_call, cap, seed)
    return clips + background, warnings + short


def groups_of(table: pd.DataFrame, recordings: dict[str, Recording], group_by: str | None) -> dict[str, str]:
    """Recording name -> group name (the recording itself unless ``group_by``)."""
    if group_by is None:
        return {name: name for name in recordings}
    groups = {}
    bad = []
    for name in recordings:
        values = table.loc[table["recording"] == name, group_by]
        distinct = sorted({str(v) for v in values.dropna()})
        if len(distinct) != 1 or values.isna().any():
            bad.append(
                f"{name} ({', '.join(distinct) or 'empty'}{', and empty' if values.isna().any() and distinct else ''})"
            )
        else:
            groups[name] = distinct[0]
    if bad:
        raise CutError(
            f"the group column {group_by!r} must hold one value per recording, but these have "
            f"several or none: {'; '.join(bad)}. Fill in the column or group by another one."
        )
    return groups


def group_label_counts(recordings: dict[str, Recording], groups: dict[str, str]) -> pd.DataFrame:
    """Call clips per group (rows, every readable recording's group) and label (columns)."""
    records = [(groups[name], c.label) for name, rec in recordings.items() for c in rec.calls]
    frame = pd.DataFrame(records, columns=["group", "label"])
    counts = pd.crosstab(frame["group"], frame["label"]) if records else pd.DataFrame()
    counts = counts.reindex(sorted(set(groups.values())), fill_value=0)
    counts.index.name, counts.columns.name = None, None
    return counts.astype(np.int64)


def assign_splits(
    counts: pd.DataFrame, fractions: tuple[float, float, float], seed: int = 0
) -> tuple[dict[str, str], list[str]]:
    """Give each group (row of ``counts``: clips per label) a split; return it and the warnings.

    1. Coverage, rarest label first (fewest groups): a label not yet in train gets the unassigned
       group with that label whose count of it is closest to train's target (fraction x the label's
       total; ties: the group whose total is closest to the split's share of all clips); then
       devel, then test, the same way, but only with a group whose other labels are already in train or have another
       unassigned group left (so train ends up with every label). Splits of fraction 0 are skipped.
    2. The remaining groups, largest first, each go to the split where they reduce most the squared
       gap between the split's per-label counts and ``fraction x total`` (gaps divided by the
       label's total, so rare labels count as much as common ones).

    Ties are broken by a permutation drawn from ``seed``. Every group gets a split.
    """
    active = [k for k, f in enumerate(fractions) if f > 0]
    frac = np.asarray(fractions, dtype=np.float64)
    groups = list(counts.index)
    n = counts.to_numpy(dtype=np.int64)  # groups x labels
    totals = n.sum(axis=0)
    tiebreak = np.random.default_rng(seed).permutation(len(groups))
    have = np.zeros((len(SPLITS), n.shape[1]), dtype=np.int64)
    split_of = np.full(len(groups), -1)
    unassigned_with = (n > 0).sum(axis=0)  # per label: unassigned groups that have it

    def put(g: int, k: int) -> None:
        split_of[g] = k
        have[k] += n[g]
        unassigned_with[:] -= n[g] > 0

    def keeps_train_complete(g: int) -> bool:
        labels = n[g] > 0
        return bool(np.all((have[0][labels] > 0) | (unassigned_with[labels] >= 2)))

    for lab in sorted(range(n.shape[1]), key=lambda j: ((n[:, j] > 0).sum(), str(counts.columns[j]))):
        for k in active:
            if have[k, lab] > 0:
                continue
            free = [g for g in np.flatnonzero((split_of < 0) & (n[:, lab] > 0)) if k == 0 or keeps_train_complete(g)]
            if free:
                put(
                    min(
                        free,
                        key=lambda g: (
                            abs(n[g, lab] - frac[k] * totals[lab]),
                            abs(n[g].sum() - frac[k] * totals.sum()),
                            tiebreak[g],
                        ),
                    ),
                    k,
                )

    scale = np.maximum(totals, 1).astype(np.float64) ** 2
    rest = sorted(np.flatnonzero(split_of < 0), key=lambda g: (-int(n[g].sum()), tiebreak[g]))
    for g in rest:
        cost = {k: float((n[g] * (2 * (have[k] - frac[k] * totals) + n[g]) / scale).sum()) for k in active}
        size = {k: have[k].sum() - frac[k] * totals.sum() for k in active}
        put(g, min(active, key=lambda k: (cost[k], size[k], k)))
    assignment = {g: SPLITS[k] for g, k in zip(groups, split_of)}
    return assignment, _split_warnings(counts, assignment, [SPLITS[k] for k in active])


def _split_warnings(counts: pd.DataFrame, assignment: dict[str, str], active: list[str]) -> list[str]:
    """A line per label absent from a split that should have it, and per split left without groups."""
    warnings = []
    for label in counts.columns:
        holders = [g for g in counts.index if counts.at[g, label] > 0]
        missing = [s for s in active if not any(assignment[g] == s for g in holders)]
        if missing:
            warnings.append(
                f"label '{label}' is in {len(holders)} group(s) only, so it has no clips in "
                f"{', '.join(missing)}; annotate it in more recordings to score it there."
            )
    for s in active:
        if not any(v == s for v in assignment.values()):
            warnings.append(
                f"split {s} got no recordings ({len(assignment)} group(s) in all); "
                "add recordings or set its fraction to 0."
            )
    return warnings


def calls_with_splits(
    recordings: dict[str, Recording], groups: dict[str, str], assignment: dict[str, str]
) -> list[Clip]:
    """Every call clip with its group and split filled in."""
    return [
        replace(c, split=assignment[groups[name]], group=groups[name])
        for name, rec in recordings.items()
        for c in rec.calls
    ]


def _background_quota(wanted: dict[str, int], available: dict[str, int], cap: int | None) -> dict[str, int]:
    """Background clips per split: what is ``wanted`` and ``available``, then ``cap`` shared in proportion
    (largest remainders first)."""
    want = {s: min(wanted[s], available[s]) for s in SPLITS}
    total = sum(want.values())
    if cap is None or total <= cap:
        return want
    exact = {s: cap * want[s] / total for s in SPLITS}
    quota = {s: int(math.floor(exact[s])) for s in SPLITS}
    for s in sorted(SPLITS, key=lambda s: (-(exact[s] - quota[s]), SPLITS.index(s)))[: cap - sum(quota.values())]:
        quota[s] += 1
    return quota


def pick_background(
    recordings: dict[str, Recording],
    groups: dict[str, str],
    assignment: dict[str, str],
    clips: list[Clip],
    background_label: str,
    per_call: float | None,
    cap: int | None,
    seed: int,
) -> tuple[list[Clip], list[str]]:
    """Draw the background clips (:mod:`helpers.data.cut` rule 3); return them and a warning per split
    short of windows."""
    split_of = {name: assignment[groups[name]] for name in recordings}
    available = {s: sum(len(r.background) for n, r in recordings.items() if split_of[n] == s) for s in SPLITS}
    calls = {s: sum(1 for c in clips if c.split == s and c.label != background_label) for s in SPLITS}
    wanted = {s: available[s] if per_call is None else int(math.floor(per_call * calls[s] + 1e-9)) for s in SPLITS}
    quota = _background_quota(wanted, available, cap)
    picked, warnings = [], []
    for k, s in enumerate(SPLITS):
        names = sorted(n for n in recordings if split_of[n] == s)
        names = [names[i] for i in np.random.default_rng([seed, k]).permutation(len(names))]
        queues = {
            n: deque(recordings[n].background[i] for i in _permutation(seed, n, len(recordings[n].background)))
            for n in names
        }
        taken = 0
        while taken < quota[s]:
            for n in names:
                if queues[n] and taken < quota[s]:
                    picked.append(
                        Clip(
                            n,
                            background_label,
                            "background",
                            queues[n].popleft(),
                            recordings[n].length,
                            split=s,
                            group=groups[n],
                        )
                    )
                    taken += 1
        if available[s] < wanted[s]:
            warnings.append(
                f"split {s}: only {available[s]} background window(s) lie away from every "
                f"selection (margin included), fewer than the {wanted[s]} wanted ({per_call:g} x "
                f"{calls[s]} call clips); lower margin_seconds or add recordings with quiet stretches."
            )
    return picked, warnings


def _permutation(seed: int, name: str, n: int) -> np.ndarray:
    """A permutation of ``n`` drawn from ``seed`` and the recording's name (stable across runs and machines)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))]).permutation(n)
