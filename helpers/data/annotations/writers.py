"""Writing events (detections, or any annotations) in the formats :mod:`helpers.data.annotations` reads:
Raven Pro selection tables (one recording, or one multi-file table for a folder), Audacity label
tracks and plain CSV tables.

The input is an **events table**: columns ``recording`` (str), ``begin``, ``end`` (float, seconds
from the recording's start), ``label`` (str), optionally ``score`` (float in [0, 1]) and
``low_freq``, ``high_freq`` (float Hz; NaN for none), e.g. the output of
:func:`helpers.recordings.detect.detect_events`. Rows are written in time order (recording, then
begin, then end); times with 6 decimals (microseconds), scores with 6 decimals except in Audacity
labels (see :func:`write_audacity_labels`).

Every file is written atomically (:func:`helpers.core.fileio.atomic_write`): a crash leaves the old
file or none, never a half-written one. Tab-separated formats have no quoting, so a label or path
holding a tab or a line break is refused (ValueError naming the row).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from helpers.core.fileio import atomic_write
from helpers.data.annotations.checks import DEFAULT_TOLERANCE

__all__ = [
    "DEFAULT_HIGH_FREQ",
    "RAVEN_COLUMNS",
    "write_audacity_labels",
    "write_combined_raven_table",
    "write_events_csv",
    "write_raven_table",
]

#: The measurement columns of a Raven Pro selection table, in Raven's order.
RAVEN_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)"]
#: Hz: the default top of a selection's frequency box, the Nyquist frequency of 44.1 kHz audio; pass
#: half your recordings' sample rate (or a call's band) instead.
DEFAULT_HIGH_FREQ = 22050.0
_VIEW, _CHANNEL = "Spectrogram 1", 1


def _time(x: float) -> str:
    return f"{x:.6f}"


def _score(row: Mapping) -> str:
    value = row.get("score", math.nan)
    return "" if value is None or pd.isna(value) else f"{float(value):.6f}"


def _row(index: object) -> object:
    """A row's index label or a value as shown in an error: ``3``, not ``np.int64(3)``."""
    return index.item() if hasattr(index, "item") else index


def _events(events: pd.DataFrame, needed: tuple[str, ...], what: str) -> pd.DataFrame:
    """``events`` checked (columns, numbers, 0 <= begin <= end, no tab or line break in the texts) and
    sorted into writing order."""
    missing = [c for c in needed if c not in events.columns]
    if missing:
        raise ValueError(
            f"{what}: the events table lacks the column(s) {', '.join(missing)} (it has "
            f"{', '.join(map(str, events.columns))}); name them recording, begin, end, label."
        )
    t = events.copy()
    for col in ("begin", "end"):
        t[col] = pd.to_numeric(t[col], errors="coerce").astype(float)
    bad = ~((t["begin"] >= 0) & (t["end"] >= t["begin"]))  # NaN compares False, so it is caught too
    if bad.any():
        index = _row(bad[bad].index[0])
        raise ValueError(
            f"{what}: events row {index!r} has begin {_row(events.at[index, 'begin'])!r} and end "
            f"{_row(events.at[index, 'end'])!r} ({int(bad.sum())} such row(s)); times must be seconds "
            "with 0 <= begin <= end."
        )
    texts = ["label"] + (["recording"] if "recording" in t.columns else [])
    for col in texts:
        t[col] = t[col].astype(str)
        broken = t[col].str.contains(r"[\t\r\n]", regex=True)
        if broken.any():
            index = _row(broken[broken].index[0])
            raise ValueError(
                f"{what}: events row {index!r} has a tab or line break in its {col} "
                f"({t.at[index, col]!r}); these formats cannot hold one: replace it by a space."
            )
    keys = (["recording"] if "recording" in t.columns else []) + ["begin", "end"]
    return t.sort_values(keys, kind="stable")


def _rows(t: pd.DataFrame) -> list[dict]:
    """The rows as dicts (much faster than iterrows for the thousands of events of a long scan)."""
    return t.to_dict("records")


def _band(row: Mapping, low: float, high: float) -> tuple[str, str]:
    """The row's own frequency band where it has one, else the default."""
    lo, hi = row.get("low_freq", math.nan), row.get("high_freq", math.nan)
    lo = low if lo is None or pd.isna(lo) else float(lo)
    hi = high if hi is None or pd.isna(hi) else float(hi)
    return f"{lo:.1f}", f"{hi:.1f}"


