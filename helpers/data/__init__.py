"""Data: audio reading, resampling and padding (:mod:`.audio`), finding audio files (:mod:`.audio_files`),
the challenge-layout corpus reader and validator (:mod:`.corpus`) and its one writer
(:mod:`.corpus_writer`), verified downloads (:mod:`.download`), reviewed detections as a training round
(:mod:`.rounds`), and three rooms: the named corpora (:mod:`.corpora`: the real demo corpus, the
synthetic one, building or locating a corpus by name, the two-stage views), Raven / Audacity / CSV
annotations read, checked and written (:mod:`.annotations`) and a challenge-layout corpus cut from
annotated recordings (:mod:`.cut`). Long recordings are :mod:`helpers.recordings`.
"""

from helpers.data.annotations import AnnotationError, AnnotationSet, read_annotations, validate_annotations
from helpers.data.audio import CLIP_SECONDS, SAMPLE_RATE, load_clip, read_audio
from helpers.data.corpus import Corpus, CorpusError, read_corpus, validate_corpus
from helpers.data.cut import CutError, CutSummary, cut_corpus
from helpers.data.corpora.named import CLASS_DESCRIPTIONS, corpus_dir, prepare_corpus

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
