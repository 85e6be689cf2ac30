"""Reviewing detections: what to listen to next, and a review table that never loses a decision.

A scan's events (:mod:`helpers.recordings.scan`) are reviewed one at a time; this module holds the
logic, with no widget in it, so it is tested without a browser:

- :func:`review_queue` chooses the events by a stated rule, a mix of three reasons:
  ``"random"``, a simple random sample of all events (drawn first, from all of them, so the share
  of correct ones among them estimates the detector's precision without bias); ``"top"``, the
  highest-scoring events of each class in turn; ``"threshold"``, the events whose score lies
  nearest the class's threshold (the most informative ones for the threshold and for the head).
- :class:`ReviewTable` writes every decision at once to ``review.csv`` beside the scan, under a file
  lock, read-modify-write, through an atomic replace: a kernel restart or a closed tab loses nothing
  (reopening resumes where the table ends, :meth:`ReviewTable.pending`), and two reviewers on one
  table never overwrite each other's rows. After each decision it also writes
  ``review.selections.txt``, a Raven Pro multi-file selection table with the standard columns and a
  ``Review`` column; decisions typed into that column in Raven are read back by
  :meth:`ReviewTable.merge_raven`.

Decisions (:data:`DECISIONS`): ``call`` (a call of the event's label), ``other`` (a call of another
label, given as ``new_label``), ``not_call``, ``unsure`` and ``skip``. In the Raven column they are
written ``call``, ``other:LABEL``, ``not_call``, ``unsure``, ``skip``. The latest decision on an
event counts (:meth:`ReviewTable.latest`); earlier ones stay in the file, in order.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import filelock
import numpy as np
import pandas as pd

from helpers.core.fileio import atomic_write

DECISIONS = ("call", "other", "not_call", "unsure", "skip")
REASONS = ("top", "threshold", "random")
DEFAULT_MIX = {"top": 0.4, "threshold": 0.4, "random": 0.2}
EVENT_KEYS = ("recording", "begin", "end", "label", "score")
QUEUE_COLUMNS = ["event_id", *EVENT_KEYS, "reason"]
REVIEW_COLUMNS = [*QUEUE_COLUMNS, "decision", "new_label", "reviewer", "time"]
#: The Raven table's columns: the standard ones of a multi-file table, then the event's and the review's.
RAVEN_REVIEW_COLUMNS = [
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Begin Path",
    "File Offset (s)",
    "Label",
    "Score",
    "Review",
]
LOCK_TIMEOUT_S = 30.0


def event_id(recording: str, begin: float, end: float, label: str) -> str:
    """A stable name of an event: its recording, span (ms) and label."""
    return f"{recording}|{begin:.3f}|{end:.3f}|{label}"


def _with_ids(events: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in EVENT_KEYS if c not in events.columns]
    if missing:
        raise ValueError(
            f"review: the events table lacks {missing}; give a scan's detections "
            "(ScanResult.detections or OUT/detections.csv)."
        )
    out = events[list(EVENT_KEYS)].reset_index(drop=True).copy()
    out.insert(
        0,
        "event_id",
        [
            event_id(r, b, e, lab)
            for r, b, e, lab in zip(out["recording"].astype(str), out["begin"], out["end"], out["label"].astype(str))
        ],
    )
    return out.drop_duplicates("event_id")


def review_queue(
    events: pd.DataFrame,
    n: int = 30,
    mix: Mapping[str, float] | None = None,
    threshold: float | Mapping[str, float] = 0.5,
    seed: int = 0,
) -> pd.DataFrame:
    """Up to ``n`` events to review, each with its ``reason`` (module docstring), columns :data:`QUEUE_COLUMNS`.

    ``mix``: the share of each reason (default :data:`DEFAULT_MIX`; shares are normalised, and a reason
    that runs out of events leaves its places to the others in the order random, top, threshold).
    ``threshold``: one value or one per class, for the ``"threshold"`` reason. Same inputs and ``seed``,
    same queue."""
    mix = dict(DEFAULT_MIX if mix is None else mix)
    unknown = sorted(set(mix) - set(REASONS))
    if unknown or not mix or any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"review_queue: mix {mix} must give non-negative shares of {REASONS} (not all zero).")
    pool = _with_ids(events)
    n = min(int(n), len(pool))
    total = sum(mix.values())
    quota = {r: int(math.floor(n * mix.get(r, 0.0) / total)) for r in REASONS}
    for r in sorted(REASONS, key=lambda r: -(n * mix.get(r, 0.0) / total - quota[r])):
        if sum(quota.values()) < n and mix.get(r, 0.0) > 0:
            quota[r] += 1
    rng = np.random.default_rng(seed)
    chosen: list[pd.DataFrame] = []
    taken: set[str] = set()

    def take(rows: pd.DataFrame, reason: str, k: int) -> None:
        rows = rows[~rows["event_id"].isin(taken)].head(k)
        taken.update(rows["event_id"])
        chosen.append(rows.assign(reason=reason))

    # random first, from every event: an unbiased sample for the precision estimate
    take(pool.iloc[rng.permutation(len(pool))], "random", quota["random"])
    take(_round_robin_by_class(pool.sort_values("score", ascending=False, kind="stable")), "top", quota["top"])
    distance = (pool["score"] - pool["label"].map(lambda c: _threshold_of(threshold, c))).abs()
    take(
        _round_robin_by_class(pool.assign(_d=distance).sort_values("_d", kind="stable").drop(columns="_d")),
        "threshold",
        quota["threshold"],
    )
    short = n - sum(len(c) for c in chosen)
    for reason in ("random", "top", "threshold"):  # a reason that ran out leaves its places to the others
        if short <= 0:
            break
        source = {"random": pool.iloc[rng.permutation(len(pool))], "top": pool.sort_values("score", ascending=False)}
        before = sum(len(c) for c in chosen)
        take(source.get(reason, pool), reason, short)
        short -= sum(len(c) for c in chosen) - before
    return pd.concat(chosen, ignore_index=True)[QUEUE_COLUMNS] if chosen else pd.DataFrame(columns=QUEUE_COLUMNS)


def _threshold_of(threshold: float | Mapping[str, float], label: str) -> float:
    if isinstance(threshold, Mapping):
        if label not in threshold:
            raise ValueError(
                f"review_queue: no threshold for class {label!r}; give one per class ({sorted(threshold)})."
            )
        return float(threshold[label])
    return float(threshold)


def _round_robin_by_class(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (already in preference order) reordered to take one event of each class in turn."""
    rank = rows.groupby("label", sort=False).cumcount()
    return rows.assign(_rank=rank.to_numpy()).sort_values("_rank", kind="stable").drop(columns="_rank")


