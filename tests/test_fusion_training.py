"""Fusion of two trained runs through the ordinary training engine (paper section 5): frozen
branches keep their weights, trainable ones change, bad branch checkpoints are refused clearly."""

from __future__ import annotations

import shutil

import pytest
import torch

from helpers.data.corpus import read_corpus
from helpers.models.checkpoint import load_model
from helpers.data.corpora.synthetic import make_synthetic_corpus
from helpers.training.loop import train
from helpers.training.config import TrainConfig
from helpers.models.checkpoint import load_checkpoint
from tests.conftest import TEST_THREADS

# Trains models, runs notebooks or starts processes: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

TINY = {"channels": [8, 16, 32, 64]}  # narrow CNN6 and CNN10: seconds per run


@pytest.fixture(scope="module")
def branches(tmp_path_factory):
    base = tmp_path_factory.mktemp("fusion")
    root = base / "synthetic"
    make_synthetic_corpus(root, n_clips=80, seed=5, hidden_test_labels=False)
    corpus = read_corpus(root, name="fusion-synthetic")
    common = dict(
        corpus="unused",
        sample_rate=8000,
        iterations=8,
        eval_every=4,
        ema_start=2,
        checkpoint_every=8,
        cache_dir=str(base / "cache"),
        out_dir=str(base / "runs"),
        device="cpu",
        num_threads=TEST_THREADS,
        batch_size=8,
    )
    a = train(TrainConfig(model="cnn10", model_options=TINY, **common), corpus=corpus, progress=False)
    b = train(TrainConfig(model="cnn6", model_options=TINY, **common), corpus=corpus, progress=False)
    return base, corpus, common, a.run_dir / "checkpoints" / "best_ema.pt", b.run_dir / "checkpoints" / "best_ema.pt"


def _fusion(common, a, b, freeze, **kw):
    return TrainConfig(
        **{
            **common,
            "model": "fusion",
            "iterations": 4,
            "model_options": {"branch_a": str(a), "branch_b": str(b), "freeze": freeze},
            **kw,
        }
    )


def _branch_weights(path):
    return {k: v.clone() for k, v in load_model(path).state_dict().items()}


@pytest.mark.parametrize("freeze", [True, False])
def test_fusion_trains_and_respects_freeze(branches, freeze):
    _, corpus, common, a, b = branches
    result = train(_fusion(common, a, b, freeze), corpus=corpus, progress=False)
    assert result.metrics["checkpoints"]["last_ema"]["splits"]["devel"]["uar"] >= 0
    last = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    fused = last["state_dict"]
    before = _branch_weights(a)
    changed = [k for k, v in before.items() if not torch.equal(fused[f"branch_a.{k}"], v)]
    if freeze:
        # frozen: no parameter and no BN statistic of either branch moves
        assert changed == []
        n_train = result.metrics["n_trainable_parameters"]
        assert n_train == fused["classifier.weight"].numel() + fused["classifier.bias"].numel()
    else:
        assert any(k.endswith("weight") for k in changed)
        assert result.metrics["n_trainable_parameters"] == result.metrics["n_parameters"]
    # the fused checkpoint reloads on its own, branches included
    model = load_model(result.run_dir / "checkpoints" / "last.pt")
    logits, embedding = model(torch.zeros(2, 75, 64))
    assert logits.shape == (2, len(corpus.classes))
    assert embedding.shape[1] == model.branch_a.embedding_dim + model.branch_b.embedding_dim


def test_fusion_key_follows_branch_weights_not_paths(branches, tmp_path):
    _, _, common, a, b = branches
    copy = tmp_path / "elsewhere.pt"
    shutil.copy(a, copy)
    assert _fusion(common, a, b, True).key() == _fusion(common, copy, b, True).key()
    assert _fusion(common, a, b, True).key() != _fusion(common, a, b, False).key()
    assert _fusion(common, a, b, True).key() != _fusion(common, b, a, True).key()


def test_fusion_refuses_bad_branches(branches, tmp_path):
    _, corpus, common, a, b = branches
    with pytest.raises(ValueError, match="branch_b"):
        train(
            TrainConfig(**{**common, "model": "fusion", "model_options": {"branch_a": str(a)}}),
            corpus=corpus,
            progress=False,
        )
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        train(
            _fusion(common, a, tmp_path / "nowhere.pt", True, out_dir=str(tmp_path / "r1")),
            corpus=corpus,
            progress=False,
        )
    with pytest.raises(ValueError, match="8000 Hz but this config has sample_rate=16000"):
        train(
            _fusion(common, a, b, True, sample_rate=16000, out_dir=str(tmp_path / "r2")), corpus=corpus, progress=False
        )
