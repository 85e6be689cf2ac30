"""Tests of helpers.data.corpora.synthetic: layout, labels, proportions, durations, determinism, safety, acoustics."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers.data import corpus_writer
from helpers.data.corpora import synthetic
from helpers.data.audio import CLIP_SAMPLES_16K, clip_samples
from helpers.data.corpora.synthetic import (
    DEFAULT_CLASSES,
    REAL_TRAIN_COUNTS,
    SPLITS,
    make_synthetic_corpus,
    plan_labels,
    synthesize_clip,
)


def read_labels(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["filename", "label"], f"{path}: header {rows[0]}"
    return [tuple(r) for r in rows[1:]]


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small default corpus, shared by the read-only tests."""
    return make_synthetic_corpus(tmp_path_factory.mktemp("syn") / "corpus", n_clips=60, seed=3)


def test_layout_names_and_headers(corpus):
    assert sorted(p.name for p in corpus.iterdir()) == ["README.txt", "corpus.json", "lab", "truth", "wav"]
    wavs = sorted(p.name for p in (corpus / "wav").iterdir())
    assert len(wavs) == 60
    assert all(re.fullmatch(r"(train|devel|test)_\d{5}\.wav", name) for name in wavs)
    for split in SPLITS:
        rows = read_labels(corpus / "lab" / f"{split}.csv")
        names = [name for name, _ in rows]
        assert names == [f"{split}_{k:05d}.wav" for k in range(1, len(rows) + 1)]
        assert sorted(names) == sorted(w for w in wavs if w.startswith(split + "_"))
        assert len(rows) == 20
    # no leftovers from the temporary folder next to the corpus
    assert [p.name for p in corpus.parent.iterdir()] == ["corpus"]


def test_label_spellings_hidden_test_and_truth(corpus):
    for split in ("train", "devel"):
        assert {label for _, label in read_labels(corpus / "lab" / f"{split}.csv")} == set(DEFAULT_CLASSES)
    test_rows = read_labels(corpus / "lab" / "test.csv")
    assert {label for _, label in test_rows} == {"?"}
    truth = read_labels(corpus / "truth" / "test.csv")
    assert [n for n, _ in truth] == [n for n, _ in test_rows]
    assert set(label for _, label in truth) <= set(DEFAULT_CLASSES)
    meta = json.loads((corpus / "corpus.json").read_text())
    assert meta["version"] == synthetic.SYNTHETIC_VERSION and meta["seed"] == 3
    assert meta["parameters"]["classes"] == list(DEFAULT_CLASSES)
    assert [label for _, label in truth] == plan_labels(60, seed=3)["test"]


def test_visible_test_labels(tmp_path):
    out = make_synthetic_corpus(tmp_path / "c", n_clips=15, seed=1, hidden_test_labels=False)
    assert not (out / "truth").exists()
    assert {label for _, label in read_labels(out / "lab" / "test.csv")} <= set(DEFAULT_CLASSES)


def test_proportions_follow_the_real_train_counts():
    plan = plan_labels(1000, seed=0)
    assert [len(plan[s]) for s in SPLITS] == [334, 333, 333]
    total = sum(REAL_TRAIN_COUNTS.values())
    for split in SPLITS:
        for label in DEFAULT_CLASSES:
            share = plan[split].count(label) / len(plan[split])
            assert abs(share - REAL_TRAIN_COUNTS[label] / total) < 0.005, (split, label, share)
    # the order is shuffled, not grouped by class
    assert plan["train"][:20] != sorted(plan["train"][:20])


def test_custom_proportions_and_split_fractions():
    plan = plan_labels(200, seed=0, class_proportions={c: 1 for c in DEFAULT_CLASSES}, split_fractions=(0.5, 0.5, 0.0))
    assert [len(plan[s]) for s in SPLITS] == [100, 100, 0]
    assert all(plan["train"].count(c) == 20 for c in DEFAULT_CLASSES)


def test_tiny_corpus_has_every_class_in_train_and_devel(tmp_path):
    out = make_synthetic_corpus(tmp_path / "tiny", n_clips=30, seed=0)
    for split in ("train", "devel"):
        assert {label for _, label in read_labels(out / "lab" / f"{split}.csv")} == set(DEFAULT_CLASSES)


def test_too_small_corpus_is_refused_with_a_fix(tmp_path):
    with pytest.raises(ValueError, match="raise n_clips"):
        make_synthetic_corpus(tmp_path / "x", n_clips=10)
    assert not (tmp_path / "x").exists()


def test_durations_and_audio_format(corpus):
    lengths = []
    for path in sorted((corpus / "wav").iterdir()):
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        lengths.append(info.frames)
    assert min(lengths) >= 8000 and max(lengths) == CLIP_SAMPLES_16K
    assert len(set(lengths)) > 20  # durations vary


def test_audio_is_finite_and_not_clipping(corpus):
    for path in sorted((corpus / "wav").iterdir()):
        wave, _ = sf.read(str(path), dtype="int16")
        assert np.abs(wave.astype(int)).max() < 32767, path.name
        assert wave.std() > 0, path.name
    loud = [synthesize_clip(t, 16000, snr_db=(40.0, 40.0), rng=k) for k, t in enumerate(synthetic.CALL_TYPES)]
    assert all(np.isfinite(w).all() and np.abs(w).max() <= 0.98 + 1e-6 for w in loud)


