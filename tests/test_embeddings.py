"""Embeddings of a trained checkpoint, the linear SVM on them (C chosen on devel and labelled
optimistic), the t-SNE map and the confusion table."""

from __future__ import annotations

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

from helpers.data.corpus import read_corpus
from helpers.evaluation.embeddings import (
    confused_pairs,
    extract_embeddings,
    fit_linear_svm,
    svm_beside_network,
    tsne_2d,
)
from helpers.evaluation.metrics import unweighted_average_recall
from helpers.reporting.plots import plot_svm_c_curve, plot_tsne
from helpers.data.corpora.synthetic import make_synthetic_corpus
from helpers.training.loop import train
from helpers.training.config import TrainConfig
from helpers.models.checkpoint import load_checkpoint
from tests.conftest import TEST_THREADS

# Trains models, runs notebooks or starts processes: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

TINY = {"channels": [8, 16, 32, 64]}
CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CNN10 trained 40 steps on an easy synthetic corpus, and its embeddings."""
    tmp = tmp_path_factory.mktemp("emb")
    make_synthetic_corpus(
        tmp / "synthetic",
        n_clips=200,
        seed=3,
        snr_db=(12.0, 20.0),
        hidden_test_labels=False,
        class_proportions=[1, 1, 1, 1, 1],
    )
    corpus = read_corpus(tmp / "synthetic", name="emb-synthetic")
    # No MixUp/SpecAugment: the tiny net then separates the classes in a few dozen steps.
    cfg = TrainConfig(
        corpus="unused",
        sample_rate=8000,
        model="cnn10",
        model_options=TINY,
        iterations=40,
        eval_every=20,
        ema=False,
        checkpoint_every=40,
        mixup=False,
        spec_augment=False,
        cache_dir=str(tmp / "cache"),
        out_dir=str(tmp / "runs"),
        seed=0,
        device="cpu",
        num_threads=TEST_THREADS,
    )
    result = train(cfg, corpus=corpus, progress=False)
    ckpt = result.run_dir / "checkpoints" / "best_plain.pt"
    sets = extract_embeddings(ckpt, corpus, cache_dir=cfg.cache_dir, device="cpu")
    return {"corpus": corpus, "ckpt": ckpt, "cache_dir": cfg.cache_dir, "sets": sets}


def test_embeddings_shapes_and_values(trained):
    corpus, sets = trained["corpus"], trained["sets"]
    assert set(sets) == {"train", "devel", "test"}
    for split, s in sets.items():
        n = len(corpus.split(split))
        assert s.embeddings.shape == (n, 64) and s.embeddings.dtype == np.float32  # fc width = last channels
        assert s.scores.shape == (n, len(corpus.classes))
        assert s.labels.dtype == np.int64 and list(s.labels) == list(corpus.split(split)["class_index"])
        assert s.filenames == list(corpus.split(split)["filename"])
        assert (s.embeddings >= 0).all(), "embeddings are taken after the ReLU"
        assert np.isfinite(s.embeddings).all() and s.embeddings.std() > 0
        assert s.checkpoint_kind == "best_plain"


def test_embeddings_deterministic_and_match_checkpoint_scores(trained):
    again = extract_embeddings(
        load_checkpoint(trained["ckpt"]),
        trained["corpus"],
        splits=("devel",),
        cache_dir=trained["cache_dir"],
        device="cpu",
        batch_size=7,
    )
    np.testing.assert_allclose(again["devel"].embeddings, trained["sets"]["devel"].embeddings, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again["devel"].scores, trained["sets"]["devel"].scores, rtol=1e-5, atol=1e-6)
    # Scores equal the run's own devel predictions (same features, same model).
    run_dir = trained["ckpt"].parent.parent
    table = pd.read_csv(run_dir / "predictions" / "devel-best_plain.csv")
    cols = [f"score_{c}" for c in trained["corpus"].classes]
    np.testing.assert_allclose(again["devel"].scores, table[cols].to_numpy(), rtol=1e-4, atol=1e-5)


def test_extract_rejects_wrong_split(trained):
    with pytest.raises(ValueError, match="no split"):
        extract_embeddings(trained["ckpt"], trained["corpus"], splits=("dev",), cache_dir=trained["cache_dir"])


def test_svm_chooses_c_on_devel_and_labels_it(trained):
    sets = trained["sets"]
    res = fit_linear_svm(sets["train"], sets["devel"], Cs=CS, test_set=sets["test"])
    assert res.best_C in CS and list(res.table["C"]) == list(CS)
    assert res.table["chosen"].sum() == 1
    assert res.table.loc[res.table["chosen"], "devel_uar"].item() == res.table["devel_uar"].max()
    k = len(trained["corpus"].classes)
    direct = unweighted_average_recall(sets["devel"].labels, res.devel_predictions, k)
    assert res.devel_metrics["uar"] == pytest.approx(direct)
    assert res.devel_metrics["uar"] == pytest.approx(res.table["devel_uar"].max())
    assert np.array_equal(res.devel_predictions, res.pipeline.predict(sets["devel"].embeddings))
    assert res.devel_metrics["selected_on_this_split"] is True and "optimistic" in res.devel_metrics["note"]
    assert "checkpoint" in res.devel_metrics["note"]  # best_plain was itself chosen on devel
    assert res.test_metrics is not None and res.test_metrics["selected_on_this_split"] is False
    assert "optimistic" not in res.test_metrics["note"]
    assert res.test_metrics["uar"] == pytest.approx(
        unweighted_average_recall(sets["test"].labels, res.test_predictions, k)
    )
    assert res.devel_metrics["uar"] > 0.3, "40 steps give ~0.48 devel UAR here; chance is 0.2"
    assert list(res.summary()["split"]) == ["devel", "test"]


def test_svm_balanced_and_hidden_test(trained):
    sets = trained["sets"]
    hidden = type(sets["test"])(**{**sets["test"].__dict__, "labels": np.full(len(sets["test"]), -1)})
    res = fit_linear_svm(sets["train"], sets["devel"], Cs=(0.01, 1.0), class_weight="balanced", test_set=hidden)
    assert res.best_C in (0.01, 1.0) and res.test_metrics is None
    assert res.test_predictions.shape == (len(hidden),)
    with pytest.raises(ValueError, match="class_weight"):
        fit_linear_svm(sets["train"], sets["devel"], class_weight="auto")
    with pytest.raises(ValueError, match="unknown labels"):
        fit_linear_svm(sets["train"], hidden)
    # beside the network: a split without labels is NaN, not dropped
    table = svm_beside_network(res, {"devel": {"uar": 0.5}, "test": None}, "net")
    assert table["classifier"].tolist()[0] == "net" and "C=" in table["classifier"].tolist()[1]
    assert table["devel UAR"].tolist() == [0.5, pytest.approx(res.devel_metrics["uar"])]
    assert table["test UAR"].isna().all()


def test_tsne_shape_determinism_and_subsampling(trained):
    emb = trained["sets"]["devel"].embeddings
    a, idx_a = tsne_2d(emb, seed=0, n_threads=1)
    b, idx_b = tsne_2d(emb, seed=0, n_threads=1)
    assert a.shape == (len(emb), 2) and np.array_equal(idx_a, np.arange(len(emb)))
    np.testing.assert_allclose(a, b)
    sub, idx = tsne_2d(emb, seed=1, max_points=20, n_threads=1)
    assert sub.shape == (20, 2) and len(set(idx)) == 20 and np.all(np.diff(idx) > 0)
    _, idx2 = tsne_2d(emb, seed=1, max_points=20, n_threads=1)
    assert np.array_equal(idx, idx2)
    tiny, _ = tsne_2d(emb[:6], perplexity=30, n_threads=1)  # perplexity clipped below n / 3
    assert tiny.shape == (6, 2) and np.isfinite(tiny).all()


def test_confused_pairs_on_hand_made_matrix():
    classes = ["a", "b", "c"]
    m = np.array([[8, 2, 0], [5, 4, 1], [0, 2, 18]])
    table = confused_pairs(m, classes, top=3)
    assert list(table.columns) == ["true", "predicted", "count", "share_of_true"]
    assert list(zip(table["true"], table["predicted"])) == [("b", "a"), ("a", "b"), ("c", "b")]
    assert list(table["count"]) == [5, 2, 2]
    assert table["share_of_true"].tolist() == pytest.approx([0.5, 0.2, 0.1])
    assert len(confused_pairs(m, classes, top=10)) == 4  # zero cells are not confusions
    assert confused_pairs(np.eye(3, dtype=int), classes).empty
    with pytest.raises(ValueError, match="shape"):
        confused_pairs(m, ["a", "b"])


def test_plots_return_figures(trained):
    import matplotlib.pyplot as plt

    devel = trained["sets"]["devel"]
    points, idx = tsne_2d(devel.embeddings[:30], seed=0, n_threads=1)
    labels = devel.labels[idx].copy()
    labels[0] = -1
    fig = plot_tsne(points, labels, trained["corpus"].classes)
    assert isinstance(fig, matplotlib.figure.Figure)
    plt.close(fig)
    table = pd.DataFrame(
        {
            "C": [0.01, 0.1, 1.0],
            "train_uar": [0.5, 0.8, 1.0],
            "devel_uar": [0.5, 0.7, 0.6],
            "chosen": [False, True, False],
        }
    )
    fig = plot_svm_c_curve(table)
    assert isinstance(fig, matplotlib.figure.Figure)
    plt.close(fig)
