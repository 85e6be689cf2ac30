"""The annotation file formats: Raven Pro selection tables, Audacity label tracks and plain CSV tables
(recognised from the first non-blank line; see :mod:`helpers.data.annotations` for the rules).
"""

from __future__ import annotations

import math
from pathlib import Path

from helpers.data.annotations.reader import Reader, new_record
from helpers.data.annotations.set import SAME_TIME
from helpers.data.annotations.text import (
    RawTable,
    basename,
    first_line,
    guess_delimiter,
    is_number,
    lines_text,
    looks_audacity,
    norm_name,
    parse_number,
    read_text,
    split_rows,
)

_RAVEN_BEGIN, _RAVEN_END = "begin time (s)", "end time (s)"
_CSV_FILE = ("file", "filename")


#: Bytes of a file looked at for NUL bytes, the mark of a binary file.
BINARY_PROBE_BYTES = 8192


class FormatReader(Reader):
    """Reads annotation files one at a time, in whichever format each is, into the reader's rows,
    problems and notes."""

    # -- one file

    def read_file(self, path: Path, source: str, explicit: bool) -> None:
        """Read one annotation file; any problem is recorded and the next file is read all the same."""
        if not path.is_file():
            self.problem(
                "error",
                "missing_file",
                source,
                None,
                "the annotation file does not exist.",
                "correct the path, or remove it from the list.",
            )
            return
        try:
            if b"\x00" in path.read_bytes()[:BINARY_PROBE_BYTES]:
                # no text table holds NUL bytes: audio, a spreadsheet, an archive saved under a table's name
                self.problem(
                    "error",
                    "binary_file",
                    source,
                    None,
                    "is a binary file, not a text table (it holds NUL bytes).",
                    "export the selection table as text (Raven: File > Save Selection Table), or move "
                    "the file out of the annotations folder.",
                )
                return
            text, fallback = read_text(path)
        except OSError as exc:
            self.problem(
                "error",
                "unreadable_file",
                source,
                None,
                f"cannot be read ({exc}).",
                "check the file's permissions, or copy it again.",
            )
            return
        if fallback:
            self.problem(
                "warning",
                "not_utf8",
                source,
                None,
                f"is not UTF-8 text; it was read as {fallback} (accented labels may be wrong).",
                "save the table as UTF-8 (in a spreadsheet: 'CSV UTF-8').",
            )
        first = first_line(text)
        if first is None:
            self.problem(
                "error",
                "empty_file",
                source,
                None,
                "the annotation file is empty.",
                "export the selection table again, or remove the file from the list.",
            )
            return
        table = RawTable(path, source, "\t" if looks_audacity(first) else guess_delimiter(first), [])
        table.rows = split_rows(text, table.delimiter)
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
    def _format(table: RawTable) -> str | None:
        header = {norm_name(c) for c in table.header}
        if _RAVEN_BEGIN in header and _RAVEN_END in header:
            return "raven"
        if header & set(_CSV_FILE) and {"begin", "end"} <= header:
            return "csv"
        cells = table.rows[0][1]
        if table.delimiter == "\t" and len(cells) >= 2 and is_number(cells[0]) and is_number(cells[1]):
            return "audacity"
        return None

    def _unknown_format(self, table: RawTable, explicit: bool) -> None:
        message = (
            f"is not a Raven selection table, an Audacity label track or a CSV 'file,begin,end,label' "
            f"(first line: {table.rows[0][1][:6]!r})."
        )
        fix = (
            "pass a Raven selection table as Raven saves it, Audacity labels (File > Export > Export "
            "Labels), or a CSV with the header file,begin,end,label."
        )
        if explicit:
            self.problem("error", "unknown_format", table.source, table.header_line, message, fix)
        else:
            self.problem(
                "warning",
                "not_annotations",
                table.source,
                None,
                message + " It was found in a folder passed to the reader and is skipped.",
                fix,
            )

    # -- Raven

    def _read_raven(self, table: RawTable) -> None:
        label_i = self._label_index(table)
        if label_i is None:
            return
        cols: dict[str, int] = {}
        for i, name in enumerate(table.header):
            cols.setdefault(norm_name(name), i)
        path_i = cols.get("begin path", cols.get("begin file"))
        offset_i = cols.get("file offset (s)")
        used = {
            label_i,
            cols[_RAVEN_BEGIN],
            cols[_RAVEN_END],
            cols.get("low freq (hz)"),
            cols.get("high freq (hz)"),
            path_i,
            offset_i,
        }
        records = [
            self._raven_row(table, line, cells, cols, label_i, path_i, offset_i, used) for line, cells in table.rows[1:]
        ]
        records = self._merge_views(table, records, cols.get("selection"), cols.get("view"))
        if path_i is None:
            recording, name = self._table_recording(table, [r["source_line"] for r in records])
            for r in records:
                r["recording"], r["recording_name"] = recording, name
        else:
            self._check_multi_file(table, records, cols, offset_i)
            self._resolve_rows(table, records)
        self.records += records

    def _raven_row(
        self,
        table: RawTable,
        line: int,
        cells: list[str],
        cols: dict[str, int],
        label_i: int,
        path_i: int | None,
        offset_i: int | None,
        used: set[int | None],
    ) -> dict:
        def cell(i: int | None) -> str:
            return cells[i].strip() if i is not None and i < len(cells) else ""

        d = table.delimiter
        begin_text, end_text = cell(cols[_RAVEN_BEGIN]), cell(cols[_RAVEN_END])
        begin, end = parse_number(begin_text, d), parse_number(end_text, d)
        if math.isnan(begin) or math.isnan(end):
            self.problem(
                "error",
                "bad_time",
                table.source,
                line,
                f"Begin Time {begin_text!r} / End Time {end_text!r} is not a pair of numbers.",
                "write both times in seconds (e.g. 12.5), or delete the row.",
            )
        if offset_i is not None:
            offset_text = cell(offset_i)
            offset = parse_number(offset_text, d)
            if math.isnan(offset):
                self.problem(
                    "error",
                    "bad_time",
                    table.source,
                    line,
                    f"File Offset (s) {offset_text!r} is not a number.",
                    "export the table again with the File Offset (s) measurement filled in.",
                )
            begin, end = offset, offset + (end - begin)
        self._check_width(table, line, cells)
        extra = {
            table.header[i]: cells[i].strip() if i < len(cells) else ""
            for i in range(len(table.header))
            if i not in used
        }
        return new_record(
            cell(path_i) if path_i is not None else None,
            begin,
            end,
            cell(label_i),
            parse_number(cell(cols.get("low freq (hz)")), d),
            parse_number(cell(cols.get("high freq (hz)")), d),
            table.source,
            line,
            extra,
        )

    def _merge_views(
        self, table: RawTable, records: list[dict], selection_i: int | None, view_i: int | None
    ) -> list[dict]:
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
            keep = next(
                (r for r in rows if view_name and r["extra"].get(view_name, "").lower().startswith("spectrogram")),
                rows[0],
            )
            kept_ids.add(id(keep))
            for r in rows:
                if r is not keep:
                    self._merge_one(table, number, keep, r, kept_ids)
        return [r for r in records if id(r) in kept_ids]

    def _merge_one(self, table: RawTable, number: str, keep: dict, r: dict, kept_ids: set[int]) -> None:
        same = (
            r["label"] == keep["label"]
            and r["recording_name"] == keep["recording_name"]
            and all(
                abs(r[k] - keep[k]) <= SAME_TIME or (math.isnan(r[k]) and math.isnan(keep[k])) for k in ("begin", "end")
            )
        )
        if same:
            self.dropped.append(
                {
                    "source_file": table.source,
                    "source_line": r["source_line"],
                    "recording_name": r["recording_name"],
                    "label": r["label"],
                    "reason": f"another view of selection {number} (kept: line {keep['source_line']}).",
                }
            )
            return
        kept_ids.add(id(r))
        self.problem(
            "error",
            "duplicate_selection",
            table.source,
            r["source_line"],
            f"Selection {number} is also at line {keep['source_line']} with other times or label "
            f"({r['begin']:g}-{r['end']:g} s {r['label']!r} vs {keep['begin']:g}-{keep['end']:g} s "
            f"{keep['label']!r}).",
            "renumber one of the selections, or delete the wrong row.",
            r["recording_name"],
        )

    def _check_multi_file(
        self, table: RawTable, records: list[dict], cols: dict[str, int], offset_i: int | None
    ) -> None:
        """Errors for multi-file tables whose times cannot be placed in one recording."""
        end_path_i = cols.get("end path")
        if end_path_i is not None:
            end_name = table.header[end_path_i]
            for r in records:
                end_path = r["extra"].get(end_name, "")
                if end_path and r["recording_name"] and basename(end_path) != basename(r["recording_name"]):
                    self.problem(
                        "error",
                        "spans_files",
                        table.source,
                        r["source_line"],
                        f"the selection starts in '{r['recording_name']}' and ends in '{end_path}'.",
                        "split it in two selections, one per file, in Raven.",
                        r["recording_name"],
                    )
        names = list(dict.fromkeys(r["recording_name"] for r in records))
        if offset_i is None and len(names) > 1:
            lines = [r["source_line"] for r in records]
            self.problem(
                "error",
                "session_times",
                table.source,
                table.header_line,
                f"is a multi-file Raven table ({len(names)} files in Begin Path) without a "
                "'File Offset (s)' column: its times count from the start of the Raven session, "
                f"not of each recording, so they cannot be placed ({lines_text(lines)}).",
                "in Raven, add the measurement 'File Offset (s)' to the selection table (Choose "
                "Measurements) and save the table again.",
                None,
                lines,
            )

    # -- Audacity

    def _read_audacity(self, table: RawTable) -> None:
        records: list[dict] = []
        after_label = False  # a frequency line belongs to the label line right before it
        for line, cells in table.rows:
            if cells[0].strip() == "\\":
                self._audacity_band(table, line, cells, records[-1] if after_label else None)
                after_label = False
                continue
            after_label = True
            begin, end = parse_number(cells[0]), parse_number(cells[1]) if len(cells) > 1 else math.nan
            if math.isnan(begin) or math.isnan(end):
                self.problem(
                    "error",
                    "bad_time",
                    table.source,
                    line,
                    f"{cells[:3]!r} is not 'begin<TAB>end<TAB>label' with times in seconds.",
                    "correct or delete the line (Audacity writes begin, end and label separated by tabs).",
                )
            label = "\t".join(cells[2:]).strip()
            records.append(new_record(None, begin, end, label, math.nan, math.nan, table.source, line, {}))
        recording, name = self._table_recording(table, [r["source_line"] for r in records])
        for r in records:
            r["recording"], r["recording_name"] = recording, name
        self.label_columns[table.source] = "(Audacity label text)"
        self.records += records

    def _audacity_band(self, table: RawTable, line: int, cells: list[str], previous: dict | None) -> None:
        """Attach a ``\\ low high`` line to ``previous``, the label on the line before it (None: there is none)."""
        low = parse_number(cells[1]) if len(cells) > 1 else math.nan
        high = parse_number(cells[2]) if len(cells) > 2 else math.nan
        if previous is None:
            self.problem(
                "warning",
                "stray_frequency_line",
                table.source,
                line,
                "a frequency line ('\\' low high) that follows no label line; it is ignored.",
                "delete the line, or put it right under its label.",
            )
            return
        previous["low_freq"] = low if low >= 0 else math.nan
        previous["high_freq"] = high if high >= 0 else math.nan

    # -- plain CSV

    def _read_csv(self, table: RawTable) -> None:
        label_i = self._label_index(table, default="label")
        if label_i is None:
            return
        cols: dict[str, int] = {}
        for i, name in enumerate(table.header):
            cols.setdefault(norm_name(name), i)
        file_i = next(cols[c] for c in _CSV_FILE if c in cols)
        named = {"begin": cols["begin"], "end": cols["end"], "low": cols.get("low_freq"), "high": cols.get("high_freq")}
        used = {label_i, file_i, *named.values()}
        records = []
        for line, cells in table.rows[1:]:

            def cell(i: int | None) -> str:
                return cells[i].strip() if i is not None and i < len(cells) else ""

            begin = parse_number(cell(named["begin"]), table.delimiter)
            end = parse_number(cell(named["end"]), table.delimiter)
            if math.isnan(begin) or math.isnan(end):
                self.problem(
                    "error",
                    "bad_time",
                    table.source,
                    line,
                    f"begin {cell(named['begin'])!r} / end {cell(named['end'])!r} is not a pair of numbers.",
                    "write both times in seconds (e.g. 12.5), or delete the row.",
                )
            self._check_width(table, line, cells)
            extra = {table.header[i]: cell(i) for i in range(len(table.header)) if i not in used}
            records.append(
                new_record(
                    cell(file_i),
                    begin,
                    end,
                    cell(label_i),
                    parse_number(cell(named["low"]), table.delimiter),
                    parse_number(cell(named["high"]), table.delimiter),
                    table.source,
                    line,
                    extra,
                )
            )
        self._resolve_rows(table, records)
        self.records += records
