"""The review loop measured: review detections, grow the training split, retrain, recalibrate, rescore.

:func:`review_loop` runs it headless with a simulated reviewer
(:func:`helpers.evaluation.review.simulated_decisions`) on a head over BirdNET embeddings, whose
retraining takes seconds and whose scans are rescored from their stored embeddings:

- round 0 trains the head on the corpus and scans two recordings with exact truth: the *pool*,
  whose detections are reviewed, and the *report* recording, on which every round is measured;
- each round queues ``reviews_per_round`` new detections of the pool
  (:func:`helpers.evaluation.review.review_queue`), answers them from the pool's truth, writes
  them to the review table, adds them to the training split as a new round
  (:func:`helpers.data.rounds.training_round`), retrains, rescores both recordings, and calibrates
  per-class thresholds (:func:`helpers.evaluation.calibration.calibrate`) on every review so far,
  each reviewed event rescored by the new head (its best window score of its label);
- the report recording's events at those thresholds give event precision, recall and F1, the
  precision at fixed recall and the listening time saved, per round.

The pool should be audio the corpus does not hold; a semi-synthetic recording of the training
split's calls is the nearest the demo has (its calls are already training clips: the round adds
them again, cut in new context, with the hard negatives around them). The finding may be that a
round does not help; the table says what it measured.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from helpers.data.corpus import Corpus, read_corpus
from helpers.data.rounds import held_out_recordings, training_round
from helpers.evaluation.calibration import calibrate, calibrated_thresholds
from helpers.evaluation.detections import detect_events
from helpers.evaluation.events import event_scores, listening_effort, precision_at_recall, precision_recall_curve_events
from helpers.evaluation.review import ReviewTable, review_queue, simulated_decisions
from helpers.evaluation.scan import rescore, scan
from helpers.experiments.pretrained import inference_checkpoint
from helpers.training.config import TrainConfig
from helpers.training.loop import train


def event_scores_under(windows: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    """Each event's score under the head whose ``windows`` these are: the best ``score_<label>`` of the
    windows of its recording that overlap it (NaN when none does)."""
    out = np.full(len(events), np.nan)
    for i, e in enumerate(events.itertuples(index=False)):
        w = windows[(windows["recording"].astype(str) == str(e.recording)) & (windows["begin"] < float(e.end))
                    & (windows["end"] > float(e.begin))]
        column = f"score_{e.label}"
        if len(w) and column in w:
            out[i] = float(w[column].max())
    return out


@dataclass
class Round:
    """One round of :func:`review_loop`."""

    round: int
    reviews: int                       # reviews so far
    train_clips: int
    run_dir: Path
    thresholds: dict[str, float] | float
    uncalibrated: list[str]
    scores: pd.DataFrame               # event_scores on the report recording at the thresholds
    precision_at_recall: float
    time_saved: float

    def row(self) -> dict[str, Any]:
        overall = self.scores.set_index("class").loc["all"]
        return {"round": self.round, "reviews": self.reviews, "train clips": self.train_clips,
                "event precision": overall["precision"], "event recall": overall["recall"], "event F1": overall["f1"],
                "precision at 50% recall": self.precision_at_recall, "time saved at 80% recall": self.time_saved,
                "uncalibrated": ", ".join(self.uncalibrated)}


def _windows(folder: Path, wav: Path) -> pd.DataFrame:
    return pd.read_csv(folder / f"{wav.name}.scores.csv").assign(recording=wav.name)


def review_loop(config: TrainConfig, corpus: Corpus, pool: tuple[Path, pd.DataFrame],
                report: tuple[Path, pd.DataFrame], out_dir: str | Path, rounds: int = 3, reviews_per_round: int = 20,
                mix: Mapping[str, float] | None = None, target_precision: float = 0.9, min_iou: float = 0.3,
                detect_threshold: float = 0.1, fallback_threshold: float = 0.5, seed: int = 0,
                background: str = "background") -> list[Round]:
    """Rounds 0..``rounds`` of the loop (module docstring) for the head ``config`` (a ``birdnet-*`` model),
    everything under ``out_dir``. ``pool`` and ``report``: ``(wav, truth)`` with the truth's ``recording``
    the wav's name (:func:`helpers.experiments.detection.semi_synthetic_pair` gives such pairs).
    ``detect_threshold``: the low threshold whose events are candidates for review;
    ``fallback_threshold``: the threshold of classes not yet calibrated."""
    out = Path(out_dir)
    pool_wav, pool_truth = pool
    report_wav, report_truth = report
    table = ReviewTable(out / "reviews", reviewer="simulated")
    held_out = None if held_out_recordings(corpus.root) is not None else []
    current, results, reviewed = corpus, [], set()
    for r in range(rounds + 1):
        run = train(TrainConfig(**{**config.to_dict(), "corpus": str(current.root), "out_dir": str(out / "runs")}),
                    corpus=current, progress=False)
        ckpt = inference_checkpoint(run.run_dir)
        here = out / f"round{r}"
        if r == 0:
            pool_scan = scan(ckpt, pool_wav, here / "pool", threshold=detect_threshold, progress=False)
            scan(ckpt, report_wav, here / "report", threshold=detect_threshold, progress=False)
        else:
            pool_scan = rescore(ckpt, out / "round0" / "pool", here / "pool", threshold=detect_threshold,
                                progress=False)
            rescore(ckpt, out / "round0" / "report", here / "report", threshold=detect_threshold, progress=False)
        classes = pool_scan.settings["classes"]
        pool_windows = _windows(here / "pool", pool_wav)
        latest = table.latest()
        thresholds: dict[str, float] | float = fallback_threshold
        uncalibrated = [c for c in classes if c != background]
        if len(latest):
            latest = latest.assign(score=event_scores_under(pool_windows, latest)).dropna(subset=["score"])
            fitted = calibrate(latest, target_precision=target_precision, seed=seed)
            thresholds = calibrated_thresholds(fitted, classes, fallback=fallback_threshold, background=background)
            uncalibrated = [c for c in uncalibrated if not fitted["classes"].get(c, {}).get("calibrated")]
        report_windows = _windows(here / "report", report_wav)
        calls = [c for c in classes if c != background]
        events = detect_events(report_windows, classes, threshold=thresholds, background=background)
        scores = event_scores(events, report_truth, classes=calls, min_iou=min_iou)
        curve = precision_recall_curve_events(report_windows, report_truth, classes, min_iou=min_iou,
                                              background=background)
        at_half = precision_at_recall(curve, [0.5])["precision"].iloc[0]
        _, effort = listening_effort(report_windows, report_truth, recall_targets=(0.8,), classes=classes,
                                     background=background)
        results.append(Round(r, len(latest), int((current.table["split"] == "train").sum()), run.run_dir, thresholds,
                             uncalibrated, scores, float(at_half), float(effort["time_saved"].iloc[0])))
        if r == rounds:
            break
        candidates = pool_scan.detections
        candidates = candidates[~candidates.apply(lambda e: f"{e.recording}|{e.begin:.3f}|{e.end:.3f}|{e.label}",
                                                  axis=1).isin(reviewed)] if len(candidates) else candidates
        if not len(candidates):
            break  # nothing new to review: the loop has used up the pool
        queue = review_queue(candidates, n=reviews_per_round, mix=mix,
                             threshold=thresholds if isinstance(thresholds, float) else
                             {c: thresholds.get(c, fallback_threshold) for c in calls}, seed=seed + r)
        answered = simulated_decisions(queue, pool_truth, min_iou=min_iou, background=background)
        for row in answered.to_dict(orient="records"):
            table.record(row, row["decision"], row["new_label"] or None)
        reviewed |= set(queue["event_id"])
        this_round = table.latest()
        this_round = this_round[this_round["event_id"].isin(queue["event_id"])]
        root = training_round(current, this_round, {pool_wav.name: pool_wav}, out / f"corpus-round{r + 1}",
                              round_name=f"round{r + 1}", held_out=held_out, scan_dir=out / "round0" / "pool")
        current = read_corpus(root)
    return results


def rounds_table(rounds: list[Round]) -> pd.DataFrame:
    """One row per round: reviews so far, training clips, and the report recording's event scores."""
    return pd.DataFrame([r.row() for r in rounds])
