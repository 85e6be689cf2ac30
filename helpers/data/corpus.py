"""Reading and validating a corpus in the challenge layout (docs/reference.md §1).

Layout::

    ROOT/wav/train_00001.wav ...      audio, any rate or channel count soundfile can read
    ROOT/lab/train.csv                header ``filename,label``
    ROOT/lab/devel.csv
    ROOT/lab/test.csv                 optional; labels ``?`` mean "hidden"

The class list is never hard-coded: it is the sorted set of labels in ``lab/train.csv`` (or a
list the caller passes, e.g. the classes a trained model knows). :func:`read_corpus` validates
everything first and reports ALL problems at once, each naming the file, the line and the fix.

Errors (the run stops after listing every one, unless ``on_error="exclude"``):
missing wav file, empty label, label not among the classes, ``?`` outside test, duplicate row,
unreadable / empty / truncated audio, NaN or Inf samples, a malformed label file.

Warnings (the run goes on, with the stated deterministic treatment):
wav file in no label file (ignored), more than one channel (averaged to mono), sample rates that
differ across files (each file resampled to the rate the features ask for), clips longer than the
clip length (the end is cut off).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from helpers.data.audio import CLIP_SECONDS
from helpers.data.corpus_writer import CorpusWriter

SPLITS = ("train", "devel", "test")
#: The label the challenge uses for hidden test labels.
UNKNOWN_LABEL = "?"
#: Columns of the tidy corpus table, in order.
TABLE_COLUMNS = [
    "split",
    "filename",
    "path",
    "label",
    "class_index",
    "duration",
    "sample_rate",
    "channels",
    "sha256",
]


class CorpusError(ValueError):
    """A corpus has errors; ``report`` holds every problem found."""

    def __init__(self, report: "ValidationReport"):
        self.report = report
        super().__init__(report.format(max_lines=50))


@dataclass(frozen=True)
class Problem:
    """One finding of the validation: where it is, what is wrong, and how to fix it."""

    severity: str  # "error" or "warning"
    kind: str  # machine-readable name, e.g. "missing_wav"
    file: str  # path relative to the corpus root, e.g. "lab/devel.csv" or "wav/x.wav"
    line: int | None  # 1-based line in a label file (the header is line 1), if any
    message: str
    fix: str
    split: str | None = None
    filename: str | None = None  # the wav file the problem concerns, if any
    value: float | None = None  # the measured quantity, when there is one (a too-long clip's duration in s)

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.line else self.file
        return f"{self.severity.upper()} {where}: {self.message} Fix: {self.fix}"


@dataclass
class ValidationReport:
    """Every problem found in a corpus, errors first."""

    root: Path
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def to_frame(self) -> pd.DataFrame:
        cols = ["severity", "kind", "file", "line", "message", "fix", "split", "filename", "value"]
        return pd.DataFrame([p.__dict__ for p in self.problems], columns=cols)

    def format(self, max_lines: int | None = None) -> str:
        """Human-readable report: a summary line, then one line per error and per warning, except
        that a kind of warning found in more than :data:`GROUP_OVER` files is one grouped line
        (see :func:`problem_lines`); ``to_frame()`` still lists every problem."""
        head = f"{self.root}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        return "\n".join([head, *problem_lines(self.errors, self.warnings, max_lines)])


#: A kind of warning found in more files than this is reported as one grouped line.
GROUP_OVER = 3
#: Files named in a grouped line.
GROUP_EXAMPLES = 3


def problem_lines(errors: list[Problem], warnings: list[Problem], max_lines: int | None = None) -> list[str]:
    """One line per error, then the warnings: one line each, or one line per kind for a kind found
    in more than :data:`GROUP_OVER` files (a corpus of 5-s clips would otherwise print the same
    "longer than the clip length" line hundreds of times). A grouped line gives the count, the
    range of the measured values where there are some, the first few files and the fix, naming
    the option that avoids the warning. At most ``max_lines`` lines, then a count of the rest."""
    by_kind: dict[str, list[Problem]] = {}
    for p in warnings:
        by_kind.setdefault(p.kind, []).append(p)
    lines = [str(p) for p in errors]
    for kind, found in by_kind.items():
        lines += [_grouped_line(kind, found)] if len(found) > GROUP_OVER else [str(p) for p in found]
    if max_lines is not None and len(lines) > max_lines:
        extra = len(lines) - max_lines
        lines = lines[:max_lines] + [f"... and {extra} more (see the full report: report.to_frame())"]
    return lines


def _grouped_line(kind: str, found: list[Problem]) -> str:
    """One line for many warnings of one kind (see :func:`problem_lines`)."""
    files = ", ".join(p.file for p in found[:GROUP_EXAMPLES]) + (", ..." if len(found) > GROUP_EXAMPLES else "")
    head = f"WARNING {kind} in {len(found)} files ({files})"
    values = [p.value for p in found if p.value is not None]
    if kind == "too_long" and values:
        low, high = min(values), max(values)
        span = f"{low:.2f} s" if round(low, 2) == round(high, 2) else f"{low:.2f}-{high:.2f} s"
        limit = re.search(r"clip length ([0-9.]+ s)", found[0].message)
        return (
            f"{head}: they last {span}, longer than the clip length{' ' + limit.group(1) if limit else ''}; "
            "their ends will be cut off. Fix: set the "
            f"clip length to {high:.2f} s (TrainConfig clip_seconds={high:.2f}, a parameter of 03_train; "
            f"python -m helpers validate DIR --clip-seconds {high:.2f}), or cut the files into clips yourself."
        )
    first = found[0]
    return f"{head}; the first: {first.message} Fix: {first.fix}"


@dataclass
class Corpus:
    """A validated corpus: one tidy table plus the class order and the validation report.

    ``table`` has one row per labelled clip with columns :data:`TABLE_COLUMNS`; ``class_index``
    is the position of ``label`` in ``classes`` and -1 for unknown (``?``) test labels.
    ``excluded`` lists rows dropped by ``on_error="exclude"`` (split, filename, line, reason).
    """

    root: Path
    name: str
    table: pd.DataFrame
    classes: list[str]
    report: ValidationReport
    excluded: pd.DataFrame

    def split(self, name: str) -> pd.DataFrame:
        """Rows of one split (``train``, ``devel`` or ``test``), in label-file order."""
        return self.table[self.table["split"] == name].reset_index(drop=True)

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if (self.table["split"] == s).any()]

    def has_labels(self, split: str) -> bool:
        """True when every clip of ``split`` has a known label (not ``?``)."""
        rows = self.split(split)
        return len(rows) > 0 and bool((rows["class_index"] >= 0).all())

    def checksum(self) -> str:
        """SHA-256 over (split, filename, label, audio checksum) of every row: the corpus's identity."""
        h = hashlib.sha256()
        for row in self.table[["split", "filename", "label", "sha256"]].itertuples(index=False):
            h.update(("\t".join(map(str, row)) + "\n").encode())
        return h.hexdigest()

    def counts(self) -> pd.DataFrame:
        """Clips per class (rows, in class order, plus ``?``) and split (columns)."""
        order = self.classes + ([UNKNOWN_LABEL] if (self.table["label"] == UNKNOWN_LABEL).any() else [])
        counts = self.table.groupby(["label", "split"]).size().unstack(fill_value=0)
        counts = counts.reindex(index=order, columns=self.splits, fill_value=0)
        counts.index.name = "label"
        return counts

    def record(self) -> dict:
        """JSON-friendly summary for run records: root, classes, counts, checksum, exclusions."""
        return {
            "name": self.name,
            "root": str(self.root),
            "classes": list(self.classes),
            "n_clips": {s: int((self.table["split"] == s).sum()) for s in self.splits},
            "checksum": self.checksum(),
            "excluded": self.excluded.to_dict(orient="records"),
            "warnings": len(self.report.warnings),
        }


