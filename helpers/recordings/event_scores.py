"""Event-based evaluation of detections against reference annotations, and the listening effort saved.

Tables: *detections* are events as :func:`helpers.recordings.detect.detect_events` gives them
(``recording``, ``begin``, ``end`` in s, ``label``); the *reference* is an annotation table as
:func:`helpers.data.annotations.read_annotations` gives it, or any table with those four columns.
Recordings must be named alike in both:
:func:`helpers.recordings.detect.align_recordings` renames the reference's recordings to the
scanned ones, matching by file stem or by path relative to the scanned folder.

**Matching rule** (that of DCASE 2021 task 5, few-shot bioacoustic event detection): a detection and
a reference event can match when they are in the same recording, have the same label and their
intersection over union in time is >= ``min_iou`` (default 0.3; 1e-9 s of slack for rounding).
Matching is one-to-one: per recording and label, the most pairs possible
(``scipy.optimize.linear_sum_assignment`` on the feasibility matrix), ties broken by the larger
total IoU. A detection spanning two reference events therefore matches at most one of them.

**Counts** (:func:`event_scores`): tp = matched pairs, fp = detections left unmatched, fn = reference
events left unmatched; precision = tp / detections (NaN when nothing was detected, not 0: there is
no precision to speak of), recall = tp / reference events (NaN without reference events),
f1 = 2 tp / (detections + reference events) (0 when one side is empty, NaN when both are).

**Listening effort** (:func:`listening_effort`): a person listens to the windows in decreasing
:func:`~helpers.recordings.detect.call_score`; how much of the scanned audio must they hear to
find a given share of the calls?
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from helpers.recordings.detect import call_classes, call_score, default_thresholds, detect_events, window_classes

__all__ = [
    "MATCH_COLUMNS",
    "RECORDING_LEVEL_COLUMNS",
    "SCORE_COLUMNS",
    "choose_threshold",
    "event_scores",
    "listening_effort",
    "match_events",
    "precision_at_recall",
    "precision_recall_curve_events",
    "recording_level_scores",
    "recording_level_summary",
]

#: Columns of :func:`match_events`: ``detection`` / ``reference`` are the rows' index labels.
MATCH_COLUMNS = ["recording", "label", "detection", "reference", "iou"]
#: Columns of :func:`event_scores`.
SCORE_COLUMNS = ["class", "n_reference", "n_detected", "tp", "fp", "fn", "precision", "recall", "f1"]
#: Columns of :func:`recording_level_scores`.
RECORDING_LEVEL_COLUMNS = ["recording", "holds", "duration_s", "n_detected", "n_correct", "n_false", "found"]
_IOU_SLACK = 1e-9


def _check(table: pd.DataFrame, what: str) -> None:
    missing = [c for c in ("recording", "begin", "end", "label") if c not in table.columns]
    if missing:
        raise ValueError(
            f"the {what} table lacks the column(s) {', '.join(missing)} (it has "
            f"{', '.join(map(str, table.columns))}); it needs recording, begin, end (s) and label."
        )


def _components(begin: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Cluster id per interval: intervals chained by overlap share one (IoU > 0 needs overlap, so
    the assignment is solved per cluster, small matrices instead of one large one)."""
    order = np.argsort(begin, kind="stable")
    reach = np.maximum.accumulate(end[order])
    starts = np.r_[True, begin[order][1:] > reach[:-1]]
    out = np.empty(len(begin), dtype=np.int64)
    out[order] = np.cumsum(starts)
    return out


def _iou(db: np.ndarray, de: np.ndarray, rb: np.ndarray, re_: np.ndarray) -> np.ndarray:
    """Intersection over union in time of intervals (broadcast); 0 where the union is empty."""
    inter = np.clip(np.minimum(de, re_) - np.maximum(db, rb), 0, None)
    union = (de - db) + (re_ - rb) - inter
    return np.divide(inter, union, out=np.zeros(np.shape(inter)), where=union > 0)


