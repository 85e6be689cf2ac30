"""Annotation files as text: decoding (UTF-8 / UTF-16 BOM / Windows-1252 fallback), the delimiter, the
rows and cells, numbers written in them, and names and line numbers as shown in messages.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path


def read_text(path: Path) -> tuple[str, str | None]:
    """The file's text and the fallback encoding used (None when it was UTF-8 or UTF-16 with a BOM)."""
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return raw.decode("utf-16"), None
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), "Windows-1252"


def first_line(text: str) -> str | None:
    """The first line that is not blank (any line ending), or None."""
    for line in io.StringIO(text, newline=""):
        if line.strip():
            return line.rstrip("\r\n")
    return None


def guess_delimiter(line: str) -> str:
    """Tab, comma or semicolon: whichever ``line`` holds most of (tab on a tie or when none)."""
    counts = {d: line.count(d) for d in ("\t", ",", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else "\t"


def split_rows(text: str, delimiter: str) -> list[tuple[int, list[str]]]:
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


def norm_name(name: str) -> str:
    """A column name compared loosely: lower case, white space collapsed."""
    return " ".join(name.strip().lower().split())


def parse_number(text: str, delimiter: str = "\t") -> float:
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


def is_number(text: str) -> bool:
    return not math.isnan(parse_number(text))


def looks_audacity(line: str) -> bool:
    """True for an Audacity label line: ``begin<TAB>end[<TAB>label]`` with numeric times (the label
    may hold commas, so this is decided before the delimiter is counted)."""
    cells = line.split("\t")
    return len(cells) >= 2 and is_number(cells[0]) and is_number(cells[1])


def basename(written: str) -> str:
    """The file name of a path written on Windows or POSIX (``C:\\a\\b.wav`` -> ``b.wav``)."""
    return re.split(r"[\\/]", written.strip())[-1]


def names_from_table(path: Path) -> list[str]:
    """Recording names (without extension) an annotation file's own name suggests, best first:
    ``13738.Table.1.selections.txt`` -> ``13738``; ``rec1.txt`` -> ``rec1``."""
    names = []
    m = re.match(r"(.+?)\.Table\.\d+\.selections", path.name, re.IGNORECASE)
    if m:
        names.append(m.group(1))
    names += [path.stem, path.name.split(".")[0]]
    return [n for n in dict.fromkeys(names) if n]


@dataclass
class RawTable:
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


def lines_text(lines: list[int], limit: int = 10) -> str:
    """``line 4`` or ``lines 2, 3, 5`` (at most ``limit`` numbers, then how many more)."""
    shown = ", ".join(map(str, lines[:limit]))
    more = f" and {len(lines) - limit} more" if len(lines) > limit else ""
    return ("line " if len(lines) == 1 else "lines ") + shown + more