def _single_recording(t: pd.DataFrame, path: str | Path, what: str) -> None:
    if "recording" in t.columns and t["recording"].nunique() > 1:
        names = sorted(t["recording"].unique())
        raise ValueError(
            f"{what} {path}: the events come from {len(names)} recordings ({', '.join(names[:5])}"
            f"{'...' if len(names) > 5 else ''}) but this file holds one; write one file per "
            "recording (events[events.recording == r]) or use write_combined_raven_table."
        )


def _write_tsv(path: str | Path, header: list[str], rows: list[list[str]]) -> None:
    lines = ["\t".join(header)] + ["\t".join(r) for r in rows]
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_raven_table(
    events: pd.DataFrame,
    path: str | Path,
    low_freq: float = 0.0,
    high_freq: float = DEFAULT_HIGH_FREQ,
    label_column: str = "Label",
) -> None:
    """Write a single-file Raven Pro selection table (tab-separated ``.txt``) for one recording.

    Columns: :data:`RAVEN_COLUMNS` (``Selection`` numbered from 1 in time order, ``View``
    ``Spectrogram 1``, ``Channel`` 1, times in s with 6 decimals, band in Hz), then ``label_column``
    and ``Score`` (empty where the events have no score). Raven reads it with File > Open Selection
    Table on the recording; :func:`helpers.data.annotations.read_annotations` finds the recording by
    the table's name (``rec1.Table.1.selections.txt`` -> ``rec1.wav``) or ``recording=``.

    Args:
        events: the events table (module docstring) of one recording.
        path: the file to write; its folder must exist.
        low_freq, high_freq: Hz, the band of rows whose ``low_freq``/``high_freq`` is absent or NaN.
        label_column: the name of the label column (the reader looks for Species, Class, Label...).

    An empty events table gives a table of one header line. Raises ValueError when the events hold
    several recordings, or a row is faulty (named).
    """
    t = _events(events, ("begin", "end", "label"), "write_raven_table")
    _single_recording(t, path, "write_raven_table")
    rows = [
        [
            str(i),
            _VIEW,
            str(_CHANNEL),
            _time(r["begin"]),
            _time(r["end"]),
            *_band(r, low_freq, high_freq),
            r["label"],
            _score(r),
        ]
        for i, r in enumerate(_rows(t), start=1)
    ]
    _write_tsv(path, RAVEN_COLUMNS + [label_column, "Score"], rows)


def write_combined_raven_table(
    events: pd.DataFrame,
    recordings: Mapping[str, tuple[str | Path, float]],
    path: str | Path,
    low_freq: float = 0.0,
    high_freq: float = DEFAULT_HIGH_FREQ,
    label_column: str = "Label",
) -> None:
    """Write one multi-file Raven Pro selection table for the events of many recordings.

    In a Raven multi-file session the recordings play one after the other, so ``Begin Time (s)`` /
    ``End Time (s)`` count from the session's start: the recording's start in the concatenation of
    all ``recordings`` *in the order given*, plus the event's time in its file. ``Begin Path`` names
    the file and ``File Offset (s)`` is the event's begin within it (what the reader uses). Open the
    files in Raven in the same order (File > Open Sound Files, all at once) before the table.

    Args:
        events: the events table (module docstring); every ``recording`` must be a key of ``recordings``.
        recordings: ordered mapping recording -> ``(path written in Begin Path, duration in s)``, for
            every recording of the session (also those without events: they shift the later ones).
        path: the file to write (tab-separated ``.txt``); its folder must exist.
        low_freq, high_freq, label_column: as :func:`write_raven_table`.

    Columns: :data:`RAVEN_COLUMNS`, ``Begin Path``, ``File Offset (s)``, ``label_column``, ``Score``;
    rows in session order, ``Selection`` from 1. Raises ValueError for an event of a recording not in
    ``recordings``, one ending past its recording's duration (+ 0.1 s), or a faulty row.
    """
    what = "write_combined_raven_table"
    t = _events(events, ("recording", "begin", "end", "label"), what)
    starts: dict[str, float] = {}
    total = 0.0
    for name, (_, duration) in recordings.items():
        if not duration >= 0:
            raise ValueError(f"{what}: recording {name!r} has duration {duration!r}; give its length in seconds.")
        starts[str(name)] = total
        total += float(duration)
    unknown = sorted(set(t["recording"]) - set(starts))
    if unknown:
        raise ValueError(
            f"{what}: events of recording(s) {', '.join(unknown[:5])} that are not in recordings= "
            f"({len(starts)} given); add them (path and duration) in their place in the session."
        )
    info = {str(k): v for k, v in recordings.items()}
    durations = t["recording"].map({k: float(v[1]) for k, v in info.items()})
    past = t["end"] > durations + DEFAULT_TOLERANCE
    if past.any():
        index = _row(past[past].index[0])
        raise ValueError(
            f"{what}: events row {index!r} ends at {t.at[index, 'end']:g} s, past the end of "
            f"{t.at[index, 'recording']} ({durations[index]:g} s); check the duration in "
            "recordings= or the row."
        )
    t["session"] = t["recording"].map(starts)
    t = t.sort_values(["session", "begin", "end"], kind="stable")
    rows = []
    for i, r in enumerate(_rows(t), start=1):
        begin_path = str(info[r["recording"]][0])
        if any(ch in begin_path for ch in "\t\r\n"):
            raise ValueError(
                f"{what}: the path {begin_path!r} of {r['recording']} has a tab or line break; rename the file."
            )
        session_begin = r["session"] + r["begin"]
        rows.append(
            [
                str(i),
                _VIEW,
                str(_CHANNEL),
                _time(session_begin),
                _time(session_begin + r["end"] - r["begin"]),
                *_band(r, low_freq, high_freq),
                begin_path,
                _time(r["begin"]),
                r["label"],
                _score(r),
            ]
        )
    _write_tsv(path, RAVEN_COLUMNS + ["Begin Path", "File Offset (s)", label_column, "Score"], rows)