# --- label files --------------------------------------------------------------------------


@dataclass
class _Row:
    split: str
    line: int
    filename: str
    label: str


def _read_label_file(root: Path, split: str, problems: list[Problem]) -> list[_Row]:
    rel = f"lab/{split}.csv"
    path = root / rel
    if not path.exists():
        if split == "test":
            problems.append(
                Problem(
                    "warning",
                    "missing_label_file",
                    rel,
                    None,
                    "no test label file; the corpus has no test split.",
                    "add lab/test.csv (header filename,label; labels may be '?') if you have test clips.",
                )
            )
        else:
            problems.append(
                Problem(
                    "error",
                    "missing_label_file",
                    rel,
                    None,
                    f"the {split} label file is missing.",
                    f"create {rel} with the header 'filename,label' and one row per clip.",
                )
            )
        return []
    rows: list[_Row] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(
            Problem("error", "bad_label_file", rel, None, f"is not UTF-8 text ({exc}).", "save the file as UTF-8 CSV.")
        )
        return []
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != ["filename", "label"]:
        problems.append(
            Problem(
                "error",
                "bad_header",
                rel,
                1,
                f"header is {header!r}, expected 'filename,label'.",
                "make the first line exactly: filename,label",
            )
        )
        return []
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue  # blank lines carry nothing; csv writers often add one at the end
        if len(row) != 2:
            problems.append(
                Problem(
                    "error",
                    "bad_row",
                    rel,
                    line,
                    f"has {len(row)} fields {row!r}, expected 2 (filename,label).",
                    "write one 'filename,label' pair per line; quote names that contain commas.",
                )
            )
            continue
        rows.append(_Row(split, line, row[0].strip(), row[1].strip()))
    return rows


