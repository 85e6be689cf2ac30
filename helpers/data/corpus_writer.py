"""Writing a corpus in the challenge layout, the one way every builder does it.

``wav/`` holds the clips, ``lab/{split}.csv`` lists ``filename,label`` per split in the order the
clips were added, and any extra file (a manifest, ``corpus.json``, ``rounds.csv``) sits beside them.
:class:`CorpusWriter` assembles it all in a temporary folder next to the destination and moves it
into place only when the ``with`` block ends without an error, so an interrupted build never
leaves half a corpus behind (an error removes the temporary folder and keeps what was there).
"""

from __future__ import annotations

import os
import shutil
import tempfile
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
        self._tmp: Path | None = None

    def __enter__(self) -> "CorpusWriter":
        if self.out.exists() and not self.replace:
            raise FileExistsError(f"{self.out}: exists; a corpus is written once: choose another folder")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}-", dir=self.out.parent))
        self.work = self._tmp / "corpus"
        (self.work / "wav").mkdir(parents=True)
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
        table.to_csv(self.work / name, index=False)

    def write_json(self, name: str, value: Any) -> None:
        write_json_atomic(self.work / name, value)

    def copy_in(self, name: str, source: str | Path) -> None:
        shutil.copy2(source, self.work / name)

    def _labels(self) -> None:
        table = pd.DataFrame(self.rows, columns=["split", "filename", "label"])
        splits = self.splits or tuple(dict.fromkeys(table["split"]))
        for split in splits:
            table.loc[table["split"] == split, ["filename", "label"]].to_csv(
                self.work / "lab" / f"{split}.csv", index=False
            )

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self._labels()
                if self.out.exists():
                    shutil.rmtree(self.out)
                os.replace(self.work, self.out)
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
