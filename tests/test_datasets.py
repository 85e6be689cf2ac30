"""Named corpora are built once and reused; other names are folders."""

from __future__ import annotations

import pytest

from helpers.data.corpora.named import corpus_dir, prepare_corpus


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


@pytest.mark.slow
def test_cli_builds_named_corpora(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT, SHARED_MIRROR

    syn = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers",
            "corpus",
            "synthetic",
            "--out",
            str(tmp_path / "syn"),
            "--n-clips",
            "30",
            "--seed",
            "4",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert syn.returncode == 0, syn.stderr
    assert "0 error(s)" in syn.stdout and (tmp_path / "syn" / "lab" / "test.csv").is_file()
    if not (SHARED_MIRROR / "SHA256SUMS").is_file():
        pytest.skip("no mirror for the demo corpus")
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers",
            "corpus",
            "demo",
            "--out",
            str(tmp_path / "demo"),
            "--mirror",
            str(SHARED_MIRROR),
            "--cache-dir",
            str(tmp_path / "dl"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert demo.returncode == 0, demo.stderr
    assert "0 error(s), 0 warning(s)" in demo.stdout and (tmp_path / "demo" / "manifest.csv").is_file()
