"""The review loop measured: review detections, grow the training split, retrain, recalibrate, rescore.

:func:`review_loop` runs it headless with a simulated reviewer
(:func:`helpers.evaluation.review.simulated_decisions`) on a head over BirdNET embeddings, whose
retraining takes seconds and whose scans are rescored from their stored embeddings:

- round 0 trains the head on the corpus and scans the *pool*, whose detections are reviewed, the
  *report* recording, on which every round is measured, and optionally the *field report*
  recordings, real ones measured at the recording's level;
- each round queues ``reviews_per_round`` new detections of the pool
  (:func:`helpers.evaluation.review.review_queue`), answers them from the pool's truth, writes
  them to the review table, adds them to the training split as a new round
  (:func:`helpers.data.rounds.training_round`), retrains, rescores every scan, and calibrates
  per-class thresholds (:func:`helpers.evaluation.calibration.calibrate`) on every review so far,
  each reviewed event rescored by the new head (its best window score of its label);
- the report recording's events at those thresholds give event precision, recall and F1, the
  precision at fixed recall and the listening time saved, per round; the field report recordings
  give false alarms per hour where no call class is present, the share of right-class detections
  in focal recordings, and how many of those were found at all.

Two kinds of pool, usable together. A semi-synthetic recording has exact truth, but its calls are
the corpus's own clips in new context. Real recordings the corpus was cut from (``field_pool``)
hold material it does not (events inside its clips are not queued), but their truth is only at the
recording's level (:func:`helpers.evaluation.review.recording_level_decisions`): a focal
recording's detections of its own class count as calls even where they fall between two calls.
The finding may be that a round does not help; the table says what it measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from helpers.data.corpus import Corpus, read_corpus
from helpers.data.rounds import corpus_spans, held_out_recordings, training_round
from helpers.recordings.stream import recording_info
from helpers.evaluation.calibration import calibrate, calibrated_thresholds
from helpers.recordings.detect import detect_events
from helpers.recordings.event_scores import (
    event_scores,
    listening_effort,
    precision_at_recall,
    precision_recall_curve_events,
    recording_level_scores,
    recording_level_summary,
)
from helpers.evaluation.review import ReviewTable, review_queue, simulated_decisions
from helpers.recordings.scan import rescore, scan
from helpers.experiments.pretrained import inference_checkpoint
from helpers.training.config import TrainConfig
from helpers.training.loop import train
from helpers.recordings.scan_store import read_windows


def event_scores_under(windows: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    """Each event's score under the head whose ``windows`` these are: the best ``score_<label>`` of the
    windows of its recording that overlap it (NaN when none does)."""
    out = np.full(len(events), np.nan)
    for i, e in enumerate(events.itertuples(index=False)):
        w = windows[
            (windows["recording"].astype(str) == str(e.recording))
            & (windows["begin"] < float(e.end))
            & (windows["end"] > float(e.begin))
        ]
        column = f"score_{e.label}"
        if len(w) and column in w:
            out[i] = float(w[column].max())
    return out


@dataclass
class Round:
    """One round of :func:`review_loop`."""

    round: int
    reviews: int  # reviews so far
    train_clips: int
    run_dir: Path
    thresholds: dict[str, float] | float
    uncalibrated: list[str]
    scores: pd.DataFrame  # event_scores on the report recording at the thresholds
    precision_at_recall: float
    time_saved: float
    field: pd.DataFrame | None = None  # recording_level_scores of the field report recordings

    def row(self) -> dict[str, Any]:
        overall = self.scores.set_index("class").loc["all"]
        row = {
            "round": self.round,
            "reviews": self.reviews,
            "train clips": self.train_clips,
            "event precision": overall["precision"],
            "event recall": overall["recall"],
            "event F1": overall["f1"],
            "precision at 50% recall": self.precision_at_recall,
            "time saved at 80% recall": self.time_saved,
        }
        if self.field is not None:
            row.update({f"field: {k}": v for k, v in recording_level_summary(self.field).items()})
        return {**row, "uncalibrated": ", ".join(self.uncalibrated)}


def _windows(folder: Path, names: list[str]) -> pd.DataFrame:
    return pd.concat([read_windows(folder, n) for n in names], ignore_index=True)


def _in_corpus(events: pd.DataFrame, spans: Mapping[str, list[tuple[float, float]]]) -> np.ndarray:
    """Whether each event's centre lies in a clip the corpus cut from its recording."""
    centre = 0.5 * (events["begin"].to_numpy(float) + events["end"].to_numpy(float))
    return np.array(
        [any(b <= c < e for b, e in spans.get(str(r), ())) for r, c in zip(events["recording"], centre)], dtype=bool
    )


