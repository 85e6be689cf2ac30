"""Thresholding window scores and merging windows into events (helpers.recordings.detect).

The window tables are written by hand (2-s windows, 1-s hop unless said otherwise) and the expected
events worked out from the module's rules; a loop written straight from those rules checks the
vectorised code on random tables.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from helpers.recordings.detect import (
    EVENT_COLUMNS,
    call_classes,
    call_score,
    detect_events,
    detection_scores,
    window_classes,
    window_scores_columns,
)

CLASSES = ["background", "chimpanzee", "gorilla"]


def windows(
    rec: str, rows: list[tuple[float, float]], win: float = 2.0, hop: float = 1.0, last_end: float | None = None
) -> pd.DataFrame:
    """One window per (chimpanzee, gorilla) score pair, background = 1 - their sum (clipped)."""
    n = len(rows)
    begin = np.arange(n) * hop
    end = begin + win
    if last_end is not None:
        end[-1] = last_end
    chimp = np.array([r[0] for r in rows], dtype=float)
    gorilla = np.array([r[1] for r in rows], dtype=float)
    return pd.DataFrame(
        {
            "recording": rec,
            "begin": begin,
            "end": end,
            "score_background": np.clip(1 - chimp - gorilla, 0, 1),
            "score_chimpanzee": chimp,
            "score_gorilla": gorilla,
        }
    )


def as_tuples(events: pd.DataFrame) -> list[tuple]:
    return [
        (r.recording, round(r.begin, 9), round(r.end, 9), r.label, round(r.score, 9), r.n_windows)
        for r in events.itertuples()
    ]


def test_column_helpers():
    assert window_scores_columns(CLASSES) == ["score_background", "score_chimpanzee", "score_gorilla"]
    assert window_classes(windows("a.wav", [(0.1, 0.1)])) == CLASSES
    assert call_classes(CLASSES) == ["chimpanzee", "gorilla"]
    assert call_classes(CLASSES, None) == CLASSES


def test_overlapping_windows_of_one_class_merge_and_keep_the_maximum_score():
    w = windows("site1/a.wav", [(0.1, 0.0), (0.6, 0.1), (0.9, 0.0), (0.7, 0.2), (0.2, 0.1), (0.1, 0.8)], last_end=6.5)
    events = detect_events(w, CLASSES, threshold=0.5)
    assert list(events.columns) == EVENT_COLUMNS
    # windows 1-3 (1..3, 2..4, 3..5 s) are chimpanzee; window 5 (5..6.5 s, shorter: the file ends) gorilla
    assert as_tuples(events) == [
        ("site1/a.wav", 1.0, 5.0, "chimpanzee", 0.9, 3),
        ("site1/a.wav", 5.0, 6.5, "gorilla", 0.8, 1),
    ]
    assert events["n_windows"].dtype == np.int64


def test_a_window_below_threshold_breaks_a_run_even_when_the_detections_overlap():
    # hop 1 s, windows 3 s: windows 0 (0..3) and 2 (2..5) overlap, window 1 (1..4) is below threshold
    w = windows("a.wav", [(0.9, 0), (0.3, 0), (0.8, 0)], win=3.0)
    events = detect_events(w, CLASSES, 0.5)
    assert as_tuples(events) == [("a.wav", 0.0, 3.0, "chimpanzee", 0.9, 1), ("a.wav", 2.0, 5.0, "chimpanzee", 0.8, 1)]


def test_a_window_of_another_class_does_not_break_a_run():
    w = windows("a.wav", [(0.9, 0), (0.1, 0.8), (0.7, 0)])
    events = detect_events(w, CLASSES, 0.5)
    assert as_tuples(events) == [("a.wav", 0.0, 4.0, "chimpanzee", 0.9, 2), ("a.wav", 1.0, 3.0, "gorilla", 0.8, 1)]


def test_touching_windows_merge_and_merge_gap_bridges_gaps_in_the_coverage():
    # hop = window = 2.99 s: i * hop and (i - 1) * hop + window differ by float rounding only, and
    # in one pair of three the begin comes out past the previous end (checked below)
    w = windows("a.wav", [(0.9, 0)] + [(0.8, 0)] * 199, win=2.99, hop=2.99)
    assert (w["begin"].to_numpy()[1:] > w["end"].to_numpy()[:-1]).any()
    assert as_tuples(detect_events(w, CLASSES, 0.5)) == [("a.wav", 0.0, 598.0, "chimpanzee", 0.9, 200)]
    gappy = windows("a.wav", [(0.9, 0), (0.8, 0)], win=2.0, hop=3.0)  # 0..2 and 3..5: 1 s of no window
    assert len(detect_events(gappy, CLASSES, 0.5)) == 2
    assert len(detect_events(gappy, CLASSES, 0.5, merge_gap=0.5)) == 2
    assert as_tuples(detect_events(gappy, CLASSES, 0.5, merge_gap=1.0)) == [("a.wav", 0.0, 5.0, "chimpanzee", 0.9, 2)]
    with pytest.raises(ValueError, match="merge_gap"):
        detect_events(gappy, CLASSES, 0.5, merge_gap=-1)


def test_recordings_are_kept_apart_and_sorted_whatever_the_row_order():
    w = pd.concat([windows("b.wav", [(0.9, 0), (0.9, 0)]), windows("a.wav", [(0.6, 0), (0.6, 0)])])
    w = w.sample(frac=1.0, random_state=0)  # shuffled rows
    events = detect_events(w, CLASSES, 0.5)
    assert as_tuples(events) == [("a.wav", 0.0, 3.0, "chimpanzee", 0.6, 2), ("b.wav", 0.0, 3.0, "chimpanzee", 0.9, 2)]
    assert list(events.index) == [0, 1]


def test_threshold_per_class_and_its_errors():
    w = windows("a.wav", [(0.6, 0.0), (0.0, 0.3), (0.0, 0.3)], win=1.0)
    events = detect_events(w, CLASSES, {"chimpanzee": 0.7, "gorilla": 0.25})
    assert as_tuples(events) == [("a.wav", 1.0, 3.0, "gorilla", 0.3, 2)]
    with pytest.raises(ValueError, match="no value for the class.*gorilla"):
        detect_events(w, CLASSES, {"chimpanzee": 0.7})
    with pytest.raises(ValueError, match="gorila"):
        detect_events(w, CLASSES, {"chimpanzee": 0.7, "gorilla": 0.2, "gorila": 0.2})
    # the background may be given a threshold: it is simply not used
    assert len(detect_events(w, CLASSES, {"background": 0.1, "chimpanzee": 0.7, "gorilla": 0.25})) == 1


def test_the_threshold_is_inclusive_and_the_background_score_is_not_consulted():
    w = windows("a.wav", [(0.4, 0.0)])
    w["score_background"] = 0.6
    assert as_tuples(detect_events(w, CLASSES, 0.4)) == [("a.wav", 0.0, 2.0, "chimpanzee", 0.4, 1)]
    assert detect_events(w, CLASSES, 0.41).empty


def test_ties_go_to_the_class_listed_first():
    w = windows("a.wav", [(0.5, 0.5)])
    assert detect_events(w, CLASSES, 0.5)["label"].tolist() == ["chimpanzee"]


def test_without_a_background_class_every_class_is_detected():
    w = windows("a.wav", [(0.1, 0.0)])  # background score 0.9
    assert detect_events(w, CLASSES, 0.5, background=None)["label"].tolist() == ["background"]
    with pytest.raises(ValueError, match="background class 'noise' is not one of"):
        detect_events(w, CLASSES, 0.5, background="noise")


def test_empty_tables_give_empty_events_with_the_columns():
    empty = windows("a.wav", [])
    events = detect_events(empty, CLASSES)
    assert events.empty and list(events.columns) == EVENT_COLUMNS
    assert detect_events(windows("a.wav", [(0.1, 0.1)]), CLASSES).columns.tolist() == EVENT_COLUMNS
    assert call_score(empty, CLASSES).shape == (0,)


def test_missing_columns_and_missing_scores_are_named():
    w = windows("a.wav", [(0.9, 0.0)]).drop(columns="score_gorilla")
    with pytest.raises(ValueError, match="score_gorilla"):
        detect_events(w, CLASSES)
    w = windows("a.wav", [(0.9, 0.0), (0.1, np.nan)])
    with pytest.raises(ValueError, match="row 1.*score_gorilla"):
        detect_events(w, CLASSES)


def test_call_score_is_the_best_non_background_score_in_row_order():
    w = windows("a.wav", [(0.2, 0.7), (0.1, 0.0), (0.5, 0.5)])
    np.testing.assert_allclose(call_score(w, CLASSES), [0.7, 0.1, 0.5])
    np.testing.assert_allclose(call_score(w, CLASSES, background=None), [0.7, 0.9, 0.5])


def test_call_head_score_is_one_minus_background_and_keeps_the_best_species_label():
    # background is given by hand so that P(call) = 1 - background differs from the best species score
    w = windows("a.wav", [(0.3, 0.3), (0.2, 0.1), (0.45, 0.5), (0.1, 0.05)])
    w["score_background"] = [0.2, 0.7, 0.05, 0.3]
    best, score = detection_scores(w, CLASSES, score_from="call")
    assert best.tolist() == [0, 0, 1, 0]  # species arg-max, ties to the first listed
    np.testing.assert_allclose(score, [0.8, 0.3, 0.95, 0.7])
    np.testing.assert_allclose(call_score(w, CLASSES, score_from="call"), [0.8, 0.3, 0.95, 0.7])
    # by class score nothing passes 0.5 but window 2; by P(call) windows 0 and 2-3 (window 1 breaks the run)
    assert as_tuples(detect_events(w, CLASSES, threshold=0.5)) == [("a.wav", 2.0, 4.0, "gorilla", 0.5, 1)]
    assert as_tuples(detect_events(w, CLASSES, threshold=0.5, score_from="call")) == [
        ("a.wav", 0.0, 2.0, "chimpanzee", 0.8, 1),
        ("a.wav", 2.0, 4.0, "gorilla", 0.95, 1),
        ("a.wav", 3.0, 5.0, "chimpanzee", 0.7, 1),
    ]
    with pytest.raises(ValueError, match="background=None says the model has no background class"):
        detect_events(w, CLASSES, background=None, score_from="call")
    with pytest.raises(ValueError, match="score_from must be one of class, call"):
        call_score(w, CLASSES, score_from="species")


def loop_detect(w: pd.DataFrame, threshold: float, merge_gap: float) -> list[tuple]:
    """The module's rules, one window at a time."""
    calls = ["chimpanzee", "gorilla"]
    out = []
    for rec, g in w.sort_values(["recording", "begin"], kind="stable").groupby("recording"):
        open_events: dict[str, list] = {}  # class -> [begin, end, score, n]
        for r in g.itertuples():
            scores = [getattr(r, f"score_{c}") for c in calls]
            k = int(np.argmax(scores))
            if scores[k] < threshold:  # closes every open event
                out += [(rec, e[0], e[1], c, e[2], e[3]) for c, e in open_events.items()]
                open_events = {}
                continue
            c, e = calls[k], open_events.get(calls[k])
            if e is not None and r.begin <= e[1] + merge_gap + 1e-6:
                e[1], e[2], e[3] = max(e[1], r.end), max(e[2], scores[k]), e[3] + 1
            else:
                if e is not None:
                    out.append((rec, e[0], e[1], c, e[2], e[3]))
                open_events[c] = [r.begin, r.end, scores[k], 1]
        out += [(rec, e[0], e[1], c, e[2], e[3]) for c, e in open_events.items()]
    return sorted((a, round(b, 9), round(c, 9), d, round(e, 9), f) for a, b, c, d, e, f in out)


