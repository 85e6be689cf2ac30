"""Writing a corpus in the challenge layout, the one way every builder does it.

``wav/`` holds the clips, ``lab/{split}.csv`` lists ``filename,label`` per split in the order the
clips were added, and any extra file (a manifest, ``corpus.json``, ``rounds.csv``) sits beside them.
:class:`CorpusWriter` assembles it all in a temporary folder next to the destination and moves it
into place only when the ``with`` block ends without an error, so an interrupted build never
leaves half a corpus behind (an error removes the temporary folder and keeps what was there).
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.fileio import write_json_atomic
from helpers.data.audio import write_wav


class CorpusWriter:
    """``with CorpusWriter(out) as corpus: corpus.add_wave(...)``; ``replace``: an existing ``out`` is
    replaced (else it must not exist). ``splits``: the label files written, in this order, even when
    empty (None: the splits that got clips, in the order they first did)."""

    def __init__(self, out_dir: str | Path, replace: bool = False, splits: tuple[str, ...] | None = None) -> None:
        self.out, self.replace, self.splits = Path(out_dir), replace, splits
        self.rows: list[tuple[str, str, str]] = []
        self.work: Path | None = None

    def __enter__(self) -> "CorpusWriter":
        if self.out.exists() and not self.replace and not _empty_folder(self.out):
            raise FileExistsError(f"{self.out}: exists; a corpus is written once: choose another folder")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        # a hidden sibling on the same file system, so that the final rename is atomic; mkdir, unlike
        # tempfile.mkdtemp, honours the umask, so the corpus gets the user's usual permissions
        self.work = self.out.parent / f".{self.out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        self.work.mkdir()
        (self.work / "wav").mkdir()
        (self.work / "lab").mkdir()
        return self

    def add_wave(
        self, split: str, filename: str, label: str, wave: np.ndarray, sample_rate: int, subtype: str = "PCM_16"
    ) -> Path:
        """A clip from samples (float, clipped to [-1, 1]), written as WAV (:func:`helpers.data.audio.write_wav`)."""
        path = self.work / "wav" / filename
        write_wav(path, wave, int(sample_rate), subtype=subtype)
        self.rows.append((split, filename, label))
        return path

    def register(self, split: str, filename: str, label: str) -> None:
        """A clip its builder wrote into ``wav/`` itself (under :attr:`work`), listed in its split."""
        self.rows.append((split, filename, label))

    def add_file(self, split: str, filename: str, label: str, source: str | Path, link: bool = True) -> Path:
        """A clip that is a file already: hard-linked where the file system allows (``link``), else copied."""
        path = self.work / "wav" / filename
        try:
            if not link:
                raise OSError
            os.link(source, path)
        except OSError:
            shutil.copy2(source, path)
        self.rows.append((split, filename, label))
        return path

    def write_table(self, name: str, table: pd.DataFrame) -> None:
        """A CSV beside ``wav/`` and ``lab/`` (a manifest, the rounds' provenance)."""
        table.to_csv(self.path(name), index=False)

    def write_json(self, name: str, value: Any) -> None:
        write_json_atomic(self.path(name), value)

    def copy_in(self, name: str, source: str | Path) -> None:
        shutil.copy2(source, self.path(name))

    def _labels(self) -> None:
        table = pd.DataFrame(self.rows, columns=["split", "filename", "label"])
        splits = self.splits or tuple(dict.fromkeys(table["split"]))
        for split in splits:
            table.loc[table["split"] == split, ["filename", "label"]].to_csv(
                self.work / "lab" / f"{split}.csv", index=False
            )

    def path(self, name: str) -> Path:
        """Where a file beside ``wav/`` and ``lab/`` goes (its folder made), for writers of their own."""
        target = self.work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_text(self, name: str, text: str) -> None:
        self.path(name).write_text(text, encoding="utf-8")

    def __exit__(self, kind, value, traceback) -> None:
        """On success the labels, then the move into place: an old corpus (``replace``) is moved aside
        first and deleted only once the new one is in place. On an error the partial folder goes."""
        if kind is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            return
        try:
            self._labels()
            if _empty_folder(self.out):
                self.out.rmdir()
            if self.out.exists() and not self.replace:
                raise FileExistsError(
                    f"{self.out} was filled while the corpus was written; the new corpus was "
                    "discarded. Choose another folder, or replace it (overwrite=True)."
                )
            if self.out.exists():
                old = self.out.parent / f".{self.out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
                os.rename(self.out, old)
                os.rename(self.work, self.out)
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            else:
                os.rename(self.work, self.out)
        except BaseException:
            shutil.rmtree(self.work, ignore_errors=True)
            raise


def _empty_folder(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())