def _assign(
    db: np.ndarray, de: np.ndarray, rb: np.ndarray, re_: np.ndarray, min_iou: float
) -> list[tuple[int, int, float]]:
    """``(detection position, reference position, iou)`` of the matches among one recording and label."""
    cluster = _components(np.r_[db, rb], np.r_[de, re_])
    dc, rc = cluster[: len(db)], cluster[len(db) :]
    d_order, r_order = np.argsort(dc, kind="stable"), np.argsort(rc, kind="stable")
    common = np.intersect1d(dc, rc)
    d_lo, d_hi = np.searchsorted(dc[d_order], common), np.searchsorted(dc[d_order], common, "right")
    r_lo, r_hi = np.searchsorted(rc[r_order], common), np.searchsorted(rc[r_order], common, "right")
    # Most clusters hold one detection and one reference event: those are settled all at once.
    single = (d_hi - d_lo == 1) & (r_hi - r_lo == 1)
    i, j = d_order[d_lo[single]], r_order[r_lo[single]]
    iou = _iou(db[i], de[i], rb[j], re_[j])
    ok = iou >= min_iou - _IOU_SLACK
    pairs = list(zip(i[ok].tolist(), j[ok].tolist(), iou[ok].tolist()))
    for a0, a1, b0, b1 in zip(d_lo[~single], d_hi[~single], r_lo[~single], r_hi[~single]):
        i, j = d_order[a0:a1], r_order[b0:b1]
        iou = _iou(db[i, None], de[i, None], rb[None, j], re_[None, j])
        feasible = iou >= min_iou - _IOU_SLACK
        # Each pair is worth 1, plus a share of its IoU too small to ever outweigh one more pair.
        weight = np.where(feasible, 1 + iou / (min(len(i), len(j)) + 1), 0.0)
        pairs += [
            (int(i[a]), int(j[b]), float(iou[a, b]))
            for a, b in zip(*linear_sum_assignment(weight, maximize=True))
            if feasible[a, b]
        ]
    return pairs


def match_events(detections: pd.DataFrame, reference: pd.DataFrame, min_iou: float = 0.3) -> pd.DataFrame:
    """One-to-one matches of detections to reference events (module docstring's rule).

    Returns:
        Columns :data:`MATCH_COLUMNS`: ``recording``, ``label``, ``detection`` and ``reference`` (the
        index labels of the matched rows of each table) and ``iou`` (float in [min_iou, 1]); sorted by
        recording, label, detection.
    """
    if not 0 < min_iou <= 1:
        raise ValueError(f"min_iou must be in (0, 1], not {min_iou!r} (0 would match any two events of a recording).")
    _check(detections, "detections")
    _check(reference, "reference")
    refs = {
        key: g
        for key, g in reference.groupby(
            [reference["recording"].astype(str), reference["label"].astype(str)], sort=False
        )
    }
    rows: list[tuple] = []
    for key, det in detections.groupby([detections["recording"].astype(str), detections["label"].astype(str)]):
        ref = refs.get(key)
        if ref is not None:
            pairs = _assign(
                det["begin"].to_numpy(float),
                det["end"].to_numpy(float),
                ref["begin"].to_numpy(float),
                ref["end"].to_numpy(float),
                min_iou,
            )
            rows += [(*key, det.index[i], ref.index[j], iou) for i, j, iou in pairs]
    out = pd.DataFrame(rows, columns=MATCH_COLUMNS)
    return out.sort_values(["recording", "label", "detection"], kind="stable").reset_index(drop=True)


