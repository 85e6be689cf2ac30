"""Data: audio reading, resampling and padding (:mod:`.audio`), the challenge-layout corpus reader and
validator (:mod:`.corpus`), the named corpora: the real demo corpus cut from public recordings
(:mod:`.demo`, downloads verified by :mod:`.download`) and the synthetic one (:mod:`.synthetic`),
and building or locating a corpus by name (:mod:`.named`).
"""
from helpers.data.audio import CLIP_SECONDS, SAMPLE_RATE, load_clip, read_audio
from helpers.data.corpus import Corpus, CorpusError, read_corpus, validate_corpus
from helpers.data.named import CLASS_DESCRIPTIONS, corpus_dir, prepare_corpus

__all__ = ["CLASS_DESCRIPTIONS", "CLIP_SECONDS", "SAMPLE_RATE", "Corpus", "CorpusError", "corpus_dir", "load_clip",
           "prepare_corpus", "read_audio", "read_corpus", "validate_corpus"]