# --- audio checks ----------------------------------------------------------------------------


def _wav_data_shortfall(raw: bytes) -> int:
    """For a RIFF/WAVE file: bytes the 'data' chunk declares but the file lacks (0 if complete).

    libsndfile silently reads what is there, so a cut-off download would pass as a short clip;
    comparing the declared chunk size with the bytes present catches it.
    """
    if len(raw) < 12 or raw[:4] not in (b"RIFF", b"RIFX") or raw[8:12] != b"WAVE":
        return 0
    fmt = "<I" if raw[:4] == b"RIFF" else ">I"
    pos = 12
    while pos + 8 <= len(raw):
        cid = raw[pos : pos + 4]
        (size,) = struct.unpack(fmt, raw[pos + 4 : pos + 8])
        if cid == b"data":
            if size == 0xFFFFFFFF:  # streaming writers leave the size unknown
                return 0
            return max(0, size - (len(raw) - pos - 8))
        pos += 8 + size + (size & 1)
    return 0


def _inspect_audio(path: Path) -> dict:
    """Read one file once: checksum, header facts and the sample checks."""
    out: dict = {"exists": path.is_file()}
    if not out["exists"]:
        return out
    raw = path.read_bytes()
    out["sha256"] = hashlib.sha256(raw).hexdigest()
    out["shortfall"] = _wav_data_shortfall(raw)
    try:
        data, sr = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        out["error"] = str(exc)
        return out
    out.update(
        sample_rate=int(sr),
        channels=int(data.shape[1]),
        frames=int(data.shape[0]),
        finite=bool(np.isfinite(data).all()),
    )
    return out


def _inspect_all(paths: list[Path], workers: int) -> list[dict]:
    # Reading is I/O plus libsndfile decoding, both of which release the GIL.
    if workers <= 1 or len(paths) < 64:
        return [_inspect_audio(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_inspect_audio, paths, chunksize=32))


# --- the reader -------------------------------------------------------------------------------


