"""Reading and validating annotations of long field recordings: Raven Pro selection tables,
Audacity label tracks and plain CSV tables.

:func:`read_annotations` reads any number of annotation files into one :class:`AnnotationSet`,
whose ``table`` has one row per selection and the columns :data:`TABLE_COLUMNS`:

============== ======== ================================================================================
column         type     meaning
============== ======== ================================================================================
recording      str/None the audio file the selection belongs to, found on this machine (absolute path);
                        None when it was not found (the validator reports it)
recording_name str      the recording as the annotation names it: ``Begin Path`` / ``Begin File`` of a
                        Raven table or ``file`` of a CSV, as written; for tables that do not name it
                        (single-file Raven tables, Audacity labels) the recording given, or the name
                        looked for (``13738`` for ``13738.Table.1.selections.txt``)
begin, end     float    seconds from the start of the recording (not of a Raven multi-file session)
label          str      the label, stripped of surrounding white space
low_freq,      float    frequency band of the selection in Hz; NaN when the file has none
high_freq
source_file    str      the annotation file, as passed (or as found in a folder that was passed)
source_line    int      1-based line of the row in that file (a header is line 1)
extra          dict     every other field of the row, by its column name, as stripped text
                        (Raven's ``Selection``, ``View``, ``Channel``, ``Notes``, a ``Type`` column...)
============== ======== ================================================================================

Formats, recognised from the first non-blank line (the delimiter too: tab, comma or semicolon,
whichever the line holds most of; a UTF-8 BOM, UTF-16 and Windows line endings are handled; a file
that is not UTF-8 is read as Windows-1252 with a warning):

* **Raven Pro selection tables** (a header with ``Begin Time (s)`` and ``End Time (s)``), as Raven
  saves them (tab-separated ``.txt``) or as re-saved through a spreadsheet (comma-separated).
  The label column is ``label_column`` when given, else the first of :data:`LABEL_COLUMN_CANDIDATES`
  present (case-insensitive; :attr:`AnnotationSet.label_columns` and ``notes`` say which).
  *Single-file tables* name no recording: it is the one given (``recording=``) or the audio file named
  like the table (``13738.Table.1.selections.txt`` -> ``13738.<audio extension>``), looked for under
  ``audio_root`` (recursively) and beside the table. *Multi-file tables* carry ``Begin Path`` (or
  ``Begin File``) and ``File Offset (s)``: a row's times become ``File Offset .. File Offset +
  (End Time - Begin Time)``; the path, Windows (``C:\\x\\rec.wav``) or POSIX, is reduced to its file
  name and looked up under ``audio_root`` (recursively, exact name first, then ignoring case), then
  taken as written, then beside the table. Raven's duplicate rows of one selection (one per view,
  ``Waveform 1`` / ``Spectrogram 1``) are merged: the Spectrogram row is kept and the others are listed
  in :attr:`AnnotationSet.dropped`.
* **Audacity label tracks**: ``begin<TAB>end<TAB>label`` lines without header; a line
  ``\\<TAB>low<TAB>high`` under a label gives its frequency band (negative values mean "none").
  The recording is found like that of a single-file Raven table (``rec1.txt`` -> ``rec1.wav``).
* **Plain CSV**: header ``file,begin,end,label`` (``filename`` for ``file`` is accepted), optionally
  ``low_freq,high_freq``; more columns go to ``extra``. ``file`` is looked up as for a Raven path,
  and also relative to the CSV's folder and ``audio_root``.

:func:`validate_annotations` checks a set (or a table with those columns) the way
:mod:`helpers.data.corpus` checks a corpus: every problem at once, each naming the annotation file,
the line and the fix (:class:`helpers.data.corpus.Problem`).

Errors (``on_error="raise"`` stops listing them all; ``"exclude"`` drops the faulty rows and lists
them in :attr:`AnnotationReport.excluded`): an annotation file that is missing, unreadable, of no
known format or without a label column (the other files are still read); a time that is not a
number, negative, or an end not after its begin; a selection past the recording's end (more than
``tolerance`` seconds; durations come from the audio header, nothing is decoded in full); an unknown
or ambiguous recording; unreadable audio; an empty label; a multi-file Raven table without
``File Offset (s)`` (its times count from the start of the Raven session, not of each recording); a
selection that starts and ends in different files; two rows with one Selection number but different
times or labels.

Warnings (the rows are kept): selections of different labels that overlap in one recording (both
lines named); the same selection read twice (e.g. from two versions of a table); the label ``?``;
labels that differ only in case; recordings at different sample rates (every clip is resampled to
the model's rate when read); rows with more fields than the header; files found in a folder that are
not annotation tables (skipped, by name).
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from helpers.data.audio import SAMPLE_RATE
from helpers.data.corpus import Problem, ValidationReport

#: The columns every annotation table has (see the module docstring for types and units).
CORE_COLUMNS = ["recording", "recording_name", "begin", "end", "label", "low_freq", "high_freq",
                "source_file", "source_line"]
#: Columns of :attr:`AnnotationSet.table`, in order: the core columns plus ``extra`` (a dict per row).
TABLE_COLUMNS = CORE_COLUMNS + ["extra"]
#: Raven columns tried, in this order, when no ``label_column`` is given (case-insensitive).
LABEL_COLUMN_CANDIDATES = ("Species", "Class", "Label", "Annotation", "Type")
#: File extensions taken for audio when a recording is looked for by name without extension.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aif", ".aiff", ".aifc", ".w64", ".rf64",
                    ".caf", ".au")
#: File extensions read when a folder is passed to :func:`read_annotations`.
ANNOTATION_EXTENSIONS = (".txt", ".csv", ".tsv")
#: The label annotators write for an unsure identification.
UNCERTAIN_LABEL = "?"
#: Columns of :attr:`AnnotationReport.excluded` and :attr:`AnnotationSet.dropped`.
EXCLUDED_COLUMNS = ["source_file", "source_line", "recording_name", "label", "reason"]
#: Columns of :attr:`AnnotationReport.recordings`.
RECORDING_COLUMNS = ["recording", "duration", "sample_rate", "channels", "frames", "error"]
#: Default slack (s) for a selection ending past the recording's end: Raven lets a selection be drawn
#: to the very edge, and MP3 decoders differ by a few milliseconds in the length they report.
DEFAULT_TOLERANCE = 0.1

_RAVEN_BEGIN, _RAVEN_END = "begin time (s)", "end time (s)"
_CSV_FILE = ("file", "filename")
_SAME_TIME = 1e-6  # seconds: two times closer than this are the same time


class AnnotationError(ValueError):
    """Annotations have errors; ``report`` holds every problem found."""

    def __init__(self, report: "AnnotationReport"):
        self.report = report
        super().__init__(report.format(max_lines=50))


RowKey = tuple[str, int]  # (source_file, source_line)


@dataclass
class AnnotationSet:
    """What :func:`read_annotations` read.

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
            raise ValueError(f"the annotation table lacks the column(s) {', '.join(missing)} "
                             f"(it has {', '.join(map(str, table.columns))}); read the files with "
                             "read_annotations or add those columns.")
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
            rows.append({"recording_name": name, "recording": rec or None, "selections": len(g),
                         "source_files": "; ".join(dict.fromkeys(g["source_file"]))})
        return pd.DataFrame(rows)

    def extra_frame(self) -> pd.DataFrame:
        """The ``extra`` fields as columns (index aligned with ``table``; missing fields are NaN)."""
        return pd.DataFrame(list(self.table["extra"]), index=self.table.index)


