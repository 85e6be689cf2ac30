"""Reviewed detections back into training: a new round of the training split, devel and test untouched.

:func:`training_round` takes the latest review of each event (:meth:`helpers.evaluation.review.ReviewTable.latest`)
and writes a new corpus in the challenge layout beside the old one: the same devel and test splits,
and the training split grown by one clip per usable review, cut at the corpus's clip length centred
on the event (shifted to stay inside the recording) at the corpus's sample rate:

    decision    becomes
    call        a clip of the event's label
    other       a clip of the label heard (``new_label``)
    not_call    a hard-negative clip of the background label
    unsure, skip  nothing

Clips from recordings that fed the devel or test split are refused (one line per row, naming the
review row and the fix): they would leak what is measured into what is learned. Which recordings
those are comes from the corpus's ``manifest.csv`` (``source_recording``, ``recording`` or
``source_path`` by split, as the demo and cut corpora write it) or from ``held_out``. The round's
``rounds.csv`` records, per new clip, the scan, recording, times and the review row it came from.
The corpus is written in a temporary folder and moved into place: a crash leaves no half corpus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import soundfile as sf

from helpers.data.audio import CLIP_SECONDS
from helpers.data.corpus import Corpus
from helpers.data.corpus_writer import CorpusWriter
from helpers.recordings.stream import read_segment, recording_info

#: Columns of ``rounds.csv``: one row per clip a review round added.
ROUND_COLUMNS = [
    "round",
    "filename",
    "label",
    "decision",
    "event_id",
    "recording",
    "path",
    "event_begin",
    "event_end",
    "clip_begin",
    "clip_end",
    "score",
    "reviewer",
    "time",
    "review_row",
    "scan_dir",
]
USABLE = {"call", "other", "not_call"}


def held_out_recordings(corpus_root: str | Path) -> dict[str, set[str]] | None:
    """The recordings (file stems) each of devel and test came from, by the corpus's ``manifest.csv``;
    None when the corpus has no manifest that says."""
    manifest = Path(corpus_root) / "manifest.csv"
    if not manifest.is_file():
        return None
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    column = next((c for c in ("source_recording", "recording", "source_path") if c in table.columns), None)
    if column is None or "split" not in table.columns:
        return None
    return {
        split: {Path(v).stem for v in table.loc[table["split"] == split, column] if v} for split in ("devel", "test")
    }


def corpus_spans(corpus_root: str | Path) -> dict[str, list[tuple[float, float]]]:
    """The spans (s) of each source recording that the corpus's clips were cut from, keyed by the
    recording's file name, by ``manifest.csv`` (``source_path``, ``offset_s``, ``duration_s``, as the demo
    corpus writes it); empty when the corpus has no such manifest. Audio outside these spans is material
    of the recording that the corpus does not hold."""
    manifest = Path(corpus_root) / "manifest.csv"
    if not manifest.is_file():
        return {}
    table = pd.read_csv(manifest, dtype={"source_path": str}, keep_default_na=False)
    if not {"source_path", "offset_s", "duration_s"} <= set(table.columns):
        return {}
    spans: dict[str, list[tuple[float, float]]] = {}
    for r in table.itertuples(index=False):
        begin = float(r.offset_s)
        spans.setdefault(Path(r.source_path).name, []).append((begin, begin + float(r.duration_s)))
    return {name: sorted(s) for name, s in spans.items()}


def _label_of(row: pd.Series, background: str) -> str:
    return {"call": str(row["label"]), "other": str(row["new_label"]), "not_call": background}[row["decision"]]


def training_round(
    corpus: Corpus,
    reviews: pd.DataFrame,
    recordings: Mapping[str, str | Path],
    out_dir: str | Path,
    round_name: str = "round1",
    clip_seconds: float = CLIP_SECONDS,
    background_label: str = "background",
    held_out: Iterable[str] | None = None,
    scan_dir: str | Path | None = None,
) -> Path:
    """Write ``out_dir``: ``corpus`` with its training split grown by the usable ``reviews`` (module
    docstring). ``recordings``: recording name (as in the reviews) -> audio file. ``held_out``:
    recording stems that must not give clips, when the corpus has no manifest (give ``[]`` to say
    there are none). Raises ValueError listing every refused row, naming the fix."""
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out}: exists; a round is written once: choose another out_dir or round_name.")
    usable = reviews[reviews["decision"].isin(USABLE)].reset_index().rename(columns={"index": "review_row"})
    refused = held_out_recordings(corpus.root)
    if refused is None:
        if held_out is None:
            raise ValueError(
                f"{corpus.root}: has no manifest.csv saying which recordings devel and test came from; "
                "pass held_out=[their file stems] (or [] if none of the reviewed recordings fed them)."
            )
        refused = {"devel or test": {Path(h).stem for h in held_out}}
    problems = []
    for r in usable.itertuples():
        stem = Path(str(r.recording)).stem
        split = next((s for s, stems in refused.items() if stem in stems), None)
        line = f"review row {r.review_row + 2} ({r.event_id})"
        if split is not None:
            problems.append(
                f"{line}: recording {r.recording} fed the {split} split; its clips would leak the measured "
                "split into training: review detections of recordings outside devel and test"
            )
        label = _label_of(pd.Series(r._asdict()), background_label)
        if label not in corpus.classes:
            problems.append(
                f"{line}: label {label!r} is not a class of {corpus.root} ({', '.join(corpus.classes)}); "
                "correct the review's label"
            )
        if str(r.recording) not in recordings:
            problems.append(f"{line}: no audio file given for recording {r.recording}; add it to recordings")
    if problems:
        raise ValueError(f"training round {round_name}: {len(problems)} review row(s) refused:\n" + "\n".join(problems))
    rate = int(sf.info(str(corpus.table["path"].iloc[0])).samplerate)
    rows = []
    with CorpusWriter(out, splits=tuple(corpus.splits)) as written:
        for clip in corpus.table.itertuples(index=False):  # the old clips are shared (hard links), not copied
            written.add_file(clip.split, Path(clip.path).name, clip.label, clip.path)
        for k, r in enumerate(usable.itertuples(), start=1):
            path = Path(recordings[str(r.recording)])
            duration = float(recording_info(path)["duration"])
            centre = 0.5 * (float(r.begin) + float(r.end))
            begin = float(np.clip(centre - clip_seconds / 2, 0.0, max(0.0, duration - clip_seconds)))
            wave, _ = read_segment(path, begin, min(duration, begin + clip_seconds), sample_rate=rate)
            name = f"train_{round_name}_{k:05d}.wav"
            label = _label_of(pd.Series(r._asdict()), background_label)
            written.add_wave("train", name, label, wave, rate)
            rows.append(
                {
                    "round": round_name,
                    "filename": name,
                    "label": label,
                    "decision": r.decision,
                    "event_id": r.event_id,
                    "recording": r.recording,
                    "path": str(path),
                    "event_begin": r.begin,
                    "event_end": r.end,
                    "clip_begin": begin,
                    "clip_end": begin + clip_seconds,
                    "score": r.score,
                    "reviewer": r.reviewer,
                    "time": r.time,
                    "review_row": int(r.review_row) + 2,
                    "scan_dir": str(scan_dir) if scan_dir else "",
                }
            )
        added = pd.DataFrame(rows, columns=ROUND_COLUMNS)
        previous = Path(corpus.root) / "rounds.csv"
        history = pd.concat([pd.read_csv(previous), added], ignore_index=True) if previous.is_file() else added
        written.write_table("rounds.csv", history)
        if (Path(corpus.root) / "manifest.csv").is_file():
            written.copy_in("manifest.csv", Path(corpus.root) / "manifest.csv")
    return out
