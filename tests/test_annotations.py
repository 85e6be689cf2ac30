"""Reading Raven / Audacity / CSV annotations and validating them (helpers.data.annotations).

The real Raven tables come from the offline mirror (tests skip when it is absent); everything else
is written in tmp_path. Audio files here are tiny (1 kHz or 8 kHz tones) so the file stays fast.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from helpers.data.annotations import (
    CORE_COLUMNS,
    TABLE_COLUMNS,
    AnnotationError,
    AnnotationSet,
    read_annotations,
    validate_annotations,
)
from tests.conftest import SHARED_MIRROR, write_tone

OSS = SHARED_MIRROR / "kitzeslab/opensoundscape/4a782527f25aa26d70ac343e637c4e6ee76b80fb/docs/tutorials/resources"
GWWA_TABLES = OSS / "GWWA_XC_AnnoTables"
GWWA_13738 = GWWA_TABLES / "13738.Table.1.selections.txt"
GWWA_13738_V2 = GWWA_TABLES / "13738.Table.1.selections2.txt"
GWWA_16989 = GWWA_TABLES / "16989.Table.1.selections.txt"
UU = SHARED_MIRROR / "UtrechtUniversity/animal-sounds/374a8e442be3bd816c8833affde1feecf14645f4/test_data"
CHIMP_CSV = UU / "annotation_txt_files/test_chimp_annotations.csv"
JUNGLE_TXT = UU / "annotation_txt_files/background_jungle/test_background_annotation_jungle.txt"
CHIMP_CLIPS = UU / "processed_wav_files/vocalizations"

MIRROR_FILES = (GWWA_13738, GWWA_13738_V2, GWWA_16989, OSS / "GWWA_XC" / "13738.mp3", CHIMP_CSV, JUNGLE_TXT)
needs_mirror = pytest.mark.skipif(
    not all(p.is_file() for p in MIRROR_FILES),
    reason=f"the real Raven tables of the offline mirror are not under {SHARED_MIRROR} (see its SOURCES.md)",
)

RAVEN_HEADER = [
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Species",
    "Notes",
]


def raven_text(rows: list[list[object]], header: list[str] = RAVEN_HEADER, sep: str = "\t", newline: str = "\n") -> str:
    return newline.join(sep.join(map(str, r)) for r in [header, *rows]) + newline


def kinds_at(report, kind: str) -> list[tuple[str, int | None]]:
    return [(Path(p.file).name, p.line) for p in report.problems if p.kind == kind]


@pytest.fixture
def rec(tmp_path: Path) -> Path:
    """A 10-s recording at 8 kHz beside where the tables are written."""
    path = tmp_path / "rec1.wav"
    write_tone(path, 440, seconds=10.0, sr=8000)
    return path


# --- the real Raven tables of the mirror --------------------------------------------------------


@needs_mirror
def test_real_single_file_raven_table_finds_its_mp3_and_keeps_every_field():
    aset = read_annotations(GWWA_13738, audio_root=OSS)
    t = aset.table
    assert list(t.columns) == TABLE_COLUMNS
    assert len(t) == 8
    assert aset.counts().to_dict() == {"GWWA_song": 7, "?": 1}
    assert aset.label_columns[str(GWWA_13738)] == "Species"
    assert any("'Species'" in n for n in aset.notes)
    assert set(t["recording"]) == {str(OSS / "GWWA_XC" / "13738.mp3")}
    assert list(t["source_line"]) == list(range(2, 10))
    assert t.loc[2, "label"] == "?" and t.loc[2, "source_line"] == 4
    assert t.loc[0, "begin"] == pytest.approx(0.459636349) and t.loc[0, "end"] == pytest.approx(2.298181746)
    assert t.loc[0, "low_freq"] == pytest.approx(4029.8) and t.loc[0, "high_freq"] == pytest.approx(17006.4)
    assert t.loc[0, "extra"] == {"Selection": "1", "View": "Spectrogram 1", "Channel": "1", "Notes": ""}


@needs_mirror
def test_real_table_validates_with_its_mp3_duration_and_flags_the_question_mark(monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("validation must read headers only, never decode the audio")

    monkeypatch.setattr(sf, "read", no_decoding)
    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    report = validate_annotations(read_annotations(GWWA_13738, audio_root=OSS))
    assert report.ok, report.format()
    assert kinds_at(report, "uncertain_label") == [("13738.Table.1.selections.txt", 4)]
    row = report.recordings.iloc[0]
    assert row["sample_rate"] == 44100 and row["duration"] == pytest.approx(55.25, abs=0.01)


@needs_mirror
def test_real_tables_unknown_recording_and_exclusion():
    aset = read_annotations([GWWA_13738, GWWA_16989], audio_root=OSS)
    report = validate_annotations(aset)
    assert not report.ok
    unknown = [p for p in report.errors if p.kind == "unknown_recording"]
    assert len(unknown) == 1 and Path(unknown[0].file).name == "16989.Table.1.selections.txt"
    assert unknown[0].line == 2 and "2, 3, 4, 5, 6" in unknown[0].message and "16989" in unknown[0].message
    with pytest.raises(AnnotationError, match="16989"):
        validate_annotations(aset, on_error="raise")
    kept = validate_annotations(aset, on_error="exclude")
    assert len(kept.table) == 8 and set(kept.table["recording_name"]) == {"13738.mp3"}
    assert sorted(kept.excluded["source_line"]) == [2, 3, 4, 5, 6]
    assert all("not found" in r for r in kept.excluded["reason"])


@needs_mirror
def test_real_table_read_twice_gives_duplicate_and_overlap_warnings():
    report = validate_annotations(read_annotations(GWWA_TABLES, audio_root=OSS))
    v2 = "13738.Table.1.selections2.txt"
    assert sorted(kinds_at(report, "duplicate_annotation")) == [(v2, n) for n in (2, 3, 5, 6, 7, 8, 9)]
    overlap = [p for p in report.problems if p.kind == "overlap"]
    assert [(Path(p.file).name, p.line) for p in overlap] == [(v2, 4)]
    assert "13738.Table.1.selections.txt line 4" in overlap[0].message and "'?'" in overlap[0].message


@needs_mirror
def test_real_comma_separated_multi_file_export_uses_file_offsets():
    aset = read_annotations(CHIMP_CSV)
    t = aset.table
    assert len(t) == 8 and set(t["label"]) == {"Chimpanzee"}
    assert aset.label_columns[str(CHIMP_CSV)] == "Species"
    assert any("also present: Type" in n for n in aset.notes)
    assert t.loc[0, "recording_name"] == r"D:\audio_mefou\2\chimpanze\20191220_170820.WAV"
    # Begin Time 648.03 s of the Raven session is 48.03 s into its own file.
    assert t.loc[0, "begin"] == pytest.approx(48.03)
    assert t.loc[0, "end"] == pytest.approx(48.03 + (650.027631071 - 648.030014173))
    types = [e["Type"] for e in t["extra"]]
    assert types.count("Food grunts") == 6 and "Pant hoot" in types and "?" in types
    assert read_annotations(CHIMP_CSV, label_column="Type").counts()["Food grunts"] == 6
    # The clips the authors cut from these recordings start just before the times read here
    # (clip names: <n>_2C_<recording>_<offset>.wav).
    if CHIMP_CLIPS.is_dir():
        clips = [re.match(r"\d+_2C_(\d+_\d+)_([\d.]+)\.wav$", p.name) for p in CHIMP_CLIPS.glob("*.wav")]
        for row in t.itertuples():
            stem = Path(row.recording_name.replace("\\", "/")).stem
            offsets = [float(m.group(2)) for m in clips if m and m.group(1) == stem]
            assert any(0 <= row.begin - o < 0.1 for o in offsets), (row.recording_name, row.begin, offsets)


@needs_mirror
def test_real_windows_paths_are_found_recursively_ignoring_case(tmp_path):
    root = tmp_path / "audio"
    for n, name in enumerate(
        [
            "20191220_170820",
            "20191220_171024",
            "20191220_171126",
            "20191220_174124",
            "20191220_174328",
            "20191220_181122",
            "20191220_185140",
        ]
    ):
        folder = root / f"card{n % 2}" / "chimpanze"
        folder.mkdir(parents=True, exist_ok=True)
        write_tone(folder / f"{name}.wav", 100, seconds=65.0, sr=1000)  # lower-case .wav, Raven says .WAV
    aset = read_annotations(CHIMP_CSV, audio_root=root)
    assert aset.table["recording"].notna().all()
    assert Path(aset.table.loc[0, "recording"]).name == "20191220_170820.wav"
    report = validate_annotations(aset)
    assert report.ok, report.format()
    short = tmp_path / "short"
    shutil.copytree(root, short)
    write_tone(short / "card0" / "chimpanze" / "20191220_170820.wav", 100, seconds=40.0, sr=1000)
    report = validate_annotations(read_annotations(CHIMP_CSV, audio_root=short))
    assert kinds_at(report, "past_end") == [("test_chimp_annotations.csv", 2)]


@needs_mirror
def test_real_tab_multi_file_table_without_file_offset_is_refused_with_the_reason():
    aset = read_annotations(JUNGLE_TXT)
    t = aset.table
    assert len(t) == 6 and set(t["label"]) == {"Background"}
    assert aset.label_columns[str(JUNGLE_TXT)] == "Class"
    assert t["recording_name"].map(lambda s: s.rsplit("\\", 1)[-1]).value_counts().to_dict() == {
        "20200205_184848.WAV": 2,
        "20200205_185408.WAV": 2,
        "20200205_194104.WAV": 2,
    }
    report = validate_annotations(aset, on_error="exclude")
    session = [p for p in report.errors if p.kind == "session_times"]
    assert len(session) == 1 and "File Offset (s)" in session[0].fix
    assert report.table.empty and sorted(report.excluded["source_line"]) == [2, 3, 4, 5, 6, 7]
    # The 'Type' column is empty in this table: choosing it gives empty labels, each reported.
    report = validate_annotations(read_annotations(JUNGLE_TXT, label_column="Type"))
    assert len(kinds_at(report, "empty_label")) == 6


@needs_mirror
def test_mirror_files_are_only_read(tmp_path):
    before = {p: p.read_bytes() for p in (GWWA_13738, CHIMP_CSV, JUNGLE_TXT)}
    read_annotations(list(before), audio_root=OSS)
    assert all(p.read_bytes() == b for p, b in before.items())


# --- Raven dialects, written here -------------------------------------------------------------------


@pytest.mark.parametrize(
    "sep,newline,bom", [("\t", "\n", False), ("\t", "\r\n", True), (",", "\r\n", True), (";", "\n", False)]
)
def test_raven_dialects_read_the_same(tmp_path, rec, sep, newline, bom):
    text = raven_text(
        [
            [1, "Spectrogram 1", 1, 0.5, 1.5, 100, 2000, "chimp", "a note"],
            [2, "Spectrogram 1", 1, 3.0, 4.25, "", "", " redcap ", ""],
        ],
        sep=sep,
        newline=newline,
    )
    path = tmp_path / "rec1.Table.1.selections.txt"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    aset = read_annotations(path)
    t = aset.table
    assert list(t["label"]) == ["chimp", "redcap"]
    assert list(t["begin"]) == [0.5, 3.0] and list(t["end"]) == [1.5, 4.25]
    assert list(t["source_line"]) == [2, 3]
    assert t.loc[0, "low_freq"] == 100 and math.isnan(t.loc[1, "high_freq"])
    assert set(t["recording"]) == {str(rec)} and set(t["recording_name"]) == {"rec1.wav"}
    assert t.loc[0, "extra"] == {"Selection": "1", "View": "Spectrogram 1", "Channel": "1", "Notes": "a note"}
    assert aset.label_columns[str(path)] == "Species"


def test_raven_view_duplicates_keep_the_spectrogram_row(tmp_path, rec):
    path = tmp_path / "rec1.Table.1.selections.txt"
    path.write_text(
        raven_text(
            [
                [1, "Waveform 1", 1, 0.5, 1.5, 0, 4000, "chimp", ""],
                [1, "Spectrogram 1", 1, 0.5, 1.5, 300, 2000, "chimp", ""],
                [2, "Waveform 1", 1, 2.0, 3.0, 0, 4000, "chimp", ""],
                [2, "Spectrogram 1", 1, 2.0, 3.0, 300, 2000, "chimp", ""],
                [3, "Spectrogram 1", 1, 5.0, 6.0, 300, 2000, "chimp", ""],
                [3, "Waveform 1", 1, 5.5, 6.0, 0, 4000, "redcap", ""],
            ]
        )
    )
    aset = read_annotations(path)
    t = aset.table
    assert list(t["source_line"]) == [3, 5, 6, 7]
    assert list(t["low_freq"][:3]) == [300, 300, 300]
    assert sorted(aset.dropped["source_line"]) == [2, 4]
    assert all("another view" in r for r in aset.dropped["reason"])
    report = validate_annotations(aset)
    assert kinds_at(report, "duplicate_selection") == [(path.name, 7)]
    assert "line 6" in report.errors[0].message


def test_label_column_choice_and_errors(tmp_path, rec):
    header = ["Selection", "Begin Time (s)", "End Time (s)", "type", "CLASS"]
    (tmp_path / "rec1.Table.1.selections.txt").write_text(raven_text([[1, 0.5, 1.0, "grunt", "chimp"]], header))
    aset = read_annotations(tmp_path / "rec1.Table.1.selections.txt")
    assert list(aset.table["label"]) == ["chimp"]  # Class before Type, case-insensitive
    assert "CLASS" in aset.notes[0] and "also present: type" in aset.notes[0]
    aset = read_annotations(tmp_path / "rec1.Table.1.selections.txt", label_column="Type")
    assert list(aset.table["label"]) == ["grunt"] and aset.extra_frame().loc[0, "CLASS"] == "chimp"

    bad = tmp_path / "bad.txt"
    bad.write_text(raven_text([[1, 0.5, 1.0, "x"]], ["Selection", "Begin Time (s)", "End Time (s)", "Call"]))
    aset = read_annotations([bad, tmp_path / "rec1.Table.1.selections.txt"])
    assert len(aset.table) == 1  # the other file is still read
    problem = [p for p in aset.problems if p.kind == "no_label_column"][0]
    assert problem.severity == "error" and problem.line == 1
    assert "'Selection', 'Begin Time (s)', 'End Time (s)', 'Call'" in problem.message
    assert "Species" in problem.message and "label_column" in problem.fix
    aset = read_annotations(bad, label_column="Species")
    assert "has no column 'Species'" in aset.problems[0].message and "'Call'" in aset.problems[0].message
    assert list(read_annotations(bad, label_column="call").table["label"]) == ["x"]


def test_multi_file_windows_and_posix_paths_with_file_offsets(tmp_path):
    root = tmp_path / "audio"
    for sub, name in [
        ("site_a/2020", "a.wav"),
        ("site_b", "b.WAV"),
        ("site_c/x", "dup.wav"),
        ("site_d/y", "dup.wav"),
        ("site_e", "A.WAV"),
    ]:  # an exact name wins over one that matches ignoring case
        (root / sub).mkdir(parents=True)
        write_tone(root / sub / name, 300, seconds=20.0, sr=1000)
    header = [
        "Selection",
        "View",
        "Begin Time (s)",
        "End Time (s)",
        "Begin Path",
        "End Path",
        "File Offset (s)",
        "Species",
    ]
    rows = [
        [
            1,
            "Spectrogram 1",
            100.0,
            101.5,
            r"C:\Users\me\site_a\2020\a.wav",
            r"C:\Users\me\site_a\2020\a.wav",
            10.0,
            "chimp",
        ],
        [2, "Spectrogram 1", 130.0, 131.0, "/mnt/field/me/b.wav", "/mnt/field/me/b.wav", 5.0, "redcap"],
        [3, "Spectrogram 1", 150.0, 151.0, r"E:\x\dup.wav", "", 1.0, "chimp"],
        [4, "Spectrogram 1", 160.0, 161.0, r"E:\z\dup.wav", "", 1.0, "chimp"],
        [5, "Spectrogram 1", 170.0, 171.0, r"E:\y\a.wav", r"E:\y\b.wav", 19.5, "chimp"],
    ]
    (root / "site_a" / "loop").symlink_to(root)  # a link back up the tree is followed once
    path = tmp_path / "tables" / "session.txt"
    path.parent.mkdir()
    path.write_text(raven_text(rows, header))
    aset = read_annotations(path, audio_root=root)
    t = aset.table
    assert t.loc[0, "recording"] == str(root / "site_a/2020/a.wav")
    assert (t.loc[0, "begin"], t.loc[0, "end"]) == (10.0, 11.5)
    assert t.loc[1, "recording"] == str(root / "site_b/b.WAV") and (t.loc[1, "begin"], t.loc[1, "end"]) == (5.0, 6.0)
    assert t.loc[2, "recording"] == str(root / "site_c/x/dup.wav")  # the folder name settles it
    assert t.loc[3, "recording"] is None  # two dup.wav, neither under a folder 'z'
    report = validate_annotations(aset)
    assert kinds_at(report, "ambiguous_recording") == [("session.txt", 5)]
    assert kinds_at(report, "spans_files") == [("session.txt", 6)]
    assert not kinds_at(report, "unknown_recording")  # the ambiguous row is reported once
    kept = validate_annotations(aset, on_error="exclude")
    assert list(kept.table["source_line"]) == [2, 3, 4]


def test_multi_file_table_without_offsets(tmp_path):
    header = ["Selection", "Begin Time (s)", "End Time (s)", "Begin Path", "Species"]
    one = tmp_path / "one.txt"
    one.write_text(raven_text([[1, 1.0, 2.0, r"D:\rec1.wav", "chimp"], [2, 3.0, 4.0, r"D:\rec1.wav", "chimp"]], header))
    write_tone(tmp_path / "rec1.wav", 200, seconds=5.0, sr=1000)
    assert validate_annotations(read_annotations(one)).ok  # one file: its times are that file's
    two = tmp_path / "two.txt"
    two.write_text(
        raven_text([[1, 1.0, 2.0, r"D:\rec1.wav", "chimp"], [2, 63.0, 64.0, r"D:\rec2.wav", "chimp"]], header)
    )
    report = validate_annotations(read_annotations(two))
    assert kinds_at(report, "session_times") == [("two.txt", 1)]
    assert "lines 2, 3" in report.errors[0].message


# --- Audacity and plain CSV ------------------------------------------------------------------------


def test_audacity_labels_with_frequency_lines(tmp_path, rec):
    path = tmp_path / "rec1.txt"
    path.write_text(
        "0.500000\t1.250000\tchimp\n\\\t150.000000\t2500.000000\n"
        "2.000000\t3.000000\tred cap, adult\n"
        "4.000000\t5.000000\tchimp\n\\\t-1.000000\t-1.000000\n"
        "\\\t1.0\t2.0\n"
    )
    aset = read_annotations(path)
    t = aset.table
    assert aset.formats[str(path)] == "audacity"
    assert list(t["label"]) == ["chimp", "red cap, adult", "chimp"]
    assert list(t["source_line"]) == [1, 3, 4]
    assert (t.loc[0, "low_freq"], t.loc[0, "high_freq"]) == (150.0, 2500.0)
    assert t[["low_freq", "high_freq"]].iloc[1:].isna().all().all()
    assert set(t["recording"]) == {str(rec)}
    assert [(p.kind, p.line) for p in aset.problems] == [("stray_frequency_line", 6)]


def test_plain_csv_with_frequencies_and_extra_columns(tmp_path, rec, monkeypatch):
    (tmp_path / "sub").mkdir()
    write_tone(tmp_path / "sub" / "rec2.wav", 440, seconds=3.0, sr=8000)
    path = tmp_path / "labels.csv"
    path.write_text(
        "file,begin,end,label,low_freq,high_freq,observer\n"
        "rec1.wav,0.5,1.0,chimp,100,900,ab\n"
        "sub/rec2.wav,1,2,redcap,,,cd\n"
        '"rec1.wav","2,5",3,"chimp, juvenile",,,ef\n'
    )
    aset = read_annotations(path)
    t = aset.table
    assert aset.formats[str(path)] == "csv" and aset.label_columns[str(path)] == "label"
    assert list(t["recording"]) == [str(rec), str(tmp_path / "sub" / "rec2.wav"), str(rec)]
    assert list(t["recording_name"]) == ["rec1.wav", "sub/rec2.wav", "rec1.wav"]
    assert t.loc[0, "low_freq"] == 100 and math.isnan(t.loc[1, "low_freq"])
    assert [e["observer"] for e in t["extra"]] == ["ab", "cd", "ef"]
    assert t.loc[2, "label"] == "chimp, juvenile" and math.isnan(t.loc[2, "begin"])  # '2,5' in a comma CSV
    report = validate_annotations(aset)
    assert kinds_at(report, "bad_time") == [("labels.csv", 4)]
    monkeypatch.chdir(tmp_path)
    relative = read_annotations("labels.csv", audio_root=".").table
    assert relative.loc[0, "source_file"] == "labels.csv" and relative.loc[0, "recording"] == str(rec)


# --- validation ----------------------------------------------------------------------------------------


def test_every_validation_problem_is_reported_at_once_with_file_line_and_fix(tmp_path, rec):
    write_tone(tmp_path / "rec44.wav", 440, seconds=10.0, sr=4000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    path = tmp_path / "all.csv"
    path.write_text(
        "file,begin,end,label\n"
        "rec1.wav,2,1,chimp\n"  # 2: end before begin
        "rec1.wav,1,1,chimp\n"  # 3: zero length
        "rec1.wav,-0.5,1,chimp\n"  # 4: negative
        "rec1.wav,9.5,10.05,chimp\n"  # 5: within the tolerance of the end: fine
        "rec1.wav,9.5,10.5,chimp\n"  # 6: past the end
        "nowhere.wav,1,2,chimp\n"  # 7: unknown recording
        "rec1.wav,3,4,\n"  # 8: empty label
        "broken.wav,1,2,chimp\n"  # 9: unreadable audio
        "rec1.wav,3.5,5,redcap\n"  # 10: overlaps line 8 (label '' vs 'redcap') and 11
        "rec1.wav,4.5,6,chimp\n"  # 11
        "rec44.wav,1,2,chimp\n"
    )  # 12: another sample rate
    report = validate_annotations(read_annotations(path))
    errors = {(p.kind, p.line) for p in report.errors}
    assert errors == {
        ("end_before_begin", 2),
        ("end_before_begin", 3),
        ("negative_time", 4),
        ("past_end", 6),
        ("unknown_recording", 7),
        ("empty_label", 8),
        ("unreadable_audio", 9),
    }
    assert all(p.file == str(path) and p.fix for p in report.problems)
    assert "equals" in next(p.message for p in report.errors if p.line == 3)
    assert "10.000 s" in next(p.message for p in report.errors if p.kind == "past_end")
    overlaps = [p for p in report.warnings if p.kind == "overlap"]
    assert {p.line for p in overlaps} == {10, 11}
    assert any("line 8" in p.message for p in overlaps if p.line == 10)
    assert any("line 10" in p.message for p in overlaps if p.line == 11)
    rates = [p for p in report.warnings if p.kind == "mixed_sample_rate"]
    assert len(rates) == 1 and rates[0].line == 12 and "rec44.wav is sampled at 4000 Hz" in rates[0].message
    assert "16000 Hz" in rates[0].message and "resampled" in rates[0].message
    text = report.format()
    assert text.splitlines()[0].endswith("7 error(s), 3 warning(s)")
    assert f"{path} line 6" in text

    kept = validate_annotations(read_annotations(path), on_error="exclude")
    assert list(kept.table["source_line"]) == [5, 10, 11, 12]
    assert list(kept.excluded["source_line"]) == [2, 3, 4, 6, 7, 8, 9]
    assert kept.errors  # excluded rows are still reported
    with pytest.raises(AnnotationError) as info:
        validate_annotations(read_annotations(path), on_error="raise")
    assert "7 error(s)" in str(info.value) and len(info.value.report.errors) == 7
    with pytest.raises(ValueError, match="on_error"):
        validate_annotations(read_annotations(path), on_error="skip")


def test_bad_files_do_not_stop_the_others_and_are_listed_when_excluding(tmp_path, rec):
    good = tmp_path / "rec1.txt"
    good.write_text("1\t2\tchimp\n")
    odd = tmp_path / "odd.txt"
    odd.write_text("this is not a table\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("file,begin,end,label\nrec1.wav,3,4,b\xe9b\xe9\n".encode("cp1252"))
    aset = read_annotations([tmp_path / "missing.txt", odd, empty, good, latin])
    assert list(aset.table["label"]) == ["chimp", "b\u00e9b\u00e9"]
    kinds = {(Path(p.file).name, p.kind, p.severity) for p in aset.problems}
    assert kinds == {
        ("missing.txt", "missing_file", "error"),
        ("odd.txt", "unknown_format", "error"),
        ("empty.csv", "empty_file", "error"),
        ("latin.csv", "not_utf8", "warning"),
    }
    report = validate_annotations(aset, on_error="exclude")
    assert len(report.table) == 2
    assert sorted(Path(f).name for f in report.excluded["source_file"]) == ["empty.csv", "missing.txt", "odd.txt"]
    assert report.excluded["source_line"].isna().all()


def test_a_folder_is_read_and_stray_text_files_are_skipped_with_a_warning(tmp_path, rec):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("Field season 2020.\n")
    (tmp_path / "rec1.txt").write_text("1\t2\tchimp\n")
    aset = read_annotations(tmp_path)
    assert list(aset.table["label"]) == ["chimp"]
    assert [(p.kind, p.severity, Path(p.file).name) for p in aset.problems] == [
        ("not_annotations", "warning", "README.txt")
    ]


def test_given_recording_and_label_case_warning(tmp_path):
    audio = tmp_path / "elsewhere" / "long take.flac"
    audio.parent.mkdir()
    write_tone(audio, 300, seconds=4.0, sr=8000)
    table = tmp_path / "labels.txt"
    table.write_text("0.5\t1\tChimp\n1.5\t2\tchimp\n2.5\t3\tchimp\n")
    aset = read_annotations(table, recording={"labels.txt": audio})
    assert set(aset.table["recording"]) == {str(audio)}
    report = validate_annotations(aset)
    assert report.ok and kinds_at(report, "label_case") == [("labels.txt", 1)]
    assert "unknown_recording" in validate_annotations(read_annotations(table)).kinds()


def test_validating_a_plain_table(tmp_path, rec):
    table = pd.DataFrame(
        {
            "recording": [str(rec), None, str(tmp_path / "gone.wav")],
            "recording_name": ["rec1.wav", "x.wav", "gone.wav"],
            "begin": [1.0, np.nan, 1.0],
            "end": [2.0, 3.0, 2.0],
            "label": ["a", "b", "c"],
            "low_freq": np.nan,
            "high_freq": np.nan,
            "source_file": "hand.csv",
            "source_line": [2, 3, 4],
        }
    )
    report = validate_annotations(table)
    assert {(p.kind, p.line) for p in report.errors} == {
        ("bad_time", 3),
        ("unknown_recording", 3),
        ("unknown_recording", 4),
    }
    assert list(AnnotationSet.from_table(table).table.columns) == CORE_COLUMNS + ["extra"]
    with pytest.raises(ValueError, match="label"):
        validate_annotations(table.drop(columns=["label"]))


def test_a_binary_file_in_a_folder_of_tables_fails_the_check(tmp_path, rec):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "rec1.txt").write_text("1\t2\tchimp\n")
    (tables / "export.txt").write_bytes(rec.read_bytes()[:4000])  # audio saved under a table's name
    aset = read_annotations(tables, audio_root=tmp_path)
    assert [(p.kind, p.severity, Path(p.file).name) for p in aset.problems] == [("binary_file", "error", "export.txt")]
    done = subprocess.run(
        [sys.executable, "-m", "helpers", "annotations", str(tables), "--audio", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "binary file" in done.stdout


def test_fixes_name_the_command_line_options_as_well_as_the_python_arguments(tmp_path):
    table = tmp_path / "nowhere.txt"
    table.write_text("0.5\t1\tchimp\n")
    report = validate_annotations(read_annotations(table, recording="missing.wav"))
    fix = next(p.fix for p in report.errors if p.kind == "unknown_recording")
    assert "--audio DIR" in fix and "audio_root= in Python" in fix