def validate_corpus(
    root: str | Path, classes: list[str] | None = None, clip_seconds: float = CLIP_SECONDS, workers: int | None = None
) -> ValidationReport:
    """Validate a corpus folder and return the report (never raises for problems in the data)."""
    return _scan(Path(root), classes, clip_seconds, workers)[0]


def read_corpus(
    root: str | Path,
    classes: list[str] | None = None,
    on_error: str = "raise",
    clip_seconds: float = CLIP_SECONDS,
    name: str | None = None,
    workers: int | None = None,
) -> Corpus:
    """Read and validate a corpus in the challenge layout.

    Args:
        root: the corpus folder (holding ``wav/`` and ``lab/``).
        classes: the class order to use; default the sorted labels of ``lab/train.csv``.
        on_error: ``"raise"`` stops with :class:`CorpusError` listing every error; ``"exclude"``
            drops the rows with errors instead and lists them in ``Corpus.excluded`` (errors that
            are not about one row, such as a missing label file, still stop the run).
        clip_seconds: the clip length the features use; longer clips get a "truncated" warning.
        name: a short name for caches and records (default: the folder's name).
        workers: threads for reading audio (default: the number of CPUs).

    Returns:
        A :class:`Corpus` whose table has columns :data:`TABLE_COLUMNS`.
    """
    if on_error not in ("raise", "exclude"):
        raise ValueError(f"on_error must be 'raise' or 'exclude', not {on_error!r}")
    root = Path(root)
    report, records, class_list, lines = _scan(root, classes, clip_seconds, workers)
    bad_rows = {(p.split, p.filename) for p in report.errors if p.filename is not None and p.split}
    global_errors = [p for p in report.errors if p.filename is None or not p.split]
    if report.errors and (on_error == "raise" or global_errors):
        raise CorpusError(report)
    table = pd.DataFrame(records, columns=TABLE_COLUMNS + ["line"])
    reasons = {}
    for p in report.errors:
        reasons.setdefault((p.split, p.filename), []).append(p.message)
    keep = [(s, f) not in bad_rows for s, f in zip(table["split"], table["filename"])]
    excluded = pd.DataFrame(
        [
            {"split": s, "filename": f, "line": lines.get((s, f)), "reason": " ".join(reasons[(s, f)])}
            for s, f in sorted(bad_rows, key=lambda k: (SPLITS.index(k[0]), lines.get(k) or 0))
        ],
        columns=["split", "filename", "line", "reason"],
    )
    table = table.loc[keep].drop(columns="line").reset_index(drop=True)
    table["class_index"] = table["class_index"].astype(np.int64)
    return Corpus(
        root=root,
        name=name or root.resolve().name,
        table=table,
        classes=class_list,
        report=report,
        excluded=excluded.reset_index(drop=True),
    )


def _scan(
    root: Path, classes: list[str] | None, clip_seconds: float, workers: int | None
) -> tuple[ValidationReport, list[dict], list[str], dict]:
    """Validate the corpus at ``root``, reading every label file and every referenced audio file once.

    Returns ``(report, records, class_list, lines)``: the report with every problem (errors first,
    then by file and line); one record per row whose audio could be read (the columns
    :data:`TABLE_COLUMNS` plus ``line``; ``duration`` in seconds, ``sample_rate`` in Hz), in
    label-file order and including rows with label errors, which :func:`read_corpus` drops or
    refuses; the class order; and the 1-based label-file line of every ``(split, filename)``.
    """
    report = ValidationReport(root=root)
    problems = report.problems
    if not root.is_dir():
        problems.append(
            Problem(
                "error",
                "missing_corpus",
                str(root),
                None,
                "the corpus folder does not exist.",
                "build a corpus (python -m helpers corpus demo --out DIR) or pass the right folder.",
            )
        )
        return report, [], [], {}
    wav_dir = root / "wav"
    if not wav_dir.is_dir():
        problems.append(
            Problem(
                "error",
                "missing_wav_dir",
                "wav",
                None,
                "the wav/ folder is missing.",
                "put the audio files in ROOT/wav/.",
            )
        )
    rows = [r for split in SPLITS for r in _read_label_file(root, split, problems)]
    duplicate_lines = _check_duplicates(rows, problems)
    class_list = _class_list(rows, classes)
    candidates = _check_rows(rows, duplicate_lines, class_list, problems)
    records = _check_audio(candidates, wav_dir, class_list, clip_seconds, workers, problems)
    _warn_mixed_rates(records, problems)
    _warn_orphans(wav_dir, rows, problems)
    # Errors first, in file order, so the report reads top-down.
    report.problems.sort(key=lambda p: (p.severity != "error", p.file, p.line or 0))
    lines = {(r.split, r.filename): r.line for r in rows}
    return report, records, class_list, lines


