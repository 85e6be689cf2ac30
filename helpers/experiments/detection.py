"""Detection measured honestly: the threshold is chosen on one recording and reported on another.

:func:`semi_synthetic_pair` writes two semi-synthetic recordings (calls of one split each over its
background, :func:`helpers.recordings.semi_synthetic.make_long_recording`); :func:`held_out_detection` scans the
first, takes the threshold with the best event F1 there (:func:`helpers.recordings.event_scores.choose_threshold`,
one for all classes or one per class), scans the second at that threshold and scores its events, the
listening time saved and the scan's real-time factor. Notebooks 09 and 11 follow this rule; a
threshold chosen on the recording it is reported on would be the best of many tries (optimistic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.fileio import read_json
from helpers.data.corpus import Corpus
from helpers.recordings.semi_synthetic import make_long_recording
from helpers.recordings.event_scores import (
    choose_threshold,
    event_scores,
    listening_effort,
    precision_recall_curve_events,
)
from helpers.recordings.scan import ScanResult, scan
from helpers.recordings.scan_store import read_windows

#: Recalls at which the listening time saved is reported.
EFFORT_RECALLS = (0.5, 0.8, 0.9)


@dataclass
class HeldOutDetection:
    """:func:`held_out_detection`'s result for one checkpoint."""

    checkpoint: Path
    threshold: float | dict[str, float]
    devel_f1: float  # at the chosen threshold, on the "choose" recording (selected: optimistic)
    scores: pd.DataFrame  # event_scores on the "report" recording, per class and "all"
    effort: pd.DataFrame  # listening_effort summary on the "report" recording
    realtime_factor: float  # audio seconds per wall second of the "report" scan
    report_scan: Path = Path()  # the folder of the "report" scan
    windows: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    detections: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    report: ScanResult | None = field(repr=False, default=None)  # the "report" scan itself

    def summary(self) -> dict[str, Any]:
        """Event precision, recall and F1 (all classes), the real-time factor and the listening time saved."""
        overall = self.scores.set_index("class").loc["all"]
        row = {
            "event precision": overall["precision"],
            "event recall": overall["recall"],
            "event F1": overall["f1"],
            "scan x real time": self.realtime_factor,
        }
        effort = self.effort.set_index("recall_target")["time_saved"]
        for r in EFFORT_RECALLS:
            row[f"time saved at {r:.0%} recall"] = effort.get(r, np.nan)
        return row


def semi_synthetic_pair(
    corpus: Corpus,
    folder: str | Path,
    threshold_split: str = "devel",
    truth_split: str = "test",
    duration: float = 180.0,
    n_calls: int = 12,
    snr_db: tuple[float, float] = (-5.0, 10.0),
    seed: int = 0,
    sample_rate: int = 16_000,
) -> dict[str, tuple[Path, pd.DataFrame]]:
    """Two semi-synthetic recordings (notebook 09's recipe) with their truth: ``"choose"``, of
    ``threshold_split``'s calls, picks the threshold; ``"report"``, of ``truth_split``'s, is scored at it.
    Values ``(wav, truth)``; the truth's ``recording`` is the file name."""
    if threshold_split == truth_split:
        raise ValueError(
            f"threshold_split and truth_split are both {truth_split!r}: a threshold chosen on the "
            "recording it is reported on gives an optimistic score; use two splits."
        )
    out = {}
    for role, split in (("choose", threshold_split), ("report", truth_split)):
        wav = Path(folder) / f"{corpus.name}-{split}-seed{seed}-{int(duration)}s-{sample_rate // 1000}k.wav"
        truth = make_long_recording(
            corpus,
            wav,
            split=split,
            duration=duration,
            n_calls=n_calls,
            snr_db=snr_db,
            sample_rate=sample_rate,
            seed=seed,
        )
        out[role] = (wav, truth.rename(columns={"file": "recording"}).assign(recording=wav.name))
    return out


def _windows(scan_dir: Path, wav: Path) -> pd.DataFrame:
    return read_windows(scan_dir, wav.name)


def _realtime_factor(scan_dir: Path, wav: Path) -> float:
    """Audio seconds per wall second of the recording's scan, from its ``.scan.json`` (a resumed scan keeps it)."""
    record = read_json(scan_dir / f"{wav.name}.scan.json")
    return float(record["duration"]) / float(record["seconds"]) if record.get("seconds") else float("nan")


def held_out_detection(
    checkpoint: str | Path,
    recordings: dict[str, tuple[Path, pd.DataFrame]],
    out_dir: str | Path,
    min_iou: float = 0.3,
    per_class: bool = False,
    hop: float | None = None,
    device: str = "auto",
    background: str = "background",
    precision: str = "fp32",
) -> HeldOutDetection:
    """Scan the ``"choose"`` recording of :func:`semi_synthetic_pair`, take the threshold with the best event
    F1 there, then scan the ``"report"`` recording at that threshold and score its events, listening
    effort and speed, both scans in ``precision``. Scans resume (``out_dir/choose``, ``out_dir/report``)."""
    out = Path(out_dir)
    choose_wav, choose_truth = recordings["choose"]
    report_wav, report_truth = recordings["report"]
    first = scan(checkpoint, choose_wav, out / "choose", hop=hop, device=device, progress=False, precision=precision)
    classes = first.settings["classes"]
    calls = [c for c in classes if c != background]
    curve = precision_recall_curve_events(
        _windows(out / "choose", choose_wav),
        choose_truth,
        classes,
        min_iou=min_iou,
        background=background,
        score_from=first.settings["score_from"],
    )
    threshold = choose_threshold(curve, per_class=per_class)
    overall = curve[curve["class"] == "all"]
    devel_f1 = (
        float(overall.loc[np.isclose(overall["threshold"], threshold), "f1"].max()) if not per_class else float("nan")
    )
    report = scan(
        checkpoint,
        report_wav,
        out / "report",
        hop=hop,
        device=device,
        progress=False,
        threshold=threshold,
        precision=precision,
    )
    windows = _windows(out / "report", report_wav)
    scores = event_scores(report.detections, report_truth, classes=calls, min_iou=min_iou)
    _, effort = listening_effort(
        windows,
        report_truth,
        recall_targets=EFFORT_RECALLS,
        classes=classes,
        background=background,
        score_from=report.settings["score_from"],
    )
    return HeldOutDetection(
        Path(checkpoint),
        threshold,
        devel_f1,
        scores,
        effort,
        _realtime_factor(out / "report", report_wav),
        out / "report",
        windows,
        report.detections,
        report,
    )