@pytest.mark.parametrize("merge_gap", [0.0, 1.5])
def test_the_vectorised_code_agrees_with_a_loop_on_random_tables(merge_gap):
    rng = np.random.default_rng(1)
    parts = []
    for rec in ("x.wav", "y.wav", "z.wav"):
        scores = rng.dirichlet([1.0, 0.6, 0.6], size=400)
        w = windows(rec, [(s[1], s[2]) for s in scores], win=2.0, hop=rng.choice([1.0, 3.0]))
        parts.append(w.drop(index=rng.choice(400, 40, replace=False)))  # gaps in the coverage
    w = pd.concat(parts, ignore_index=True)
    events = detect_events(w, CLASSES, 0.45, merge_gap=merge_gap)
    assert sorted(as_tuples(events)) == loop_detect(w, 0.45, merge_gap)
    assert (events["end"] > events["begin"]).all()


def test_a_hundred_thousand_windows_take_well_under_a_few_seconds():
    rng = np.random.default_rng(0)
    n = 100_000
    scores = rng.dirichlet([1.0, 0.5, 0.5], size=n)
    w = windows("long.wav", [(0.0, 0.0)] * n)
    w[["score_background", "score_chimpanzee", "score_gorilla"]] = scores
    w["recording"] = np.where(np.arange(n) < n // 2, "a.wav", "b.wav")
    start = time.perf_counter()
    events = detect_events(w, CLASSES, 0.5)
    assert time.perf_counter() - start < 5.0
    assert events["n_windows"].sum() == int((np.maximum(scores[:, 1], scores[:, 2]) >= 0.5).sum())


def test_max_windows_cuts_a_long_run_into_pieces():
    w = windows("a.wav", [(0.6, 0.0), (0.9, 0.0), (0.7, 0.0), (0.8, 0.0), (0.6, 0.0), (0.1, 0.0), (0.7, 0.0)])
    assert as_tuples(detect_events(w, CLASSES, threshold=0.5)) == [
        ("a.wav", 0.0, 6.0, "chimpanzee", 0.9, 5),
        ("a.wav", 6.0, 8.0, "chimpanzee", 0.7, 1),
    ]
    # five windows in pieces of two: 0..3 (windows 0-1), 2..5 (2-3), 4..6 (4); the run after the gap stays one
    assert as_tuples(detect_events(w, CLASSES, threshold=0.5, max_windows=2)) == [
        ("a.wav", 0.0, 3.0, "chimpanzee", 0.9, 2),
        ("a.wav", 2.0, 5.0, "chimpanzee", 0.8, 2),
        ("a.wav", 4.0, 6.0, "chimpanzee", 0.6, 1),
        ("a.wav", 6.0, 8.0, "chimpanzee", 0.7, 1),
    ]
    with pytest.raises(ValueError, match="max_windows"):
        detect_events(w, CLASSES, max_windows=0)
