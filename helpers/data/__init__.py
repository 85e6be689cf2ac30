"""Data: audio reading, resampling and padding (:mod:`.audio`), finding audio files (:mod:`.audio_files`),
the challenge-layout corpus reader and validator (:mod:`.corpus`), the named corpora: the real demo
corpus cut from public recordings (:mod:`.demo`, downloads verified by :mod:`.download`) and the
synthetic one (:mod:`.synthetic`), building or locating a corpus by name (:mod:`.named`), the
two-stage views (:mod:`.views`), reviewed detections as a training round (:mod:`.rounds`), and two
rooms: Raven / Audacity / CSV annotations read, checked and written (:mod:`.annotations`) and a
challenge-layout corpus cut from annotated recordings (:mod:`.cut`). Long recordings (streaming,
scanning, events, semi-synthetic recordings) are :mod:`helpers.recordings`.
"""

from helpers.data.annotations import AnnotationError, AnnotationSet, read_annotations, validate_annotations
from helpers.data.audio import CLIP_SECONDS, SAMPLE_RATE, load_clip, read_audio
from helpers.data.corpus import Corpus, CorpusError, read_corpus, validate_corpus
from helpers.data.cut import CutError, CutSummary, cut_corpus
from helpers.data.named import CLASS_DESCRIPTIONS, corpus_dir, prepare_corpus

__all__ = [
    "AnnotationError",
    "AnnotationSet",
    "CutError",
    "CutSummary",
    "cut_corpus",
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
