"""Finding the recordings annotation files name: by file name under the audio root (recursively, exact
name before case-insensitive), as written, beside the table, or by the table's own name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from helpers.data.annotations.text import basename
from helpers.data.audio_files import AUDIO_EXTENSIONS


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


class Resolver:
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
        name = basename(written)
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
