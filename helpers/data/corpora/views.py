"""Views of a corpus for the two stages of "background first, then species".

A view is the same clips under other labels; it has the corpus's name, so the feature cache is
shared. A corpus *name* may ask for a view: ``prepare_corpus("demo+call-detector")`` is
``relabel_to_calls(prepare_corpus("demo"))`` and ``"demo+calls-only"`` is
``calls_only(prepare_corpus("demo"))``, so a TrainConfig whose ``corpus`` names a view trains on it
in any process (the grid's workers, SLURM jobs, ``03_train``), and its run folder differs from the
flat model's because the name is part of the run key.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from helpers.data.corpus import Corpus

#: Class names of the call detector's corpus, in class-index order (background first, as in the corpus).
DETECTOR_CLASSES = ("background", "call")
#: The corpus-name suffix (after ``+``) of each view.
CALL_DETECTOR, CALLS_ONLY = "call-detector", "calls-only"


def background_index_of(corpus: Corpus, background_class: str) -> int:
    """The class index of ``background_class`` in ``corpus``; ValueError naming the classes when absent."""
    if background_class not in corpus.classes:
        raise ValueError(
            f"corpus {corpus.name!r} has no class {background_class!r} (classes {corpus.classes}); "
            "pass background_class= the corpus's no-call class."
        )
    return corpus.classes.index(background_class)


def relabel_to_calls(corpus: Corpus, background_class: str = "background") -> Corpus:
    """A copy of ``corpus`` for the call detector: classes ``["background", "call"]``; every clip of
    ``background_class`` becomes ``background`` (index 0), every other labelled clip ``call`` (1).
    Unknown labels (``?``, class_index -1, the hidden test set) stay unknown. Same clips, same
    name (so the feature cache is shared); the original is not modified."""
    background = background_index_of(corpus, background_class)
    table = corpus.table.copy()
    known = table["class_index"] >= 0
    is_call = known & (table["class_index"] != background)
    table.loc[known, "class_index"] = is_call[known].astype(int)
    table.loc[known, "label"] = np.where(is_call[known], DETECTOR_CLASSES[1], DETECTOR_CLASSES[0])
    return dataclasses.replace(corpus, table=table, classes=list(DETECTOR_CLASSES))


def calls_only(corpus: Corpus, background_class: str = "background") -> Corpus:
    """A copy of ``corpus`` for the species classifier: only clips labelled with a call class (K-1
    classes, class order kept, indices renumbered 0..K-2). Clips with unknown labels are dropped
    too (the species stage never sees a clip the detector did not pass; score those with the
    combined system)."""
    background = background_index_of(corpus, background_class)
    table = corpus.table
    keep = (table["class_index"] >= 0) & (table["class_index"] != background)
    table = table[keep].copy()
    table["class_index"] = table["class_index"] - (table["class_index"] > background).astype(int)
    classes = [c for i, c in enumerate(corpus.classes) if i != background]
    return dataclasses.replace(corpus, table=table.reset_index(drop=True), classes=classes)


#: View name -> function of the corpus (``prepare_corpus("NAME+VIEW")``).
CORPUS_VIEWS = {CALL_DETECTOR: relabel_to_calls, CALLS_ONLY: calls_only}


def split_view(name: str) -> tuple[str, str | None]:
    """``"demo+call-detector"`` -> ``("demo", "call-detector")``; a name without a known view -> ``(name, None)``."""
    base, plus, view = str(name).rpartition("+")
    if plus and view in CORPUS_VIEWS:
        return base, view
    return str(name), None