# --- the checks of _scan, in the order it runs them -------------------------------------------------


def _check_duplicates(rows: list[_Row], problems: list[Problem]) -> set[tuple[str, int]]:
    """Report every row that lists a file listed before (in one split or across splits).

    Returns the ``(split, line)`` of those repeats: the first listing is kept, the repeats are not
    checked any further.
    """
    first_seen: dict[str, _Row] = {}
    duplicate_lines: set[tuple[str, int]] = set()
    for r in rows:
        if not r.filename:
            continue
        if r.filename in first_seen:
            f = first_seen[r.filename]
            problems.append(
                Problem(
                    "error",
                    "duplicate_row",
                    f"lab/{r.split}.csv",
                    r.line,
                    f"'{r.filename}' is listed again (first at lab/{f.split}.csv line {f.line}).",
                    "keep one row per file; a clip belongs to exactly one split.",
                    r.split,
                    r.filename,
                )
            )
            duplicate_lines.add((r.split, r.line))
        else:
            first_seen[r.filename] = r
    return duplicate_lines


def _class_list(rows: list[_Row], classes: list[str] | None) -> list[str]:
    """The class order: ``classes`` when given, else the sorted known labels of the train rows."""
    if classes is None:
        return sorted({r.label for r in rows if r.split == "train" and r.label and r.label != UNKNOWN_LABEL})
    return list(classes)


def _check_rows(
    rows: list[_Row], duplicate_lines: set[tuple[str, int]], class_list: list[str], problems: list[Problem]
) -> list[_Row]:
    """Check each row's filename and label; return the rows whose audio is to be read.

    A repeated row (``duplicate_lines``) and a row without a filename are not read; a row with a
    bad label is read all the same, so that its audio problems are reported too.
    """
    class_index = {c: i for i, c in enumerate(class_list)}
    shown = ", ".join(class_list) if len(class_list) <= 12 else ", ".join(class_list[:12]) + ", ..."
    candidates: list[_Row] = []
    for r in rows:
        if (r.split, r.line) in duplicate_lines:
            continue
        if not r.filename:
            problems.append(
                Problem(
                    "error",
                    "empty_filename",
                    f"lab/{r.split}.csv",
                    r.line,
                    "the filename is empty.",
                    "write the wav file's name in the first column.",
                    r.split,
                    None,
                )
            )
            continue
        problem = _label_problem(r, class_index, shown)
        if problem is not None:
            problems.append(problem)
        candidates.append(r)
    return candidates