@dataclass
class AnnotationReport(ValidationReport):
    """Every problem found in a set of annotations (errors first), plus what the validation kept.

    ``root`` is the audio root (or the first annotation file's folder). ``table`` holds the rows kept:
    all of them unless ``on_error="exclude"``. ``excluded`` (columns :data:`EXCLUDED_COLUMNS`) lists
    the rows dropped by ``on_error="exclude"`` and the annotation files no row could be read from
    (``source_line`` None). ``recordings`` (columns :data:`RECORDING_COLUMNS`; ``duration`` in
    seconds, ``sample_rate`` in Hz) has the header facts of every recording found.
    """

    table: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TABLE_COLUMNS))
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EXCLUDED_COLUMNS))
    recordings: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RECORDING_COLUMNS))

    def format(self, max_lines: int | None = None) -> str:
        """A summary line (files, selections, errors, warnings), then one line per problem."""
        files = self.table["source_file"].nunique() if len(self.table) else 0
        head = (f"annotations ({files} file(s), {len(self.table)} selection(s) kept, "
                f"{len(self.excluded)} excluded): {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        lines = [str(p) for p in self.errors + self.warnings]
        if max_lines is not None and len(lines) > max_lines:
            extra = len(lines) - max_lines
            lines = lines[:max_lines] + [f"... and {extra} more (see the full report)"]
        return "\n".join([head, *lines])


# --- reading text --------------------------------------------------------------------------------


def _read_text(path: Path) -> tuple[str, str | None]:
    """The file's text and the fallback encoding used (None when it was UTF-8 or UTF-16 with a BOM)."""
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return raw.decode("utf-16"), None
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), "Windows-1252"


def _first_line(text: str) -> str | None:
    """The first line that is not blank (any line ending), or None."""
    for line in io.StringIO(text, newline=""):
        if line.strip():
            return line.rstrip("\r\n")
    return None


