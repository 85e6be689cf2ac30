"""Writing events as Raven / Audacity / CSV tables (helpers.data.annotations.writers), checked by
reading every file back with the project's reader (helpers.data.annotations.read_annotations) and
validating it against tiny real WAV files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.data.annotations import writers as annotation_writers
from helpers.data.annotations.writers import (
    RAVEN_COLUMNS,
    write_audacity_labels,
    write_combined_raven_table,
    write_events_csv,
    write_raven_table,
)
from helpers.data.annotations import read_annotations, validate_annotations
from tests.conftest import write_tone


@pytest.fixture
def scan_root(tmp_path: Path) -> Path:
    """A scanned folder: site1/a.wav (10 s), site2/b.wav (8 s) and site2/a.wav (6 s, same name as site1's)."""
    root = tmp_path / "scan"
    for rel, seconds in (("site1/a.wav", 10.0), ("site2/b.wav", 8.0), ("site2/a.wav", 6.0)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_tone(root / rel, 440, seconds=seconds, sr=8000)
    return root


def events_of(rec: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "recording": rec,
            "begin": [4.5, 0.25, 1.0],
            "end": [7.49, 2.99, 2.5],
            "label": ["chimpanzee", "gorilla", "chimpanzee"],
            "score": [0.93, 0.612345, 0.5],
        }
    )


def read_ok(paths, **kwargs) -> pd.DataFrame:
    """The table read back, after checking that neither reading nor validation found an error."""
    aset = read_annotations(paths, **kwargs)
    report = validate_annotations(aset)
    assert not report.errors, report.format()
    return aset.table


def same_times(table: pd.DataFrame, events: pd.DataFrame) -> None:
    expected = events.sort_values(["begin", "end"]).reset_index(drop=True)
    np.testing.assert_allclose(table["begin"], expected["begin"], atol=1e-6)
    np.testing.assert_allclose(table["end"], expected["end"], atol=1e-6)


def test_raven_table_round_trips_through_the_reader(scan_root, tmp_path):
    events = events_of("site1/a.wav")
    events["low_freq"] = [500.0, np.nan, 800.0]
    out = tmp_path / "a.Table.1.selections.txt"
    write_raven_table(events, out, low_freq=100.0, high_freq=4000.0)
    lines = out.read_text().splitlines()
    assert lines[0].split("\t") == RAVEN_COLUMNS + ["Label", "Score"]
    assert lines[1].split("\t")[:5] == ["1", "Spectrogram 1", "1", "0.250000", "2.990000"]
    table = read_ok(out, recording=scan_root / "site1/a.wav")
    same_times(table, events)
    assert table["label"].tolist() == ["gorilla", "chimpanzee", "chimpanzee"]
    assert table["low_freq"].tolist() == [100.0, 800.0, 500.0]
    assert table["high_freq"].tolist() == [4000.0] * 3
    assert set(table["recording"]) == {os.path.abspath(scan_root / "site1/a.wav")}
    assert [float(x["Score"]) for x in table["extra"]] == pytest.approx([0.612345, 0.5, 0.93])
    assert [x["Selection"] for x in table["extra"]] == ["1", "2", "3"]
    # without recording=: the reader finds a.wav under audio_root by the table's name (two files are
    # called a.wav there, so give it the site folder)
    table = read_ok(out, audio_root=scan_root / "site1")
    assert set(table["recording"]) == {os.path.abspath(scan_root / "site1/a.wav")}


def test_raven_label_column_and_one_recording_per_table(tmp_path):
    write_raven_table(events_of("x.wav"), tmp_path / "t.txt", label_column="Species")
    assert (tmp_path / "t.txt").read_text().splitlines()[0].split("\t")[-2:] == ["Species", "Score"]
    both = pd.concat([events_of("x.wav"), events_of("y.wav")])
    with pytest.raises(ValueError, match="2 recordings.*write_combined_raven_table"):
        write_raven_table(both, tmp_path / "t2.txt")
    assert not (tmp_path / "t2.txt").exists()


def test_combined_raven_table_places_events_in_the_session_and_reads_back_per_recording(scan_root, tmp_path):
    recordings = {
        "site1/a.wav": (str(scan_root / "site1/a.wav"), 10.0),
        "site2/a.wav": ("D:\\field\\site2\\a.wav", 6.0),  # a Windows path, as Raven writes it
        "site2/b.wav": (str(scan_root / "site2/b.wav"), 8.0),
    }
    events = pd.concat(
        [events_of("site2/b.wav"), events_of("site1/a.wav").iloc[:2], events_of("site2/a.wav").iloc[1:]],
        ignore_index=True,
    )
    events.loc[events["recording"] == "site2/a.wav", "end"] = [2.99, 5.9]
    out = tmp_path / "session.selections.txt"
    write_combined_raven_table(events, recordings, out)
    raw = pd.read_csv(out, sep="\t")
    assert list(raw.columns) == RAVEN_COLUMNS + ["Begin Path", "File Offset (s)", "Label", "Score"]
    assert raw["Selection"].tolist() == list(range(1, len(events) + 1))
    # site2/b.wav starts 10 + 6 = 16 s into the session; its first event begins 0.25 s into the file
    first_b = raw[raw["Begin Path"].str.endswith("b.wav")].iloc[0]
    assert first_b["Begin Time (s)"] == pytest.approx(16.25) and first_b["File Offset (s)"] == pytest.approx(0.25)
    assert (raw["Begin Time (s)"].diff().dropna() >= 0).all()  # session order
    table = read_ok(out, audio_root=scan_root)
    for rec in recordings:
        got = table[table["recording"] == os.path.abspath(scan_root / rec)].sort_values("begin")
        want = events[events["recording"] == rec]
        same_times(got.reset_index(drop=True), want)
        assert got["label"].tolist() == want.sort_values(["begin", "end"])["label"].tolist()


def test_combined_raven_table_errors_name_the_recording_and_row(tmp_path):
    recordings = {"a.wav": ("a.wav", 5.0)}
    with pytest.raises(ValueError, match="b.wav.*not in recordings="):
        write_combined_raven_table(events_of("b.wav"), recordings, tmp_path / "t.txt")
    with pytest.raises(ValueError, match="row 0 ends at 7.49 s, past the end of a.wav"):
        write_combined_raven_table(events_of("a.wav"), recordings, tmp_path / "t.txt")
    assert not list(tmp_path.iterdir())


def test_audacity_labels_round_trip_with_the_score_in_the_label(scan_root, tmp_path):
    events = events_of("site1/a.wav")
    events["low_freq"] = [300.0, np.nan, np.nan]
    events["high_freq"] = [3000.0, np.nan, np.nan]
    out = tmp_path / "labels.txt"
    write_audacity_labels(events, out)
    lines = out.read_text().splitlines()
    assert lines[0] == "0.250000\t2.990000\tgorilla 0.61"
    assert lines[-1] == "\\\t300.0\t3000.0"  # frequency line under its label
    table = read_ok(out, recording=scan_root / "site1/a.wav")
    same_times(table, events)
    assert table["label"].tolist() == ["gorilla 0.61", "chimpanzee 0.50", "chimpanzee 0.93"]
    assert table["low_freq"].iloc[2] == 300.0 and np.isnan(table["low_freq"].iloc[0])
    write_audacity_labels(events.drop(columns="score"), out)
    assert read_ok(out, recording=scan_root / "site1/a.wav")["label"].iloc[0] == "gorilla"


def test_events_csv_round_trips_with_recordings_relative_to_the_scanned_folder(scan_root, tmp_path):
    events = pd.concat([events_of("site2/a.wav").iloc[1:], events_of("site1/a.wav")], ignore_index=True)
    events.loc[0, "end"] = 2.9
    events.loc[0, "label"] = 'chimp, "pant-hoot"'  # needs spreadsheet quoting
    events["high_freq"] = 5000.0
    out = tmp_path / "detections.csv"
    write_events_csv(events, out)
    assert out.read_text().splitlines()[0] == "file,begin,end,label,score,low_freq,high_freq"
    table = read_ok(out, audio_root=scan_root)
    for rec in ("site1/a.wav", "site2/a.wav"):
        got = table[table["recording"] == os.path.abspath(scan_root / rec)].reset_index(drop=True)
        want = events[events["recording"] == rec]
        same_times(got, want)
        assert got["recording_name"].eq(rec).all()
        assert got["label"].tolist() == want.sort_values(["begin", "end"])["label"].tolist()
    assert table["high_freq"].eq(5000.0).all() and table["low_freq"].isna().all()
    assert sorted(float(x["score"]) for x in table["extra"]) == pytest.approx(sorted(events["score"]))


def test_empty_tables_are_written_with_their_header_and_read_back_empty(scan_root, tmp_path):
    empty = events_of("site1/a.wav").iloc[:0]
    raven, combined, plain = tmp_path / "a.Table.1.selections.txt", tmp_path / "s.txt", tmp_path / "e.csv"
    write_raven_table(empty, raven)
    write_combined_raven_table(empty, {"site1/a.wav": ("a.wav", 10.0)}, combined)
    write_events_csv(empty, plain)
    assert len(raven.read_text().splitlines()) == 1 and len(combined.read_text().splitlines()) == 1
    assert plain.read_text() == "file,begin,end,label,score\n"
    for path in (raven, combined, plain):
        aset = read_annotations(path, audio_root=scan_root / "site1")
        assert aset.table.empty and not aset.problems, [str(p) for p in aset.problems]
        assert any("header only" in note for note in aset.notes)
    write_audacity_labels(empty, tmp_path / "l.txt")
    assert (tmp_path / "l.txt").read_text() == ""


@pytest.mark.parametrize(
    "change, match",
    [
        ({"label": "chimp\tanzee"}, "row 1 has a tab or line break in its label"),
        ({"end": 0.1}, "row 1 has begin 0.25 and end 0.1"),
        ({"begin": float("nan")}, "row 1 has begin nan"),
    ],
)
def test_faulty_rows_are_named_before_anything_is_written(tmp_path, change, match):
    events = events_of("a.wav")
    for col, value in change.items():
        events[col] = events[col].astype(object)
        events.at[1, col] = value
    for writer in (write_raven_table, write_audacity_labels, write_events_csv):
        with pytest.raises(ValueError, match=match):
            writer(events, tmp_path / "out.txt")
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="lacks the column.*recording"):
        write_events_csv(events.drop(columns="recording"), tmp_path / "out.csv")


def test_a_crash_while_writing_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    out = tmp_path / "detections.csv"
    write_events_csv(events_of("a.wav"), out)
    before = out.read_text()
    calls = {"n": 0}
    real = annotation_writers._time

    def failing(x: float) -> str:
        calls["n"] += 1
        if calls["n"] > 3:  # the crash comes after some rows are already written
            raise KeyboardInterrupt
        return real(x)

    monkeypatch.setattr(annotation_writers, "_time", failing)
    with pytest.raises(KeyboardInterrupt):
        write_events_csv(events_of("b.wav"), out)
    assert out.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["detections.csv"]  # no temporary file left
