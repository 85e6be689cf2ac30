"""Finding audio files: the one list of extensions the project reads, one folder walker, file lists.

Every command that takes recordings (``scan``, ``predict``, the annotation reader's lookup of a
recording by name) finds them here, so a format one of them reads the others read too.

- :data:`AUDIO_EXTENSIONS`: what counts as audio when a folder is walked (soundfile 1.2 with
  libsndfile 1.2 decodes all of them, Opus included).
- :func:`find_audio_files`: files and folders (walked recursively, in sorted order; names relative
  to the folder given). Files of other extensions met in a walk are not silently passed over: they
  come back in ``skipped`` with the reason, and the commands list them.
- :func:`read_file_list`: an archive listed once, as a text file (one path per line; blank lines and
  lines starting with ``#`` ignored) or a CSV with a ``path`` column, paths relative to a root
  (default: the list's own folder). The list is read, not the disk walked; a listed file that is
  missing is a problem row naming the list's line, and the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

#: File extensions read as audio (lower case).
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aif", ".aiff", ".aifc", ".w64", ".rf64", ".caf", ".au")


def is_audio_file(path: str | Path) -> bool:
    """Whether ``path``'s extension is one of :data:`AUDIO_EXTENSIONS` (case ignored)."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


@dataclass
class FoundAudio:
    """What :func:`find_audio_files` or :func:`read_file_list` found: ``files`` as ``(path, name)`` with
    ``name`` the path relative to the folder (or list root) it came from; ``skipped`` as ``(path,
    reason)``: files passed over, and listed entries that could not be used."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def skipped_table(self) -> pd.DataFrame:
        return pd.DataFrame([{"path": str(p), "reason": r} for p, r in self.skipped], columns=["path", "reason"])


def check_names(files: list[tuple[Path, str]]) -> None:
    """ValueError when two different files would be written under one name."""
    names: dict[str, Path] = {}
    for path, name in files:
        if name in names and names[name] != path:
            raise ValueError(
                f"{names[name]} and {path} would both be written as {name}; give them distinct relative "
                "paths, scan them into two output folders, or pass their common parent folder."
            )
        names[name] = path


def find_audio_files(inputs: Sequence[str | Path]) -> FoundAudio:
    """The audio files of ``inputs`` (module docstring). A file given by name is taken whatever its
    extension (the decoder says whether it can read it); a missing input is FileNotFoundError, and
    so is finding no audio at all."""
    found = FoundAudio()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if not f.is_file():
                    continue
                if is_audio_file(f):
                    found.files.append((f, f.relative_to(p).as_posix()))
                else:
                    found.skipped.append(
                        (
                            f,
                            f"not an audio file: its extension {f.suffix or '(none)'} is not one of "
                            f"{' '.join(AUDIO_EXTENSIONS)}; rename it if it is audio",
                        )
                    )
        elif p.is_file():
            found.files.append((p, p.name))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder; pass audio files or folders holding them.")
    check_names(found.files)
    if not found.files:
        raise FileNotFoundError(
            f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {[str(i) for i in inputs]}"
            + (f"; {len(found.skipped)} other file(s) passed over, e.g. {found.skipped[0][0]}" if found.skipped else "")
        )
    return found


def read_file_list(list_path: str | Path, root: str | Path | None = None) -> FoundAudio:
    """The recordings a file list names (module docstring); names are the paths relative to ``root``
    (default the list's folder) as written. Raises ValueError when the list cannot be read or a CSV
    has no ``path`` column; a missing file is a ``skipped`` row naming the list's line."""
    list_path = Path(list_path)
    base = Path(root) if root is not None else list_path.parent
    try:
        text = list_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{list_path}: cannot read the file list ({exc}); give a text file of paths, one per line, "
            "or a CSV with a path column"
        ) from None
    entries: list[tuple[int, str]] = []
    if list_path.suffix.lower() == ".csv":
        table = pd.read_csv(list_path, dtype=str, keep_default_na=False)
        if "path" not in table.columns:
            raise ValueError(
                f"{list_path}: a CSV file list needs a 'path' column (it has "
                f"{', '.join(table.columns) or 'none'}); rename the column of the recordings' paths"
            )
        entries = [(i + 2, v.strip()) for i, v in enumerate(table["path"]) if v.strip()]
    else:
        entries = [
            (i + 1, line.strip())
            for i, line in enumerate(text.splitlines())
            if line.strip() and not line.lstrip().startswith("#")
        ]
    found = FoundAudio()
    for line, value in entries:
        written = Path(value)
        path = written if written.is_absolute() else base / written
        if not path.is_file():
            found.skipped.append(
                (
                    path,
                    f"{list_path} line {line}: {value} not found under {base}; correct the path "
                    "or the list's root (--root)",
                )
            )
            continue
        try:
            name = path.relative_to(base).as_posix() if written.is_absolute() else written.as_posix()
        except ValueError:
            name = path.name
        if ".." in Path(name).parts:  # an output must stay inside its folder
            name = path.name
        found.files.append((path, name))
    check_names(found.files)
    return found
