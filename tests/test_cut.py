"""Cutting a corpus in the challenge layout from annotated long recordings (helpers.data.cut)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from helpers.data.audio import CLIP_SECONDS
from helpers.data.corpus import read_corpus, validate_corpus
from helpers.data.cut import CutError, assign_splits, call_windows, cut_corpus

MARGIN = 1.0
TONES = {"gibbon": 1000.0, "argus": 2500.0, "chimp": 600.0}
# name: (sample rate, channels, seconds, site)
RECORDINGS = {
    "rec_a.wav": (16000, 1, 30.0, "north"),
    "rec_b.wav": (22050, 2, 20.0, "north"),
    "rec_c.flac": (44100, 1, 14.0, "south"),
    "rec_d.wav": (8000, 1, 24.0, "south"),
    "rec_e.wav": (48000, 1, 12.0, "east"),
}
# recording, begin, end, label
SELECTIONS = [
    ("rec_a.wav", 5.0, 5.5, "gibbon"),
    ("rec_a.wav", 10.0, 17.0, "argus"),  # long: 3 clips
    ("rec_a.wav", 24.0, 24.8, "chimp"),
    ("rec_b.wav", 0.2, 0.8, "gibbon"),  # near the start: the centred clip is clamped to 0
    ("rec_b.wav", 9.0, 10.0, "argus"),
    ("rec_b.wav", 9.5, 11.0, "chimp"),  # overlaps the argus call
    ("rec_c.flac", 4.0, 4.5, "gibbon"),
    ("rec_c.flac", 9.0, 10.0, "argus"),
    ("rec_d.wav", 3.0, 3.6, "gibbon"),
    ("rec_d.wav", 12.0, 13.0, "argus"),
    ("rec_d.wav", 18.0, 18.5, "chimp"),
    ("rec_e.wav", 2.0, 2.5, "gibbon"),
    ("rec_e.wav", 6.0, 7.0, "argus"),
    ("rec_e.wav", 11.5, 14.0, "argus"),  # past the end (12 s): reported, skipped
    ("bad.wav", 1.0, 2.0, "gibbon"),  # not audio: reported, skipped
]


def _write_recordings(folder: Path) -> None:
    rng = np.random.default_rng(7)
    for name, (sr, channels, seconds, _) in RECORDINGS.items():
        t = np.arange(int(seconds * sr)) / sr
        x = 0.01 * rng.standard_normal(len(t))
        for rec, begin, end, label in SELECTIONS:
            if rec == name:
                on = (t >= begin) & (t < end)
                x[on] += 0.3 * np.sin(2 * np.pi * TONES[label] * t[on])
        data = np.stack([x, 0.5 * x], axis=1) if channels == 2 else x
        sf.write(str(folder / name), data.astype(np.float32), sr)
    (folder / "bad.wav").write_bytes(b"RIFF this is not a wave file" * 10)


def _annotations() -> pd.DataFrame:
    t = pd.DataFrame(SELECTIONS, columns=["recording", "begin", "end", "label"])
    t["low_freq"] = [TONES[lab] - 100 for lab in t["label"]]
    t["high_freq"] = np.nan
    t["source_file"] = [f"{Path(r).stem}.Table.1.selections.txt" for r in t["recording"]]
    t["source_line"] = t.groupby("recording").cumcount() + 2
    t["site"] = [RECORDINGS.get(r, (0, 0, 0, "west"))[3] for r in t["recording"]]
    return t


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("audio")
    _write_recordings(folder)
    return folder


@pytest.fixture(scope="module")
def cut(audio, tmp_path_factory):
    return cut_corpus(_annotations(), tmp_path_factory.mktemp("cut") / "corpus", audio_dir=audio, margin_seconds=MARGIN)


def _sha(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "wav").iterdir())}


def test_layout_reads_back_and_validates(cut):
    root = Path(cut)
    report = validate_corpus(root)
    assert report.ok and not report.problems, report.format()
    corpus = read_corpus(root)
    table = corpus.table.set_index("filename")
    manifest = cut.manifest.set_index("filename")
    assert sorted(table.index) == sorted(manifest.index)
    assert (table["label"] == manifest.loc[table.index, "label"]).all()
    assert (table["split"] == manifest.loc[table.index, "split"]).all()
    assert set(corpus.classes) == {"argus", "background", "chimp", "gibbon"}
    assert corpus.has_labels("test") and (corpus.split("test")["label"] != "?").all()
    for name in table.index[:5]:
        info = sf.info(str(root / "wav" / name))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 47860)
    record = json.loads((root / "corpus.json").read_text())
    assert record["n_clips"] == {s: int((cut.manifest["split"] == s).sum()) for s in ("train", "devel", "test")}
    assert "rec_a.wav" in (root / "README.txt").read_text()
    assert cut.counts["total"].sum() == len(cut.manifest)


def test_long_selection_gives_covering_clips_and_short_one_is_centred(cut):
    m = cut.manifest
    long = m[(m["recording"] == "rec_a.wav") & (m["label"] == "argus")].sort_values("offset_s")
    assert long["offset_s"].tolist() == pytest.approx([10.0, 10.0 + CLIP_SECONDS, 17.0 - CLIP_SECONDS], abs=1e-4)
    assert long["part"].tolist() == [1, 2, 3] and (long["parts"] == 3).all()
    assert (long["source_line"] == 3).all() and (long["source_file"] == "rec_a.Table.1.selections.txt").all()
    short = m[(m["recording"] == "rec_a.wav") & (m["label"] == "gibbon")]
    assert short["offset_s"].tolist() == pytest.approx([5.25 - CLIP_SECONDS / 2], abs=1e-4)
    clamped = m[(m["recording"] == "rec_b.wav") & (m["label"] == "gibbon")]
    assert clamped["offset_s"].tolist() == [0.0]
    assert m.loc[(m["recording"] == "rec_b.wav") & (m["label"] == "chimp"), "other_labels"].tolist() == ["argus"]


def test_clip_audio_is_centred_on_the_call_after_resampling(cut):
    m = cut.manifest
    row = m[(m["recording"] == "rec_c.flac") & (m["label"] == "gibbon")].iloc[0]  # 44.1 kHz source
    wave, sr = sf.read(str(Path(cut) / "wav" / row["filename"]))
    energy = wave**2
    loud = np.flatnonzero(energy > 0.25 * energy.max())
    middle = (loud[0] + loud[-1]) / 2 / sr
    assert middle == pytest.approx(CLIP_SECONDS / 2, abs=0.01)
    assert (loud[-1] - loud[0]) / sr == pytest.approx(0.5, abs=0.01)


def test_call_windows_rule():
    assert call_windows(100, 150, 100, 1000) == [75]
    assert call_windows(0, 10, 100, 1000) == [0]
    assert call_windows(990, 1000, 100, 1000) == [900]
    assert call_windows(100, 350, 100, 1000) == [100, 200, 250]
    assert call_windows(100, 300, 100, 1000) == [100, 200]
    assert call_windows(10, 20, 100, 60) == [0]


def test_background_keeps_the_margin_from_every_selection(cut):
    m = cut.manifest
    background = m[m["kind"] == "background"]
    assert len(background) >= 5 and (background["label"] == "background").all()
    assert (background["other_labels"] == "").all()
    for row in background.itertuples():
        start, end = row.offset_s, row.offset_s + row.duration_s
        duration = RECORDINGS[row.recording][2]
        for rec, begin, stop, _ in SELECTIONS:  # the skipped past-the-end selection too, clamped to the end
            if rec == row.recording:
                assert end <= begin - MARGIN + 1e-6 or start >= min(stop, duration) + MARGIN - 1e-6, (row, begin)
        others = background[(background["recording"] == row.recording) & (background["filename"] != row.filename)]
        assert ((others["offset_s"] >= end - 1e-6) | (others["offset_s"] + others["duration_s"] <= start + 1e-6)).all()


def test_background_cap_holds(cut, audio, tmp_path):
    m = cut.manifest
    for split, part in m.groupby("split"):
        calls = (part["kind"] == "call").sum()
        assert (part["kind"] == "background").sum() <= calls
    half = cut_corpus(_annotations(), tmp_path / "half", audio_dir=audio, background_per_call=0.5)
    for split, part in half.manifest.groupby("split"):
        assert (part["kind"] == "background").sum() <= int(0.5 * (part["kind"] == "call").sum())
    capped = cut_corpus(_annotations(), tmp_path / "capped", audio_dir=audio, max_background=3)
    background = capped.manifest[capped.manifest["kind"] == "background"]
    assert len(background) == 3 and background["recording"].nunique() >= 2  # spread, not one recording


def test_no_recording_in_two_splits_and_groups_stay_together(cut, audio, tmp_path):
    assert (cut.manifest.groupby("recording")["split"].nunique() == 1).all()
    assert len(cut.manifest["split"].unique()) == 3
    seen = [r for recs in cut.recordings.values() for r in recs]
    assert len(seen) == len(set(seen)) == 5
    grouped = cut_corpus(_annotations(), tmp_path / "by_site", audio_dir=audio, group_by="site")
    m = grouped.manifest
    sites = {name: site for name, (_, _, _, site) in RECORDINGS.items()}
    assert (m["group"] == m["recording"].map(sites)).all()
    assert (m.groupby("group")["split"].nunique() == 1).all()
    assert m["group"].nunique() == 3


def test_same_seed_same_corpus_other_seed_other_background(cut, audio, tmp_path):
    again = cut_corpus(_annotations(), tmp_path / "again", audio_dir=audio, margin_seconds=MARGIN)
    pd.testing.assert_frame_equal(again.manifest, cut.manifest)
    assert _sha(Path(again)) == _sha(Path(cut))
    other = cut_corpus(_annotations(), tmp_path / "other", audio_dir=audio, margin_seconds=MARGIN, seed=3)
    key = ["recording", "offset_s", "split"]
    assert not other.manifest[key].equals(cut.manifest[key])


def test_bad_recording_and_bad_rows_are_reported_and_the_rest_is_cut(cut, audio, tmp_path):
    skipped = cut.skipped
    bad = skipped[skipped["recording"] == "bad.wav"]
    assert len(bad) == 1 and bad.iloc[0]["what"] == "recording" and "cannot be read" in bad.iloc[0]["reason"]
    past = skipped[skipped["recording"] == "rec_e.wav"]
    assert past["what"].tolist() == ["row"] and past["source_line"].tolist() == [4]
    assert "past the recording's end" in past.iloc[0]["reason"]
    assert set(cut.manifest["recording"]) == set(RECORDINGS)
    assert "bad.wav" in cut.format() and "rec_e.Table.1.selections.txt line 4" in cut.format()
    rows = pd.DataFrame(
        [
            ("rec_a.wav", 3.0, 2.0, "gibbon"),
            ("rec_a.wav", np.nan, 2.0, "gibbon"),
            ("rec_a.wav", 1.0, 2.0, "?"),
            ("rec_a.wav", 1.0, 2.0, ""),
            ("rec_a.wav", 5.0, 5.5, "gibbon"),
            ("rec_a.wav", 5.0, 5.5, "gibbon"),
            ("gone.wav", 1.0, 2.0, "gibbon"),
            (None, 1.0, 2.0, "argus"),
        ],
        columns=["recording", "begin", "end", "label"],
    )
    rows["recording_name"] = ["rec_a"] * 7 + ["lost"]  # None: the annotation reader found no audio for it
    result = cut_corpus(rows, tmp_path / "rows", audio_dir=audio, split=(1, 0, 0))
    reasons = result.skipped.set_index("source_line")["reason"]
    assert "before it begins" in reasons[1] and "not a number" in reasons[2] and "'?'" in reasons[3]
    assert "empty label" in reasons[4] and "repeats the selection" in reasons[6]
    assert "does not exist" in result.skipped.loc[result.skipped["recording"] == "gone.wav", "reason"].iloc[0]
    assert (result.manifest["kind"] == "call").sum() == 1
    lost = result.skipped[result.skipped["recording"] == "lost"]
    assert len(lost) == 1 and "no audio file was found" in lost.iloc[0]["reason"]


def test_refuses_a_non_empty_folder_unless_overwrite(audio, tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not empty.*overwrite"):
        cut_corpus(_annotations(), out, audio_dir=audio)
    assert (out / "keep.txt").read_text() == "mine"
    cut_corpus(_annotations(), out, audio_dir=audio, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "manifest.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]  # no temporary folder left


def test_clear_errors_for_a_bad_table(audio, tmp_path):
    with pytest.raises(CutError, match="lacks the column"):
        cut_corpus(_annotations().drop(columns="end"), tmp_path / "x", audio_dir=audio)
    mixed = _annotations()
    mixed.loc[0, "site"] = "elsewhere"
    with pytest.raises(CutError, match="rec_a.wav"):
        cut_corpus(mixed, tmp_path / "x", audio_dir=audio, group_by="site")
    with pytest.raises(CutError, match="no clip could be cut"):
        cut_corpus(_annotations().iloc[-1:], tmp_path / "x", audio_dir=audio)
    assert not (tmp_path / "x").exists()


def test_split_assignment_stratifies_and_says_what_it_could_not():
    counts = pd.DataFrame(
        {"common": [5, 4, 6, 5, 3, 4, 5, 6, 4, 5], "rare": [0, 0, 2, 0, 1, 0, 0, 0, 0, 0]},
        index=[f"r{i}" for i in range(10)],
    )
    assignment, warnings = assign_splits(counts, (0.7, 0.15, 0.15), seed=0)
    assert set(assignment) == set(counts.index)
    rare_splits = {assignment[g] for g in ("r2", "r4")}
    assert "train" in rare_splits and len(rare_splits) == 2
    assert any("'rare'" in w and "2 group(s)" in w for w in warnings)
    for split in ("train", "devel", "test"):
        assert any(assignment[g] == split for g in counts.index[counts["common"] > 0])
    assert (
        sum(counts.loc[g, "common"] for g in counts.index if assignment[g] == "train") >= 0.5 * counts["common"].sum()
    )
    # A label in one group only goes to train, even when that group also holds another label.
    solo = pd.DataFrame({"a": [1, 1, 1], "b": [1, 0, 0]}, index=["x", "y", "z"])
    assignment, warnings = assign_splits(solo, (0.7, 0.15, 0.15))
    assert assignment["x"] == "train" and any("'b'" in w for w in warnings)
