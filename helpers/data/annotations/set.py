"""The table of annotations read from Raven / Audacity / CSV files (:class:`AnnotationSet`) and its columns.

The columns and their meaning are described in :mod:`helpers.data.annotations`, the public entry
(:func:`helpers.data.annotations.read_annotations` fills an :class:`AnnotationSet`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers.data.corpus import Problem

#: The columns every annotation table has (types and units: :mod:`helpers.data.annotations`).
CORE_COLUMNS = [
    "recording",
    "recording_name",
    "begin",
    "end",
    "label",
    "low_freq",
    "high_freq",
    "source_file",
    "source_line",
]
#: Columns of :attr:`AnnotationSet.table`, in order: the core columns plus ``extra`` (a dict per row).
TABLE_COLUMNS = CORE_COLUMNS + ["extra"]
#: Columns of :attr:`AnnotationReport.excluded` and :attr:`AnnotationSet.dropped`.
EXCLUDED_COLUMNS = ["source_file", "source_line", "recording_name", "label", "reason"]
#: Seconds: two times closer than this are the same time.
SAME_TIME = 1e-6

RowKey = tuple[str, int]  # (source_file, source_line)


@dataclass
class AnnotationSet:
    """What :func:`helpers.data.annotations.read_annotations` read.

    Attributes:
        table: one row per selection, columns :data:`TABLE_COLUMNS`, in file order then line order.
        problems: what went wrong while reading (file-level errors such as a missing label column,
            and row-level ones such as a time that is not a number); :func:`validate_annotations`
            reports them together with its own findings.
        row_errors: ``(source_file, source_line) -> [(kind, reason), ...]`` for the rows of ``table``
            that reading already found faulty (so that ``on_error="exclude"`` drops them).
        label_columns: annotation file -> the column its labels were read from.
        formats: annotation file -> ``"raven"``, ``"audacity"`` or ``"csv"``.
        dropped: rows read but merged into another row (Raven view duplicates), columns
            :data:`EXCLUDED_COLUMNS`; nothing is left out without being listed here or in ``problems``.
        notes: human-readable lines on the choices made (label column, recording found by name...).
        audio_root: the folder recordings were looked for under, if any.
    """

    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    row_errors: dict[RowKey, list[tuple[str, str]]] = field(default_factory=dict)
    label_columns: dict[str, str] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    dropped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EXCLUDED_COLUMNS))
    notes: list[str] = field(default_factory=list)
    audio_root: Path | None = None

    @classmethod
    def from_table(cls, table: pd.DataFrame, audio_root: str | Path | None = None) -> "AnnotationSet":
        """Wrap a table with (at least) :data:`CORE_COLUMNS`, e.g. one edited by hand, for validation."""
        missing = [c for c in CORE_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(
                f"the annotation table lacks the column(s) {', '.join(missing)} "
                f"(it has {', '.join(map(str, table.columns))}); read the files with "
                "read_annotations or add those columns."
            )
        t = table.reset_index(drop=True).copy()
        if "extra" not in t.columns:
            t["extra"] = [{} for _ in range(len(t))]
        return cls(table=t, audio_root=Path(audio_root) if audio_root else None)

    def __len__(self) -> int:
        return len(self.table)

    def counts(self) -> pd.Series:
        """Selections per label (most frequent first, then by name)."""
        counts = self.table["label"].value_counts()
        order = sorted(counts.index, key=lambda lab: (-counts[lab], lab))
        return counts.reindex(order).rename("selections")

    def recordings(self) -> pd.DataFrame:
        """One row per recording named: ``recording_name``, ``recording`` (None if not found),
        ``selections`` (rows) and ``source_files`` (the annotation files naming it, joined by ``; ``)."""
        t = self.table
        if t.empty:
            return pd.DataFrame(columns=["recording_name", "recording", "selections", "source_files"])
        rows = []
        for (name, rec), g in t.groupby([t["recording_name"].fillna(""), t["recording"].fillna("")], sort=True):
            rows.append(
                {
                    "recording_name": name,
                    "recording": rec or None,
                    "selections": len(g),
                    "source_files": "; ".join(dict.fromkeys(g["source_file"])),
                }
            )
        return pd.DataFrame(rows)

    def extra_frame(self) -> pd.DataFrame:
        """The ``extra`` fields as columns (index aligned with ``table``; missing fields are NaN)."""
        return pd.DataFrame(list(self.table["extra"]), index=self.table.index)
