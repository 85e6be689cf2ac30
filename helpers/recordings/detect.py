"""From the window scores of a scan to detected events: thresholding and merging overlapping windows.

The input is a **window table** (as :mod:`helpers.recordings.scan` writes it): one row per analysis
window, columns ``recording`` (str, the recording's path relative to the scanned folder),
``begin``, ``end`` (float, seconds from the recording's start; the last window of a file may be
shorter) and one ``score_<class>`` column per class (float in [0, 1]). One class may be the
*background* (reject) class, normally ``"background"``: it is never detected.

Rules (:func:`detect_events`):

* **Detection.** A window is a detection of class ``c`` when ``c`` is its best non-background class
  (highest score; ties go to the class listed first) and its *detection score* is >= ``c``'s
  threshold. The detection score (``score_from``) is by default (``"class"``) that class's own
  score; the background score is then not consulted: with softmax scores a call class above 0.5 is
  the arg-max anyway, and a lower threshold is meant to let calls through that background
  outscores. With ``score_from="call"`` it is the probability that the window holds *any* call,
  ``1 - score_background``: for a model with a call head (``hierarchy="multitask"``) exactly its
  call head's P(call), whose class scores are P(call) x P(species | call); the label is still the
  best call class. ``scan`` uses ``"call"`` for such models by default.
* **Merging.** Within one recording, windows in ``begin`` order: detections of the same class merge
  into one event when the next one begins no later than the event's end + ``merge_gap`` (overlap or
  touch, :data:`TIME_TOLERANCE` of slack for rounding) and no window that is *not* a detection lies
  between them (such a window breaks the run; a window detected as another class does not).
  ``merge_gap`` therefore bridges gaps in the window coverage only (hop longer than the window,
  windows left out), never a stretch the model scored below threshold.
* **Event.** ``begin`` = its first window's begin, ``end`` = its last window's end (the latest end),
  ``score`` = the **maximum** detection score over its windows, ``n_windows`` = windows merged.

:func:`call_score` is the class-agnostic score used to rank windows for listening, the detection
score above: the maximum over the non-background classes (``"class"``) or ``1 - score_background``
(``"call"``); :func:`default_thresholds` the thresholds a precision-recall sweep tries.

Recordings: a window table names them by their path relative to the scanned folder
(``site1/rec.wav``), annotations often otherwise (an absolute path, a Raven ``Begin Path`` from
another machine). :func:`align_recordings` renames a reference table's recordings to the scanned
ones, comparing them by :func:`recording_key` (file stem, or path relative to the scanned folder).

Everything is vectorised with numpy/pandas (one sort and a few group-bys): 1e5+ windows take a
fraction of a second.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

__all__ = [
    "DETECTION_SCORES",
    "EVENT_COLUMNS",
    "TIME_TOLERANCE",
    "align_recordings",
    "call_classes",
    "call_score",
    "default_thresholds",
    "detect_events",
    "detection_scores",
    "recording_key",
    "window_classes",
    "window_scores_columns",
]

#: What a window's detection score is (module docstring): ``"class"``, the best call class's score;
#: ``"call"``, ``1 - score_background``, the probability of any call (a call head's P(call)).
DETECTION_SCORES = ("class", "call")

#: Columns of the events table :func:`detect_events` returns, in order.
EVENT_COLUMNS = ["recording", "begin", "end", "label", "score", "n_windows"]
#: Seconds of slack when deciding that two windows touch: window times computed as ``i * hop`` and
#: ``i * hop + length`` differ from each other by float rounding (~1e-15 s), which must not split events.
TIME_TOLERANCE = 1e-6
_SCORE_PREFIX = "score_"


def window_scores_columns(classes: Sequence[str]) -> list[str]:
    """The score columns of a window table for ``classes``: ``["score_<class>", ...]``, in order."""
    return [f"{_SCORE_PREFIX}{c}" for c in classes]


def window_classes(windows: pd.DataFrame) -> list[str]:
    """The classes a window table holds scores for (its ``score_<class>`` columns, in column order)."""
    return [str(c)[len(_SCORE_PREFIX) :] for c in windows.columns if str(c).startswith(_SCORE_PREFIX)]


def call_classes(classes: Sequence[str], background: str | None = "background") -> list[str]:
    """``classes`` without the background class, checking that ``background`` is one of them.

    Raises ValueError when ``background`` is not in ``classes`` (a typo would otherwise make the
    reject class detectable) or when no call class is left.
    """
    classes = [str(c) for c in classes]
    if background is not None and background not in classes:
        raise ValueError(
            f"background class {background!r} is not one of the classes {classes}; pass the "
            "reject class's name as background=, or background=None if the model has none."
        )
    calls = [c for c in classes if c != background]
    if not calls:
        raise ValueError(f"no class to detect: the classes {classes} hold only the background class {background!r}.")
    return calls


def _row(index: object) -> object:
    """A row's index label as shown in an error: ``3``, not ``np.int64(3)``."""
    return index.item() if hasattr(index, "item") else index


