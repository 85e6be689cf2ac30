"""Named corpora: build or locate one by name, then read and validate it.

``demo`` (real recordings, see :mod:`helpers.data.corpora.demo`), ``synthetic`` (generated, see
:mod:`helpers.data.corpora.synthetic`) or the path of any folder in the challenge layout.
"""

from __future__ import annotations

from pathlib import Path

from helpers.data.audio import CLIP_SECONDS
from helpers.data.corpus import Corpus, read_corpus

NAMED_CORPORA = ("demo", "synthetic")


def corpus_dir(name: str, data_dir: str | Path = "data", n_clips: int = 1000, seed: int = 0) -> Path:
    """Folder where corpus ``name`` lives (or would be built) under ``data_dir``."""
    if name == "demo":
        return Path(data_dir) / "demo"
    if name == "synthetic":
        return Path(data_dir) / f"synthetic-n{n_clips}-seed{seed}"
    return Path(name)


def prepare_corpus(
    name: str,
    data_dir: str | Path = "data",
    n_clips: int = 1000,
    seed: int = 0,
    on_error: str = "raise",
    mirror: str | Path | None = None,
    classes: list[str] | None = None,
    progress: bool = True,
    clip_seconds: float = CLIP_SECONDS,
) -> Corpus:
    """Build ``demo`` or ``synthetic`` if absent (reused when present), then read and validate.

    Any other ``name`` is taken as the path of a corpus in the challenge layout. Raises
    :class:`helpers.data.corpus.CorpusError` listing every problem when the corpus has errors and
    ``on_error="raise"``; with ``on_error="exclude"`` the faulty rows are dropped and listed in
    ``Corpus.excluded``. ``clip_seconds``: the clip length the features will use (clips longer
    than it are reported as cut off). ``NAME+call-detector`` and ``NAME+calls-only`` give the views of
    :mod:`helpers.data.corpora.views` of corpus ``NAME`` (the two stages of the two-stage model).
    """
    from helpers.data.corpora.views import CORPUS_VIEWS, split_view

    base, view = split_view(name)
    if view is not None:
        return CORPUS_VIEWS[view](
            prepare_corpus(base, data_dir, n_clips, seed, on_error, mirror, classes, progress, clip_seconds)
        )
    root = corpus_dir(name, data_dir, n_clips, seed)
    if name == "demo":
        from helpers.data.corpora.demo import build_demo_corpus

        build_demo_corpus(root, cache_dir=Path(data_dir) / "downloads", mirror=mirror, progress=progress)
    elif name == "synthetic":
        if not (root / "lab" / "train.csv").is_file():
            from helpers.data.corpora.synthetic import make_synthetic_corpus

            make_synthetic_corpus(root, n_clips=n_clips, seed=seed)
    elif not root.exists():
        raise FileNotFoundError(
            f"corpus folder {root} does not exist; use 'demo', 'synthetic' or the path of a folder "
            "holding wav/ and lab/."
        )
    corpus_name = name if name in NAMED_CORPORA else None
    if name == "synthetic":
        corpus_name = root.name
    return read_corpus(root, classes=classes, on_error=on_error, name=corpus_name, clip_seconds=clip_seconds)


#: What each class sounds like, for the exploration notebook (real, demo and synthetic labels).
CLASS_DESCRIPTIONS = {
    # challenge corpus (label spellings as distributed)
    "background": "Forest ambience with no target call: insects, birds, rain, wind, distant noises. "
    "The 'reject' class; in the challenge it is half of all clips.",
    "chimpanze": "Chimpanzee: pant-hoots (rising series of hoots ending in screams), barks and screams; "
    "loud, broadband, energy mostly 0.2-2 kHz.",
    "geunon": "Guenons (several species): short, repeated pyow/hack calls and trills; the rarest class (2.3 %).",
    "mandrille": "Mandrill: low-frequency two-phase grunts and growls (crowing), energy well under 1 kHz.",
    "redcap": "Red-capped mangabey: loud whoop-gobbles and barks, often confused with mandrills.",
    # demo corpus
    "chimpanzee": "Chimpanzee calls recorded in Cameroon (short clips cut around the calls by their authors).",
    "gibbon_female": "Northern grey gibbon female great call: a rising series of pure, whistle-like notes, "
    "0.6-2.5 kHz.",
    "gibbon_male": "Gibbon male solo song: shorter, frequency-modulated 'hoo' notes, 0.6-1.5 kHz.",
    "great_argus": "Great argus pheasant: loud repeated 'kwow' calls, far-carrying through the forest.",
}
