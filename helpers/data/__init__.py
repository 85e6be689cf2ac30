"""Data: audio reading, resampling and padding (:mod:`.audio`), the challenge-layout corpus reader and
validator (:mod:`.corpus`), the named corpora: the real demo corpus cut from public recordings
(:mod:`.demo`, downloads verified by :mod:`.download`) and the synthetic one (:mod:`.synthetic`),
building or locating a corpus by name (:mod:`.named`), and field recordings: reading and checking
Raven / Audacity / CSV annotations (:mod:`.annotations`, with its parts ``annotation_*``) and cutting
a challenge-layout corpus from annotated recordings (:mod:`.cut`, with ``cut_*``), writing
detections as Raven / Audacity / CSV tables (:mod:`.annotation_writers`), reading long recordings
in blocks of windows (:mod:`.stream`) and semi-synthetic long recordings with exact truth
(:mod:`.longform`).
"""

from helpers.data.annotations import AnnotationError, AnnotationSet, read_annotations, validate_annotations
from helpers.data.audio import CLIP_SECONDS, SAMPLE_RATE, load_clip, read_audio
from helpers.data.corpus import Corpus, CorpusError, read_corpus, validate_corpus
from helpers.data.cut import CutError, CutSummary, cut_corpus
from helpers.data.longform import make_long_recording
from helpers.data.named import CLASS_DESCRIPTIONS, corpus_dir, prepare_corpus

__all__ = [
    "AnnotationError",
    "AnnotationSet",
    "CutError",
    "CutSummary",
    "cut_corpus",
    "make_long_recording",
    "read_annotations",
    "validate_annotations",
    "CLASS_DESCRIPTIONS",
    "CLIP_SECONDS",
    "SAMPLE_RATE",
    "Corpus",
    "CorpusError",
    "corpus_dir",
    "load_clip",
    "prepare_corpus",
    "read_audio",
    "read_corpus",
    "validate_corpus",
]
