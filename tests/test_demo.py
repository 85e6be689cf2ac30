"""The demo corpus: sources verified by checksum, the cutting rule, the split by recording, and
notebooks 00-02 on it (the mirror is beside the clone in CI)."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd
import pytest

from helpers.data.corpora import demo
from helpers.data.corpus import read_corpus
from helpers.data.download import ChecksumError, fetch_file
from tests.conftest import SHARED_MIRROR

# Trains models, runs notebooks or starts processes: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

needs_mirror = pytest.mark.skipif(
    not (SHARED_MIRROR / "SHA256SUMS").is_file(),
    reason="the shared mirror folder (../shared/mirror) is not beside the checkout",
)


def test_sources_match_the_mirror_checksum_list():
    if not (SHARED_MIRROR / "SHA256SUMS").is_file():
        pytest.skip("no mirror")
    listed = {}
    for line in (SHARED_MIRROR / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        listed[rel.removeprefix("./")] = digest
    for src in demo.SOURCES:
        assert listed[src.relpath] == src.sha256, src.relpath


def test_no_recording_spans_two_splits():
    by_recording = {}
    for src in demo.SOURCES:
        by_recording.setdefault((src.label, src.recording), set()).add(src.split)
    assert all(len(s) == 1 for s in by_recording.values())
    for label in demo.DEMO_CLASSES:
        assert {s.split for s in demo.SOURCES if s.label == label} == {"train", "devel", "test"}


def test_window_rule():
    assert demo.window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert demo.window_starts(3, 4, 2) == [0]
    sr = 16000
    t = np.arange(20 * sr) / sr
    wave = 0.01 * np.random.default_rng(0).standard_normal(t.size)
    wave[12 * sr : 14 * sr] += np.sin(2 * np.pi * 1000 * t[12 * sr : 14 * sr])  # one loud call at 12-14 s
    src = demo.Source(("o", "r", "c"), "x.wav", "0" * 64, "gibbon_male", "train", "x", "focal")
    starts = demo.select_windows(wave.astype(np.float32), src, max_per_recording=1)
    assert len(starts) == 1 and 11 * sr <= starts[0] + demo.CLIP_SAMPLES_16K // 2 <= 15 * sr


def test_checksum_mismatch_names_file_and_leaves_nothing(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "o/r/c").mkdir(parents=True)
    (mirror / "o/r/c/a.wav").write_bytes(b"tampered bytes")
    with pytest.raises(ChecksumError, match=r"a.wav: expected 0{64}, got [0-9a-f]{64}"):
        fetch_file("o/r/c/a.wav", "http://127.0.0.1:9/a.wav", "0" * 64, tmp_path / "cache", mirror)
    # a download that fails leaves no file behind that could pass as valid later
    with pytest.raises(RuntimeError, match="PRIMATE_DEMO_MIRROR"):
        fetch_file("o/r/c/b.wav", "http://127.0.0.1:9/b.wav", "0" * 64, tmp_path / "cache", None, timeout=2)
    assert not any((tmp_path / "cache").rglob("*.wav*"))


def test_corrupt_download_is_rejected(tmp_path, monkeypatch):
    import io
    import urllib.request

    good = b"the real bytes"
    digest = hashlib.sha256(good).hexdigest()

    def fake_urlopen(url, timeout):
        return io.BytesIO(b"the real by")  # cut short

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(ChecksumError, match="expected " + digest):
        fetch_file("o/r/c/d.wav", "https://example.invalid/d.wav", digest, tmp_path / "cache")
    assert not any((tmp_path / "cache").rglob("d.wav*"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(good))
    path = fetch_file("o/r/c/d.wav", "https://example.invalid/d.wav", digest, tmp_path / "cache")
    assert path.read_bytes() == good
    # a damaged cache entry is detected and fetched again
    path.write_bytes(b"damaged")
    assert fetch_file("o/r/c/d.wav", "https://example.invalid/d.wav", digest, tmp_path / "cache").read_bytes() == good


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory):
    if not (SHARED_MIRROR / "SHA256SUMS").is_file():
        pytest.skip("no mirror")
    root = tmp_path_factory.mktemp("demo") / "demo"
    demo.build_demo_corpus(root, cache_dir=root.parent / "downloads", mirror=SHARED_MIRROR, progress=False)
    return root


@needs_mirror
def test_demo_corpus_is_valid_and_split_by_recording(demo_corpus):
    c = read_corpus(demo_corpus)
    assert c.report.ok and not c.report.warnings, c.report.format()
    assert c.classes == demo.DEMO_CLASSES
    counts = c.counts()
    assert (counts > 0).all().all()
    assert (c.table["duration"] <= demo.CLIP_SAMPLES_16K / 16000 + 1e-9).all()
    manifest = pd.read_csv(demo_corpus / "manifest.csv")
    assert manifest.groupby("source_recording")["split"].nunique().max() == 1
    assert {"license", "attribution", "source_url", "offset_s"} <= set(manifest.columns)
    assert not (demo_corpus / "downloads").exists()  # read in place from the mirror


@needs_mirror
def test_demo_build_is_deterministic_and_reused(demo_corpus, tmp_path):
    again = demo.build_demo_corpus(tmp_path / "demo2", cache_dir=tmp_path / "dl", mirror=SHARED_MIRROR, progress=False)
    for name in ["lab/train.csv", "manifest.csv", "wav/train_00001.wav", "wav/test_00010.wav"]:
        assert (again / name).read_bytes() == (demo_corpus / name).read_bytes(), name
    mtime = (again / "wav" / "train_00001.wav").stat().st_mtime_ns
    demo.build_demo_corpus(again, cache_dir=tmp_path / "dl", mirror=SHARED_MIRROR, progress=False)
    assert (again / "wav" / "train_00001.wav").stat().st_mtime_ns == mtime  # reused, not rebuilt


@needs_mirror
def test_notebooks_00_to_02_on_demo(demo_corpus, tmp_path):
    from helpers.experiments.notebooks import run_collection

    params = {
        "corpus": "demo",
        "data_dir": str(demo_corpus.parent),
        "cache_dir": str(tmp_path / "cache"),
        "figures_dir": str(tmp_path / "figures"),
    }
    os.environ["PRIMATE_DEMO_MIRROR"] = str(SHARED_MIRROR)
    done = run_collection(params, notebooks=["00", "01", "02"], output_dir=tmp_path / "executed")
    assert len(done) == 3
    assert (tmp_path / "figures" / "02_8k_vs_16k.png").is_file()