def _label_problem(r: _Row, class_index: dict[str, int], shown: str) -> Problem | None:
    """What is wrong with the label of row ``r`` (empty, ``?`` outside test, not a class), or None.

    ``shown`` is the class list as the messages print it (at most 12 names).
    """
    rel = f"lab/{r.split}.csv"
    if not r.label:
        return Problem(
            "error",
            "empty_label",
            rel,
            r.line,
            f"'{r.filename}' has an empty label.",
            f"write one of: {shown}" + (" (or '?' in test)" if r.split == "test" else "") + ".",
            r.split,
            r.filename,
        )
    if r.label == UNKNOWN_LABEL and r.split != "test":
        return Problem(
            "error",
            "unknown_outside_test",
            rel,
            r.line,
            f"'{r.filename}' has label '?' but '?' (hidden label) is only allowed in test.",
            f"give the clip its class ({shown}) or move it to lab/test.csv.",
            r.split,
            r.filename,
        )
    if r.label != UNKNOWN_LABEL and r.label not in class_index:
        return Problem(
            "error",
            "unknown_label",
            rel,
            r.line,
            f"label '{r.label}' of '{r.filename}' is not one of {shown}.",
            "correct the spelling, or add training clips of this class to lab/train.csv.",
            r.split,
            r.filename,
        )
    return None


def _check_audio(
    candidates: list[_Row],
    wav_dir: Path,
    class_list: list[str],
    clip_seconds: float,
    workers: int | None,
    problems: list[Problem],
) -> list[dict]:
    """Read every candidate's file once (checksum, header, samples), report its problems, make its record.

    Returns one record per row whose file exists and decodes (see :func:`_scan`), in row order.
    """
    class_index = {c: i for i, c in enumerate(class_list)}
    paths = [wav_dir / r.filename for r in candidates]
    infos = _inspect_all(paths, workers or os.cpu_count() or 1)
    records = []
    for r, path, info in zip(candidates, paths, infos):
        unusable = _unusable_audio(r, info)
        if unusable is not None:
            problems.append(unusable)
            continue
        duration = info["frames"] / info["sample_rate"]  # seconds
        problems.extend(_audio_problems(r, info, duration, clip_seconds))
        records.append(
            {
                "split": r.split,
                "filename": r.filename,
                "path": str(path),
                "label": r.label,
                "class_index": class_index.get(r.label, -1),
                "duration": duration,
                "sample_rate": info["sample_rate"],
                "channels": info["channels"],
                "sha256": info["sha256"],
                "line": r.line,
            }
        )
    return records


def _unusable_audio(r: _Row, info: dict) -> Problem | None:
    """The error that leaves row ``r`` without audio (file missing, or not decodable), or None.

    ``info`` is what :func:`_inspect_audio` found for the row's file.
    """
    rel_lab, rel_wav = f"lab/{r.split}.csv", f"wav/{r.filename}"
    if not info["exists"]:
        return Problem(
            "error",
            "missing_wav",
            rel_lab,
            r.line,
            f"'{rel_wav}' does not exist.",
            "add the file to wav/ or delete this row.",
            r.split,
            r.filename,
        )
    if "error" in info:
        return Problem(
            "error",
            "unreadable_audio",
            rel_wav,
            None,
            f"cannot be decoded ({info['error']}); listed at {rel_lab} line {r.line}.",
            "replace it with a valid WAV/FLAC/OGG file or delete the row.",
            r.split,
            r.filename,
        )
    return None