def _scores(windows: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """The ``(n_windows, len(classes))`` float array of the classes' score columns, after checks."""
    needed = ["recording", "begin", "end", *window_scores_columns(classes)]
    missing = [c for c in needed if c not in windows.columns]
    if missing:
        raise ValueError(
            f"the window table lacks the column(s) {', '.join(missing)} (it has "
            f"{', '.join(map(str, windows.columns))}); pass the classes the scan was run with "
            "(window_classes(windows) lists them) or a table written by the scan command."
        )
    scores = windows[window_scores_columns(classes)].to_numpy(dtype=float)
    bad = np.isnan(scores)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"the window table has no score (NaN) in row {_row(windows.index[row])!r}, column "
            f"score_{classes[col]} ({int(bad.any(axis=1).sum())} row(s) in all); scan those "
            "recordings again, or drop the rows."
        )
    return scores


def detection_scores(
    windows: pd.DataFrame, classes: Sequence[str], background: str | None = "background", score_from: str = "class"
) -> tuple[np.ndarray, np.ndarray]:
    """Per window, its best call class and its detection score (module docstring), in the table's row
    order: ``(best, score)``, ``best`` the index into :func:`call_classes` (int, ties to the class
    listed first), ``score`` float in [0, 1], both shape ``(n_windows,)``.

    ``score_from="call"`` needs the background class (its score is ``1 - P(call)``); it raises
    ValueError naming the fix when ``background`` is None.
    """
    if score_from not in DETECTION_SCORES:
        raise ValueError(f"score_from must be one of {', '.join(DETECTION_SCORES)}, not {score_from!r}.")
    calls = call_classes(classes, background)
    scores = _scores(windows, calls)
    if not len(scores):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    best = scores.argmax(axis=1)
    if score_from == "class":
        return best, scores[np.arange(len(scores)), best]
    if background is None:
        raise ValueError(
            "score_from='call' is 1 - the background class's score, and background=None says the "
            "model has no background class; pass background= its name, or score_from='class'."
        )
    return best, 1.0 - _scores(windows, [background])[:, 0]


def call_score(
    windows: pd.DataFrame, classes: Sequence[str], background: str | None = "background", score_from: str = "class"
) -> np.ndarray:
    """Per window, the score used to rank windows for review, shape ``(n_windows,)``, in the table's
    row order: the detection score (:func:`detection_scores`), by default the maximum over the
    non-background classes' scores; with ``score_from="call"`` the probability of any call.

    Class-agnostic on purpose: a reviewer listening for *any* call wants the windows most likely to
    hold one first, whichever class it is.
    """
    return detection_scores(windows, classes, background, score_from)[1]


def _thresholds(threshold: float | Mapping[str, float], calls: list[str], background: str | None) -> np.ndarray:
    """Per call class, its threshold, shape ``(len(calls),)``."""
    if isinstance(threshold, Mapping):
        missing = [c for c in calls if c not in threshold]
        if missing:
            raise ValueError(
                f"threshold has no value for the class(es) {', '.join(missing)}; give every "
                f"class of {calls} a threshold, or pass one float for all."
            )
        unknown = [str(k) for k in threshold if k not in calls and k != background]
        if unknown:
            raise ValueError(
                f"threshold names class(es) {', '.join(unknown)} that are not among the call "
                f"classes {calls}; correct the spelling or remove them."
            )
        values = np.array([float(threshold[c]) for c in calls])
    else:
        values = np.full(len(calls), float(threshold))
    if np.isnan(values).any():
        raise ValueError("a threshold is NaN; pass numbers (scores are in [0, 1]).")
    return values


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "recording": pd.Series(dtype=object),
            "begin": pd.Series(dtype=float),
            "end": pd.Series(dtype=float),
            "label": pd.Series(dtype=object),
            "score": pd.Series(dtype=float),
            "n_windows": pd.Series(dtype=np.int64),
        }
    )