def event_scores(
    detections: pd.DataFrame, reference: pd.DataFrame, classes: Sequence[str] | None = None, min_iou: float = 0.3
) -> pd.DataFrame:
    """Per class counts and precision / recall / F1 of the detections (rules in the module docstring).

    Args:
        classes: the classes to score, in row order; default every label of either table, sorted.
            Rows of other labels (a reference's background or ``?`` selections) are left out.

    Returns:
        Columns :data:`SCORE_COLUMNS`, one row per class and a last row ``all`` (micro: the counts
        summed over the classes, and the ratios of those sums). Counts are int; precision is NaN
        when nothing was detected, recall when there is no reference event, f1 when neither.
    """
    _check(detections, "detections")
    _check(reference, "reference")
    det_labels, ref_labels = detections["label"].astype(str), reference["label"].astype(str)
    if classes is None:
        classes = sorted(set(det_labels) | set(ref_labels))
    classes = [str(c) for c in classes]
    if "all" in classes:
        raise ValueError("a class is called 'all', the name of the totals row; rename it.")
    det, ref = detections[det_labels.isin(classes)], reference[ref_labels.isin(classes)]
    matches = match_events(det, ref, min_iou)
    table = pd.DataFrame({"class": classes})
    table["n_reference"] = [int((ref_labels == c).sum()) for c in classes]
    table["n_detected"] = [int((det_labels == c).sum()) for c in classes]
    table["tp"] = [int((matches["label"] == c).sum()) for c in classes]
    totals = table[["n_reference", "n_detected", "tp"]].sum()
    table.loc[len(table)] = ["all", int(totals["n_reference"]), int(totals["n_detected"]), int(totals["tp"])]
    table["fp"] = table["n_detected"] - table["tp"]
    table["fn"] = table["n_reference"] - table["tp"]
    tp, n_det, n_ref = (table[c].to_numpy(float) for c in ("tp", "n_detected", "n_reference"))
    with np.errstate(divide="ignore", invalid="ignore"):
        table["precision"] = np.where(n_det > 0, tp / n_det, np.nan)
        table["recall"] = np.where(n_ref > 0, tp / n_ref, np.nan)
        table["f1"] = np.where(n_det + n_ref > 0, 2 * tp / (n_det + n_ref), np.nan)
    return table[SCORE_COLUMNS]


