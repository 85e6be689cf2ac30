"""Event-based evaluation and listening effort (helpers.recordings.event_scores), on hand-made tables whose
answers are worked out in the comments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from helpers.recordings.detect import align_recordings, default_thresholds, detect_events, recording_key
from helpers.recordings.event_scores import (
    MATCH_COLUMNS,
    SCORE_COLUMNS,
    event_scores,
    listening_effort,
    match_events,
    precision_at_recall,
    precision_recall_curve_events,
    recording_level_scores,
    recording_level_summary,
)

CLASSES = ["background", "chimpanzee", "gorilla"]


def table(*rows: tuple) -> pd.DataFrame:
    """Events from (recording, begin, end, label) tuples."""
    return pd.DataFrame(list(rows), columns=["recording", "begin", "end", "label"])


def grid_windows(
    rec: str, seconds: int, win: float = 1.0, hop: float = 1.0, scores: dict[float, tuple[float, float]] | None = None
) -> pd.DataFrame:
    """Windows over ``seconds`` s; ``scores`` maps a window's begin to its (chimpanzee, gorilla) scores
    (the rest of the mass is background); other windows score (0, 0): background only."""
    begins = np.arange(0, seconds - win + 1e-9, hop)
    pairs = [(scores or {}).get(float(b), (0.0, 0.0)) for b in begins]
    chimp, gorilla = np.array(pairs).T
    return pd.DataFrame(
        {
            "recording": rec,
            "begin": begins,
            "end": begins + win,
            "score_background": 1 - chimp - gorilla,
            "score_chimpanzee": chimp,
            "score_gorilla": gorilla,
        }
    )


# -- recordings


def test_recording_keys_by_stem_and_by_relative_path():
    assert recording_key("D:\\field\\site1\\rec.WAV") == "rec"
    assert recording_key("site1/rec.wav") == "rec"
    assert recording_key("rec") == "rec"
    assert recording_key("/data/scan/site1/rec.wav", by="path", root="/data/scan") == "site1/rec.wav"
    assert recording_key("site1\\rec.wav", by="path") == "site1/rec.wav"
    with pytest.raises(ValueError, match="by must be"):
        recording_key("x.wav", by="name")


def test_align_recordings_renames_the_reference_to_the_scanned_names():
    ref = table(
        ("/data/scan/site1/a.wav", 0, 1, "chimpanzee"),
        (None, 2, 3, "gorilla"),
        ("/elsewhere/c.wav", 0, 1, "chimpanzee"),
    )
    ref["recording_name"] = ["a.wav", "D:\\site2\\b.wav", "c.wav"]  # recording None: the reader did not find it
    scanned = ["site1/a.wav", "site2/b.wav"]
    with pytest.raises(ValueError, match="1 reference recording.*c.wav.*unmatched='drop'"):
        align_recordings(ref, scanned)
    out = align_recordings(ref, scanned, unmatched="drop")
    assert out["recording"].tolist() == ["site1/a.wav", "site2/b.wav"]
    by_path = align_recordings(ref.iloc[:1], scanned, by="path", root="/data/scan")
    assert by_path["recording"].tolist() == ["site1/a.wav"]
    with pytest.raises(ValueError, match="both have the key 'a'.*by='path'"):
        align_recordings(ref, ["site1/a.wav", "site2/a.wav"])


# -- matching


def test_one_detection_over_two_references_matches_only_one():
    ref = table(("r", 0, 2, "chimpanzee"), ("r", 2, 4, "chimpanzee"))
    det = table(("r", 0, 4, "chimpanzee"))  # IoU 0.5 with each
    m = match_events(det, ref)
    assert list(m.columns) == MATCH_COLUMNS and len(m) == 1 and m["iou"].iloc[0] == pytest.approx(0.5)


def test_matching_maximises_the_number_of_pairs_not_the_best_iou_first():
    # A 0..2, B 2..6; D1 0..5 has IoU 0.4 with A and 0.5 with B; D2 4..8 has IoU 1/3 with B only.
    # Best-IoU-first would give D1-B and leave D2 and A unmatched; the assignment gives D1-A, D2-B.
    ref = table(("r", 0, 2, "chimpanzee"), ("r", 2, 6, "chimpanzee"))
    det = table(("r", 0, 5, "chimpanzee"), ("r", 4, 8, "chimpanzee"))
    m = match_events(det, ref)
    assert list(zip(m["detection"], m["reference"])) == [(0, 0), (1, 1)]
    np.testing.assert_allclose(m["iou"], [0.4, 1 / 3])


def test_iou_just_below_and_just_above_the_threshold():
    ref = table(("r", 10, 20, "chimpanzee"))
    assert len(match_events(table(("r", 10, 13, "chimpanzee")), ref)) == 1  # exactly 0.3
    assert len(match_events(table(("r", 10, 13.01, "chimpanzee")), ref)) == 1
    assert len(match_events(table(("r", 10, 12.99, "chimpanzee")), ref)) == 0
    assert len(match_events(table(("r", 10, 12.99, "chimpanzee")), ref, min_iou=0.29)) == 1
    with pytest.raises(ValueError, match="min_iou"):
        match_events(ref, ref, min_iou=0)


def test_no_match_across_recordings_or_labels_and_index_labels_are_kept():
    ref = table(("r1", 0, 2, "chimpanzee"), ("r2", 0, 2, "gorilla"))
    det = table(("r2", 0, 2, "chimpanzee"), ("r1", 0, 2, "gorilla"), ("r2", 0, 2, "gorilla"))
    det.index = [10, 11, 12]
    m = match_events(det, ref)
    assert m[["recording", "label", "detection", "reference"]].values.tolist() == [["r2", "gorilla", 12, 1]]


def test_matching_per_cluster_finds_as_many_pairs_as_one_big_assignment():
    rng = np.random.default_rng(3)
    begin = np.sort(rng.uniform(0, 300, 150))
    ref = table(*[("r", b, b + rng.uniform(0.5, 4), "chimpanzee") for b in begin])
    jitter = rng.normal(0, 0.7, (2, 150))
    det = table(*[("r", max(0, b + j0), b + 2 + j1, "chimpanzee") for b, j0, j1 in zip(begin, *jitter)])
    inter = np.clip(
        np.minimum(det["end"].values[:, None], ref["end"].values)
        - np.maximum(det["begin"].values[:, None], ref["begin"].values),
        0,
        None,
    )
    union = (det["end"] - det["begin"]).values[:, None] + (ref["end"] - ref["begin"]).values - inter
    feasible = inter / union >= 0.3 - 1e-9
    rows, cols = linear_sum_assignment(feasible.astype(float), maximize=True)
    assert len(match_events(det, ref)) == int(feasible[rows, cols].sum())


# -- scores


def scored() -> pd.DataFrame:
    ref = table(
        ("r1", 0, 2, "chimpanzee"),
        ("r1", 2, 6, "chimpanzee"),
        ("r1", 10, 12, "gorilla"),
        ("r2", 0, 3, "chimpanzee"),
        ("r2", 5, 6, "bonobo"),
    )
    det = table(
        ("r1", 0, 5, "chimpanzee"),
        ("r1", 4, 8, "chimpanzee"),
        ("r1", 20, 22, "gorilla"),
        ("r2", 0, 3, "chimpanzee"),
        ("r2", 7, 8, "macaque"),
    )
    return event_scores(det, ref, classes=["chimpanzee", "gorilla", "bonobo", "macaque"]).set_index("class")


def test_event_scores_per_class_and_micro_totals():
    s = scored()
    assert list(s.reset_index().columns) == SCORE_COLUMNS
    assert s.index.tolist() == ["chimpanzee", "gorilla", "bonobo", "macaque", "all"]
    counts = s[["n_reference", "n_detected", "tp", "fp", "fn"]].values.tolist()
    assert counts == [[3, 3, 3, 0, 0], [1, 1, 0, 1, 1], [1, 0, 0, 0, 1], [0, 1, 0, 1, 0], [5, 5, 3, 2, 2]]
    assert s.loc["chimpanzee", ["precision", "recall", "f1"]].tolist() == [1.0, 1.0, 1.0]
    assert s.loc["gorilla", ["precision", "recall", "f1"]].tolist() == [0.0, 0.0, 0.0]
    # nothing detected: precision is NaN (not 0); nothing to find: recall is NaN
    assert math.isnan(s.loc["bonobo", "precision"]) and s.loc["bonobo", "recall"] == 0 and s.loc["bonobo", "f1"] == 0
    assert math.isnan(s.loc["macaque", "recall"]) and s.loc["macaque", "precision"] == 0
    assert s.loc["all", ["precision", "recall", "f1"]].tolist() == pytest.approx([0.6, 0.6, 0.6])


def test_event_scores_default_classes_and_labels_left_out():
    ref = table(("r", 0, 2, "chimpanzee"), ("r", 3, 4, "background"))
    det = table(("r", 0, 2, "chimpanzee"))
    assert event_scores(det, ref)["class"].tolist() == ["background", "chimpanzee", "all"]
    s = event_scores(det, ref, classes=["chimpanzee"]).set_index("class")
    assert s.loc["all", ["n_reference", "tp"]].tolist() == [1, 1]  # the background row is left out
    empty = event_scores(det.iloc[:0], ref.iloc[:0], classes=["chimpanzee"]).set_index("class")
    assert empty.loc["all", ["tp", "fp", "fn"]].tolist() == [0, 0, 0] and empty.loc["all", ["f1"]].isna().all()


# -- precision / recall over thresholds


def test_precision_recall_curve_at_hand_picked_thresholds():
    # 1-s windows over 10 s; the call is 2..4 s. Window 2 scores 0.9, window 3 0.6, window 7 0.4.
    w = grid_windows("r", 10, scores={2.0: (0.9, 0.0), 3.0: (0.6, 0.0), 7.0: (0.4, 0.0)})
    ref = table(("r", 2, 4, "chimpanzee"))
    curve = precision_recall_curve_events(w, ref, CLASSES, thresholds=[0.3, 0.5, 0.7, 0.95])
    assert list(curve.columns) == ["threshold", "class", "precision", "recall", "f1", "n_detected"]
    chimp = curve[curve["class"] == "chimpanzee"].set_index("threshold")
    # 0.3: 2..4 (tp) and 7..8 (fp); 0.5: 2..4; 0.7: 2..3 (IoU 0.5, tp); 0.95: nothing
    assert chimp["n_detected"].tolist() == [2, 1, 1, 0]
    assert chimp["precision"].tolist()[:3] == [0.5, 1.0, 1.0] and math.isnan(chimp["precision"].iloc[3])
    assert chimp["recall"].tolist() == [1.0, 1.0, 1.0, 0.0]
    gorilla = curve[curve["class"] == "gorilla"]
    assert gorilla["n_detected"].eq(0).all() and gorilla["recall"].isna().all()  # a class with no events at all
    assert curve[curve["class"] == "all"]["recall"].tolist() == [1.0, 1.0, 1.0, 0.0]


def test_precision_at_recall_takes_the_best_threshold_that_reaches_the_recall():
    curve = pd.DataFrame(
        {
            "threshold": [0.2, 0.4, 0.6, 0.8, 0.2],
            "class": ["all"] * 4 + ["gorilla"],
            "precision": [0.3, 0.5, 0.4, 0.9, 1.0],
            "recall": [1.0, 0.8, 0.8, 0.4, 1.0],
            "f1": np.nan,
            "n_detected": 1,
        }
    )
    at = precision_at_recall(curve, [0.5, 0.8, 0.9, 0.3])
    assert at["precision"].tolist()[:2] == [0.5, 0.5] and at["threshold"].tolist()[:2] == [0.4, 0.4]
    assert at.loc[2, "precision"] == 0.3 and at.loc[2, "recall"] == 1.0  # only the lowest threshold reaches 0.9
    assert at.loc[3, "precision"] == 0.9 and at.loc[3, "threshold"] == 0.8
    assert precision_at_recall(curve, [0.5], row="gorilla")["precision"].tolist() == [1.0]
    beyond = precision_at_recall(curve[curve["recall"] < 1], [0.9])
    assert beyond["precision"].isna().all() and beyond["threshold"].isna().all()
    with pytest.raises(ValueError, match="no rows of class 'chimp'"):
        precision_at_recall(curve, [0.5], row="chimp")


def test_the_call_head_score_changes_what_a_threshold_sweep_detects():
    # window 3's species scores are split (0.35 + 0.35) so no class passes 0.5, but P(call) = 0.7 does
    w = grid_windows("r", 10, scores={2.0: (0.9, 0.0), 3.0: (0.35, 0.35)})
    ref = table(("r", 2, 4, "chimpanzee"))
    by_class = precision_recall_curve_events(w, ref, CLASSES, thresholds=[0.5])
    by_call = precision_recall_curve_events(w, ref, CLASSES, thresholds=[0.5], score_from="call")
    # by class: window 2 only (2..3 s, IoU 0.5 with 2..4: a match); by P(call): 2..4 s as one chimpanzee event
    # (window 3's best species is chimpanzee by the tie rule)
    assert by_class[by_class["class"] == "chimpanzee"]["n_detected"].tolist() == [1]
    assert by_call[by_call["class"] == "chimpanzee"]["n_detected"].tolist() == [1]
    assert detect_events(w, CLASSES, 0.5)[["begin", "end"]].values.tolist() == [[2.0, 3.0]]
    assert detect_events(w, CLASSES, 0.5, score_from="call")[["begin", "end", "score"]].values.tolist() == [
        [2.0, 4.0, 0.9]
    ]
    effort_class = listening_effort(w, ref, recall_targets=[1.0])[0]
    effort_call = listening_effort(w, ref, recall_targets=[1.0], score_from="call")[0]
    assert effort_class["call_score"].iloc[1] == pytest.approx(0.35)
    assert effort_call["call_score"].iloc[1] == pytest.approx(0.7)


def test_default_thresholds_stay_few_and_include_the_highest_scores():
    rng = np.random.default_rng(0)
    w = grid_windows("r", 500)
    w["score_chimpanzee"] = np.r_[rng.uniform(0.95, 1.0, 200), rng.uniform(0, 0.5, 300)]
    w["score_background"] = 1 - w["score_chimpanzee"] - w["score_gorilla"]
    t = default_thresholds(w, CLASSES)
    assert len(t) <= 50 and np.all(np.diff(t) > 0)
    assert np.isclose(t[:19], np.arange(1, 20) * 0.05).all()
    assert t[-1] == w["score_chimpanzee"].max()
    assert len(default_thresholds(grid_windows("r", 5), CLASSES)) == 19


# -- listening effort


def effort_windows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """r1: 2-s windows, hop 1 s, over 10 s; r2: the same over 5 s: 15 s scanned in all."""
    w = pd.concat(
        [
            grid_windows("r1", 10, win=2, scores={2.0: (0.9, 0), 5.0: (0.8, 0)}),
            grid_windows("r2", 5, win=2, scores={0.0: (0, 0.7)}),
        ],
        ignore_index=True,
    )
    ref = table(
        ("r1", 2, 4, "chimpanzee"), ("r1", 6, 6.5, "gorilla"), ("r2", 0, 1, "gorilla"), ("r1", 8, 9, "background")
    )
    return w, ref


def test_listening_effort_by_hand():
    w, ref = effort_windows()
    curve, summary = listening_effort(w, ref, classes=CLASSES)
    # review order: r1 2..4 (E1 found), r1 5..7 (E2), r2 0..2 (E3), then the 0-score windows by recording, begin
    assert curve[["recording", "begin"]].values.tolist()[:4] == [["r1", 2.0], ["r1", 5.0], ["r2", 0.0], ["r1", 0.0]]
    assert curve["reviewed_seconds"].tolist() == [2, 4, 6, 8, 8, 9, 9, 10, 11, 12, 13, 14, 15]
    assert curve["events_found"].tolist()[:3] == [1, 2, 3]
    np.testing.assert_allclose(curve["recall"].iloc[:3], [1 / 3, 2 / 3, 1])
    assert curve["reviewed_fraction"].iloc[-1] == 1.0
    s = summary.set_index("recall_target")
    np.testing.assert_allclose(s["reviewed_fraction"], [4 / 15, 6 / 15, 6 / 15, 6 / 15])
    np.testing.assert_allclose(s["time_saved"], [11 / 15, 9 / 15, 9 / 15, 9 / 15])
    assert s["windows_reviewed"].tolist() == [2, 3, 3, 3] and s["note"].eq("").all()
    # classes default to the window table's score columns
    assert listening_effort(w, ref)[1].equals(summary)


def test_min_coverage_decides_when_a_partly_heard_event_counts():
    # the event 0.6..1.6 s is 40 % in window 0..1 (heard first) and 60 % in window 1..2
    w = grid_windows("r", 4, scores={0.0: (0.9, 0), 1.0: (0.8, 0)})
    ref = table(("r", 0.6, 1.6, "chimpanzee"))
    assert listening_effort(w, ref, min_coverage=0.5)[0]["events_found"].tolist()[:2] == [0, 1]
    assert listening_effort(w, ref, min_coverage=0.4)[0]["events_found"].tolist()[:2] == [1, 1]
    with pytest.raises(ValueError, match="min_coverage"):
        listening_effort(w, ref, min_coverage=0)


def test_events_never_heard_leave_the_target_unreached_with_a_note():
    w = grid_windows("r", 4)
    ref = table(("r", 1, 2, "chimpanzee"), ("elsewhere", 0, 1, "chimpanzee"))
    with pytest.warns(UserWarning, match="1 reference recording.*elsewhere"):
        curve, summary = listening_effort(w, ref, recall_targets=(0.5, 1.0))
    s = summary.set_index("recall_target")
    assert s.loc[0.5, "reviewed_fraction"] <= 1 and s.loc[1.0, ["reviewed_fraction", "time_saved"]].isna().all()
    assert "never reached: at most 0.500 of 2 events" in s.loc[1.0, "note"]
    _, none = listening_effort(w, ref.iloc[:0])
    assert none["time_saved"].isna().all() and none["note"].eq("no reference events").all()
    with pytest.raises(ValueError, match="end <= begin"):
        listening_effort(w, table(("r", 2, 2, "chimpanzee")))


def test_a_perfect_detector_scores_one_and_hears_only_the_calls():
    calls = {2.0: (1.0, 0.0), 5.0: (1.0, 0.0), 6.0: (1.0, 0.0)}
    w = pd.concat(
        [grid_windows("r1", 10, scores=calls), grid_windows("r2", 5, scores={1.0: (0.0, 1.0)})], ignore_index=True
    )
    ref = table(("r1", 2, 3, "chimpanzee"), ("r1", 5, 7, "chimpanzee"), ("r2", 1, 2, "gorilla"))
    events = detect_events(w, CLASSES, 0.5)
    assert events[["recording", "begin", "end", "label"]].values.tolist() == ref.values.tolist()
    s = event_scores(events, ref).set_index("class")
    assert s[["precision", "recall", "f1"]].eq(1.0).all().all()
    curve = precision_recall_curve_events(w, ref, CLASSES)
    assert curve[["precision", "recall"]].eq(1.0).all().all()
    _, summary = listening_effort(w, ref)
    s = summary.set_index("recall_target")
    assert s.loc[1.0, "reviewed_fraction"] == pytest.approx(4 / 15)  # the calls' share of the 15 s
    # recall 0.5 comes earlier: windows 2..3 and 5..6 s (half of the 5..7 call is enough) are 2 s of 15
    assert s.loc[0.5, "reviewed_fraction"] == pytest.approx(2 / 15)


def test_recording_level_scores_by_hand():
    detections = pd.DataFrame(
        {
            "recording": ["f1.wav", "f1.wav", "f1.wav", "quiet.wav", "quiet.wav", "quiet.wav"],
            "begin": [0.0, 3.0, 6.0, 0.0, 3.0, 6.0],
            "end": [3.0, 6.0, 9.0, 3.0, 6.0, 9.0],
            "label": ["gibbon", "gibbon", "argus", "argus", "argus", "gibbon"],
        }
    )
    contents = {"f1.wav": "gibbon", "f2.wav": "argus", "quiet.wav": None}
    durations = {"f1.wav": 30.0, "f2.wav": 60.0, "quiet.wav": 1800.0}
    table = recording_level_scores(detections, contents, durations).set_index("recording")
    assert table.loc["f1.wav", ["n_detected", "n_correct", "n_false", "found"]].tolist() == [3, 2, 1, 1.0]
    assert table.loc["f2.wav", ["n_detected", "found"]].tolist() == [0, 0.0]
    assert table.loc["quiet.wav", "n_false"] == 3 and math.isnan(table.loc["quiet.wav", "found"])
    summary = recording_level_summary(table.reset_index())
    assert summary["false alarms per hour (no calls)"] == pytest.approx(6.0)  # 3 in half an hour
    assert summary["precision (focal)"] == pytest.approx(2 / 3)
    assert summary["species found (focal)"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no contents for other.wav"):
        recording_level_scores(detections.assign(recording="other.wav"), contents, durations)