def _raven_review(decision: str, new_label: object) -> str:
    return f"other:{new_label}" if decision == "other" else decision


def _parse_raven_review(text: str, where: str) -> tuple[str, str | None]:
    text = str(text).strip()
    if text.startswith("other:") and text[len("other:") :].strip():
        return "other", text[len("other:") :].strip()
    if text in DECISIONS and text != "other":
        return text, None
    raise ValueError(
        f"{where}: Review {text!r} is not one of call, other:LABEL, not_call, unsure, skip; "
        "correct the cell in Raven (or leave it empty for an event not reviewed)."
    )


class ReviewTable:
    """The review table of one scan folder (``folder/review.csv`` and ``folder/review.selections.txt``).

    ``reviewer``: the name written with each decision. ``recordings``: recording name -> (path,
    duration s), for the Raven table's ``Begin Path`` and session times (as the scan's
    ``detections.selections.txt``); without it the Raven table names recordings as the events do and
    counts each from 0. ``low_freq``/``high_freq``: the Raven boxes' band (Hz)."""

    def __init__(
        self,
        folder: str | Path,
        reviewer: str = "reviewer",
        recordings: Mapping[str, tuple[str | Path, float]] | None = None,
        low_freq: float = 0.0,
        high_freq: float = 8000.0,
    ) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "review.csv"
        self.raven_path = self.folder / "review.selections.txt"
        self.reviewer = str(reviewer)
        self.recordings = dict(recordings or {})
        self.low_freq, self.high_freq = float(low_freq), float(high_freq)
        self._lock = filelock.FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S, thread_local=False)

    # -- reading ----------------------------------------------------------------------------------
    def read(self) -> pd.DataFrame:
        """Every decision in file order (columns :data:`REVIEW_COLUMNS`); ValueError naming a bad line."""
        if not self.path.is_file():
            return pd.DataFrame(columns=REVIEW_COLUMNS)
        table = pd.read_csv(
            self.path,
            dtype={"new_label": "string", "label": "string", "recording": "string"},
            keep_default_na=False,
            na_values={"score": [""], "begin": [""], "end": [""]},
        )
        missing = [c for c in REVIEW_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(
                f"{self.path}: lacks the column(s) {missing}; it is not a review table of this project "
                "(move it away to start a new one)."
            )
        bad = ~table["decision"].isin(DECISIONS)
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise ValueError(
                f"{self.path} line {line}: decision {table['decision'].iloc[line - 2]!r} is not one of "
                f"{', '.join(DECISIONS)}; correct or delete that line."
            )
        return table[REVIEW_COLUMNS]

    def latest(self) -> pd.DataFrame:
        """The latest decision on each reviewed event, in the order the events were first reviewed."""
        table = self.read()
        return table.drop_duplicates("event_id", keep="last").reset_index(drop=True)

    def pending(self, queue: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``queue`` (:func:`review_queue`) that have no decision yet, in queue order."""
        done = set(self.read()["event_id"])
        return queue[~queue["event_id"].isin(done)].reset_index(drop=True)

    # -- writing ----------------------------------------------------------------------------------
    def record(self, event: Mapping | pd.Series, decision: str, new_label: str | None = None) -> pd.Series:
        """Write one decision on ``event`` (a queue row, or any mapping with :data:`EVENT_KEYS`) at once.

        ``decision`` one of :data:`DECISIONS`; ``new_label`` the label heard, required with ``"other"``
        and refused otherwise. Returns the row written."""
        if decision not in DECISIONS:
            raise ValueError(f"decision {decision!r}: use one of {', '.join(DECISIONS)}.")
        if (decision == "other") != bool(new_label):
            raise ValueError("decision 'other' needs new_label (the label of the call heard), and only it takes one.")
        row = {key: event[key] for key in EVENT_KEYS}
        row["event_id"] = event.get("event_id") or event_id(
            str(row["recording"]), float(row["begin"]), float(row["end"]), str(row["label"])
        )
        row.update(
            reason=event.get("reason", ""),
            decision=decision,
            new_label=new_label or "",
            reviewer=self.reviewer,
            time=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        )
        self._append(pd.DataFrame([row])[REVIEW_COLUMNS])
        return pd.Series(row)[REVIEW_COLUMNS]

    def _append(self, rows: pd.DataFrame) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:  # read, append and replace under one lock: no reviewer's row is lost
            table = pd.concat([self.read(), rows], ignore_index=True) if self.path.is_file() else rows
            with atomic_write(self.path, "w") as fh:
                table.to_csv(fh, index=False, float_format="%.6f")
            self._write_raven(table.drop_duplicates("event_id", keep="last"))

    def _write_raven(self, latest: pd.DataFrame) -> None:
        offsets, start = {}, 0.0
        for name, (_, duration) in self.recordings.items():
            offsets[name] = start
            start += float(duration)
        lines = ["\t".join(RAVEN_REVIEW_COLUMNS)]
        for i, r in enumerate(latest.itertuples(index=False), start=1):
            offset = offsets.get(str(r.recording), 0.0)
            path = str(self.recordings.get(str(r.recording), (r.recording, 0.0))[0])
            lines.append(
                "\t".join(
                    [
                        str(i),
                        "Spectrogram 1",
                        "1",
                        f"{offset + float(r.begin):.6f}",
                        f"{offset + float(r.end):.6f}",
                        f"{self.low_freq:.1f}",
                        f"{self.high_freq:.1f}",
                        path,
                        f"{float(r.begin):.6f}",
                        str(r.label),
                        f"{float(r.score):.6f}",
                        _raven_review(r.decision, r.new_label),
                    ]
                )
            )
        with atomic_write(self.raven_path, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def merge_raven(self, path: str | Path | None = None) -> pd.DataFrame:
        """Read the ``Review`` column of a Raven table (default this table's own) and record, as this
        reviewer, every mark that differs from the latest decision on that event; an empty cell is no
        mark. Events are matched by recording, span and label. Returns the rows recorded."""
        path = Path(path) if path is not None else self.raven_path
        raven = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        needed = ["Begin Path", "File Offset (s)", "Begin Time (s)", "End Time (s)", "Label", "Review"]
        missing = [c for c in needed if c not in raven.columns]
        if missing:
            raise ValueError(f"{path}: lacks the column(s) {missing}; give a review table written by ReviewTable.")
        by_path = {str(p): name for name, (p, _) in self.recordings.items()}
        latest = self.latest().set_index("event_id")
        new_rows = []
        for line, r in enumerate(raven.to_dict(orient="records"), start=2):
            mark = r["Review"].strip()
            if not mark:
                continue
            decision, new_label = _parse_raven_review(mark, f"{path} line {line}")
            recording = by_path.get(r["Begin Path"], r["Begin Path"])
            begin = float(r["File Offset (s)"])
            duration = float(r["End Time (s)"]) - float(r["Begin Time (s)"])
            eid = event_id(recording, begin, begin + duration, r["Label"])
            if eid not in latest.index:
                raise ValueError(
                    f"{path} line {line}: no reviewed event {eid} in {self.path}; Raven marks can only be "
                    "read back for events of this review table."
                )
            old = latest.loc[eid]
            if old["decision"] == decision and (old["new_label"] or "") == (new_label or ""):
                continue
            new_rows.append(
                {
                    **{k: old[k] for k in EVENT_KEYS},
                    "event_id": eid,
                    "reason": old["reason"],
                    "decision": decision,
                    "new_label": new_label or "",
                    "reviewer": self.reviewer,
                    "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                }
            )
        if new_rows:
            self._append(pd.DataFrame(new_rows)[REVIEW_COLUMNS])
        return pd.DataFrame(new_rows, columns=REVIEW_COLUMNS)


class ReviewSession:
    """Going through a review queue one event at a time: the state behind the review widget
    (:mod:`helpers.reporting.review_widget`), kept here so that it is tested without a browser.

    Opens at the first event of ``queue`` without a decision in ``table`` (resuming where the table
    ends); :meth:`decide` writes the decision at once and moves on; :meth:`back` and :meth:`forward`
    move without deciding (a decision on an event already decided is recorded as the newer one)."""

    def __init__(self, queue: pd.DataFrame, table: ReviewTable) -> None:
        self.queue = queue.reset_index(drop=True)
        self.table = table
        pending = set(table.pending(self.queue)["event_id"])
        self.position = next((i for i, e in enumerate(self.queue["event_id"]) if e in pending), len(self.queue))

    @property
    def finished(self) -> bool:
        return self.position >= len(self.queue)

    def current(self) -> pd.Series | None:
        """The event under review (a queue row), or None past the end."""
        return None if self.finished else self.queue.iloc[self.position]

    def decision_of(self, event: pd.Series) -> str | None:
        """The latest decision on ``event``, or None."""
        latest = self.table.latest()
        hit = latest[latest["event_id"] == event["event_id"]]
        return None if hit.empty else str(hit["decision"].iloc[0])

    def decide(self, decision: str, new_label: str | None = None) -> pd.Series:
        """Record ``decision`` on the current event (written at once) and move to the next one."""
        event = self.current()
        if event is None:
            raise IndexError("the review queue is finished: nothing left to decide")
        row = self.table.record(event, decision, new_label)
        self.position += 1
        return row

    def back(self) -> None:
        self.position = max(0, self.position - 1)

    def forward(self) -> None:
        self.position = min(len(self.queue), self.position + 1)

    def progress(self) -> dict[str, int]:
        """``done`` (events of the queue with a decision), ``left`` and ``position`` (1-based)."""
        done = len(self.queue) - len(self.table.pending(self.queue))
        return {"done": done, "left": len(self.queue) - done, "position": self.position + 1, "total": len(self.queue)}


def simulated_decisions(
    queue: pd.DataFrame,
    truth: pd.DataFrame | None = None,
    min_iou: float = 0.3,
    background: str = "background",
    contents: Mapping[str, str | None] | None = None,
) -> pd.DataFrame:
    """What a simulated reviewer answers for each queued event. Returns ``queue`` with ``decision`` and
    ``new_label`` columns. Two kinds of truth, per recording:

    - ``truth`` (recording, begin, end, label: every call, as a semi-synthetic recording has it): ``call``
      when a true call of the event's label overlaps it with an IoU of at least ``min_iou``, ``other``
      (``new_label`` that call's label) when only a call of another label does, else ``not_call``;
    - ``contents`` (recording name -> the one call class it holds, or None: a focal recording of one
      species, or a soundscape with none): :func:`recording_level_decisions`.

    A recording named by ``contents`` is judged by it; every other one needs ``truth``."""
    contents = dict(contents or {})
    by_recording = queue["recording"].astype(str).isin(list(contents)) if len(queue) else pd.Series([], dtype=bool)
    parts = []
    if by_recording.any():
        parts.append(recording_level_decisions(queue[by_recording], contents, background))
    rest = queue[~by_recording] if len(queue) else queue
    if len(rest):
        if truth is None:
            missing = sorted(set(rest["recording"].astype(str)))
            raise ValueError(
                f"simulated review: no truth for recording(s) {', '.join(missing)}; pass their calls as "
                "truth or their contents (the call class each holds, None for none)"
            )
        parts.append(_exact_decisions(rest, truth, min_iou, background))
    if not parts:
        return queue.assign(decision=pd.Series(dtype=str), new_label=pd.Series(dtype=str))
    return pd.concat(parts).loc[queue.index]


def _exact_decisions(queue: pd.DataFrame, truth: pd.DataFrame, min_iou: float, background: str) -> pd.DataFrame:
    calls = truth[truth["label"].astype(str) != background]
    decisions, labels = [], []
    for event in queue.itertuples(index=False):
        same = calls[calls["recording"].astype(str) == str(event.recording)]
        begin, end = float(event.begin), float(event.end)
        inter = (np.minimum(same["end"].to_numpy(float), end) - np.maximum(same["begin"].to_numpy(float), begin)).clip(
            0
        )
        union = np.maximum(same["end"].to_numpy(float), end) - np.minimum(same["begin"].to_numpy(float), begin)
        hit = same[(inter / np.where(union > 0, union, 1.0)) >= min_iou]
        if (hit["label"].astype(str) == str(event.label)).any():
            decisions.append("call"), labels.append("")
        elif len(hit):
            decisions.append("other"), labels.append(str(hit["label"].iloc[0]))
        else:
            decisions.append("not_call"), labels.append("")
    return queue.assign(decision=decisions, new_label=labels)


def recording_level_decisions(
    queue: pd.DataFrame, contents: Mapping[str, str | None], background: str = "background"
) -> pd.DataFrame:
    """A reviewer who knows only what each recording holds (``contents``: recording name -> its one call
    class, or None for a recording without calls), not where in it the calls are:

    - in a recording without calls every event is ``not_call`` (exact: a soundscape without the species
      holds only false alarms);
    - in a focal recording of class S, an event labelled S is ``call`` (the species is there; the event
      may still fall between two of its calls, so this truth is at the recording's level), and an event
      of another label is ``unsure`` (certainly not a call of its label, but whether it is S calling or
      the silence between calls is not known): it counts as a false alarm and gives no training clip.

    Returns ``queue`` with ``decision`` and ``new_label`` columns."""
    decisions = []
    for event in queue.itertuples(index=False):
        name = str(event.recording)
        if name not in contents:
            raise ValueError(
                f"recording-level review: recording {name} is not in contents; add it with the call "
                "class it holds (None for a recording without calls)"
            )
        held = contents[name]
        if held is None or str(held) == background:
            decisions.append("not_call")
        else:
            decisions.append("call" if str(event.label) == str(held) else "unsure")
    return queue.assign(decision=decisions, new_label=[""] * len(queue))
