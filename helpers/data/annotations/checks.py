"""Validating annotations against their recordings (:func:`validate_annotations`): every problem at once,
each naming the annotation file, the line and the fix (see :mod:`helpers.data.annotations`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import soundfile as sf

from helpers.data.annotations.set import EXCLUDED_COLUMNS, SAME_TIME, TABLE_COLUMNS, AnnotationSet, RowKey
from helpers.data.annotations.text import basename, lines_text
from helpers.data.audio import SAMPLE_RATE
from helpers.data.corpus import Problem, ValidationReport, problem_lines

#: The label annotators write for an unsure identification.
UNCERTAIN_LABEL = "?"
#: Columns of :attr:`AnnotationReport.recordings`.
RECORDING_COLUMNS = ["recording", "duration", "sample_rate", "channels", "frames", "error"]
#: Default slack (s) for a selection ending past the recording's end: Raven lets a selection be drawn
#: to the very edge, and MP3 decoders differ by a few milliseconds in the length they report.
DEFAULT_TOLERANCE = 0.1


class AnnotationError(ValueError):
    """Annotations have errors; ``report`` holds every problem found."""

    def __init__(self, report: "AnnotationReport"):
        self.report = report
        super().__init__(report.format(max_lines=50))


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
        head = (
            f"annotations ({files} file(s), {len(self.table)} selection(s) kept, "
            f"{len(self.excluded)} excluded): {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        )
        return "\n".join([head, *problem_lines(self.errors, self.warnings, max_lines)])


def _inspect(recording: str) -> dict:
    """Header facts of one recording (no samples decoded): duration (s), sample_rate (Hz), channels,
    frames; or ``error``."""
    try:
        info = sf.info(recording)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as exc:
        return {"recording": recording, "error": str(exc).strip() or type(exc).__name__}
    out = {
        "recording": recording,
        "sample_rate": int(info.samplerate),
        "channels": int(info.channels),
        "frames": int(info.frames),
        "error": None,
    }
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

    def add(
        self,
        severity: str,
        kind: str,
        file: str,
        line: int | None,
        message: str,
        fix: str,
        recording_name: str | None,
        fault_lines: Iterable[int] = (),
    ) -> None:
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
            where = lines_text(lines)
            if path is None:
                self.add(
                    "error",
                    "unknown_recording",
                    file,
                    lines[0],
                    f"recording '{name}' was not found ({where}; {self._looked_where(name)}).",
                    "put it under the audio folder (any subfolder), give the folder holding it as the audio "
                    "folder (--audio DIR; audio_root= in Python), or name it (recording= in Python).",
                    name,
                    lines,
                )
            else:
                self.add(
                    "error",
                    "unreadable_audio",
                    file,
                    lines[0],
                    f"recording {path} cannot be read ({self.info[path]['error']}; {where}).",
                    "replace it with a valid WAV/FLAC/MP3/OGG file.",
                    name,
                    lines,
                )

    def _looked_where(self, name: str) -> str:
        base = basename(name)
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
                    self.add(
                        "error",
                        "bad_time",
                        r.source_file,
                        key[1],
                        "the begin or end time is missing.",
                        "write both times in seconds, or delete the row.",
                        name,
                        [key[1]],
                    )
            elif r.begin < 0 or r.end < 0:
                self.add(
                    "error",
                    "negative_time",
                    r.source_file,
                    key[1],
                    f"a time is negative ({r.begin:g} to {r.end:g} s).",
                    "times count from the recording's start: correct them, or delete the row.",
                    name,
                    [key[1]],
                )
            elif r.end <= r.begin:
                what = "equals" if r.end == r.begin else "is before"
                self.add(
                    "error",
                    "end_before_begin",
                    r.source_file,
                    key[1],
                    f"the end ({r.end:g} s) {what} the begin ({r.begin:g} s).",
                    "swap or correct the times (a selection needs a length), or delete the row.",
                    name,
                    [key[1]],
                )
            else:
                self._past_end(r, name)
            if not str(r.label).strip():
                self.add(
                    "error",
                    "empty_label",
                    r.source_file,
                    key[1],
                    f"the selection at {r.begin:g} s has no label.",
                    "write its label, or delete the row.",
                    name,
                    [key[1]],
                )

    def _past_end(self, r: Any, name: str) -> None:
        info = self.info.get(r.recording) if isinstance(r.recording, str) else None
        if not info or info["error"]:
            return
        duration = info["duration"]
        if r.end > duration + self.tolerance:
            self.add(
                "error",
                "past_end",
                r.source_file,
                int(r.source_line),
                f"the selection {r.begin:g}-{r.end:g} s ends past the end of {Path(r.recording).name} "
                f"({duration:.3f} s).",
                "check that the row belongs to this recording (and the File Offset), or correct its times.",
                name,
                [int(r.source_line)],
            )

    # -- warnings

    def labels(self) -> None:
        """'?' labels (one warning per file) and labels that differ only in case."""
        t = self.table
        unsure = t[t["label"] == UNCERTAIN_LABEL]
        for file, g in unsure.groupby("source_file", sort=False):
            lines = [int(x) for x in g["source_line"]]
            self.add(
                "warning",
                "uncertain_label",
                file,
                lines[0],
                f"{len(lines)} selection(s) labelled '?' ({lines_text(lines)}); '?' would become a class of its own.",
                "relabel them, or exclude them before building a corpus.",
                None,
            )
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
                self.add(
                    "warning",
                    "label_case",
                    first["source_file"],
                    int(first["source_line"]),
                    f"label {variant!r} ({variants[variant]} row(s)) differs from {common!r} "
                    f"({variants[common]} row(s)) only in case; they would be two classes.",
                    "write one spelling everywhere.",
                    str(first["recording_name"]),
                )

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
        """Warn about ``r`` overlapping ``a`` (an earlier row of the same recording) with another label, or
        repeating it."""
        other = f"{a.source_file} line {a.source_line}"
        name = str(r.recording_name)
        if a.label != r.label:
            self.add(
                "warning",
                "overlap",
                r.source_file,
                int(r.source_line),
                f"the selection {r.begin:g}-{r.end:g} s ({r.label!r}) overlaps {other} "
                f"({a.begin:g}-{a.end:g} s, {a.label!r}) in recording '{name}'.",
                "nothing if both calls are real (a clip may then hold both); otherwise correct one of them.",
                name,
            )
        elif abs(a.begin - r.begin) <= SAME_TIME and abs(a.end - r.end) <= SAME_TIME:
            self.add(
                "warning",
                "duplicate_annotation",
                r.source_file,
                int(r.source_line),
                f"the selection {r.begin:g}-{r.end:g} s ({r.label!r}) is also at {other}; it would count twice.",
                "read only one version of each table, or delete one of the rows.",
                name,
            )

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
            self.add(
                "warning",
                "mixed_sample_rate",
                first["source_file"],
                int(first["source_line"]),
                f"recording {Path(rec).name} is sampled at {rate} Hz while {counts[common]} of the "
                f"{len(rates)} recordings are at {common} Hz; every clip will be resampled to the model's "
                f"rate ({self.model_rate} Hz) when read, so this only costs time.",
                "nothing; or resample the recordings to one rate beforehand.",
                str(first["recording_name"]),
            )


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
    report = AnnotationReport(
        root=root,
        problems=checks.problems,
        table=aset.table,
        recordings=pd.DataFrame(list(checks.info.values()), columns=RECORDING_COLUMNS),
    )
    if on_error == "exclude":
        report.table, report.excluded = _exclude(aset.table, checks)
    if on_error == "raise" and report.errors:
        raise AnnotationError(report)
    return report


def _exclude(table: pd.DataFrame, checks: _Checks) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows without errors, and the list of what was left out (faulty rows, then files that gave no row)."""
    keys = list(zip(table["source_file"], table["source_line"].astype(int)))
    keep = [k not in checks.faults for k in keys]
    excluded = [
        {
            "source_file": f,
            "source_line": ln,
            "recording_name": name,
            "label": label,
            "reason": " ".join(dict.fromkeys(msg for _, msg in checks.faults[(f, ln)])),
        }
        for (f, ln), name, label, good in zip(keys, table["recording_name"], table["label"], keep)
        if not good
    ]
    files_with_rows = set(table["source_file"])
    for p in checks.problems:
        if p.severity == "error" and p.file not in files_with_rows:
            files_with_rows.add(p.file)  # one entry per file
            excluded.append(
                {
                    "source_file": p.file,
                    "source_line": None,
                    "recording_name": None,
                    "label": None,
                    "reason": f"no row read: {p.message}",
                }
            )
    return (table.loc[keep].reset_index(drop=True), pd.DataFrame(excluded, columns=EXCLUDED_COLUMNS))
