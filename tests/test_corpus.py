"""The challenge-layout reader and its validation: every problem is detected and named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers.data.corpus import TABLE_COLUMNS, CorpusError, read_corpus, validate_corpus, write_broken_copy
from tests.conftest import REPO_ROOT, write_tone


def _append(root: Path, split: str, line: str) -> None:
    with open(root / "lab" / f"{split}.csv", "a") as fh:
        fh.write(line + "\n")


def _only(report, kind):
    found = [p for p in report.problems if p.kind == kind]
    assert found, f"{kind} not reported; got {report.format()}"
    return found


def test_reads_tidy_table(tiny_corpus):
    c = read_corpus(tiny_corpus)
    assert list(c.table.columns) == TABLE_COLUMNS
    assert c.classes == ["background", "chimpanze", "redcap"]
    assert len(c.table) == 18 and c.splits == ["train", "devel", "test"]
    test = c.split("test")
    assert (test["label"] == "?").all() and (test["class_index"] == -1).all()
    train = c.split("train")
    assert (train["class_index"] == train["label"].map({"background": 0, "chimpanze": 1, "redcap": 2})).all()
    assert train["duration"].between(0.5, 2.0).all() and (train["sample_rate"] == 16000).all()
    assert c.report.ok and not c.report.problems
    assert len(c.checksum()) == 64 and c.counts().loc["redcap", "devel"] == 2
    assert not c.has_labels("test") and c.has_labels("devel")


def test_any_label_strings(tmp_path):
    from tests.conftest import make_tiny_corpus

    root = make_tiny_corpus(tmp_path / "c", labels=("frog", "bat", "owl", "zebra finch"))
    c = read_corpus(root)
    assert c.classes == sorted(["frog", "bat", "owl", "zebra finch"])


def test_class_order_can_be_given(tiny_corpus):
    c = read_corpus(tiny_corpus, classes=["redcap", "background", "chimpanze"])
    assert c.split("train").set_index("label")["class_index"].to_dict()["redcap"] == 0


def test_checksum_changes_with_audio(tiny_corpus):
    before = read_corpus(tiny_corpus).checksum()
    write_tone(tiny_corpus / "wav" / "train_00001.wav", 999.0)
    assert read_corpus(tiny_corpus).checksum() != before


def test_missing_wav(tiny_corpus):
    (tiny_corpus / "wav" / "devel_00002.wav").unlink()
    p = _only(validate_corpus(tiny_corpus), "missing_wav")[0]
    assert p.file == "lab/devel.csv" and p.line == 3 and "devel_00002.wav" in str(p)


def test_unknown_label(tiny_corpus):
    text = (tiny_corpus / "lab" / "devel.csv").read_text().replace("chimpanze", "chimp", 1)
    (tiny_corpus / "lab" / "devel.csv").write_text(text)
    p = _only(validate_corpus(tiny_corpus), "unknown_label")[0]
    assert p.line == 4 and "'chimp'" in p.message and "background, chimpanze, redcap" in p.message


def test_empty_label(tiny_corpus):
    _append(tiny_corpus, "train", "train_00001.wav,")
    text = (tiny_corpus / "lab" / "train.csv").read_text().splitlines()
    # make the row unique: point it at a new file
    write_tone(tiny_corpus / "wav" / "train_00099.wav", 300)
    text[-1] = "train_00099.wav,"
    (tiny_corpus / "lab" / "train.csv").write_text("\n".join(text) + "\n")
    p = _only(validate_corpus(tiny_corpus), "empty_label")[0]
    assert p.file == "lab/train.csv" and p.line == 8


def test_duplicate_row(tiny_corpus):
    _append(tiny_corpus, "devel", "train_00001.wav,background")
    p = _only(validate_corpus(tiny_corpus), "duplicate_row")[0]
    assert p.file == "lab/devel.csv" and p.line == 8 and "lab/train.csv line 2" in p.message


def test_unreadable_audio(tiny_corpus):
    (tiny_corpus / "wav" / "train_00003.wav").write_bytes(b"this is not audio at all" * 10)
    p = _only(validate_corpus(tiny_corpus), "unreadable_audio")[0]
    assert p.file == "wav/train_00003.wav" and "line 4" in p.message


def test_empty_audio(tiny_corpus):
    sf.write(str(tiny_corpus / "wav" / "train_00002.wav"), np.zeros(0, dtype=np.float32), 16000)
    assert _only(validate_corpus(tiny_corpus), "empty_audio")[0].file == "wav/train_00002.wav"


def test_truncated_audio(tiny_corpus):
    path = tiny_corpus / "wav" / "devel_00001.wav"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # a cut-off download
    p = _only(validate_corpus(tiny_corpus), "truncated_audio")[0]
    assert p.file == "wav/devel_00001.wav" and "download or copy" in p.fix


def test_nonfinite_audio(tiny_corpus):
    x = np.full(1600, 0.1, dtype=np.float32)
    x[100] = np.nan
    sf.write(str(tiny_corpus / "wav" / "train_00004.wav"), x, 16000, subtype="FLOAT")
    assert _only(validate_corpus(tiny_corpus), "nonfinite_audio")[0].file == "wav/train_00004.wav"


def test_unknown_label_outside_test(tiny_corpus):
    text = (tiny_corpus / "lab" / "train.csv").read_text().replace("redcap", "?", 1)
    (tiny_corpus / "lab" / "train.csv").write_text(text)
    p = _only(validate_corpus(tiny_corpus), "unknown_outside_test")[0]
    assert p.file == "lab/train.csv" and p.line == 6


def test_bad_header_and_missing_label_file(tiny_corpus):
    (tiny_corpus / "lab" / "devel.csv").write_text("file,class\nx.wav,background\n")
    report = validate_corpus(tiny_corpus)
    assert _only(report, "bad_header")[0].line == 1
    (tiny_corpus / "lab" / "train.csv").unlink()
    assert _only(validate_corpus(tiny_corpus), "missing_label_file")[0].file == "lab/train.csv"


def test_all_errors_reported_at_once(tiny_corpus):
    (tiny_corpus / "wav" / "devel_00002.wav").unlink()
    _append(tiny_corpus, "devel", "train_00001.wav,background")
    (tiny_corpus / "wav" / "train_00003.wav").write_bytes(b"junk")
    with pytest.raises(CorpusError) as err:
        read_corpus(tiny_corpus)
    kinds = err.value.report.kinds()
    assert {"missing_wav", "duplicate_row", "unreadable_audio"} <= kinds
    assert "3 error(s)" in str(err.value)


def test_warnings_and_treatments(tiny_corpus):
    write_tone(tiny_corpus / "wav" / "orphan.wav", 440)
    write_tone(tiny_corpus / "wav" / "train_00001.wav", 440, channels=2)
    write_tone(tiny_corpus / "wav" / "train_00002.wav", 440, sr=8000)
    write_tone(tiny_corpus / "wav" / "train_00003.wav", 440, seconds=4.0)
    c = read_corpus(tiny_corpus)  # warnings do not stop the run
    kinds = c.report.kinds()
    assert {"orphan_wav", "multichannel", "mixed_sample_rate", "too_long"} <= kinds
    assert not c.report.errors and "orphan.wav" not in set(c.table["filename"])
    # the stated treatments: downmix, resample, truncate
    from helpers.data.audio import load_clip

    assert load_clip(c.table.loc[0, "path"]).shape == (47860,)
    assert load_clip(tiny_corpus / "wav" / "train_00002.wav", sample_rate=16000).shape == (47860,)


def test_exclude_option_records_exclusions(tiny_corpus):
    (tiny_corpus / "wav" / "devel_00002.wav").unlink()
    c = read_corpus(tiny_corpus, on_error="exclude")
    assert "devel_00002.wav" not in set(c.table["filename"]) and len(c.table) == 17
    assert c.excluded.to_dict(orient="records")[0]["filename"] == "devel_00002.wav"
    assert c.record()["excluded"][0]["line"] == 3


def test_exclude_cannot_hide_global_errors(tiny_corpus):
    (tiny_corpus / "lab" / "train.csv").unlink()
    with pytest.raises(CorpusError):
        read_corpus(tiny_corpus, on_error="exclude")


@pytest.mark.slow
def test_cli_validate_exit_codes(tiny_corpus):
    ok = subprocess.run(
        [sys.executable, "-m", "helpers", "validate", str(tiny_corpus)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert ok.returncode == 0 and "0 error(s)" in ok.stdout
    (tiny_corpus / "wav" / "devel_00002.wav").unlink()
    bad = subprocess.run(
        [sys.executable, "-m", "helpers", "validate", str(tiny_corpus)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "lab/devel.csv line 3" in bad.stdout


def test_broken_copy_shows_exactly_its_three_mistakes(tiny_corpus, tmp_path):
    corpus = read_corpus(tiny_corpus)
    assert validate_corpus(tiny_corpus).ok
    broken = write_broken_copy(corpus.table, tmp_path / "broken")
    report = validate_corpus(broken)
    kinds = sorted(p.kind for p in report.errors)
    assert len(kinds) == 3, report.format()
    assert any("missing" in k for k in kinds) and any("dup" in k for k in kinds), kinds
    assert any("chimp" in p.message for p in report.errors), report.format()


def test_problems_of_one_file_in_order(tiny_corpus):
    path = tiny_corpus / "wav" / "train_00001.wav"
    write_tone(path, 440, channels=2, seconds=12.0)
    path.write_bytes(path.read_bytes()[:-1000])
    report = validate_corpus(tiny_corpus)
    assert [p.kind for p in report.problems if p.file == "wav/train_00001.wav"] == [
        "truncated_audio",
        "multichannel",
        "too_long",
    ]
    assert report.problems[0].kind == "truncated_audio"  # errors first


def test_bad_label_row_still_gets_its_audio_checked(tmp_path):
    from tests.conftest import make_tiny_corpus

    root = make_tiny_corpus(tmp_path / "c", labels=tuple(f"c{k:02d}" for k in range(14)), per_split=1)
    _append(root, "devel", "devel_00077.wav,nope")
    report = validate_corpus(root)
    assert [(p.kind, p.line) for p in report.errors] == [("unknown_label", 16), ("missing_wav", 16)]
    assert "is not one of c00, c01, c02, c03, c04, c05, c06, c07, c08, c09, c10, c11, ...." in report.errors[0].message


def test_repeated_warnings_are_grouped_and_name_the_option(tmp_path):
    # A corpus of 5-s clips: one grouped line instead of one line per file, with the count, the
    # range, the first files and the clip-length option that avoids it.
    root = tmp_path / "five_seconds"
    (root / "wav").mkdir(parents=True)
    (root / "lab").mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "devel", "test"):
        names = [f"{split}_{i}.wav" for i in range(6)]
        for i, name in enumerate(names):
            sf.write(root / "wav" / name, rng.normal(0, 0.1, 16_000 * 5 + 800 * i).astype("float32"), 16_000)
        (root / "lab" / f"{split}.csv").write_text(
            "filename,label\n" + "".join(f"{n},{'ab'[i % 2]}\n" for i, n in enumerate(names))
        )
    report = validate_corpus(root)
    assert len(report.warnings) == 18 and {p.kind for p in report.warnings} == {"too_long"}
    lines = report.format().splitlines()
    assert len(lines) == 2, lines
    assert "too_long in 18 files" in lines[1] and "5.00-5.25 s" in lines[1]
    assert "clip_seconds=5.25" in lines[1] and "(wav/devel_0.wav, wav/devel_1.wav, wav/devel_2.wav, ...)" in lines[1]
    assert len(report.to_frame()) == 18  # the frame still lists every file
    assert validate_corpus(root, clip_seconds=5.25).ok and not validate_corpus(root, clip_seconds=5.25).warnings
    # three or fewer of a kind stay one line each
    few = validate_corpus(root, clip_seconds=5.22)
    assert len(few.warnings) == 3 and len(few.format().splitlines()) == 4
