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

The parts: :mod:`helpers.data.annotations.set` (:class:`AnnotationSet` and its columns),
:mod:`helpers.data.annotations.text` (decoding, delimiter, rows, numbers),
:mod:`helpers.data.annotations.lookup` (finding recordings), :mod:`helpers.data.annotations.reader`
(label column and recording choices, the rows collected), :mod:`helpers.data.annotations.formats`
(the Raven, Audacity and CSV readers) and :mod:`helpers.data.annotations.checks`
(:func:`validate_annotations`). Every public name is importable from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from helpers.data.annotations.checks import (
    DEFAULT_TOLERANCE,
    RECORDING_COLUMNS,
    UNCERTAIN_LABEL,
    AnnotationError,
    AnnotationReport,
    validate_annotations,
)
from helpers.data.annotations.formats import FormatReader
from helpers.data.annotations.lookup import AUDIO_EXTENSIONS
from helpers.data.annotations.reader import LABEL_COLUMN_CANDIDATES
from helpers.data.annotations.set import CORE_COLUMNS, EXCLUDED_COLUMNS, TABLE_COLUMNS, AnnotationSet, RowKey

__all__ = [
    "ANNOTATION_EXTENSIONS",
    "AUDIO_EXTENSIONS",
    "CORE_COLUMNS",
    "DEFAULT_TOLERANCE",
    "EXCLUDED_COLUMNS",
    "LABEL_COLUMN_CANDIDATES",
    "RECORDING_COLUMNS",
    "TABLE_COLUMNS",
    "UNCERTAIN_LABEL",
    "AnnotationError",
    "AnnotationReport",
    "AnnotationSet",
    "RowKey",
    "read_annotations",
    "validate_annotations",
]

#: File extensions read when a folder is passed to :func:`read_annotations`.
ANNOTATION_EXTENSIONS = (".txt", ".csv", ".tsv")


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
    reader = FormatReader(Path(audio_root).expanduser() if audio_root is not None else None, label_column, recording)
    for path, source, explicit in _expand(paths):
        reader.read_file(path, source, explicit)
    return reader.result()
