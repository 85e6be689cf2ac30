"""Reviewed detections as a new training round: clips cut from the reviewed recording, devel and test
untouched, recordings that fed devel or test refused, the provenance of every new clip recorded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from helpers.data.corpus import read_corpus
from helpers.data.rounds import corpus_spans, held_out_recordings, training_round
from tests.conftest import make_tiny_corpus, write_tone


def reviews(recording: str = "field.wav") -> pd.DataFrame:
    rows = [
        ("call", "chimpanze", ""),
        ("other", "chimpanze", "redcap"),
        ("not_call", "redcap", ""),
        ("unsure", "redcap", ""),
        ("skip", "chimpanze", ""),
    ]
    return pd.DataFrame(
        [
            {
                "event_id": f"{recording}|{10.0 * i:.3f}|{10.0 * i + 3:.3f}|{label}",
                "recording": recording,
                "begin": 10.0 * i,
                "end": 10.0 * i + 3.0,
                "label": label,
                "score": 0.9,
                "reason": "top",
                "decision": decision,
                "new_label": new,
                "reviewer": "ana",
                "time": "t",
            }
            for i, (decision, label, new) in enumerate(rows)
        ]
    ).pipe(_last_event_at_the_end)


def _last_event_at_the_end(table: pd.DataFrame) -> pd.DataFrame:
    """The first reviewed event moved to the last 1.5 s of the 60-s recording."""
    table.loc[0, ["begin", "end"]] = [58.5, 60.0]
    table.loc[0, "event_id"] = f"{table.loc[0, 'recording']}|58.500|60.000|{table.loc[0, 'label']}"
    return table


@pytest.fixture
def corpus(tmp_path):
    root = make_tiny_corpus(tmp_path / "corpus")
    pd.DataFrame(
        {
            "split": ["train", "devel", "test"],
            "filename": ["a", "b", "c"],
            "source_recording": ["site_train", "site_devel", "site_test"],
        }
    ).to_csv(root / "manifest.csv", index=False)
    write_tone(tmp_path / "field.wav", 900, seconds=60.0, sr=22050)
    return read_corpus(root)


def test_a_round_grows_train_and_leaves_devel_and_test(corpus, tmp_path):
    out = training_round(
        corpus, reviews(), {"field.wav": tmp_path / "field.wav"}, tmp_path / "round1", scan_dir=tmp_path / "scan"
    )
    grown = read_corpus(out)
    old = corpus.table.groupby("split").size().to_dict()
    new = grown.table.groupby("split").size().to_dict()
    assert new["train"] == old["train"] + 3 and new["devel"] == old["devel"] and new["test"] == old["test"]
    added = grown.table[grown.table["filename"].str.startswith("train_round1_")]
    assert list(added["label"]) == ["chimpanze", "redcap", "background"]  # call, other (heard), not a call
    info = sf.info(str(added["path"].iloc[0]))
    assert info.samplerate == 16000 and abs(info.duration - 2.99) < 0.01  # the corpus's rate and clip length
    rounds = pd.read_csv(out / "rounds.csv")
    assert list(rounds["decision"]) == ["call", "other", "not_call"] and list(rounds["review_row"]) == [2, 3, 4]
    assert set(rounds["scan_dir"]) == {str(tmp_path / "scan")}
    centre = (rounds["clip_begin"] + rounds["clip_end"]) / 2
    np.testing.assert_allclose(centre.iloc[1:], ((rounds["event_begin"] + rounds["event_end"]) / 2).iloc[1:])
    # the first event ends with the recording: its clip is shifted to stay inside it
    assert rounds["clip_end"].iloc[0] == pytest.approx(60.0) and centre.iloc[0] < 59.25
    # the old clips are shared, the devel labels identical
    assert (out / "lab" / "devel.csv").read_text() == (corpus.root / "lab" / "devel.csv").read_text()
    with pytest.raises(FileExistsError):
        training_round(corpus, reviews(), {"field.wav": tmp_path / "field.wav"}, out)
    # a second round keeps the history of the first
    second = training_round(
        grown, reviews(), {"field.wav": tmp_path / "field.wav"}, tmp_path / "round2", round_name="round2"
    )
    assert list(pd.read_csv(second / "rounds.csv")["round"]) == ["round1"] * 3 + ["round2"] * 3


def test_recordings_of_devel_and_test_are_refused_with_every_row_named(corpus, tmp_path):
    write_tone(tmp_path / "site_devel.wav", 500, seconds=60.0)
    assert held_out_recordings(corpus.root) == {"devel": {"site_devel"}, "test": {"site_test"}}
    with pytest.raises(ValueError) as caught:
        training_round(
            corpus, reviews("site_devel.wav"), {"site_devel.wav": tmp_path / "site_devel.wav"}, tmp_path / "leak"
        )
    message = str(caught.value)
    assert "3 review row(s) refused" in message and message.count("fed the devel split") == 3
    assert "review row 2 " in message and not (tmp_path / "leak").exists()
    bad = reviews()
    bad.loc[0, "label"] = "chimp"
    with pytest.raises(ValueError, match="review row 2 .*label 'chimp' is not a class"):
        training_round(corpus, bad, {"field.wav": tmp_path / "field.wav"}, tmp_path / "bad")


def test_without_a_manifest_the_held_out_recordings_must_be_named(tmp_path):
    root = make_tiny_corpus(tmp_path / "plain")
    write_tone(tmp_path / "field.wav", 900, seconds=60.0)
    corpus = read_corpus(root)
    with pytest.raises(ValueError, match="held_out="):
        training_round(corpus, reviews(), {"field.wav": tmp_path / "field.wav"}, tmp_path / "r")
    out = training_round(corpus, reviews(), {"field.wav": tmp_path / "field.wav"}, tmp_path / "r", held_out=[])
    assert len(read_corpus(out).table) == len(corpus.table) + 3


def test_corpus_spans_are_the_clips_cut_from_each_recording(tmp_path):
    root = make_tiny_corpus(tmp_path / "corpus")
    assert corpus_spans(root) == {}  # no manifest: nothing is known
    pd.DataFrame(
        {
            "split": ["train", "train", "test"],
            "filename": ["a", "b", "c"],
            "source_path": ["owner/repo/sha/Focal/rec_1.wav", "owner/repo/sha/Focal/rec_1.wav", "x/rec_2.wav"],
            "offset_s": [4.5, 0.0, 1.0],
            "duration_s": [2.99, 2.99, 0.5],
        }
    ).to_csv(root / "manifest.csv", index=False)
    spans = corpus_spans(root)
    assert spans == {"rec_1.wav": [(0.0, 2.99), (4.5, 7.49)], "rec_2.wav": [(1.0, 1.5)]}