def _named(recordings: Mapping[str | Path, str | None] | None) -> dict[str, tuple[Path, str | None]]:
    out: dict[str, tuple[Path, str | None]] = {}
    for path, held in (recordings or {}).items():
        name = Path(path).name
        if name in out and out[name][0] != Path(path):
            raise ValueError(f"{out[name][0]} and {path} share the name {name}; give recordings distinct names")
        out[name] = (Path(path), held)
    return out


def review_loop(
    config: TrainConfig,
    corpus: Corpus,
    pool: tuple[Path, pd.DataFrame] | None,
    report: tuple[Path, pd.DataFrame],
    out_dir: str | Path,
    rounds: int = 3,
    reviews_per_round: int = 20,
    mix: Mapping[str, float] | None = None,
    target_precision: float = 0.9,
    min_iou: float = 0.3,
    detect_threshold: float = 0.1,
    fallback_threshold: float = 0.5,
    seed: int = 0,
    background: str = "background",
    field_pool: Mapping[str | Path, str | None] | None = None,
    field_report: Mapping[str | Path, str | None] | None = None,
    review_windows: int | None = 2,
) -> list[Round]:
    """Rounds 0..``rounds`` of the loop (module docstring) for the head ``config`` (a ``birdnet-*`` model),
    everything under ``out_dir``. ``pool`` and ``report``: ``(wav, truth)`` with the truth's ``recording``
    the wav's name (:func:`helpers.experiments.detection.semi_synthetic_pair` gives such pairs); ``pool``
    may be None when ``field_pool`` is given.

    ``field_pool``: real recordings whose detections join the pool, each with what it holds (its one call
    class, or None for none: :func:`helpers.data.corpora.demo.demo_recording_contents`), reviewed at the
    recording's level (:func:`helpers.evaluation.review.recording_level_decisions`); events whose centre
    lies in a clip the corpus already cut from the recording (its ``manifest.csv``) are not queued.
    ``field_report``: real recordings of the same kind, measured every round at the recording's level
    (:func:`helpers.recordings.event_scores.recording_level_scores`); they are never reviewed or trained on.
    ``detect_threshold``: the low threshold whose events are candidates for review, each at most
    ``review_windows`` windows long (a run through a whole focal recording is cut into pieces one can
    review; None: no limit);
    ``fallback_threshold``: the threshold of classes not yet calibrated."""
    out = Path(out_dir)
    if pool is None and not field_pool:
        raise ValueError("review_loop: nothing to review; pass a pool recording with its truth or field_pool")
    report_wav, report_truth = report
    field_pool_named, field_report_named = _named(field_pool), _named(field_report)
    pool_files = ([pool[0]] if pool is not None else []) + [p for p, _ in field_pool_named.values()]
    pool_names = [p.name for p in pool_files]
    if len(set(pool_names)) != len(pool_names):
        raise ValueError(f"review_loop: pool recordings share a name ({', '.join(pool_names)}); rename one")
    contents = {name: held for name, (_, held) in field_pool_named.items()}
    spans = corpus_spans(corpus.root)
    table = ReviewTable(out / "reviews", reviewer="simulated")
    held_out = None if held_out_recordings(corpus.root) is not None else []
    current, results, reviewed = corpus, [], set()
    for r in range(rounds + 1):
        run = train(
            TrainConfig(**{**config.to_dict(), "corpus": str(current.root), "out_dir": str(out / "runs")}),
            corpus=current,
            progress=False,
        )
        ckpt = inference_checkpoint(run.run_dir)
        here = out / f"round{r}"
        folders = {"pool": pool_files, "report": [report_wav]}
        if field_report_named:
            folders["field"] = [p for p, _ in field_report_named.values()]
        scanned = {}
        for role, files in folders.items():
            if r == 0:
                scanned[role] = scan(ckpt, files, here / role, threshold=detect_threshold, progress=False)
            else:
                scanned[role] = rescore(
                    ckpt, out / "round0" / role, here / role, threshold=detect_threshold, progress=False
                )
        pool_scan = scanned["pool"]
        classes = pool_scan.settings["classes"]
        pool_windows = _windows(here / "pool", pool_names)
        latest = table.latest()
        thresholds: dict[str, float] | float = fallback_threshold
        uncalibrated = [c for c in classes if c != background]
        if len(latest):
            latest = latest.assign(score=event_scores_under(pool_windows, latest)).dropna(subset=["score"])
            fitted = calibrate(latest, target_precision=target_precision, seed=seed)
            thresholds = calibrated_thresholds(fitted, classes, fallback=fallback_threshold, background=background)
            uncalibrated = [c for c in uncalibrated if not fitted["classes"].get(c, {}).get("calibrated")]
        report_windows = _windows(here / "report", [report_wav.name])
        calls = [c for c in classes if c != background]
        events = detect_events(report_windows, classes, threshold=thresholds, background=background)
        scores = event_scores(events, report_truth, classes=calls, min_iou=min_iou)
        curve = precision_recall_curve_events(
            report_windows, report_truth, classes, min_iou=min_iou, background=background
        )
        at_half = precision_at_recall(curve, [0.5])["precision"].iloc[0]
        _, effort = listening_effort(
            report_windows, report_truth, recall_targets=(0.8,), classes=classes, background=background
        )
        field = None
        if field_report_named:
            field_windows = _windows(here / "field", list(field_report_named))
            field_events = detect_events(field_windows, classes, threshold=thresholds, background=background)
            durations = {n: float(recording_info(p)["duration"]) for n, (p, _) in field_report_named.items()}
            field = recording_level_scores(
                field_events, {n: h for n, (_, h) in field_report_named.items()}, durations, background=background
            )
        results.append(
            Round(
                r,
                len(latest),
                int((current.table["split"] == "train").sum()),
                run.run_dir,
                thresholds,
                uncalibrated,
                scores,
                float(at_half),
                float(effort["time_saved"].iloc[0]),
                field,
            )
        )
        if r == rounds:
            break
        candidates = detect_events(
            pool_windows, classes, threshold=detect_threshold, background=background, max_windows=review_windows
        )
        if len(candidates):
            keys = candidates.apply(lambda e: f"{e.recording}|{e.begin:.3f}|{e.end:.3f}|{e.label}", axis=1)
            candidates = candidates[~keys.isin(reviewed) & ~_in_corpus(candidates, spans)]
        if not len(candidates):
            break  # nothing new to review: the loop has used up the pool
        queue = review_queue(
            candidates,
            n=reviews_per_round,
            mix=mix,
            threshold=thresholds
            if isinstance(thresholds, float)
            else {c: thresholds.get(c, fallback_threshold) for c in calls},
            seed=seed + r,
        )
        answered = simulated_decisions(
            queue, pool[1] if pool is not None else None, min_iou=min_iou, background=background, contents=contents
        )
        for row in answered.to_dict(orient="records"):
            table.record(row, row["decision"], row["new_label"] or None)
        reviewed |= set(queue["event_id"])
        this_round = table.latest()
        this_round = this_round[this_round["event_id"].isin(queue["event_id"])]
        root = training_round(
            current,
            this_round,
            {p.name: p for p in pool_files},
            out / f"corpus-round{r + 1}",
            round_name=f"round{r + 1}",
            held_out=held_out,
            scan_dir=out / "round0" / "pool",
        )
        current = read_corpus(root)
    return results


def rounds_table(rounds: list[Round]) -> pd.DataFrame:
    """One row per round: reviews so far, training clips, and the report recording's event scores."""
    return pd.DataFrame([r.row() for r in rounds])