def test_same_seed_is_byte_identical_other_seed_differs(tmp_path):
    a = file_hashes(make_synthetic_corpus(tmp_path / "a", n_clips=15, seed=7))
    b = file_hashes(make_synthetic_corpus(tmp_path / "b", n_clips=15, seed=7))
    c = file_hashes(make_synthetic_corpus(tmp_path / "c", n_clips=15, seed=8))
    assert a == b
    wav_a = {k: v for k, v in a.items() if k.startswith("wav")}
    wav_c = {k: v for k, v in c.items() if k.startswith("wav")}
    assert wav_a.keys() == wav_c.keys()
    assert all(wav_a[k] != wav_c[k] for k in wav_a)


def test_clip_depends_on_its_seed_not_on_generation_order():
    rng_a = np.random.default_rng(np.random.SeedSequence(5, spawn_key=(1, 0, 4)))
    rng_b = np.random.default_rng(np.random.SeedSequence(5, spawn_key=(1, 0, 4)))
    synthesize_clip("grunt", 4000, rng=np.random.default_rng(99))  # something else in between
    assert np.array_equal(synthesize_clip("grunt", 20000, rng=rng_a), synthesize_clip("grunt", 20000, rng=rng_b))


def test_custom_classes(tmp_path):
    labels = ["noise", "frog_A", "frog-B", "Bird C", "bat", "owl"]
    out = make_synthetic_corpus(tmp_path / "c", n_clips=36, seed=0, classes=labels, hidden_test_labels=False)
    for split in SPLITS[:2]:
        assert {label for _, label in read_labels(out / "lab" / f"{split}.csv")} == set(labels)
    meta = json.loads((out / "corpus.json").read_text())
    types = {k: v["call_type"] for k, v in meta["call_types"].items()}
    assert types == {
        "noise": "noise_only",
        "frog_A": "pant_hoot",
        "frog-B": "pulse_train",
        "Bird C": "grunt",
        "bat": "whistle_bark",
        "owl": "pant_hoot",
    }
    assert meta["call_types"]["owl"]["freq_scale"] > 1.0
    with pytest.raises(ValueError, match="comma"):
        plan_labels(30, classes=["a", "b,c"])
    with pytest.raises(ValueError, match="more than once"):
        plan_labels(30, classes=["a", "b", "a"])


def test_refuses_non_empty_folder_unless_overwrite(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"busy.*overwrite=True"):
        make_synthetic_corpus(target, n_clips=15)
    # overwrite never deletes a folder this generator did not write
    with pytest.raises(FileExistsError, match="corpus.json"):
        make_synthetic_corpus(target, n_clips=15, overwrite=True)
    assert (target / "notes.txt").read_text() == "keep me"

    out = make_synthetic_corpus(tmp_path / "mine", n_clips=15, seed=0)
    before = file_hashes(out)
    with pytest.raises(FileExistsError):
        make_synthetic_corpus(out, n_clips=15, seed=1)
    make_synthetic_corpus(out, n_clips=18, seed=1, overwrite=True)
    assert file_hashes(out) != before and len(list((out / "wav").iterdir())) == 18
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "mine"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert make_synthetic_corpus(empty, n_clips=15).samefile(empty)


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_write(path, wave, sample_rate, subtype="PCM_16"):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        sf.write(str(path), wave, sample_rate, subtype=subtype)

    monkeypatch.setattr(corpus_writer, "write_wav", failing_write)  # the one writer of every corpus
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_corpus(tmp_path / "half", n_clips=15)
    assert list(tmp_path.iterdir()) == []


def test_8khz_option(tmp_path):
    out = make_synthetic_corpus(tmp_path / "c8", n_clips=45, seed=2, sample_rate=8000)
    lengths = []
    for path in (out / "wav").iterdir():
        info = sf.info(str(path))
        assert info.samplerate == 8000
        lengths.append(info.frames)
    assert min(lengths) >= 4000 and max(lengths) == clip_samples(8000) == 23930


def spectral_centroid(wave: np.ndarray, sample_rate: int) -> float:
    power = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(wave.size, 1 / sample_rate)
    return float((freqs * power).sum() / power.sum())


def test_guenon_and_mandrill_calls_differ_in_frequency():
    n = CLIP_SAMPLES_16K
    geunon = [spectral_centroid(synthesize_clip("pulse_train", n, rng=k), 16000) for k in range(12)]
    mandrille = [spectral_centroid(synthesize_clip("grunt", n, rng=k), 16000) for k in range(12)]
    noise = [spectral_centroid(synthesize_clip("noise_only", n, rng=k), 16000) for k in range(12)]
    assert np.mean(geunon) > 2 * np.mean(mandrille)
    assert np.mean(geunon) > np.mean(noise) and np.mean(mandrille) < np.mean(noise)


def test_pulse_train_has_its_pulse_rate():
    # the amplitude envelope of a guenon-like call repeats at 10-15 Hz
    sr = 16000
    rates = []
    for k in range(6):
        call = synthetic._pulse_train(sr, np.random.default_rng(k), 1.0)
        env = np.abs(call).reshape(-1)[: call.size // 160 * 160].reshape(-1, 160).mean(1)  # 100 Hz frames
        spectrum = np.abs(np.fft.rfft(env - env.mean(), 1000))
        rates.append(np.fft.rfftfreq(1000, 1 / 100)[np.argmax(spectrum)])
    assert all(9.0 <= r <= 16.0 for r in rates), rates
