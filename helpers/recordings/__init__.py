"""Long field recordings, from audio to events and their scores: reading hours of audio in blocks of
windows (:mod:`.stream`), scanning recordings, folders and archives with a checkpoint (:mod:`.scan`:
``from helpers.recordings.scan import scan``; its machinery :mod:`.scan_core`, where the results
are kept :mod:`.scan_store`, an archive as SLURM shards :mod:`.scan_slurm`), window scores made
into events (:mod:`.detect`), events scored against reference annotations: precision, recall,
listening effort (:mod:`.event_scores`), and semi-synthetic long recordings with exact truth
(:mod:`.semi_synthetic`).
"""

from helpers.recordings.detect import align_recordings, call_score, detect_events
from helpers.recordings.event_scores import event_scores, listening_effort, match_events, precision_recall_curve_events
from helpers.recordings.semi_synthetic import make_long_recording

__all__ = [
    "align_recordings",
    "call_score",
    "detect_events",
    "event_scores",
    "listening_effort",
    "make_long_recording",
    "match_events",
    "precision_recall_curve_events",
]