def write_audacity_labels(events: pd.DataFrame, path: str | Path) -> None:
    """Write an Audacity label track (File > Import > Labels) for one recording.

    One line per event, no header: ``begin<TAB>end<TAB>label score``, times in s with 6 decimals,
    the score with 2 decimals after the label and a space (``12.000000<TAB>14.990000<TAB>chimpanzee
    0.93``) so that it shows on the label; just ``label`` where there is no score. Rows with a
    ``low_freq``/``high_freq`` get Audacity's frequency line under them (``\\<TAB>low<TAB>high``, Hz).
    No events give an empty file (what Audacity exports for an empty track; the reader reports an
    empty file). Raises ValueError when the events hold several recordings, or a row is faulty.
    """
    t = _events(events, ("begin", "end", "label"), "write_audacity_labels")
    _single_recording(t, path, "write_audacity_labels")
    lines = []
    for r in _rows(t):
        score = r.get("score", math.nan)
        text = str(r["label"]) if score is None or pd.isna(score) else f"{r['label']} {float(score):.2f}"
        lines.append(f"{_time(r['begin'])}\t{_time(r['end'])}\t{text}")
        lo, hi = r.get("low_freq", math.nan), r.get("high_freq", math.nan)
        if not (pd.isna(lo) and pd.isna(hi)):
            # Audacity writes -1 for "no frequency"; the reader reads a negative value as NaN.
            lines.append(f"\\\t{-1.0 if pd.isna(lo) else float(lo):.1f}\t{-1.0 if pd.isna(hi) else float(hi):.1f}")
    with atomic_write(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def write_events_csv(events: pd.DataFrame, path: str | Path) -> None:
    """Write the plain CSV annotation table the reader accepts: header ``file,begin,end,label,score``
    (``score`` only when the events have it), plus ``low_freq,high_freq`` (Hz, empty for NaN) when the
    events have those columns. ``file`` is the events' ``recording`` as is (e.g. ``site1/rec.wav``,
    relative to the scanned folder: read back with ``audio_root=`` that folder). Times in s with 6
    decimals; spreadsheet quoting for labels holding commas or quotes. No events give the header only.
    """
    t = _events(events, ("recording", "begin", "end", "label"), "write_events_csv")
    band = "low_freq" in t.columns or "high_freq" in t.columns
    header = (
        ["file", "begin", "end", "label"]
        + (["score"] if "score" in t.columns else [])
        + (["low_freq", "high_freq"] if band else [])
    )

    def freq(value: object) -> str:
        return "" if value is None or pd.isna(value) else f"{float(value):.1f}"

    with atomic_write(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for r in _rows(t):
            row = [r["recording"], _time(r["begin"]), _time(r["end"]), r["label"]]
            row += [_score(r)] if "score" in t.columns else []
            row += [freq(r.get("low_freq")), freq(r.get("high_freq"))] if band else []
            writer.writerow(row)
