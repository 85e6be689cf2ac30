"""Tests of helpers.recordings.semi_synthetic: truth rules, realised SNR, determinism, the truth CSV, errors."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers.data.annotations import read_annotations, validate_annotations
from helpers.data.audio import load_clip
from helpers.data.corpus import read_corpus
from helpers.recordings.semi_synthetic import PEAK, TRUTH_COLUMNS, make_long_recording
from helpers.data.corpora.synthetic import make_synthetic_corpus

SR = 16000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """20 clips per split, 4 per class (background and four call classes), test labels visible."""
    root = make_synthetic_corpus(
        tmp_path_factory.mktemp("longform") / "corpus",
        n_clips=60,
        seed=1,
        class_proportions=[1] * 5,
        hidden_test_labels=False,
    )
    return read_corpus(root)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def test_truth_rows_follow_the_rules(corpus, tmp_path):
    truth = make_long_recording(corpus, tmp_path / "rec.wav", duration=60.0, n_calls=10, min_gap=1.5, seed=2)
    assert list(truth.columns) == TRUTH_COLUMNS
    assert len(truth) == 10
    assert (truth["file"] == "rec.wav").all() and (truth["source_split"] == "test").all()
    begin, end = truth["begin"].to_numpy(), truth["end"].to_numpy()
    assert (np.diff(begin) > 0).all() and (begin >= 0).all() and (end <= 60.0).all() and (end > begin).all()
    assert (begin[1:] - end[:-1] >= 1.5 - 1e-9).all()  # no overlap, and at least min_gap apart
    # balanced: 10 calls over the 4 call classes -> 3, 3, 2, 2
    counts = truth["label"].value_counts()
    assert set(counts.index) == set(corpus.classes) - {"background"}
    assert sorted(counts) == [2, 2, 3, 3]
    # every call is a test clip of its label, inserted whole, none used twice (4 per class suffice)
    test = corpus.split("test").set_index("filename")
    assert truth["source"].is_unique
    assert (test.loc[truth["source"], "label"].to_numpy() == truth["label"].to_numpy()).all()
    np.testing.assert_allclose(end - begin, test.loc[truth["source"], "duration"].to_numpy(), atol=1 / SR)
    assert ((truth["snr_db"] >= -5.0) & (truth["snr_db"] <= 15.0)).all() and truth["snr_db"].nunique() == 10
    info = sf.info(str(tmp_path / "rec.wav"))
    assert (info.frames, info.samplerate, info.channels, info.subtype) == (60 * SR, SR, 1, "PCM_16")
    assert sorted(os.listdir(tmp_path)) == ["rec.truth.csv", "rec.wav"]  # no temporary files left


@pytest.mark.parametrize("snr", [3.0, 30.0])
def test_realised_snr_matches_written_audio(corpus, tmp_path, snr):
    truth, bed = make_long_recording(
        corpus, tmp_path / "rec.wav", duration=40.0, n_calls=6, snr_db=snr, seed=5, return_bed=True
    )
    audio, _ = sf.read(str(tmp_path / "rec.wav"), dtype="float64")
    assert np.max(np.abs(audio)) <= PEAK + 1 / 32768
    calls = audio - bed  # the calls alone, plus 16-bit rounding
    inside = np.zeros(audio.size, dtype=bool)
    for row in truth.itertuples():
        s, e = round(row.begin * SR), round(row.end * SR)
        inside[s:e] = True
        assert abs(20 * math.log10(rms(calls[s:e]) / rms(bed[s:e])) - snr) < 0.1
        assert row.snr_db == pytest.approx(snr, abs=1e-9)
    assert rms(calls[~inside]) < 1e-4  # nothing but rounding outside the calls
    # The bed comes from its own seed stream: the same with no calls, up to the overall scale-down.
    _, bed0 = make_long_recording(corpus, tmp_path / "bed.wav", duration=40.0, n_calls=0, seed=5, return_bed=True)
    ratio = rms(bed) / rms(bed0)
    np.testing.assert_allclose(bed, bed0 * ratio, atol=1e-12)
    if snr == 30.0:  # loud calls push the mix past PEAK: the whole file was scaled down
        assert ratio < 0.9


def test_same_seed_same_files_other_seed_other_files(corpus, tmp_path):
    def run(folder: str, seed: int) -> tuple[bytes, bytes]:
        make_long_recording(corpus, tmp_path / folder / "rec.wav", duration=30.0, n_calls=5, seed=seed)
        return (tmp_path / folder / "rec.wav").read_bytes(), (tmp_path / folder / "rec.truth.csv").read_bytes()

    a, b, c = run("a", 7), run("b", 7), run("c", 8)
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]


def test_truth_csv_reads_back_as_annotations(corpus, tmp_path):
    wav = tmp_path / "long" / "rec.wav"
    truth = make_long_recording(corpus, wav, duration=30.0, n_calls=5, seed=3)
    text = (tmp_path / "long" / "rec.truth.csv").read_text()
    assert text.startswith("file,begin,end,label,snr_db,source,source_split\n")
    aset = read_annotations(tmp_path / "long" / "rec.truth.csv")
    table = aset.table
    assert not aset.problems
    assert list(table["recording"]) == [str(wav.resolve())] * 5
    np.testing.assert_allclose(table["begin"], truth["begin"], atol=1e-9)
    np.testing.assert_allclose(table["end"], truth["end"], atol=1e-9)
    assert list(table["label"]) == list(truth["label"])
    assert [x["source"] for x in table["extra"]] == list(truth["source"])
    assert not validate_annotations(aset).errors


def test_background_files_make_the_bed_with_crossfades(corpus, tmp_path):
    noise = np.random.default_rng(0).normal(0, 0.1, 2 * SR)
    sf.write(str(tmp_path / "forest.wav"), noise, SR, subtype="PCM_16")
    truth, bed = make_long_recording(
        corpus,
        tmp_path / "rec.wav",
        duration=5.0,
        n_calls=0,
        background_files=[tmp_path / "forest.wav"],
        return_bed=True,
    )
    x = load_clip(tmp_path / "forest.wav", SR, length=0).astype(np.float64)
    xf, n = 800, x.size  # 50 ms crossfade at 16 kHz
    assert truth.empty and list(truth.columns) == TRUTH_COLUMNS and bed.size == 5 * SR
    np.testing.assert_array_equal(bed[: n - xf], x[: n - xf])  # the file, untouched up to the crossfade
    ramp = (np.arange(xf) + 0.5) / xf * (np.pi / 2)
    np.testing.assert_allclose(bed[n - xf : n], x[n - xf :] * np.cos(ramp) + x[:xf] * np.sin(ramp), atol=1e-12)
    np.testing.assert_array_equal(bed[n : 2 * n - 2 * xf], x[xf : n - xf])  # then the file again


def test_too_many_calls_for_the_duration(corpus, tmp_path):
    # 10 clips of >= 0.5 s plus 9 gaps of 1 s cannot fit into 10 s
    with pytest.raises(ValueError, match=r"n_calls=10.*duration=10\.0.*raise duration, or lower n_calls or min_gap"):
        make_long_recording(corpus, tmp_path / "rec.wav", duration=10.0, n_calls=10)
    assert not list(tmp_path.iterdir())  # nothing written


def test_split_without_calls_is_named(corpus, tmp_path):
    table = corpus.table
    only_background = dataclasses.replace(
        corpus, table=table[(table["split"] != "devel") | (table["label"] == "background")]
    )
    with pytest.raises(ValueError, match=r"split 'devel'.*only 'background' clips"):
        make_long_recording(only_background, tmp_path / "rec.wav", split="devel")
    hidden = dataclasses.replace(corpus, table=table.assign(label=table["label"].where(table["split"] != "test", "?")))
    with pytest.raises(ValueError, match=r"split 'test'.*hidden"):
        make_long_recording(hidden, tmp_path / "rec.wav")
    with pytest.raises(ValueError, match=r"split 'test'.*hidden"):
        make_long_recording(hidden, tmp_path / "rec.wav", background_files=[table["path"].iloc[0]])
    with pytest.raises(ValueError, match=r"no clips in split 'nope'"):
        make_long_recording(corpus, tmp_path / "rec.wav", split="nope")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"out_path": "rec.flac"}, "ending in .wav"),
        ({"snr_db": (10.0, 0.0)}, "low <= high"),
        ({"n_calls": -1}, "n_calls=-1"),
        ({"duration": 0.0}, "duration=0.0"),
        ({"min_gap": -1.0}, "min_gap=-1.0"),
        ({"background_files": []}, "background_files is empty"),
    ],
)
def test_unusable_arguments(corpus, tmp_path, kwargs, message):
    kwargs = {"out_path": tmp_path / "rec.wav", **kwargs}
    if not Path(kwargs["out_path"]).is_absolute():
        kwargs["out_path"] = tmp_path / kwargs["out_path"]
    with pytest.raises(ValueError, match=message):
        make_long_recording(corpus, **kwargs)
