"""The review logic: which events to review, and a review table that loses nothing (kernel deaths,
two reviewers on one table, marks made in Raven)."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pandas as pd
import pytest

from helpers.core import fileio
from helpers.evaluation.review import DEFAULT_MIX, ReviewTable, event_id, review_queue


def events(n_per_class: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for label in ("gibbon", "argus"):
        for i in range(n_per_class):
            begin = 10.0 * i + (0.5 if label == "argus" else 0.0)
            rows.append(
                {
                    "recording": f"site/{label}.wav",
                    "begin": begin,
                    "end": begin + 3.0,
                    "label": label,
                    "score": float(rng.uniform(0.3, 1.0)),
                    "n_windows": 1,
                }
            )
    return pd.DataFrame(rows)


def test_the_queue_follows_its_stated_rule():
    table = events()
    queue = review_queue(table, n=20, mix=DEFAULT_MIX, threshold=0.6, seed=3)
    assert len(queue) == 20 and queue["event_id"].is_unique
    assert queue["reason"].value_counts().to_dict() == {"top": 8, "threshold": 8, "random": 4}
    rest = table.assign(
        event_id=[event_id(r, b, e, lab) for r, b, e, lab in zip(table.recording, table.begin, table.end, table.label)]
    )
    rest = rest[~rest["event_id"].isin(queue.loc[queue.reason == "random", "event_id"])]
    # top: the four best events of each class among those the random draw left
    top = queue[queue.reason == "top"]
    for label in ("gibbon", "argus"):
        best = rest[rest.label == label].nlargest(4, "score")["event_id"]
        assert set(top.loc[top.label == label, "event_id"]) == set(best)
    # threshold: nearer the threshold than any event left out of the queue, class by class
    near = queue[queue.reason == "threshold"]
    left = rest[~rest["event_id"].isin(queue["event_id"])]
    for label in ("gibbon", "argus"):
        assert (near.loc[near.label == label, "score"] - 0.6).abs().max() <= (
            left.loc[left.label == label, "score"] - 0.6
        ).abs().min() + 1e-12
    # the same seed gives the same queue, another seed another random sample
    pd.testing.assert_frame_equal(queue, review_queue(table, n=20, threshold=0.6, seed=3))
    other = review_queue(table, n=20, threshold=0.6, seed=4)
    assert set(other.loc[other.reason == "random", "event_id"]) != set(queue.loc[queue.reason == "random", "event_id"])


def test_a_short_table_and_a_bad_mix():
    assert len(review_queue(events(2), n=50)) == 4
    assert list(review_queue(events(5), n=4, mix={"random": 1.0})["reason"]) == ["random"] * 4
    with pytest.raises(ValueError, match="shares"):
        review_queue(events(), mix={"loudest": 1.0})
    with pytest.raises(ValueError, match="per class"):
        review_queue(events(), threshold={"gibbon": 0.5}, mix={"threshold": 1.0})


def test_decisions_are_written_at_once_and_resume_after_a_restart(tmp_path):
    queue = review_queue(events(5), n=6, seed=0)
    table = ReviewTable(tmp_path, reviewer="ana")
    table.record(queue.iloc[0], "call")
    table.record(queue.iloc[1], "other", new_label="argus")
    # a kernel restart: a new object, as a new process would make, sees both and resumes after them
    again = ReviewTable(tmp_path, reviewer="ana")
    assert list(again.read()["decision"]) == ["call", "other"]
    assert list(again.pending(queue)["event_id"]) == list(queue["event_id"].iloc[2:])
    with pytest.raises(ValueError, match="new_label"):
        again.record(queue.iloc[2], "other")
    with pytest.raises(ValueError, match="use one of"):
        again.record(queue.iloc[2], "maybe")
    # a later decision on the same event wins; the earlier one stays in the file
    again.record(queue.iloc[0], "not_call")
    latest = again.latest().set_index("event_id")
    assert latest.loc[queue["event_id"].iloc[0], "decision"] == "not_call" and len(again.read()) == 3


def test_a_crash_during_a_write_leaves_the_previous_table(tmp_path, monkeypatch):
    queue = review_queue(events(5), n=4, seed=0)
    table = ReviewTable(tmp_path)
    table.record(queue.iloc[0], "call")
    before = table.path.read_text()

    def dies(*args, **kwargs):
        raise KeyboardInterrupt("kernel killed")

    monkeypatch.setattr(fileio.os, "replace", dies)
    with pytest.raises(KeyboardInterrupt):
        table.record(queue.iloc[1], "not_call")
    monkeypatch.undo()
    assert table.path.read_text() == before
    assert list(ReviewTable(tmp_path).read()["decision"]) == ["call"]


def _reviewer(args):
    folder, name, rows = args
    table = ReviewTable(folder, reviewer=name)
    queue = review_queue(events(10), n=20, seed=0)
    for i in rows:
        table.record(queue.iloc[i], "call" if i % 2 else "not_call")
    return os.getpid()


def test_two_reviewers_on_one_table_lose_no_row(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(_reviewer, [(str(tmp_path), "ana", range(0, 20, 2)), (str(tmp_path), "ben", range(1, 20, 2))])
    table = ReviewTable(tmp_path).read()
    assert len(table) == 20 and table["event_id"].is_unique
    assert table["reviewer"].value_counts().to_dict() == {"ana": 10, "ben": 10}


def test_marks_made_in_raven_are_read_back(tmp_path):
    queue = review_queue(events(5), n=3, seed=0)
    recordings = {"site/gibbon.wav": ("/data/site/gibbon.wav", 60.0), "site/argus.wav": ("/data/site/argus.wav", 60.0)}
    table = ReviewTable(tmp_path, reviewer="ana", recordings=recordings)
    for i in range(3):
        table.record(queue.iloc[i], "call")
    raven = pd.read_csv(table.raven_path, sep="\t", dtype=str, keep_default_na=False)
    assert list(raven.columns[:7]) == [
        "Selection",
        "View",
        "Channel",
        "Begin Time (s)",
        "End Time (s)",
        "Low Freq (Hz)",
        "High Freq (Hz)",
    ]
    assert set(raven["Review"]) == {"call"} and set(raven["Begin Path"]) <= {p for p, _ in recordings.values()}
    argus = raven["Begin Path"] == "/data/site/argus.wav"
    # the session time of the second recording counts from the first one's end
    np.testing.assert_allclose(
        raven.loc[argus, "Begin Time (s)"].astype(float), raven.loc[argus, "File Offset (s)"].astype(float) + 60.0
    )
    # in Raven, someone marks the first selection as another label and the second as no call
    raven.loc[0, "Review"] = "other:argus"
    raven.loc[1, "Review"] = "not_call"
    raven.to_csv(table.raven_path, sep="\t", index=False)
    merged = ReviewTable(tmp_path, reviewer="raven", recordings=recordings).merge_raven()
    assert list(merged["decision"]) == ["other", "not_call"] and merged["new_label"].iloc[0] == "argus"
    latest = table.latest()
    assert sorted(latest["decision"]) == ["call", "not_call", "other"] and len(table.read()) == 5
    raven.loc[2, "Review"] = "probably"
    raven.to_csv(table.raven_path, sep="\t", index=False)
    with pytest.raises(ValueError, match="line 4: Review 'probably'"):
        table.merge_raven()


def test_a_damaged_table_names_the_line(tmp_path):
    queue = review_queue(events(5), n=2, seed=0)
    table = ReviewTable(tmp_path)
    table.record(queue.iloc[0], "call")
    table.record(queue.iloc[1], "unsure")
    text = table.path.read_text().replace(",unsure,", ",perhaps,")
    table.path.write_text(text)
    with pytest.raises(ValueError, match="line 3: decision 'perhaps'"):
        table.read()


def test_a_session_resumes_where_the_table_ends_and_moves_both_ways(tmp_path):
    from helpers.evaluation.review import ReviewSession

    queue = review_queue(events(5), n=5, seed=0)
    session = ReviewSession(queue, ReviewTable(tmp_path, reviewer="ana"))
    assert session.position == 0 and session.progress() == {"done": 0, "left": 5, "position": 1, "total": 5}
    session.decide("call")
    session.decide("other", new_label="argus")
    # the tab is closed; a new session on the same table opens at the third event
    again = ReviewSession(queue, ReviewTable(tmp_path, reviewer="ana"))
    assert again.position == 2 and again.current()["event_id"] == queue["event_id"].iloc[2]
    again.back()
    assert again.decision_of(again.current()) == "other"
    again.decide("not_call")  # a newer decision on the second event
    assert again.position == 2 and again.progress()["done"] == 2
    for _ in range(3):
        again.decide("unsure")
    assert again.finished and again.current() is None and again.progress()["left"] == 0
    with pytest.raises(IndexError):
        again.decide("call")


def test_the_widget_writes_what_its_buttons_and_keys_say(tmp_path):
    from helpers.evaluation.review import ReviewSession
    from helpers.reporting.review_widget import ReviewWidget
    from tests.conftest import write_tone

    (tmp_path / "site").mkdir()
    for label in ("gibbon", "argus"):
        write_tone(tmp_path / "site" / f"{label}.wav", 400, seconds=60.0, sr=8000)
    queue = review_queue(events(3), n=4, seed=0)
    table = ReviewTable(tmp_path / "scan", reviewer="ana")
    widget = ReviewWidget(
        ReviewSession(queue, table),
        {f"site/{k}.wav": tmp_path / "site" / f"{k}.wav" for k in ("gibbon", "argus")},
        classes=["gibbon", "argus"],
    )
    assert widget.image.value[:8] == b"\x89PNG\r\n\x1a\n" and widget.audio.value[:4] == b"RIFF"
    assert "event 1 of 4" in widget.header.value
    widget.buttons["call"].click()
    widget.other_label.value = "argus"
    widget.buttons["other"].click()
    widget.keys.value = "n"  # the shortcut box
    assert widget.keys.value == ""
    widget.buttons["back"].click()
    assert "decided before: <b>not_call</b>" in widget.header.value
    written = table.read()
    assert list(written["decision"]) == ["call", "other", "not_call"] and written["new_label"].iloc[1] == "argus"
    widget.act("forward")
    widget.act("skip")
    assert "Review finished" in widget.header.value and len(table.read()) == 4


def test_the_simulated_reviewer_answers_from_the_truth(tmp_path):
    from helpers.evaluation.review import simulated_decisions

    truth = pd.DataFrame(
        {
            "recording": ["r.wav"] * 3,
            "begin": [10.0, 30.0, 50.0],
            "end": [12.0, 32.0, 52.0],
            "label": ["gibbon", "argus", "background"],
        }
    )
    queue = pd.DataFrame(
        {
            "event_id": list("abcde"),
            "recording": ["r.wav"] * 4 + ["other.wav"],
            "begin": [9.5, 29.5, 50.0, 70.0, 10.0],
            "end": [12.5, 32.5, 53.0, 73.0, 12.0],
            "label": ["gibbon", "gibbon", "gibbon", "argus", "gibbon"],
            "score": 0.9,
            "reason": "top",
        }
    )
    answered = simulated_decisions(queue, truth, min_iou=0.3)
    # a: its own call; b: an argus call where gibbon was said; c: only background there; d: nothing; e: another file
    assert list(answered["decision"]) == ["call", "other", "not_call", "not_call", "not_call"]
    assert answered["new_label"].iloc[1] == "argus"
    assert list(simulated_decisions(queue, truth, min_iou=0.9)["decision"])[0] == "not_call"  # IoU 2/3 < 0.9
    table = ReviewTable(tmp_path, reviewer="simulated")
    for row in answered.itertuples(index=False):
        table.record(row._asdict(), row.decision, row.new_label or None)
    assert list(table.latest()["decision"]) == list(answered["decision"])


def test_the_recording_level_reviewer_knows_what_each_recording_holds():
    from helpers.evaluation.review import recording_level_decisions, simulated_decisions

    queue = pd.DataFrame(
        {
            "event_id": list("abcde"),
            "recording": ["focal.wav", "focal.wav", "soundscape.wav", "soundscape.wav", "r.wav"],
            "begin": [0.0, 3.0, 0.0, 6.0, 10.0],
            "end": [3.0, 6.0, 3.0, 9.0, 12.0],
            "label": ["gibbon", "argus", "gibbon", "argus", "gibbon"],
            "score": 0.8,
            "reason": "top",
        }
    )
    contents = {"focal.wav": "gibbon", "soundscape.wav": None}
    # a focal recording's own class is a call, another class is unsure; a soundscape holds only false alarms
    assert list(recording_level_decisions(queue.iloc[:4], contents)["decision"]) == [
        "call",
        "unsure",
        "not_call",
        "not_call",
    ]
    with pytest.raises(ValueError, match="r.wav is not in contents"):
        recording_level_decisions(queue, contents)
    # mixed: r.wav by its exact truth, the others by their contents, rows kept in queue order
    truth = pd.DataFrame({"recording": ["r.wav"], "begin": [10.0], "end": [12.0], "label": ["argus"]})
    mixed = simulated_decisions(queue, truth, contents=contents)
    assert list(mixed["event_id"]) == list("abcde")
    assert list(mixed["decision"]) == ["call", "unsure", "not_call", "not_call", "other"]
    assert mixed["new_label"].iloc[4] == "argus"
    with pytest.raises(ValueError, match="no truth for recording"):
        simulated_decisions(queue, None, contents=contents)