def detect_events(
    windows: pd.DataFrame,
    classes: Sequence[str],
    threshold: float | Mapping[str, float] = 0.5,
    background: str | None = "background",
    merge_gap: float = 0.0,
    score_from: str = "class",
    max_windows: int | None = None,
) -> pd.DataFrame:
    """Threshold a window table and merge consecutive detections of one class into events.

    Args:
        windows: the window table (module docstring): ``recording``, ``begin``, ``end`` (s) and a
            ``score_<class>`` column for every class in ``classes``.
        classes: the model's classes, background included.
        threshold: minimum detection score (in [0, 1]) of a window for it to be a detection of its
            best non-background class: one value for all classes, or a mapping class -> value
            covering every non-background class (a missing class raises ValueError naming it).
        background: the reject class, never detected; None when the model has none.
        merge_gap: seconds; detections of one class merge when the next begins at most this long
            after the event's end (0: they must overlap or touch). Windows below threshold between
            them always break the event (module docstring).
        score_from: the detection score, ``"class"`` (the best call class's score) or ``"call"``
            (``1 - score_background``, a call head's P(call)); see :func:`detection_scores`.
        max_windows: at most this many windows per event (None: no limit): a longer run is cut into
            consecutive events of ``max_windows`` windows (the last one shorter), so that a call
            class heard through a whole focal recording gives pieces one can listen to and review.

    Returns:
        The events, columns :data:`EVENT_COLUMNS`: ``recording`` (str), ``begin``, ``end`` (float s),
        ``label`` (str), ``score`` (float: the maximum detection score over the merged windows),
        ``n_windows`` (int), sorted by recording, then begin, then label; index 0..n-1.
        An empty window table, or one without detections, gives an empty table with these columns.
    """
    if merge_gap < 0 or np.isnan(merge_gap):
        raise ValueError(f"merge_gap must be >= 0 seconds, not {merge_gap!r}.")
    calls = call_classes(classes, background)
    limits = _thresholds(threshold, calls, background)
    best, best_score = detection_scores(windows, classes, background, score_from)
    if not len(windows):
        return _empty_events()
    # Windows in time order per recording; the stable sort keeps the table's order for equal begins.
    order = np.lexsort((windows["begin"].to_numpy(float), windows["recording"].astype(str).to_numpy()))
    rec = windows["recording"].astype(str).to_numpy()[order]
    begin = windows["begin"].to_numpy(float)[order]
    end = windows["end"].to_numpy(float)[order]
    best, best_score = best[order], best_score[order]
    detected = best_score >= limits[best]
    # A run is broken by every window that is not a detection: number the stretches between them.
    # The count runs on across recordings; grouping by recording too keeps them apart.
    segment = np.cumsum(~detected)
    det = pd.DataFrame(
        {
            "recording": rec[detected],
            "segment": segment[detected],
            "k": best[detected],
            "begin": begin[detected],
            "end": end[detected],
            "score": best_score[detected],
        }
    )
    if det.empty:
        return _empty_events()
    det = det.sort_values(["recording", "segment", "k", "begin"], kind="stable").reset_index(drop=True)
    group = det[["recording", "segment", "k"]]
    new_group = group.ne(group.shift()).any(axis=1).to_numpy()
    # The event's end so far is the latest end of the earlier windows of its group (an earlier event
    # of the group ended before this one started, so the running maximum is the current event's).
    latest_end = det.groupby(["recording", "segment", "k"], sort=False)["end"].cummax()
    previous_end = latest_end.shift().to_numpy()
    starts = new_group | (det["begin"].to_numpy() > previous_end + merge_gap + TIME_TOLERANCE)
    det["event"] = np.cumsum(starts)
    if max_windows is not None:
        if int(max_windows) < 1:
            raise ValueError(f"max_windows must be a positive number of windows or None, not {max_windows!r}.")
        position = det.groupby("event", sort=False).cumcount().to_numpy()
        det["event"] = np.cumsum(starts | (position % int(max_windows) == 0))
    events = det.groupby("event", sort=False).agg(
        recording=("recording", "first"),
        begin=("begin", "min"),
        end=("end", "max"),
        k=("k", "first"),
        score=("score", "max"),
        n_windows=("begin", "size"),
    )
    events["label"] = np.asarray(calls, dtype=object)[events["k"].to_numpy()]
    events["n_windows"] = events["n_windows"].astype(np.int64)
    events = events.sort_values(["recording", "begin", "label"], kind="stable").reset_index(drop=True)
    return events[EVENT_COLUMNS]