def recording_level_scores(
    detections: pd.DataFrame,
    contents: dict[str, str | None],
    durations: dict[str, float],
    background: str = "background",
) -> pd.DataFrame:
    """Detections scored with what each recording holds, not where its calls are: ``contents`` maps a
    recording name to its one call class (a focal recording) or None (a soundscape without calls);
    ``durations`` gives each recording's length in seconds. Per recording (columns
    :data:`RECORDING_LEVEL_COLUMNS`): the detections, those of the class it holds (``n_correct``; at the
    recording's level: one may fall between two calls), the others (``n_false``: certainly false alarms),
    and ``found``, whether a recording with a call class got at least one detection of it (NaN for one
    without). Detections of recordings not in ``contents`` are an error."""
    _check(detections, "detections")
    unknown = sorted(set(detections["recording"].astype(str)) - set(map(str, contents)))
    if unknown:
        raise ValueError(f"recording-level scores: no contents for {', '.join(unknown)}; add them to contents")
    rows = []
    for name, held in contents.items():
        labels = detections.loc[detections["recording"].astype(str) == str(name), "label"].astype(str)
        calls = held is not None and str(held) != background
        correct = int((labels == str(held)).sum()) if calls else 0
        rows.append(
            {
                "recording": str(name),
                "holds": str(held) if calls else "",
                "duration_s": float(durations[name]),
                "n_detected": int(len(labels)),
                "n_correct": correct,
                "n_false": int(len(labels)) - correct,
                "found": float(correct > 0) if calls else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=RECORDING_LEVEL_COLUMNS)


def recording_level_summary(table: pd.DataFrame) -> dict[str, float]:
    """Three figures of a :func:`recording_level_scores` table: false alarms per hour in the recordings
    without calls, the share of right-class detections in those with one (NaN when they have none), and the
    share of those recordings whose class was detected at least once."""
    quiet, focal = table[table["holds"] == ""], table[table["holds"] != ""]
    hours = quiet["duration_s"].sum() / 3600.0
    detected = focal["n_detected"].sum()
    return {
        "false alarms per hour (no calls)": float(quiet["n_detected"].sum() / hours) if hours > 0 else np.nan,
        "precision (focal)": float(focal["n_correct"].sum() / detected) if detected else np.nan,
        "species found (focal)": float(focal["found"].mean()) if len(focal) else np.nan,
    }


def precision_recall_curve_events(
    windows: pd.DataFrame,
    reference: pd.DataFrame,
    classes: Sequence[str],
    thresholds: Sequence[float] | None = None,
    background: str | None = "background",
    min_iou: float = 0.3,
    merge_gap: float = 0.0,
    score_from: str = "class",
) -> pd.DataFrame:
    """Event precision / recall at each threshold: :func:`detect_events` then :func:`event_scores` on
    the non-background classes (reference rows of other labels are left out). ``score_from``: the
    detection score that is thresholded (:func:`~helpers.recordings.detect.detection_scores`).

    Returns:
        Columns ``threshold, class, precision, recall, f1, n_detected``; per threshold (ascending)
        one row per call class and one ``all`` row. ``thresholds`` default:
        :func:`~helpers.recordings.detect.default_thresholds`. About 0.2 s per threshold for 1e5
        windows and 1e4 reference events.
    """
    calls = call_classes(classes, background)
    if thresholds is None:
        thresholds = default_thresholds(windows, classes, background, score_from=score_from)
    parts = []
    for t in thresholds:
        events = detect_events(windows, classes, float(t), background, merge_gap, score_from)
        scores = event_scores(events, reference, calls, min_iou)
        scores.insert(0, "threshold", float(t))
        parts.append(scores[["threshold", "class", "precision", "recall", "f1", "n_detected"]])
    return pd.concat(parts, ignore_index=True)


def precision_at_recall(curve: pd.DataFrame, recalls: Sequence[float], row: str = "all") -> pd.DataFrame:
    """Interpolated precision of a :func:`precision_recall_curve_events` table at given recalls: per
    target recall ``r``, the highest precision over the thresholds whose recall is >= ``r``, with the
    recall and threshold where it is reached (the convention of the VOC and COCO precision-recall
    summaries: a detector may always be run at the threshold that serves a recall best).

    ``row``: the curve's class row to read (``"all"``: every call class together). Returns columns
    ``recall_target``, ``precision``, ``recall``, ``threshold``; NaN where no threshold reaches
    the target recall.
    """
    part = curve[curve["class"].astype(str) == str(row)]
    if part.empty:
        raise ValueError(
            f"precision_at_recall: the curve has no rows of class {row!r}; its classes are "
            f"{sorted(set(curve['class'].astype(str)))}."
        )
    rows = []
    for target in recalls:
        reached = part[part["recall"] >= float(target) - 1e-12].dropna(subset=["precision"])
        if reached.empty:
            rows.append((float(target), np.nan, np.nan, np.nan))
            continue
        best = reached.sort_values(["precision", "threshold"], ascending=[False, False], kind="stable").iloc[0]
        rows.append((float(target), float(best["precision"]), float(best["recall"]), float(best["threshold"])))
    return pd.DataFrame(rows, columns=["recall_target", "precision", "recall", "threshold"])


def _found_steps(
    windows: pd.DataFrame, step: np.ndarray, ref: pd.DataFrame, min_coverage: float, gain: np.ndarray
) -> tuple[np.ndarray, float]:
    """Per reference event, the review step (0-based) at which it counts as found (len(step) when never);
    adds to ``gain[s]`` the seconds step ``s`` newly covers. Returns (steps, total scanned seconds).

    Per recording, the timeline is cut at every window and event boundary; each piece gets the first
    step whose window covers it, so coverage after any step is a sum over pieces (no re-scanning)."""
    never = len(step)
    found = np.full(len(ref), never, dtype=np.int64)
    total = 0.0
    ref_groups = {k: g for k, g in ref.groupby(ref["recording"].astype(str), sort=False)}
    for rec, w in windows.groupby(windows["recording"].astype(str), sort=False):
        wb, we, ws = w["begin"].to_numpy(float), w["end"].to_numpy(float), step[w.index.to_numpy()]
        ev = ref_groups.get(rec, ref.iloc[:0])
        eb, ee = ev["begin"].to_numpy(float), ev["end"].to_numpy(float)
        edges = np.unique(np.r_[wb, we, eb, ee])
        length = np.diff(edges)
        first = np.full(len(length), never, dtype=np.int64)
        a, z = np.searchsorted(edges, wb), np.searchsorted(edges, we)
        counts = z - a
        pieces = np.repeat(a, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        np.minimum.at(first, pieces, np.repeat(ws, counts))
        covered = first < never
        np.add.at(gain, first[covered], length[covered])
        total += float(length[covered].sum())
        for n, (b, e) in zip(ev["_row"].to_numpy(), zip(eb, ee)):
            i, j = np.searchsorted(edges, b), np.searchsorted(edges, e)
            steps = np.sort(first[i:j], kind="stable")
            heard = np.cumsum(length[i:j][np.argsort(first[i:j], kind="stable")])
            reached = np.flatnonzero(heard >= min_coverage * (e - b) - _IOU_SLACK)
            if len(reached):  # pieces never heard carry step `never`, so this stays `never` when unheard
                found[n] = steps[reached[0]]
    return found, total


def listening_effort(
    windows: pd.DataFrame,
    reference: pd.DataFrame,
    recall_targets: Sequence[float] = (0.5, 0.8, 0.9, 1.0),
    classes: Sequence[str] | None = None,
    background: str | None = "background",
    min_coverage: float = 0.5,
    score_from: str = "class",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How much audio a person must hear, listening to windows in decreasing call score, to find the calls.

    The windows are reviewed in decreasing :func:`~helpers.recordings.detect.call_score` (ties:
    by recording, then begin); the audio heard is the union of the reviewed windows' spans. A
    reference event of any label but ``background`` (all of one class, whichever) counts as found
    once that union covers at least ``min_coverage`` of its duration. Events of recordings that were
    not scanned can never be found (they keep recall below 1; a warning names them).

    Args:
        windows: the window table (:mod:`helpers.recordings.detect`); ``classes`` default: its
            ``score_<class>`` columns.
        reference: annotations with recording (named as in ``windows``), begin, end (s), label.
        recall_targets: the shares of reference events (in (0, 1]) the summary reports.
        min_coverage: share of an event's duration (in (0, 1]) that must have been heard.
        score_from: the call score windows are ranked by, ``"class"`` or ``"call"`` (a call head's
            P(call)); see :func:`~helpers.recordings.detect.detection_scores`.

    Returns:
        ``(curve, summary)``. ``curve``: one row per reviewed window in review order, columns
        ``rank`` (1-based), ``recording``, ``begin``, ``end``, ``call_score``, ``reviewed_seconds``
        (s heard so far), ``reviewed_fraction`` (of all scanned audio, the union of all windows),
        ``events_found``, ``recall`` (NaN without reference events). ``summary``: one row per target,
        columns ``recall_target``, ``windows_reviewed``, ``reviewed_seconds``, ``reviewed_fraction``,
        ``time_saved`` (= 1 - reviewed_fraction), ``note``; NaN (and a note) when never reached.

    Cost: one sort of the windows and one pass over the timeline pieces per recording (O(n log n));
    each event then looks only at its own pieces, so 1e5 windows and 1e4 events are fine.
    """
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage must be in (0, 1], not {min_coverage!r}.")
    targets = [float(t) for t in recall_targets]
    if any(not 0 < t <= 1 for t in targets):
        raise ValueError(f"recall targets must be in (0, 1], got {targets}.")
    _check(reference, "reference")
    classes = window_classes(windows) if classes is None else list(classes)
    score = call_score(windows, classes, background, score_from)
    w = windows.reset_index(drop=True)
    order = np.lexsort((w["begin"].to_numpy(float), w["recording"].astype(str).to_numpy(), -score))
    step = np.empty(len(w), dtype=np.int64)
    step[order] = np.arange(len(w))
    keep = reference["label"].astype(str) != str(background) if background is not None else reference["label"].notna()
    ref = reference[keep].reset_index(drop=True)
    bad = ~(ref["end"].astype(float) > ref["begin"].astype(float))
    if bad.any():
        raise ValueError(
            f"reference row {int(bad.argmax())} (of the non-background rows) has end <= begin "
            f"({ref.at[int(bad.argmax()), 'begin']!r}..{ref.at[int(bad.argmax()), 'end']!r}); "
            "correct or drop it."
        )
    ref = ref.assign(_row=np.arange(len(ref)))
    lost = sorted(set(ref["recording"].astype(str)) - set(w["recording"].astype(str)))
    if lost:
        warnings.warn(
            f"{len(lost)} reference recording(s) were not scanned and their events count as never "
            f"found: {', '.join(lost[:5])}; name recordings alike (align_recordings).",
            stacklevel=2,
        )
    gain = np.zeros(len(w) + 1)
    found, total = _found_steps(w, step, ref, min_coverage, gain)
    n_found = np.cumsum(np.bincount(found, minlength=len(w) + 1)[: len(w)])
    reviewed = np.cumsum(gain[: len(w)])
    curve = pd.DataFrame(
        {
            "rank": np.arange(1, len(w) + 1),
            "recording": w["recording"].to_numpy()[order],
            "begin": w["begin"].to_numpy(float)[order],
            "end": w["end"].to_numpy(float)[order],
            "call_score": score[order],
            "reviewed_seconds": reviewed,
            "reviewed_fraction": reviewed / total if total > 0 else np.full(len(w), np.nan),
            "events_found": n_found,
            "recall": n_found / len(ref) if len(ref) else np.full(len(w), np.nan),
        }
    )
    rows = []
    for t in targets:
        hit = np.flatnonzero(curve["recall"].to_numpy() >= t - 1e-12)
        if len(hit):
            k = hit[0]
            frac = float(curve["reviewed_fraction"].iat[k])
            rows.append((t, k + 1, float(curve["reviewed_seconds"].iat[k]), frac, 1 - frac, ""))
        else:
            why = (
                "no reference events"
                if not len(ref)
                else f"never reached: at most {curve['recall'].max() if len(w) else 0:.3f} of {len(ref)} events are "
                f"covered >= {min_coverage:g} by the scanned windows"
            )
            rows.append((t, pd.NA, np.nan, np.nan, np.nan, why))
    summary = pd.DataFrame(
        rows,
        columns=["recall_target", "windows_reviewed", "reviewed_seconds", "reviewed_fraction", "time_saved", "note"],
    )
    summary["windows_reviewed"] = summary["windows_reviewed"].astype("Int64")
    return curve, summary


def choose_threshold(curve: pd.DataFrame, per_class: bool = False) -> float | dict[str, float]:
    """The detection threshold with the highest event F1 on a :func:`precision_recall_curve_events` table.

    Meant for a recording *other* than the one the threshold is then reported on (a semi-synthetic
    recording of the devel split, say, when the test split's reports it): chosen on the recording it
    is scored on, the F1 would be the best of many tries, an optimistic figure. ``per_class``: one
    threshold per call class (each its own best F1) instead of one for all (the ``all`` row). Ties:
    the highest threshold (the fewest detections to listen to). A class whose F1 is NaN or 0 at every
    threshold (never detected, or no calls of it) gets the highest threshold tried."""

    def best(rows: pd.DataFrame) -> float:
        f1 = rows["f1"].fillna(-1.0).to_numpy()
        thresholds = rows["threshold"].to_numpy(float)
        if not len(rows):
            raise ValueError("choose_threshold: the curve has no rows; scan a recording with calls first.")
        top = f1.max()
        return float(thresholds[f1 == top].max()) if top > 0 else float(thresholds.max())

    if not per_class:
        return best(curve[curve["class"].astype(str) == "all"])
    classes = [c for c in curve["class"].astype(str).unique() if c != "all"]
    return {c: best(curve[curve["class"].astype(str) == c]) for c in classes}
