"""What reading annotation files collects (rows, problems, notes), and the choices shared by every
format: the label column and the recording of a table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.data.annotations.lookup import Resolver
from helpers.data.annotations.set import EXCLUDED_COLUMNS, TABLE_COLUMNS, AnnotationSet, RowKey
from helpers.data.annotations.text import RawTable, lines_text, names_from_table, norm_name
from helpers.data.corpus import Problem

#: Raven columns tried, in this order, when no ``label_column`` is given (case-insensitive).
LABEL_COLUMN_CANDIDATES = ("Species", "Class", "Label", "Annotation", "Type")


class Reader:
    """The state of one read: rows, problems, notes, and the label column and recording chosen per file.

    :class:`helpers.data.annotations.formats.FormatReader` adds the file formats.
    """

    def __init__(
        self,
        audio_root: Path | None,
        label_column: str | None,
        recording: str | Path | Mapping[str | Path, str | Path] | None,
    ):
        self.audio_root = audio_root
        self.label_column = label_column
        self.recording = recording
        self.resolver = Resolver(audio_root)
        self.records: list[dict] = []
        self.problems: list[Problem] = []
        self.row_errors: dict[RowKey, list[tuple[str, str]]] = {}
        self.label_columns: dict[str, str] = {}
        self.formats: dict[str, str] = {}
        self.dropped: list[dict] = []
        self.notes: list[str] = []

    # -- reporting helpers

    def problem(
        self,
        severity: str,
        kind: str,
        source: str,
        line: int | None,
        message: str,
        fix: str,
        recording_name: str | None = None,
        lines: list[int] | None = None,
    ) -> None:
        """Record a problem; for an error, mark ``lines`` (default ``[line]``) of ``source`` faulty."""
        self.problems.append(Problem(severity, kind, source, line, message, fix, None, recording_name))
        if severity == "error":
            for ln in lines if lines is not None else ([line] if line else []):
                self.row_errors.setdefault((source, ln), []).append((kind, message))

    # -- label column

    def _label_index(self, table: RawTable, default: str | None = None) -> int | None:
        """Index of the label column of ``table``: ``label_column`` when given, else the first of
        ``default`` (a CSV's ``label``) and :data:`LABEL_COLUMN_CANDIDATES` present. Records the choice,
        or the problem (listing the columns) and returns None when there is none."""
        header = table.header
        by_norm: dict[str, int] = {}
        for i, name in enumerate(header):
            by_norm.setdefault(norm_name(name), i)
        shown = ", ".join(repr(h) for h in header)
        if self.label_column is not None:
            if norm_name(self.label_column) in by_norm:
                i = by_norm[norm_name(self.label_column)]
                self._note_label(table, header[i], "as asked")
                return i
            if default is None or norm_name(default) not in by_norm:
                self.problem(
                    "error",
                    "no_label_column",
                    table.source,
                    table.header_line,
                    f"has no column {self.label_column!r} (label_column); its columns are {shown}.",
                    "name one of those columns as the label column (--label-column NAME; label_column= in Python), "
                    "or add the column to the table.",
                )
                return None
        candidates = ([default] if default else []) + list(LABEL_COLUMN_CANDIDATES)
        present = [c for c in candidates if norm_name(c) in by_norm]
        if not present:
            self.problem(
                "error",
                "no_label_column",
                table.source,
                table.header_line,
                f"has none of the usual label columns ({', '.join(candidates)}); its columns are {shown}.",
                "name the column holding the labels (--label-column NAME; label_column= in Python), or rename it to "
                f"'{candidates[0]}'.",
            )
            return None
        i = by_norm[norm_name(present[0])]
        others = [header[by_norm[norm_name(c)]] for c in present[1:]]
        how = f"first of {', '.join(candidates)}"
        if others:
            how += (
                f"; also present: {', '.join(others)} (--label-column NAME, label_column= in Python, uses one of them)"
            )
        self._note_label(table, header[i], how)
        return i

    def _note_label(self, table: RawTable, column: str, how: str) -> None:
        self.label_columns[table.source] = column
        self.notes.append(f"{table.source}: labels from column {column!r} ({how}).")

    # -- recordings

    def _given_recording(self, path: Path, source: str) -> str | None:
        """The recording passed for this annotation file (a single path, or a mapping by file path or name)."""
        if self.recording is None:
            return None
        if isinstance(self.recording, Mapping):
            keys = {str(k): v for k, v in self.recording.items()}
            for key in (source, str(path), str(path.resolve()), path.name):
                if key in keys:
                    return str(keys[key])
            return None
        return str(self.recording)

    def _table_recording(self, table: RawTable, lines: list[int]) -> tuple[str | None, str]:
        """``(recording, recording_name)`` for a file that does not name its recording."""
        given = self._given_recording(table.path, table.source)
        if given is not None:
            p = Path(given).expanduser()
            return (os.path.abspath(p) if p.is_file() else None), given
        stems = names_from_table(table.path)
        found, candidates = self.resolver.by_stems(stems, table.path.parent)
        if found is not None:
            self.notes.append(f"{table.source}: recording {found} (found by the file's name).")
            return os.path.abspath(found), found.name
        if candidates:
            self._ambiguous(table.source, stems[0], candidates, lines)
        return None, stems[0]

    def _ambiguous(self, source: str, name: str, candidates: list[Path], lines: list[int]) -> None:
        self.problem(
            "error",
            "ambiguous_recording",
            source,
            lines[0] if lines else None,
            f"recording '{name}' ({lines_text(lines)}) matches several files: {', '.join(map(str, candidates[:5]))}.",
            "give an audio folder holding only one of them (--audio DIR; audio_root= in Python), name the "
            "recording (recording= in Python), or rename the others.",
            name,
            lines,
        )

    def _resolve_rows(self, table: RawTable, records: list[dict]) -> None:
        """Fill ``recording`` of rows that name their recording (``recording_name`` set)."""
        by_name: dict[str, list[dict]] = {}
        for r in records:
            by_name.setdefault(r["recording_name"], []).append(r)
        for name, rows in by_name.items():
            found, candidates = self.resolver.by_path(name, table.path.parent) if name else (None, [])
            for r in rows:
                r["recording"] = os.path.abspath(found) if found is not None else None
            if candidates:
                self._ambiguous(table.source, name, candidates, [r["source_line"] for r in rows])

    def _check_width(self, table: RawTable, line: int, cells: list[str]) -> None:
        if len(cells) > len(table.header) and any(c.strip() for c in cells[len(table.header) :]):
            self.problem(
                "warning",
                "extra_fields",
                table.source,
                line,
                f"has {len(cells)} fields but the header {len(table.header)}; the extra ones are ignored.",
                "quote fields that contain the delimiter, or remove the stray delimiters.",
            )

    # -- result

    def result(self) -> AnnotationSet:
        table = pd.DataFrame(self.records, columns=TABLE_COLUMNS)
        table["begin"] = table["begin"].astype(float)
        table["end"] = table["end"].astype(float)
        table["low_freq"] = table["low_freq"].astype(float)
        table["high_freq"] = table["high_freq"].astype(float)
        table["source_line"] = table["source_line"].astype(np.int64)
        table["recording"] = table["recording"].astype(object).where(table["recording"].notna(), None)
        if self.dropped:
            self.notes.append(f"{len(self.dropped)} duplicate view row(s) of Raven selections merged (see dropped).")
        return AnnotationSet(
            table=table,
            problems=self.problems,
            row_errors=self.row_errors,
            label_columns=self.label_columns,
            formats=self.formats,
            dropped=pd.DataFrame(self.dropped, columns=EXCLUDED_COLUMNS),
            notes=self.notes,
            audio_root=self.audio_root,
        )


def new_record(
    recording_name: str | None,
    begin: float,
    end: float,
    label: str,
    low: float,
    high: float,
    source: str,
    line: int,
    extra: dict[str, str],
) -> dict:
    """A row of the table as the format readers build it (``recording`` is filled in afterwards)."""
    return {
        "recording": None,
        "recording_name": recording_name,
        "begin": begin,
        "end": end,
        "label": label,
        "low_freq": low,
        "high_freq": high,
        "source_file": source,
        "source_line": line,
        "extra": extra,
    }