def default_thresholds(
    windows: pd.DataFrame,
    classes: Sequence[str],
    background: str | None = "background",
    n_high: int = 30,
    score_from: str = "class",
) -> np.ndarray:
    """0.05, 0.10, ..., 0.95, plus up to ``n_high`` of the distinct detection scores above 0.95
    (evenly spread over their sorted values: with softmax scores the best windows crowd near 1), sorted."""
    grid = np.round(np.arange(1, 20) * 0.05, 2)
    high = np.unique(call_score(windows, classes, background, score_from))
    high = high[high > 0.95]
    if len(high) > n_high:
        high = high[np.unique(np.linspace(0, len(high) - 1, n_high).round().astype(int))]
    return np.unique(np.r_[grid, high])


def recording_key(recording: str | Path, by: str = "stem", root: str | Path | None = None) -> str:
    """The name recordings are compared by: ``by="stem"``: the file name without its extension
    (``D:\\\\site1\\\\rec.WAV`` and ``site1/rec.wav`` -> ``rec``, case kept); ``by="path"``: the path with
    ``/`` separators, relative to ``root`` when it is an absolute path under ``root``
    (``/data/scan/site1/rec.wav`` with root ``/data/scan`` -> ``site1/rec.wav``)."""
    text = str(recording)
    if by == "stem":
        name = re.split(r"[\\/]", text)[-1]
        return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    if by != "path":
        raise ValueError(f"by must be 'stem' or 'path', not {by!r}.")
    if root is not None and Path(text).is_absolute():
        try:
            text = str(Path(text).relative_to(Path(root)))
        except ValueError:
            pass
    return str(PurePosixPath(text.replace("\\", "/")))


def align_recordings(
    reference: pd.DataFrame,
    recordings: Iterable[str],
    by: str = "stem",
    root: str | Path | None = None,
    unmatched: str = "raise",
) -> pd.DataFrame:
    """The reference with ``recording`` renamed to the scanned recording it is (see :func:`recording_key`).

    Args:
        reference: table with ``recording`` (or, where that is None as for a recording the reader did
            not find, ``recording_name``), ``begin``, ``end``, ``label``.
        recordings: the scanned recordings, e.g. ``windows["recording"].unique()``.
        by, root: how recordings are compared (:func:`recording_key`; ``root`` = the scanned folder).
        unmatched: ``"raise"`` (ValueError listing the reference recordings that match no scanned
            one) or ``"drop"`` (leave their rows out, to evaluate the scanned recordings only).

    Two scanned recordings with the same key (``site1/rec.wav``, ``site2/rec.wav`` by stem) raise
    ValueError: compare ``by="path"`` then.
    """
    if unmatched not in ("raise", "drop"):
        raise ValueError(f"unmatched must be 'raise' or 'drop', not {unmatched!r}.")
    keys: dict[str, str] = {}
    for rec in dict.fromkeys(map(str, recordings)):
        key = recording_key(rec, by, root)
        if key in keys:
            raise ValueError(
                f"scanned recordings {keys[key]!r} and {rec!r} both have the key {key!r} (by={by!r}); "
                "compare by='path' with root= the scanned folder."
            )
        keys[key] = rec
    names = reference["recording"].astype(object)
    if "recording_name" in reference.columns:
        names = names.where(names.notna(), reference["recording_name"])
    mapped = names.map(lambda n: keys.get(recording_key(n, by, root)) if isinstance(n, (str, Path)) else None)
    missing = mapped.isna()
    if missing.any() and unmatched == "raise":
        lost = list(dict.fromkeys(names[missing].astype(str)))
        raise ValueError(
            f"{len(lost)} reference recording(s) match no scanned recording by {by}: "
            f"{', '.join(lost[:5])}{'...' if len(lost) > 5 else ''}; scan them, compare by another "
            "rule (by=, root=), or pass unmatched='drop' to evaluate the scanned ones only."
        )
    out = reference[~missing].copy()
    out["recording"] = mapped[~missing]
    return out
