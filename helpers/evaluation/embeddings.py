"""Embeddings of a trained model, a linear SVM on them, and a 2-d t-SNE view (paper section 5).

The paper extracts CNN10 embeddings "outputted from the penultimate fully-connected layer",
trains linear SVMs on them (88.8 % devel UAR, below the network's own 93.6 %) and shows a
t-SNE map of the devel embeddings (its Figure 2). This module does the same for any of our
checkpoints::

    sets = extract_embeddings("runs/train/RUN/checkpoints/best_ema.pt", corpus)
    svm = fit_linear_svm(sets["train"], sets["devel"], test_set=sets["test"])
    points, used = tsne_2d(sets["devel"].embeddings)

The embedding is the model's second output: the penultimate fully-connected layer after its
ReLU (so every value is >= 0), taken before the last dropout; 512 values for the paper's CNN10.

Honest labelling, as in :mod:`helpers.training.loop`: the SVM's C is chosen by devel UAR, so the devel
score of the chosen C is the best of ``len(Cs)`` devel evaluations and optimistic. Test scores
are not selected on. The checkpoint itself may also have been chosen on devel (``best_*``),
which makes every devel number of its embeddings optimistic too; the metrics say so.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from helpers.data.corpus import Corpus
from helpers.evaluation.scoring import predict_scores
from helpers.features.frontend import FeatureSettings
from helpers.features.cache import load_features
from helpers.core.hardware import resolve_device
from helpers.evaluation.metrics import classification_metrics, unweighted_average_recall
from helpers.models.checkpoint import load_checkpoint, model_from_checkpoint, require_training_record

#: The C grid of :func:`fit_linear_svm` (inverse regularisation strength of the linear SVM).
DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: Iteration cap of liblinear; standardised embeddings of a few thousand clips converge far below it.
SVM_MAX_ITER = 20_000

SVM_SELECTED_NOTE = (
    "optimistic: this devel score was also used to choose the SVM's C (best of {n} devel "
    "evaluations); treat it as an upper estimate, not a held-out result"
)
SVM_UNSELECTED_NOTE = "not used to choose the SVM's C: an unbiased estimate for this split"
CHECKPOINT_SELECTED_NOTE = (
    "the checkpoint that gave these embeddings was itself chosen by devel UAR "
    "({kind}), so devel scores are optimistic for that reason too"
)


@dataclass
class EmbeddingSet:
    """The embeddings of one split and what identifies them.

    ``embeddings``: float32 ``(n, D)`` (penultimate FC after ReLU, >= 0); ``labels``: int64
    ``(n,)`` class indices, -1 where unknown (hidden test labels); ``filenames``: n names in
    corpus order; ``scores``: float32 ``(n, K)`` the network's own class scores (sigmoid or
    softmax, as the checkpoint was trained); ``classes``: the K class names.
    """

    split: str
    embeddings: np.ndarray
    labels: np.ndarray
    filenames: list[str]
    scores: np.ndarray
    classes: list[str]
    checkpoint_kind: str | None = None

    def __len__(self) -> int:
        return len(self.filenames)

    @property
    def has_labels(self) -> bool:
        return len(self.labels) > 0 and bool((self.labels >= 0).all())


def extract_embeddings(
    checkpoint: str | Path | dict[str, Any],
    corpus: Corpus,
    splits: Sequence[str] = ("train", "devel", "test"),
    cache_dir: str | Path = "data/cache",
    device: str | torch.device = "auto",
    batch_size: int = 512,
    progress: bool = False,
) -> dict[str, EmbeddingSet]:
    """Embeddings ``(n, D)`` and class scores ``(n, K)`` of every clip of ``splits``.

    ``checkpoint``: a checkpoint file written by :func:`helpers.training.train` (or its loaded dict).
    The log-mels come from the feature cache with the checkpoint's own feature settings (sample
    rate etc.), so they are the ones the model was trained on. Inference runs in float32 in eval
    mode (no dropout, BatchNorm running statistics), so the result is deterministic on CPU.
    """
    ckpt = require_training_record(
        checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint),
        origin=str(checkpoint) if not isinstance(checkpoint, dict) else "checkpoint dict",
    )
    classes = list(ckpt["classes"])
    if classes != list(corpus.classes):
        raise ValueError(
            f"the checkpoint was trained on classes {classes} but corpus {corpus.name!r} has "
            f"{list(corpus.classes)}; use a checkpoint trained on this corpus."
        )
    unknown = [s for s in splits if s not in corpus.splits]
    if unknown:
        raise ValueError(f"corpus {corpus.name!r} has no split(s) {unknown}; it has {corpus.splits}.")
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt).to(dev).eval()
    settings = FeatureSettings(**ckpt["feature_settings"])
    score = ckpt.get("score", "softmax")
    kind = ckpt.get("kind")
    out: dict[str, EmbeddingSet] = {}
    for split in splits:
        feats = load_features(corpus.table, split, settings, cache_dir, corpus.name, progress=progress)
        scores, emb = predict_scores(
            model, feats.features, batch_size=batch_size, score=score, device=dev, amp=False, return_embeddings=True
        )
        out[split] = EmbeddingSet(
            split=split,
            embeddings=emb.astype(np.float32, copy=False),
            labels=np.asarray(feats.labels, dtype=np.int64),
            filenames=list(feats.filenames),
            scores=scores.astype(np.float32, copy=False),
            classes=classes,
            checkpoint_kind=kind,
        )
    return out


# --- linear SVM -------------------------------------------------------------------------------


@dataclass
class SvmResult:
    """What :func:`fit_linear_svm` returns.

    ``pipeline``: the fitted ``StandardScaler -> LinearSVC`` (train only) with the chosen C;
    ``table``: one row per C (``C``, ``train_uar``, ``devel_uar``, ``converged``, ``chosen``);
    ``devel_metrics`` / ``test_metrics``: :func:`helpers.evaluation.metrics.classification_metrics` dicts
    with ``selected_on_this_split`` and ``note`` (``test_metrics`` is None without test labels);
    ``*_scores``: decision values ``(n, K)``; ``*_predictions``: class indices ``(n,)``.
    """

    pipeline: Any
    table: pd.DataFrame
    best_C: float
    devel_metrics: dict
    test_metrics: dict | None
    devel_scores: np.ndarray
    devel_predictions: np.ndarray
    test_scores: np.ndarray | None = None
    test_predictions: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        """One row per split with metrics: UAR, mAP, and whether the score was selected on."""
        rows = []
        for split, m in (("devel", self.devel_metrics), ("test", self.test_metrics)):
            if m is not None:
                rows.append(
                    {
                        "split": split,
                        "C": self.best_C,
                        "uar": m["uar"],
                        "map": m["map"],
                        "selected_on_this_split": m["selected_on_this_split"],
                    }
                )
        return pd.DataFrame(rows)


def _decision_scores(pipeline, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Decision values ``(n, K)`` in class-index order, whatever classes the SVM saw in training.

    A class absent from the training set gets a score below every other (it is never predicted).
    """
    raw = pipeline.decision_function(x)
    seen = pipeline.classes_
    if raw.ndim == 1:  # two classes: one signed margin, positive for seen[1]
        raw = np.stack([-raw, raw], axis=1)
    out = np.full((x.shape[0], n_classes), raw.min() - 1.0 if raw.size else -1.0, dtype=np.float64)
    out[:, seen] = raw
    return out


