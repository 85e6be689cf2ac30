"""Checking what :func:`helpers.data.cut.cut_corpus` is given (settings, annotation table) and the
records of what it skips."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: Columns the annotation table must have.
REQUIRED_COLUMNS = ("recording", "begin", "end", "label")
#: Columns used when present (filled with NaN / the row number otherwise).
OPTIONAL_COLUMNS = ("low_freq", "high_freq", "source_file", "source_line")
#: Columns of :attr:`helpers.data.cut.CutSummary.skipped`.
SKIPPED_COLUMNS = ["what", "recording", "source_file", "source_line", "reason"]


class CutError(ValueError):
    """The corpus cannot be cut at all (bad settings, or no clip could be cut); the message says why."""


def check_settings(
    clip_seconds, sample_rate, margin_seconds, background_per_call, max_background, split, channel
) -> tuple[float, float, float]:
    """Refuse impossible settings; return the split fractions normalised to sum 1."""
    if not clip_seconds > 0:
        raise CutError(f"clip_seconds must be positive, not {clip_seconds!r}.")
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise CutError(f"sample_rate must be a positive integer (Hz), not {sample_rate!r}.")
    if not margin_seconds >= 0:
        raise CutError(f"margin_seconds must be 0 or more, not {margin_seconds!r}.")
    if background_per_call is not None and not background_per_call >= 0:
        raise CutError(f"background_per_call must be 0 or more (or None), not {background_per_call!r}.")
    if max_background is not None and not max_background >= 0:
        raise CutError(f"max_background must be 0 or more (or None), not {max_background!r}.")
    if channel is not None and not (isinstance(channel, (int, np.integer)) and channel >= 0):
        raise CutError(f"channel must be None (average) or a channel number from 0, not {channel!r}.")
    parts = [float(x) for x in split]
    if len(parts) != 3 or any(not x >= 0 for x in parts) or parts[0] <= 0:
        raise CutError(f"split must be three fractions (train, devel, test) >= 0 with train > 0, not {split!r}.")
    total = sum(parts)
    return tuple(x / total for x in parts)


def normalise_table(annotations: pd.DataFrame, group_by: str | None) -> pd.DataFrame:
    """A copy with every column :func:`helpers.data.cut.cut_corpus` reads, in plain types; ``source_line`` defaults to
    the row's position (from 1) and ``source_file`` to ``<table>`` when the table does not say."""
    if not isinstance(annotations, pd.DataFrame):
        raise CutError(f"annotations must be a pandas DataFrame, not {type(annotations).__name__}.")
    missing = [c for c in REQUIRED_COLUMNS if c not in annotations.columns]
    if missing:
        raise CutError(
            f"the annotation table lacks the column(s) {', '.join(missing)} "
            f"(it has {', '.join(map(str, annotations.columns))}); read it with the annotation reader "
            "or rename its columns to recording, begin, end, label."
        )
    if group_by is not None and group_by not in annotations.columns:
        raise CutError(
            f"group_by names the column {group_by!r}, which the annotation table does not have "
            f"(it has {', '.join(map(str, annotations.columns))})."
        )
    if annotations.empty:
        raise CutError("the annotation table has no rows; there is nothing to cut.")
    t = annotations.reset_index(drop=True).copy()
    for col in OPTIONAL_COLUMNS:
        if col not in t.columns:
            t[col] = np.nan
    t["source_file"] = t["source_file"].where(t["source_file"].notna(), "<table>").astype(str)
    t["source_line"] = t["source_line"].where(t["source_line"].notna(), pd.Series(range(1, len(t) + 1)))
    for col in ("begin", "end", "low_freq", "high_freq"):
        t[col] = pd.to_numeric(t[col], errors="coerce")
    t["label"] = [("" if (isinstance(x, float) and math.isnan(x)) or x is None else str(x).strip()) for x in t["label"]]
    return t


def drop_unresolved(table: pd.DataFrame, skipped: list[dict]) -> pd.DataFrame:
    """Report the rows whose ``recording`` is empty (the annotation reader found no audio for them),
    one entry per recording the annotation names (``recording_name`` when the table has it), and
    return the other rows with ``recording`` as text."""
    missing = table["recording"].isna() | (table["recording"].astype(str).str.strip() == "")
    lost = table[missing]
    names = lost["recording_name"] if "recording_name" in lost.columns else pd.Series("", index=lost.index)
    for name, rows in lost.groupby(names.fillna("").astype(str), sort=True):
        files = ", ".join(sorted(set(rows["source_file"])))
        skipped.append(
            skip_entry(
                "recording",
                name or "(unnamed)",
                files,
                None,
                f"no audio file was found for the recording {name!r} named in {files}; its "
                f"{len(rows)} selection(s) were not cut. Pass the folder that holds it (audio root) "
                "or correct the name in the annotations.",
            )
        )
    kept = table[~missing].copy()
    kept["recording"] = kept["recording"].astype(str)
    return kept


def is_number(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def skip_entry(what: str, recording: str, source_file, source_line, reason: str) -> dict:
    return {
        "what": what,
        "recording": recording,
        "source_file": source_file,
        "source_line": int(source_line) if is_number(source_line) else source_line,
        "reason": reason,
    }


def skip_line(s: dict) -> str:
    where = f" ({s['source_file']} line {s['source_line']})" if is_number(s["source_line"]) else ""
    return f"skipped {s['what']} {s['recording']}{where}: {s['reason']}"