def _delimiter(line: str) -> str:
    """Tab, comma or semicolon: whichever ``line`` holds most of (tab on a tie or when none)."""
    counts = {d: line.count(d) for d in ("\t", ",", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else "\t"


def _rows(text: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """``(line, cells)`` of every non-blank row; ``line`` is 1-based (the physical line the row ends on).

    Tab-separated files are split without quote handling (Raven writes no quotes, and a quote in a
    note must not swallow the rest of the file); comma/semicolon files follow spreadsheet quoting.
    """
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    out = []
    for cells in reader:
        if cells and any(c.strip() for c in cells):
            out.append((reader.line_num, cells))
    if out:
        out[0][1][0] = out[0][1][0].lstrip("\ufeff")
    return out


def _norm(name: str) -> str:
    """A column name compared loosely: lower case, white space collapsed."""
    return " ".join(name.strip().lower().split())


def _number(text: str, delimiter: str = "\t") -> float:
    """``text`` as a float; NaN when empty or not a number. A decimal comma is accepted when the
    delimiter is not a comma (spreadsheets in many locales write ``1,5``)."""
    text = text.strip()
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        pass
    if delimiter != "," and text.count(",") == 1 and "." not in text:
        try:
            return float(text.replace(",", "."))
        except ValueError:
            return math.nan
    return math.nan


def _is_number(text: str) -> bool:
    return not math.isnan(_number(text))


def _looks_audacity(line: str) -> bool:
    """True for an Audacity label line: ``begin<TAB>end[<TAB>label]`` with numeric times (the label
    may hold commas, so this is decided before the delimiter is counted)."""
    cells = line.split("\t")
    return len(cells) >= 2 and _is_number(cells[0]) and _is_number(cells[1])


def _basename(written: str) -> str:
    """The file name of a path written on Windows or POSIX (``C:\\a\\b.wav`` -> ``b.wav``)."""
    return re.split(r"[\\/]", written.strip())[-1]


def _names_from_table(path: Path) -> list[str]:
    """Recording names (without extension) an annotation file's own name suggests, best first:
    ``13738.Table.1.selections.txt`` -> ``13738``; ``rec1.txt`` -> ``rec1``."""
    names = []
    m = re.match(r"(.+?)\.Table\.\d+\.selections", path.name, re.IGNORECASE)
    if m:
        names.append(m.group(1))
    names += [path.stem, path.name.split(".")[0]]
    return [n for n in dict.fromkeys(names) if n]


# --- finding recordings --------------------------------------------------------------------------


class _FileIndex:
    """The files in one folder (and below it when ``recursive``, following links to folders but each
    folder once), by name ignoring case, built on first use."""

    def __init__(self, folder: Path, recursive: bool):
        self.folder, self.recursive = folder, recursive
        self._by_name: dict[str, list[Path]] | None = None
        self._by_stem: dict[str, list[Path]] = {}

    def _build(self) -> dict[str, list[Path]]:
        if self._by_name is None:
            self._by_name = {}
            for path in self._walk():
                self._by_name.setdefault(path.name.casefold(), []).append(path)
                if path.suffix.lower() in AUDIO_EXTENSIONS:
                    self._by_stem.setdefault(path.stem.casefold(), []).append(path)
        return self._by_name

    def _walk(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        if not self.recursive:
            return sorted(p for p in self.folder.iterdir() if p.is_file())
        found: list[Path] = []
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.folder, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # a link back up the tree
                dirnames.clear()
                continue
            seen.add(real)
            dirnames.sort()
            found += [Path(dirpath) / f for f in sorted(filenames)]
        return found

    def named(self, name: str) -> list[Path]:
        """Files called ``name``; if none, files whose name matches ignoring case."""
        same = self._build().get(name.casefold(), [])
        return [p for p in same if p.name == name] or same

    def audio_with_stem(self, stem: str) -> list[Path]:
        """Audio files (:data:`AUDIO_EXTENSIONS`) called ``stem.<ext>``; exact stem first, then ignoring case."""
        self._build()
        same = self._by_stem.get(stem.casefold(), [])
        return [p for p in same if p.stem == stem] or same


def _pick(candidates: list[Path], written: str) -> tuple[Path | None, list[Path]]:
    """The candidate whose path ends most like ``written`` (most trailing folder names in common);
    ``(None, tied candidates)`` when that does not single one out."""
    if len(candidates) == 1:
        return candidates[0], []
    parts = [p.casefold() for p in re.split(r"[\\/]", written) if p]

    def common(path: Path) -> int:
        n = 0
        for a, b in zip(reversed(path.parts), reversed(parts)):
            if a.casefold() != b:
                break
            n += 1
        return n

    scores = [common(p) for p in candidates]
    best = max(scores)
    tied = [p for p, s in zip(candidates, scores) if s == best]
    return (tied[0], []) if len(tied) == 1 else (None, tied)


class _Resolver:
    """Finds the recordings annotation files name; every lookup is cached."""

    def __init__(self, audio_root: Path | None):
        self.root = audio_root
        self._indexes: dict[tuple[Path, bool], _FileIndex] = {}
        self._cache: dict[tuple, tuple[Path | None, list[Path]]] = {}

    def _index(self, folder: Path, recursive: bool) -> _FileIndex:
        key = (folder, recursive)
        if key not in self._indexes:
            self._indexes[key] = _FileIndex(folder, recursive)
        return self._indexes[key]

    def by_path(self, written: str, table_dir: Path) -> tuple[Path | None, list[Path]]:
        """``(path, [])`` for the file ``written`` names; ``(None, candidates)`` when ambiguous;
        ``(None, [])`` when not found. Looks under ``audio_root`` (recursively, by file name), then at
        the path as written (POSIX paths; relative ones from the table's folder and ``audio_root``),
        then beside the table."""
        key = ("path", written, table_dir)
        if key not in self._cache:
            self._cache[key] = self._by_path(written, table_dir)
        return self._cache[key]

    def _by_path(self, written: str, table_dir: Path) -> tuple[Path | None, list[Path]]:
        name = _basename(written)
        if not name:
            return None, []
        if self.root is not None:
            candidates = self._index(self.root, True).named(name)
            if candidates:
                return _pick(candidates, written)
        if "\\" not in written and not re.match(r"^[A-Za-z]:", written):
            p = Path(written).expanduser()
            bases = [p] if p.is_absolute() else [table_dir / p] + ([self.root / p] if self.root else [])
            for candidate in bases:
                if candidate.is_file():
                    return candidate, []
        candidates = self._index(table_dir, False).named(name)
        return _pick(candidates, written) if candidates else (None, [])

    def by_stems(self, stems: list[str], table_dir: Path) -> tuple[Path | None, list[Path]]:
        """The audio file called ``<stem>.<audio extension>`` for the first stem that has one, beside
        the table first, then under ``audio_root``; ``(None, candidates)`` when several match."""
        key = ("stems", tuple(stems), table_dir)
        if key not in self._cache:
            self._cache[key] = self._by_stems(stems, table_dir)
        return self._cache[key]

    def _by_stems(self, stems: list[str], table_dir: Path) -> tuple[Path | None, list[Path]]:
        indexes = [self._index(table_dir, False)] + ([self._index(self.root, True)] if self.root else [])
        for stem in stems:
            for index in indexes:
                candidates = index.audio_with_stem(stem)
                if len(candidates) == 1:
                    return candidates[0], []
                if candidates:
                    return None, candidates
        return None, []


# --- the reader ----------------------------------------------------------------------------------


@dataclass
class _Table:
    """One annotation file split into rows."""

    path: Path
    source: str  # the path as passed: what source_file and problems show
    delimiter: str
    rows: list[tuple[int, list[str]]]  # (line, cells); rows[0] is the header (Raven, CSV) or data (Audacity)

    @property
    def header(self) -> list[str]:
        return [c.strip() for c in self.rows[0][1]]

    @property
    def header_line(self) -> int:
        return self.rows[0][0]


def _lines_text(lines: list[int], limit: int = 10) -> str:
    """``line 4`` or ``lines 2, 3, 5`` (at most ``limit`` numbers, then how many more)."""
    shown = ", ".join(map(str, lines[:limit]))
    more = f" and {len(lines) - limit} more" if len(lines) > limit else ""
    return ("line " if len(lines) == 1 else "lines ") + shown + more


class _Reader:
    """Reads annotation files one at a time into rows, problems and notes."""

    def __init__(self, audio_root: Path | None, label_column: str | None,
                 recording: str | Path | Mapping[str | Path, str | Path] | None):
        self.audio_root = audio_root
        self.label_column = label_column
        self.recording = recording
        self.resolver = _Resolver(audio_root)
        self.records: list[dict] = []
        self.problems: list[Problem] = []
        self.row_errors: dict[RowKey, list[tuple[str, str]]] = {}
        self.label_columns: dict[str, str] = {}
        self.formats: dict[str, str] = {}
        self.dropped: list[dict] = []
        self.notes: list[str] = []

    # -- reporting helpers

    def problem(self, severity: str, kind: str, source: str, line: int | None, message: str, fix: str,
                recording_name: str | None = None, lines: list[int] | None = None) -> None:
        """Record a problem; for an error, mark ``lines`` (default ``[line]``) of ``source`` faulty."""
        self.problems.append(Problem(severity, kind, source, line, message, fix, None, recording_name))
        if severity == "error":
            for ln in lines if lines is not None else ([line] if line else []):
                self.row_errors.setdefault((source, ln), []).append((kind, message))

    # -- one file

    def read_file(self, path: Path, source: str, explicit: bool) -> None:
        """Read one annotation file; any problem is recorded and the next file is read all the same."""
        if not path.is_file():
            self.problem("error", "missing_file", source, None, "the annotation file does not exist.",
                         "correct the path, or remove it from the list.")
            return
        try:
            text, fallback = _read_text(path)
        except OSError as exc:
            self.problem("error", "unreadable_file", source, None, f"cannot be read ({exc}).",
                         "check the file's permissions, or copy it again.")
            return
        if fallback:
            self.problem("warning", "not_utf8", source, None,
                         f"is not UTF-8 text; it was read as {fallback} (accented labels may be wrong).",
                         "save the table as UTF-8 (in a spreadsheet: 'CSV UTF-8').")
        first = _first_line(text)
        if first is None:
            self.problem("error", "empty_file", source, None, "the annotation file is empty.",
                         "export the selection table again, or remove the file from the list.")
            return
        table = _Table(path, source, "\t" if _looks_audacity(first) else _delimiter(first), [])
        table.rows = _rows(text, table.delimiter)
        kind = self._format(table)
        if kind is None:
            self._unknown_format(table, explicit)
            return
        self.formats[source] = kind
        n_before = len(self.records)
        {"raven": self._read_raven, "audacity": self._read_audacity, "csv": self._read_csv}[kind](table)
        if len(self.records) == n_before and kind and source in self.label_columns:
            self.notes.append(f"{source}: no selections (header only).")

    @staticmethod
    def _format(table: _Table) -> str | None:
        header = {_norm(c) for c in table.header}
        if _RAVEN_BEGIN in header and _RAVEN_END in header:
            return "raven"
        if header & set(_CSV_FILE) and {"begin", "end"} <= header:
            return "csv"
        cells = table.rows[0][1]
        if table.delimiter == "\t" and len(cells) >= 2 and _is_number(cells[0]) and _is_number(cells[1]):
            return "audacity"
        return None

    def _unknown_format(self, table: _Table, explicit: bool) -> None:
        message = (f"is not a Raven selection table, an Audacity label track or a CSV 'file,begin,end,label' "
                   f"(first line: {table.rows[0][1][:6]!r}).")
        fix = ("pass a Raven selection table as Raven saves it, Audacity labels (File > Export > Export "
               "Labels), or a CSV with the header file,begin,end,label.")
        if explicit:
            self.problem("error", "unknown_format", table.source, table.header_line, message, fix)
        else:
            self.problem("warning", "not_annotations", table.source, None,
                         message + " It was found in a folder passed to the reader and is skipped.", fix)

    # -- label column

    def _label_index(self, table: _Table, default: str | None = None) -> int | None:
        """Index of the label column of ``table``: ``label_column`` when given, else the first of
        ``default`` (a CSV's ``label``) and :data:`LABEL_COLUMN_CANDIDATES` present. Records the choice,
        or the problem (listing the columns) and returns None when there is none."""
        header = table.header
        by_norm: dict[str, int] = {}
        for i, name in enumerate(header):
            by_norm.setdefault(_norm(name), i)
        shown = ", ".join(repr(h) for h in header)
        if self.label_column is not None:
            if _norm(self.label_column) in by_norm:
                i = by_norm[_norm(self.label_column)]
                self._note_label(table, header[i], "as asked")
                return i
            if default is None or _norm(default) not in by_norm:
                self.problem("error", "no_label_column", table.source, table.header_line,
                             f"has no column {self.label_column!r} (label_column); its columns are {shown}.",
                             "pass label_column= one of those columns, or add the column to the table.")
                return None
        candidates = ([default] if default else []) + list(LABEL_COLUMN_CANDIDATES)
        present = [c for c in candidates if _norm(c) in by_norm]
        if not present:
            self.problem("error", "no_label_column", table.source, table.header_line,
                         f"has none of the usual label columns ({', '.join(candidates)}); its columns are {shown}.",
                         "pass label_column= the column holding the labels, or rename it to "
                         f"'{candidates[0]}'.")
            return None
        i = by_norm[_norm(present[0])]
        others = [header[by_norm[_norm(c)]] for c in present[1:]]
        how = f"first of {', '.join(candidates)}"
        if others:
            how += f"; also present: {', '.join(others)} (pass label_column= to use one of them)"
        self._note_label(table, header[i], how)
        return i

    def _note_label(self, table: _Table, column: str, how: str) -> None:
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

    def _table_recording(self, table: _Table, lines: list[int]) -> tuple[str | None, str]:
        """``(recording, recording_name)`` for a file that does not name its recording."""
        given = self._given_recording(table.path, table.source)
        if given is not None:
            p = Path(given).expanduser()
            return (os.path.abspath(p) if p.is_file() else None), given
        stems = _names_from_table(table.path)
        found, candidates = self.resolver.by_stems(stems, table.path.parent)
        if found is not None:
            self.notes.append(f"{table.source}: recording {found} (found by the file's name).")
            return os.path.abspath(found), found.name
        if candidates:
            self._ambiguous(table.source, stems[0], candidates, lines)
        return None, stems[0]

    def _ambiguous(self, source: str, name: str, candidates: list[Path], lines: list[int]) -> None:
        self.problem("error", "ambiguous_recording", source, lines[0] if lines else None,
                     f"recording '{name}' ({_lines_text(lines)}) matches several files: "
                     f"{', '.join(map(str, candidates[:5]))}.",
                     "pass recording= (or audio_root= a folder holding only one of them), or rename the others.",
                     name, lines)

    def _resolve_rows(self, table: _Table, records: list[dict]) -> None:
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

    # -- Raven

    def _read_raven(self, table: _Table) -> None:
        label_i = self._label_index(table)
        if label_i is None:
            return
        cols: dict[str, int] = {}
        for i, name in enumerate(table.header):
            cols.setdefault(_norm(name), i)
        path_i = cols.get("begin path", cols.get("begin file"))
        offset_i = cols.get("file offset (s)")
        used = {label_i, cols[_RAVEN_BEGIN], cols[_RAVEN_END], cols.get("low freq (hz)"),
                cols.get("high freq (hz)"), path_i, offset_i}
        records = [self._raven_row(table, line, cells, cols, label_i, path_i, offset_i, used)
                   for line, cells in table.rows[1:]]
        records = self._merge_views(table, records, cols.get("selection"), cols.get("view"))
        if path_i is None:
            recording, name = self._table_recording(table, [r["source_line"] for r in records])
            for r in records:
                r["recording"], r["recording_name"] = recording, name
        else:
            self._check_multi_file(table, records, cols, offset_i)
            self._resolve_rows(table, records)
        self.records += records

    def _raven_row(self, table: _Table, line: int, cells: list[str], cols: dict[str, int], label_i: int,
                   path_i: int | None, offset_i: int | None, used: set[int | None]) -> dict:
        def cell(i: int | None) -> str:
            return cells[i].strip() if i is not None and i < len(cells) else ""

        d = table.delimiter
        begin_text, end_text = cell(cols[_RAVEN_BEGIN]), cell(cols[_RAVEN_END])
        begin, end = _number(begin_text, d), _number(end_text, d)
        if math.isnan(begin) or math.isnan(end):
            self.problem("error", "bad_time", table.source, line,
                         f"Begin Time {begin_text!r} / End Time {end_text!r} is not a pair of numbers.",
                         "write both times in seconds (e.g. 12.5), or delete the row.")
        if offset_i is not None:
            offset_text = cell(offset_i)
            offset = _number(offset_text, d)
            if math.isnan(offset):
                self.problem("error", "bad_time", table.source, line,
                             f"File Offset (s) {offset_text!r} is not a number.",
                             "export the table again with the File Offset (s) measurement filled in.")
            begin, end = offset, offset + (end - begin)
        self._check_width(table, line, cells)
        extra = {table.header[i]: cells[i].strip() if i < len(cells) else ""
                 for i in range(len(table.header)) if i not in used}
        return _record(cell(path_i) if path_i is not None else None, begin, end, cell(label_i),
                       _number(cell(cols.get("low freq (hz)")), d), _number(cell(cols.get("high freq (hz)")), d),
                       table.source, line, extra)

    def _check_width(self, table: _Table, line: int, cells: list[str]) -> None:
        if len(cells) > len(table.header) and any(c.strip() for c in cells[len(table.header):]):
            self.problem("warning", "extra_fields", table.source, line,
                         f"has {len(cells)} fields but the header {len(table.header)}; the extra ones are ignored.",
                         "quote fields that contain the delimiter, or remove the stray delimiters.")

    def _merge_views(self, table: _Table, records: list[dict], selection_i: int | None,
                     view_i: int | None) -> list[dict]:
        """One row per Raven Selection number: the Spectrogram view's row (else the first) is kept, the
        other views' rows go to ``dropped``; rows that share a number but differ are errors."""
        if selection_i is None:
            return records
        sel_name = table.header[selection_i]
        view_name = table.header[view_i] if view_i is not None else None
        groups: dict[str, list[dict]] = {}
        for r in records:
            groups.setdefault(r["extra"].get(sel_name, ""), []).append(r)
        kept_ids: set[int] = set()
        for number, rows in groups.items():
            if not number or len(rows) == 1:
                kept_ids.update(id(r) for r in rows)
                continue
            keep = next((r for r in rows if view_name and r["extra"].get(view_name, "").lower()
                         .startswith("spectrogram")), rows[0])
            kept_ids.add(id(keep))
            for r in rows:
                if r is not keep:
                    self._merge_one(table, number, keep, r, kept_ids)
        return [r for r in records if id(r) in kept_ids]

    def _merge_one(self, table: _Table, number: str, keep: dict, r: dict, kept_ids: set[int]) -> None:
        same = (r["label"] == keep["label"] and r["recording_name"] == keep["recording_name"]
                and all(abs(r[k] - keep[k]) <= _SAME_TIME or (math.isnan(r[k]) and math.isnan(keep[k]))
                        for k in ("begin", "end")))
        if same:
            self.dropped.append({"source_file": table.source, "source_line": r["source_line"],
                                 "recording_name": r["recording_name"], "label": r["label"],
                                 "reason": f"another view of selection {number} (kept: line {keep['source_line']})."})
            return
        kept_ids.add(id(r))
        self.problem("error", "duplicate_selection", table.source, r["source_line"],
                     f"Selection {number} is also at line {keep['source_line']} with other times or label "
                     f"({r['begin']:g}-{r['end']:g} s {r['label']!r} vs {keep['begin']:g}-{keep['end']:g} s "
                     f"{keep['label']!r}).",
                     "renumber one of the selections, or delete the wrong row.", r["recording_name"])

    def _check_multi_file(self, table: _Table, records: list[dict], cols: dict[str, int],
                          offset_i: int | None) -> None:
        """Errors for multi-file tables whose times cannot be placed in one recording."""
        end_path_i = cols.get("end path")
        if end_path_i is not None:
            end_name = table.header[end_path_i]
            for r in records:
                end_path = r["extra"].get(end_name, "")
                if end_path and r["recording_name"] and _basename(end_path) != _basename(r["recording_name"]):
                    self.problem("error", "spans_files", table.source, r["source_line"],
                                 f"the selection starts in '{r['recording_name']}' and ends in '{end_path}'.",
                                 "split it in two selections, one per file, in Raven.", r["recording_name"])
        names = list(dict.fromkeys(r["recording_name"] for r in records))
        if offset_i is None and len(names) > 1:
            lines = [r["source_line"] for r in records]
            self.problem("error", "session_times", table.source, table.header_line,
                         f"is a multi-file Raven table ({len(names)} files in Begin Path) without a "
                         "'File Offset (s)' column: its times count from the start of the Raven session, "
                         f"not of each recording, so they cannot be placed ({_lines_text(lines)}).",
                         "in Raven, add the measurement 'File Offset (s)' to the selection table (Choose "
                         "Measurements) and save the table again.", None, lines)

    # -- Audacity

    def _read_audacity(self, table: _Table) -> None:
        records: list[dict] = []
        after_label = False  # a frequency line belongs to the label line right before it
        for line, cells in table.rows:
            if cells[0].strip() == "\\":
                self._audacity_band(table, line, cells, records[-1] if after_label else None)
                after_label = False
                continue
            after_label = True
            begin, end = _number(cells[0]), _number(cells[1]) if len(cells) > 1 else math.nan
            if math.isnan(begin) or math.isnan(end):
                self.problem("error", "bad_time", table.source, line,
                             f"{cells[:3]!r} is not 'begin<TAB>end<TAB>label' with times in seconds.",
                             "correct or delete the line (Audacity writes begin, end and label separated by tabs).")
            label = "\t".join(cells[2:]).strip()
            records.append(_record(None, begin, end, label, math.nan, math.nan, table.source, line, {}))
        recording, name = self._table_recording(table, [r["source_line"] for r in records])
        for r in records:
            r["recording"], r["recording_name"] = recording, name
        self.label_columns[table.source] = "(Audacity label text)"
        self.records += records

    def _audacity_band(self, table: _Table, line: int, cells: list[str], previous: dict | None) -> None:
        """Attach a ``\\ low high`` line to ``previous``, the label on the line before it (None: there is none)."""
        low = _number(cells[1]) if len(cells) > 1 else math.nan
        high = _number(cells[2]) if len(cells) > 2 else math.nan
        if previous is None:
            self.problem("warning", "stray_frequency_line", table.source, line,
                         "a frequency line ('\\' low high) that follows no label line; it is ignored.",
                         "delete the line, or put it right under its label.")
            return
        previous["low_freq"] = low if low >= 0 else math.nan
        previous["high_freq"] = high if high >= 0 else math.nan

    # -- plain CSV

    def _read_csv(self, table: _Table) -> None:
        label_i = self._label_index(table, default="label")
        if label_i is None:
            return
        cols: dict[str, int] = {}
        for i, name in enumerate(table.header):
            cols.setdefault(_norm(name), i)
        file_i = next(cols[c] for c in _CSV_FILE if c in cols)
        named = {"begin": cols["begin"], "end": cols["end"], "low": cols.get("low_freq"), "high": cols.get("high_freq")}
        used = {label_i, file_i, *named.values()}
        records = []
        for line, cells in table.rows[1:]:
            def cell(i: int | None) -> str:
                return cells[i].strip() if i is not None and i < len(cells) else ""

            begin, end = _number(cell(named["begin"]), table.delimiter), _number(cell(named["end"]), table.delimiter)
            if math.isnan(begin) or math.isnan(end):
                self.problem("error", "bad_time", table.source, line,
                             f"begin {cell(named['begin'])!r} / end {cell(named['end'])!r} is not a pair of numbers.",
                             "write both times in seconds (e.g. 12.5), or delete the row.")
            self._check_width(table, line, cells)
            extra = {table.header[i]: cell(i) for i in range(len(table.header)) if i not in used}
            records.append(_record(cell(file_i), begin, end, cell(label_i),
                                   _number(cell(named["low"]), table.delimiter),
                                   _number(cell(named["high"]), table.delimiter), table.source, line, extra))
        self._resolve_rows(table, records)
        self.records += records

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
        return AnnotationSet(table=table, problems=self.problems, row_errors=self.row_errors,
                             label_columns=self.label_columns, formats=self.formats,
                             dropped=pd.DataFrame(self.dropped, columns=EXCLUDED_COLUMNS), notes=self.notes,
                             audio_root=self.audio_root)


def _record(recording_name: str | None, begin: float, end: float, label: str, low: float, high: float,
            source: str, line: int, extra: dict[str, str]) -> dict:
    return {"recording": None, "recording_name": recording_name, "begin": begin, "end": end, "label": label,
            "low_freq": low, "high_freq": high, "source_file": source, "source_line": line, "extra": extra}


def _expand(paths: str | Path | Iterable[str | Path]) -> list[tuple[Path, str, bool]]:
    """``(path, as shown, named explicitly)`` for every file to read: files as given, folders expanded
    to their :data:`ANNOTATION_EXTENSIONS` files (recursively, sorted)."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: list[tuple[Path, str, bool]] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in ANNOTATION_EXTENSIONS)
            out += [(f, str(f), False) for f in found]
        else:
            out.append((p, str(item), True))
    return out


def read_annotations(
    paths: str | Path | Iterable[str | Path],
    audio_root: str | Path | None = None,
    label_column: str | None = None,
    recording: str | Path | Mapping[str | Path, str | Path] | None = None,
) -> AnnotationSet:
    """Read Raven selection tables, Audacity label tracks and plain CSV tables into one table.

    Args:
        paths: annotation files, or folders (their ``.txt``/``.csv``/``.tsv`` files are read, and files
            there that are no annotation table are skipped with a warning).
        audio_root: the folder holding the recordings (searched recursively by file name).
        label_column: the Raven column holding the labels; default the first of
            :data:`LABEL_COLUMN_CANDIDATES` present. For a CSV it is used when the CSV has it, else
            ``label``.
        recording: the recording of tables that do not name it (single-file Raven tables, Audacity
            labels): one path for all of them, or a mapping from annotation file (path or name) to
            recording. Default: the audio file named like the table.

    Returns:
        An :class:`AnnotationSet` whose ``table`` has columns :data:`TABLE_COLUMNS` (types and units in
        the module docstring), one row per selection. Reading never raises for problems in the files:
        a file that cannot be read is listed in ``problems`` and the others are read;
        :func:`validate_annotations` reports everything.
    """
    reader = _Reader(Path(audio_root).expanduser() if audio_root is not None else None, label_column, recording)
    for path, source, explicit in _expand(paths):
        reader.read_file(path, source, explicit)
    return reader.result()


# --- the validator -------------------------------------------------------------------------------


def _inspect(recording: str) -> dict:
    """Header facts of one recording (no samples decoded): duration (s), sample_rate (Hz), channels,
    frames; or ``error``."""
    try:
        info = sf.info(recording)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as exc:
        return {"recording": recording, "error": str(exc).strip() or type(exc).__name__}
    out = {"recording": recording, "sample_rate": int(info.samplerate), "channels": int(info.channels),
           "frames": int(info.frames), "error": None}
    out["duration"] = info.frames / info.samplerate if info.samplerate else 0.0
    if info.frames <= 0:
        out["error"] = "it holds no samples"
    return out


class _Checks:
    """The state of one validation: the table, the audio facts, the problems and the faulty rows."""

    def __init__(self, aset: AnnotationSet, tolerance: float, model_rate: int):
        self.table = aset.table
        self.audio_root = aset.audio_root
        self.tolerance, self.model_rate = tolerance, model_rate
        self.problems: list[Problem] = list(aset.problems)
        self.faults: dict[RowKey, list[tuple[str, str]]] = {k: list(v) for k, v in aset.row_errors.items()}
        recordings = sorted({r for r in self.table["recording"] if isinstance(r, str) and r and os.path.isfile(r)})
        self.info = {r: _inspect(r) for r in recordings}

    def add(self, severity: str, kind: str, file: str, line: int | None, message: str, fix: str,
            recording_name: str | None, fault_lines: Iterable[int] = ()) -> None:
        self.problems.append(Problem(severity, kind, file, line, message, fix, None, recording_name))
        for ln in fault_lines:
            self.faults.setdefault((file, int(ln)), []).append((kind, message))

    def rows(self) -> Iterable[Any]:
        """The table's rows as named tuples (attributes are the column names)."""
        return self.table.itertuples(index=False)

    # -- errors

    def recordings(self) -> None:
        """Unknown and unreadable recordings: one problem per (annotation file, recording) naming its lines."""
        groups: dict[tuple[str, str, str | None], list[int]] = {}
        for r in self.rows():
            kinds = {k for k, _ in self.faults.get((r.source_file, int(r.source_line)), [])}
            if not (isinstance(r.recording, str) and r.recording and os.path.isfile(r.recording)):
                if "ambiguous_recording" not in kinds:
                    groups.setdefault((r.source_file, str(r.recording_name), None), []).append(int(r.source_line))
            elif self.info[r.recording]["error"]:
                groups.setdefault((r.source_file, str(r.recording_name), r.recording), []).append(int(r.source_line))
        for (file, name, path), lines in groups.items():
            where = _lines_text(lines)
            if path is None:
                self.add("error", "unknown_recording", file, lines[0],
                         f"recording '{name}' was not found ({where}; {self._looked_where(name)}).",
                         "put it under audio_root (any subfolder), pass audio_root= the folder holding it, "
                         "or pass recording= its path.", name, lines)
            else:
                self.add("error", "unreadable_audio", file, lines[0],
                         f"recording {path} cannot be read ({self.info[path]['error']}; {where}).",
                         "replace it with a valid WAV/FLAC/MP3/OGG file.", name, lines)

    def _looked_where(self, name: str) -> str:
        base = _basename(name)
        what = f"'{base}'" if "." in base else f"'{base}.*' (audio)"
        root = f"under {self.audio_root} and " if self.audio_root else "(no audio_root given) "
        return f"looked for {what} {root}beside the annotation file"

    def times_and_labels(self) -> None:
        """Per row: missing, negative or reversed times, past the recording's end; empty label."""
        for r in self.rows():
            key = (r.source_file, int(r.source_line))
            name = str(r.recording_name)
            if math.isnan(r.begin) or math.isnan(r.end):
                if all(kind != "bad_time" for kind, _ in self.faults.get(key, [])):  # not reported when read
                    self.add("error", "bad_time", r.source_file, key[1], "the begin or end time is missing.",
                             "write both times in seconds, or delete the row.", name, [key[1]])
            elif r.begin < 0 or r.end < 0:
                self.add("error", "negative_time", r.source_file, key[1],
                         f"a time is negative ({r.begin:g} to {r.end:g} s).",
                         "times count from the recording's start: correct them, or delete the row.", name, [key[1]])
            elif r.end <= r.begin:
                what = "equals" if r.end == r.begin else "is before"
                self.add("error", "end_before_begin", r.source_file, key[1],
                         f"the end ({r.end:g} s) {what} the begin ({r.begin:g} s).",
                         "swap or correct the times (a selection needs a length), or delete the row.", name, [key[1]])
            else:
                self._past_end(r, name)
            if not str(r.label).strip():
                self.add("error", "empty_label", r.source_file, key[1], f"the selection at {r.begin:g} s has no label.",
                         "write its label, or delete the row.", name, [key[1]])

    def _past_end(self, r: Any, name: str) -> None:
        info = self.info.get(r.recording) if isinstance(r.recording, str) else None
        if not info or info["error"]:
            return
        duration = info["duration"]
        if r.end > duration + self.tolerance:
            self.add("error", "past_end", r.source_file, int(r.source_line),
                     f"the selection {r.begin:g}-{r.end:g} s ends past the end of {Path(r.recording).name} "
                     f"({duration:.3f} s).",
                     "check that the row belongs to this recording (and the File Offset), or correct its times.",
                     name, [int(r.source_line)])

    # -- warnings

    def labels(self) -> None:
        """'?' labels (one warning per file) and labels that differ only in case."""
        t = self.table
        unsure = t[t["label"] == UNCERTAIN_LABEL]
        for file, g in unsure.groupby("source_file", sort=False):
            lines = [int(x) for x in g["source_line"]]
            self.add("warning", "uncertain_label", file, lines[0],
                     f"{len(lines)} selection(s) labelled '?' ({_lines_text(lines)}); '?' would become a class "
                     "of its own.", "relabel them, or exclude them before building a corpus.", None)
        spellings: dict[str, dict[str, int]] = {}
        for label in t["label"]:
            spellings.setdefault(str(label).casefold(), {}).setdefault(str(label), 0)
            spellings[str(label).casefold()][str(label)] += 1
        for variants in spellings.values():
            if len(variants) < 2:
                continue
            common = max(variants, key=lambda v: (variants[v], v))
            for variant in sorted(v for v in variants if v != common):
                first = t[t["label"] == variant].iloc[0]
                self.add("warning", "label_case", first["source_file"], int(first["source_line"]),
                         f"label {variant!r} ({variants[variant]} row(s)) differs from {common!r} "
                         f"({variants[common]} row(s)) only in case; they would be two classes.",
                         "write one spelling everywhere.", str(first["recording_name"]))

    def overlaps(self) -> None:
        """Overlapping selections of different labels, and the same selection read twice, per recording."""
        t = self.table
        ok = t["begin"].notna() & t["end"].notna() & (t["end"] > t["begin"])
        key = [r if isinstance(r, str) and r else f"name:{n}" for r, n in zip(t["recording"], t["recording_name"])]
        frame = t.loc[ok].assign(_key=[k for k, good in zip(key, ok) if good])
        for _, g in frame.groupby("_key", sort=True):
            active: list[Any] = []
            for r in g.sort_values(["begin", "end", "source_file", "source_line"], kind="stable").itertuples():
                active = [a for a in active if a.end > r.begin]
                for a in active:
                    self._pair(a, r)
                active.append(r)

    def _pair(self, a: Any, r: Any) -> None:
        """Warn about ``r`` overlapping ``a`` (an earlier row of the same recording) with another label, or repeating it."""
        other = f"{a.source_file} line {a.source_line}"
        name = str(r.recording_name)
        if a.label != r.label:
            self.add("warning", "overlap", r.source_file, int(r.source_line),
                     f"the selection {r.begin:g}-{r.end:g} s ({r.label!r}) overlaps {other} "
                     f"({a.begin:g}-{a.end:g} s, {a.label!r}) in recording '{name}'.",
                     "nothing if both calls are real (a clip may then hold both); otherwise correct one of them.", name)
        elif abs(a.begin - r.begin) <= _SAME_TIME and abs(a.end - r.end) <= _SAME_TIME:
            self.add("warning", "duplicate_annotation", r.source_file, int(r.source_line),
                     f"the selection {r.begin:g}-{r.end:g} s ({r.label!r}) is also at {other}; it would count twice.",
                     "read only one version of each table, or delete one of the rows.", name)

    def sample_rates(self) -> None:
        """A warning for each recording whose rate differs from the most common one."""
        rates = {r: i["sample_rate"] for r, i in self.info.items() if not i["error"]}
        if len(set(rates.values())) <= 1:
            return
        t = self.table
        counts = pd.Series(list(rates.values())).value_counts()
        rows = t[t["recording"].isin(list(rates))].groupby(t["recording"].map(rates)).size()
        # The most common rate: most recordings, then most selections, then the higher rate.
        common = int(sorted(counts.index, key=lambda x: (-counts[x], -rows.get(x, 0), -x))[0])
        for rec, rate in rates.items():
            if rate == common:
                continue
            first = t[t["recording"] == rec].iloc[0]
            self.add("warning", "mixed_sample_rate", first["source_file"], int(first["source_line"]),
                     f"recording {Path(rec).name} is sampled at {rate} Hz while {counts[common]} of the "
                     f"{len(rates)} recordings are at {common} Hz; every clip will be resampled to the model's "
                     f"rate ({self.model_rate} Hz) when read, so this only costs time.",
                     "nothing; or resample the recordings to one rate beforehand.", str(first["recording_name"]))


def validate_annotations(
    annotations: AnnotationSet | pd.DataFrame,
    on_error: str = "report",
    tolerance: float = DEFAULT_TOLERANCE,
    model_rate: int = SAMPLE_RATE,
) -> AnnotationReport:
    """Check annotations against their recordings and report every problem at once.

    Args:
        annotations: what :func:`read_annotations` returned, or a table with :data:`CORE_COLUMNS`.
        on_error: ``"report"`` returns the report with every row; ``"raise"`` raises
            :class:`AnnotationError` (listing every problem) when there is an error; ``"exclude"`` drops
            the rows with errors from ``report.table`` and lists them, with the annotation files no row
            could be read from, in ``report.excluded``; the errors stay in the report.
        tolerance: seconds a selection may end past its recording's end before it is an error.
        model_rate: the rate (Hz) clips are resampled to, named in the mixed-rate warning.

    Returns:
        An :class:`AnnotationReport`: ``problems`` (errors first, then by file and line), ``table``,
        ``excluded`` and ``recordings`` (duration in s and sample rate in Hz of every recording found,
        read from the file headers).
    """
    if on_error not in ("report", "raise", "exclude"):
        raise ValueError(f"on_error must be 'report', 'raise' or 'exclude', not {on_error!r}")
    aset = annotations if isinstance(annotations, AnnotationSet) else AnnotationSet.from_table(annotations)
    checks = _Checks(aset, tolerance, model_rate)
    checks.recordings()
    checks.times_and_labels()
    checks.labels()
    checks.overlaps()
    checks.sample_rates()
    checks.problems.sort(key=lambda p: (p.severity != "error", p.file, p.line or 0))
    root = aset.audio_root or (Path(aset.table["source_file"].iloc[0]).parent if len(aset.table) else Path("."))
    report = AnnotationReport(root=root, problems=checks.problems, table=aset.table,
                              recordings=pd.DataFrame(list(checks.info.values()), columns=RECORDING_COLUMNS))
    if on_error == "exclude":
        report.table, report.excluded = _exclude(aset.table, checks)
    if on_error == "raise" and report.errors:
        raise AnnotationError(report)
    return report


def _exclude(table: pd.DataFrame, checks: _Checks) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows without errors, and the list of what was left out (faulty rows, then files that gave no row)."""
    keys = list(zip(table["source_file"], table["source_line"].astype(int)))
    keep = [k not in checks.faults for k in keys]
    excluded = [{"source_file": f, "source_line": ln, "recording_name": name, "label": label,
                 "reason": " ".join(dict.fromkeys(msg for _, msg in checks.faults[(f, ln)]))}
                for (f, ln), name, label, good in zip(keys, table["recording_name"], table["label"], keep) if not good]
    files_with_rows = set(table["source_file"])
    for p in checks.problems:
        if p.severity == "error" and p.file not in files_with_rows:
            files_with_rows.add(p.file)  # one entry per file
            excluded.append({"source_file": p.file, "source_line": None, "recording_name": None, "label": None,
                             "reason": f"no row read: {p.message}"})
    return (table.loc[keep].reset_index(drop=True),
            pd.DataFrame(excluded, columns=EXCLUDED_COLUMNS))
