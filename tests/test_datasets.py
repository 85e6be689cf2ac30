"""Named corpora are built once and reused; other names are folders."""
from __future__ import annotations

import pytest

from helpers.datasets import corpus_dir, prepare_corpus


def test_synthetic_is_built_once_and_reused(tmp_path):
    c = prepare_corpus("synthetic", tmp_path, n_clips=40, seed=2, progress=False)
    assert c.root == corpus_dir("synthetic", tmp_path, 40, 2) and c.name == "synthetic-n40-seed2"
    assert c.classes == ["background", "chimpanze", "geunon", "mandrille", "redcap"]
    assert (c.split("test")["label"] == "?").all()
    stamp = (c.root / "wav" / "train_00001.wav").stat().st_mtime_ns
    again = prepare_corpus("synthetic", tmp_path, n_clips=40, seed=2, progress=False)
    assert (again.root / "wav" / "train_00001.wav").stat().st_mtime_ns == stamp
    assert again.checksum() == c.checksum()


def test_folder_corpus_and_missing_folder(tiny_corpus, tmp_path):
    assert prepare_corpus(str(tiny_corpus)).classes == ["background", "chimpanze", "redcap"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_corpus(str(tmp_path / "nowhere"))