def fit_linear_svm(
    train_set: EmbeddingSet,
    devel_set: EmbeddingSet,
    Cs: Sequence[float] = DEFAULT_CS,
    class_weight: str | None = None,
    seed: int = 0,
    test_set: EmbeddingSet | None = None,
) -> SvmResult:
    """A linear SVM on standardised embeddings, its C chosen by devel UAR.

    Embeddings are standardised with a ``StandardScaler`` fitted on train only, then a
    ``LinearSVC`` (one-vs-rest, squared hinge, liblinear; ``dual="auto"``) is fitted on train for
    each C of ``Cs``; the C with the highest devel UAR wins (ties: the smallest C, i.e. the
    strongest regularisation). LinearSVC rather than ``SVC(kernel="linear")``: same model
    family, but it scales linearly with the number of clips, where libsvm's kernel solver is
    quadratic or worse on the ~3.5k x 512 training set. ``class_weight="balanced"`` reweights
    the hinge loss by inverse class frequency (the SVM's analogue of the balanced sampler).
    The devel metrics of the chosen C are optimistic and labelled so; test metrics (when
    ``test_set`` has labels) are not selected on.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if class_weight not in (None, "balanced"):
        raise ValueError(f"class_weight must be None or 'balanced', not {class_weight!r}")
    if not Cs:
        raise ValueError("fit_linear_svm needs at least one C in Cs.")
    for s, name in ((train_set, "train"), (devel_set, "devel")):
        if not s.has_labels:
            raise ValueError(
                f"fit_linear_svm: the {name} set ({s.split}) has unknown labels (-1) or no clips; "
                "both train and devel need labels."
            )
    classes = list(train_set.classes)
    k = len(classes)
    x_train, y_train = train_set.embeddings, train_set.labels
    x_devel, y_devel = devel_set.embeddings, devel_set.labels

    rows, fitted = [], []
    for c in Cs:
        pipe = make_pipeline(
            StandardScaler(),
            LinearSVC(C=float(c), class_weight=class_weight, dual="auto", max_iter=SVM_MAX_ITER, random_state=seed),
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            pipe.fit(x_train, y_train)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        train_pred = _decision_scores(pipe, x_train, k).argmax(axis=1)
        devel_pred = _decision_scores(pipe, x_devel, k).argmax(axis=1)
        rows.append(
            {
                "C": float(c),
                "train_uar": unweighted_average_recall(y_train, train_pred, k),
                "devel_uar": unweighted_average_recall(y_devel, devel_pred, k),
                "converged": converged,
            }
        )
        fitted.append(pipe)
    table = pd.DataFrame(rows)
    # Highest devel UAR; among equals the smallest C (sort by C first, then a stable argmax).
    order = np.argsort(table["C"].to_numpy(), kind="stable")
    best_pos = int(order[int(np.argmax(table["devel_uar"].to_numpy()[order]))])
    table["chosen"] = np.arange(len(table)) == best_pos
    best = fitted[best_pos]

    devel_scores = _decision_scores(best, x_devel, k)
    devel_metrics = classification_metrics(y_devel, devel_scores, classes)
    devel_metrics["selected_on_this_split"] = True
    devel_metrics["note"] = SVM_SELECTED_NOTE.format(n=len(table))
    if train_set.checkpoint_kind and str(train_set.checkpoint_kind).startswith("best"):
        devel_metrics["note"] += "; " + CHECKPOINT_SELECTED_NOTE.format(kind=train_set.checkpoint_kind)
    result = SvmResult(
        pipeline=best,
        table=table,
        best_C=float(table.loc[best_pos, "C"]),
        devel_metrics=devel_metrics,
        test_metrics=None,
        devel_scores=devel_scores,
        devel_predictions=devel_scores.argmax(axis=1),
        classes=classes,
    )
    if test_set is not None and len(test_set):
        test_scores = _decision_scores(best, test_set.embeddings, k)
        result.test_scores, result.test_predictions = test_scores, test_scores.argmax(axis=1)
        if test_set.has_labels:
            met = classification_metrics(test_set.labels, test_scores, classes, n_boot=1000, seed=seed)
            met["selected_on_this_split"] = False
            met["note"] = SVM_UNSELECTED_NOTE
            result.test_metrics = met
    return result


# --- 2-d view and confusions -----------------------------------------------------------------


def tsne_2d(
    embeddings: np.ndarray,
    seed: int = 0,
    perplexity: float = 30.0,
    max_points: int = 3000,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A t-SNE map ``(m, 2)`` of embeddings ``(n, D)`` and the row indices ``(m,)`` it shows.

    Above ``max_points`` rows a deterministic random subset (sorted, from ``seed``) is used, as
    t-SNE's cost grows faster than linearly. PCA initialisation and a fixed ``random_state`` make
    the map reproducible. The perplexity (effective number of neighbours) must stay below the
    number of points; it is clipped to ``(m - 1) / 3`` for tiny sets. Distances in the map are
    only meaningful locally: well separated clusters say the classes are separable, not by how much.
    ``n_threads`` caps the OpenMP/BLAS threads of the fit (None: the libraries' default, all
    cores); on a busy 2-core machine 1 avoids the thread contention of docs/reference.md §7, which
    made a 30-point map take 26 s instead of 0.2 s in our tests.
    """
    from sklearn.manifold import TSNE

    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"tsne_2d needs embeddings (n, D), got shape {x.shape}.")
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"tsne_2d needs at least 4 points, got {n}.")
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    else:
        idx = np.arange(n)
    m = len(idx)
    perp = float(min(perplexity, max(1.0, (m - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed)
    if n_threads is None:
        points = tsne.fit_transform(x[idx])
    else:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=n_threads):
            points = tsne.fit_transform(x[idx])
    points = points.astype(np.float32)
    return points, idx


def confused_pairs(confusion_matrix: np.ndarray, classes: Sequence[str], top: int = 5) -> pd.DataFrame:
    """The ``top`` most frequent confusions of a count matrix ``(K, K)`` (rows true, columns predicted).

    Columns: ``true``, ``predicted``, ``count``, ``share_of_true`` (count / clips of the true
    class). Ordered by count, then share; pairs never confused are left out.
    """
    m = np.asarray(confusion_matrix)
    k = len(classes)
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix has shape {m.shape} but there are {k} classes.")
    totals = m.sum(axis=1)
    rows = [
        {
            "true": classes[i],
            "predicted": classes[j],
            "count": m[i, j],
            "share_of_true": float(m[i, j] / totals[i]) if totals[i] else math.nan,
        }
        for i in range(k)
        for j in range(k)
        if i != j and m[i, j] > 0
    ]
    table = pd.DataFrame(rows, columns=["true", "predicted", "count", "share_of_true"])
    table = table.sort_values(["count", "share_of_true"], ascending=False, kind="stable")
    return table.head(top).reset_index(drop=True)


def svm_beside_network(svm: SvmResult, network_splits: dict[str, Any], network_name: str) -> pd.DataFrame:
    """Devel and test UAR (fractions; NaN where a split has no labels) of a network's own
    classifier and of the linear SVM on its embeddings, one row each (column ``classifier``).

    ``network_splits``: ``metrics.json["checkpoints"][name]["splits"]`` of the checkpoint whose
    embeddings the SVM used. Both devel scores are selected on devel (checkpoint and C): optimistic.
    """

    def uar(metrics: dict | None) -> float:
        value = (metrics or {}).get("uar")
        return float("nan") if value is None else float(value)

    return pd.DataFrame(
        [
            {
                "classifier": network_name,
                "devel UAR": uar(network_splits.get("devel")),
                "test UAR": uar(network_splits.get("test")),
            },
            {
                "classifier": f"linear SVM on the embeddings (C={svm.best_C:g}, chosen on devel)",
                "devel UAR": uar(svm.devel_metrics),
                "test UAR": uar(svm.test_metrics),
            },
        ]
    )