def _audio_problems(r: _Row, info: dict, duration: float, clip_seconds: float) -> list[Problem]:
    """The problems of a decodable file: errors (truncated, no samples, NaN/Inf), then warnings
    (more than one channel, longer than ``clip_seconds``). ``duration`` is in seconds."""
    rel_lab, rel_wav = f"lab/{r.split}.csv", f"wav/{r.filename}"
    where = f"listed at {rel_lab} line {r.line}"
    found = []
    if info["shortfall"] > 0:
        found.append(
            Problem(
                "error",
                "truncated_audio",
                rel_wav,
                None,
                f"is truncated: its header declares {info['shortfall']} more bytes of audio than "
                f"the file holds ({where}).",
                "download or copy the file again.",
                r.split,
                r.filename,
            )
        )
    if info["frames"] == 0:
        found.append(
            Problem(
                "error",
                "empty_audio",
                rel_wav,
                None,
                f"holds no samples ({where}).",
                "replace it with the real recording or delete the row.",
                r.split,
                r.filename,
            )
        )
    if not info["finite"]:
        found.append(
            Problem(
                "error",
                "nonfinite_audio",
                rel_wav,
                None,
                f"contains NaN or Inf samples ({where}).",
                "re-export the recording as integer PCM or clean the samples.",
                r.split,
                r.filename,
            )
        )
    if info["channels"] > 1:
        found.append(
            Problem(
                "warning",
                "multichannel",
                rel_wav,
                None,
                f"has {info['channels']} channels; they will be averaged to mono.",
                "nothing, unless one channel should be chosen: then export that channel.",
                r.split,
                r.filename,
            )
        )
    if duration > clip_seconds + 1e-9:
        found.append(
            Problem(
                "warning",
                "too_long",
                rel_wav,
                None,
                f"lasts {duration:.2f} s, longer than the clip length {clip_seconds:.2f} s; the end will be cut off.",
                f"set the clip length to {duration:.2f} s (TrainConfig clip_seconds) if the whole clip "
                "matters, or cut the file into clips yourself.",
                r.split,
                r.filename,
                value=duration,
            )
        )
    return found


def _warn_mixed_rates(records: list[dict], problems: list[Problem]) -> None:
    """Warn about every file whose sample rate differs from the most common one (in record order)."""
    rates = pd.Series([rec["sample_rate"] for rec in records], dtype="int64")
    if rates.nunique() <= 1:
        return
    common = int(rates.mode().iloc[0])
    for rec in records:
        if rec["sample_rate"] != common:
            problems.append(
                Problem(
                    "warning",
                    "mixed_sample_rate",
                    f"wav/{rec['filename']}",
                    None,
                    f"is sampled at {rec['sample_rate']} Hz while most files are at {common} Hz; it will be resampled.",
                    "nothing; resample the corpus beforehand to avoid the work at every run.",
                    rec["split"],
                    rec["filename"],
                )
            )


def _warn_orphans(wav_dir: Path, rows: list[_Row], problems: list[Problem]) -> None:
    """Warn about every ``.wav`` file in ``wav_dir`` that no label file lists (in name order)."""
    if not wav_dir.is_dir():
        return
    listed = {r.filename for r in rows}
    for f in sorted(os.listdir(wav_dir)):
        if f.lower().endswith(".wav") and f not in listed:
            problems.append(
                Problem(
                    "warning",
                    "orphan_wav",
                    f"wav/{f}",
                    None,
                    "is in no label file and will be ignored.",
                    "add a row for it to lab/<split>.csv if it belongs to the corpus.",
                )
            )


def write_broken_copy(table: pd.DataFrame, dest: str | Path, per_split: int = 3) -> Path:
    """A small corpus at ``dest`` with three deliberate mistakes, for showing what validation reports.

    Copies ``per_split`` train and devel clips of ``table`` (a :attr:`Corpus.table`), then deletes
    the first clip's wav (a missing file), writes the first devel label as ``chimp`` (an unknown
    label, since the classes come from train.csv) and repeats one row (a duplicate). Returns ``dest``.
    """
    dest = Path(dest)
    sample = table[table.split.isin(["train", "devel"])].groupby("split").head(per_split)
    with CorpusWriter(dest, splits=("train", "devel")) as corpus:
        for row in sample.itertuples():
            corpus.add_file(row.split, row.filename, row.label, row.path, link=False)
    (dest / "wav" / sample.iloc[0].filename).unlink()
    devel_csv = dest / "lab" / "devel.csv"
    first_devel_label = sample[sample.split == "devel"].iloc[0].label
    devel_csv.write_text(devel_csv.read_text().replace(f",{first_devel_label}\n", ",chimp\n", 1))
    with open(devel_csv, "a", encoding="utf-8") as fh:
        fh.write(f"{sample.iloc[1].filename},{sample.iloc[1].label}\n")
    return dest
