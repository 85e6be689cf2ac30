"""The one challenge-layout writer: label files in the order clips were added, all or nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.data.corpus import read_corpus
from helpers.data.corpus_writer import CorpusWriter
from tests.conftest import write_tone


def test_a_corpus_is_written_whole_and_reads_back(tmp_path):
    write_tone(tmp_path / "old.wav", 440, seconds=1.0)
    out = tmp_path / "corpus"
    with CorpusWriter(out, splits=("train", "devel", "test")) as corpus:
        corpus.add_wave("train", "train_00001.wav", "chimp", 0.1 * np.ones(16000), 16000)
        corpus.add_file("devel", "devel_00001.wav", "chimp", tmp_path / "old.wav")
        corpus.add_wave("train", "train_00002.wav", "background", np.zeros(16000), 16000)
        corpus.write_table("manifest.csv", pd.DataFrame({"filename": ["train_00001.wav"]}))
        assert not out.exists()  # nothing in place before the block ends
    assert (
        out / "lab" / "train.csv"
    ).read_text() == "filename,label\ntrain_00001.wav,chimp\ntrain_00002.wav,background\n"
    assert (out / "lab" / "test.csv").read_text() == "filename,label\n"  # asked for, empty
    assert read_corpus(out).table.groupby("split").size().to_dict() == {"devel": 1, "train": 2}
    assert (out / "manifest.csv").is_file() and not list(tmp_path.glob(".corpus-*"))
    with pytest.raises(FileExistsError, match="written once"):
        with CorpusWriter(out):
            pass


def test_an_error_leaves_no_half_corpus_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "corpus"
    with CorpusWriter(out) as corpus:
        corpus.add_wave("train", "a.wav", "x", np.zeros(800), 8000)
    with pytest.raises(RuntimeError, match="stopped"):
        with CorpusWriter(out, replace=True) as corpus:
            corpus.add_wave("train", "b.wav", "y", np.zeros(800), 8000)
            raise RuntimeError("stopped")
    assert sorted(p.name for p in (out / "wav").iterdir()) == ["a.wav"]  # the old corpus, untouched
    assert not list(tmp_path.glob(".corpus-*"))  # and no temporary folder left
