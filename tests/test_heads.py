"""Heads on frozen BirdNET embeddings: the module, the C selection rule, and whole runs through the
engine (run folder, the one checkpoint loader, the licence record, predict)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.models.checkpoint import load_checkpoint, load_model
from helpers.models.heads import EmbeddingHead
from helpers.training.config import TrainConfig, score_function
from helpers.training.fitted_heads import _log_loss, fit_linear_head
from tests.conftest import make_tiny_corpus


def test_a_binary_logistic_head_gives_scikit_learns_probabilities():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8))
    y = (x[:, 0] + 0.3 * rng.normal(size=60) > 0).astype(int)
    fitted = LogisticRegression(C=1.0).fit(x, y)
    head = EmbeddingHead("birdnet-logistic", 2, in_features=8)
    head.set_linear(fitted.coef_, fitted.intercept_)
    with torch.no_grad():
        scores = torch.softmax(head(torch.from_numpy(x).float())[0], dim=1).numpy()
    np.testing.assert_allclose(scores, fitted.predict_proba(x), atol=1e-5)


def test_standardisation_and_shapes():
    head = EmbeddingHead("birdnet-mlp", 3, in_features=4, hidden=5)
    data = np.array([[0, 1, 2, 3], [2, 1, 4, 3]], np.float32)
    head.set_standardisation(data)
    z = head.normalize(torch.from_numpy(data))
    np.testing.assert_allclose(z.numpy(), [[-1, 0, -1, 0], [1, 0, 1, 0]], atol=1e-6)  # zero spread -> scale 1
    logits, hidden = head(torch.from_numpy(data))
    assert logits.shape == (2, 3) and hidden.shape == (2, 5) and (hidden >= 0).all()
    with pytest.raises(ValueError, match="embeddings"):
        head(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="linear"):
        EmbeddingHead("birdnet-svm", 3, in_features=4, hidden=8)


@pytest.mark.parametrize("kind", ["birdnet-logistic", "birdnet-svm"])
def test_the_selection_rule_is_applied_as_stated(kind):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16)) * 3
    x_train = np.concatenate([c + rng.normal(size=(20, 16)) for c in centres])
    y_train = np.repeat(np.arange(3), 20)
    x_devel = np.concatenate([c + rng.normal(size=(8, 16)) for c in centres])
    y_devel = np.repeat(np.arange(3), 8)
    head = EmbeddingHead(kind, 3, in_features=16)
    head.set_standardisation(x_train)
    table = fit_linear_head(
        head,
        torch.from_numpy(x_train).float(),
        y_train,
        torch.from_numpy(x_devel).float(),
        y_devel,
        Cs=[1e-3, 1e-2, 0.1, 1.0],
    )
    assert table["chosen"].sum() == 1
    best = table["devel_uar"].max()
    tied = table[table["devel_uar"] == best]
    expected = tied.sort_values(["devel_log_loss", "C"]).index[0]
    assert table.index[table["chosen"]][0] == expected
    # the head keeps the chosen C's weights
    with torch.no_grad():
        logits = head(torch.from_numpy(x_devel).float())[0].numpy()
    assert _log_loss(logits, y_devel) == pytest.approx(table.loc[expected, "devel_log_loss"], rel=1e-5)


def test_heads_refuse_settings_that_read_log_mels():
    with pytest.raises(ValueError, match="spec_augment=False"):
        TrainConfig(model="birdnet-mlp")
    config = TrainConfig(model="birdnet-svm", spec_augment=False)
    assert config.is_fitted_head and score_function(config) == "sigmoid"
    assert score_function(TrainConfig(model="birdnet-logistic", spec_augment=False)) == "softmax"
    assert config.run_dir().name.startswith("birdnet-svm-48k-")


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory):
    return make_tiny_corpus(tmp_path_factory.mktemp("heads") / "corpus", per_split=3, test_hidden=False)


def _config(root, tmp, model, **kw):
    return TrainConfig(
        model=model,
        corpus=str(root),
        data_dir=str(tmp),
        cache_dir=str(tmp / "cache"),
        out_dir=str(tmp / "runs"),
        spec_augment=False,
        **kw,
    )


@pytest.mark.slow
def test_a_logistic_head_run_is_an_ordinary_run(corpus_root, tmp_path, monkeypatch):
    from helpers.evaluation.predict import predict_files
    from helpers.training.loop import train

    config = _config(corpus_root, tmp_path, "birdnet-logistic", model_options={"Cs": [0.01, 1.0]})
    result = train(config, progress=False)
    run = result.run_dir
    ckpt_path = run / "checkpoints" / "last_plain.pt"
    checkpoint = load_checkpoint(ckpt_path)
    assert checkpoint["backbone"]["licence"] == "CC BY-NC-SA 4.0"
    assert checkpoint["feature_settings"]["backbone"] == "birdnet-2.4"
    assert isinstance(load_model(ckpt_path), EmbeddingHead)
    record = json.loads((run / "record.json").read_text())
    assert record["backbone"]["licence"] == "CC BY-NC-SA 4.0"
    metrics = result.metrics
    devel = metrics["checkpoints"]["last_plain"]["splits"]["devel"]
    assert devel["selected_on_this_split"] and "chosen on this devel" in devel["note"]
    assert not metrics["checkpoints"]["last_plain"]["splits"]["test"]["selected_on_this_split"]
    assert metrics["head_selection"]["chosen_C"] in (0.01, 1.0) and "log loss" in metrics["head_selection"]["rule"]
    assert devel["uar"] == 1.0  # tones 300 Hz apart
    assert "last_ema" not in metrics["checkpoints"]  # nothing to average without gradient steps
    # predict reads audio as the backbone needs it and gives the run's own test scores
    test_files = sorted((corpus_root / "wav").glob("test_*.wav"))
    table = predict_files(ckpt_path, test_files, device="cpu")
    stored = pd.read_csv(run / "predictions" / "test-last_plain.csv").set_index("filename")
    for cls in result.classes:
        np.testing.assert_allclose(
            table[f"score_{cls}"].to_numpy(), stored.loc[table["filename"], f"score_{cls}"].to_numpy(), atol=1e-5
        )
    # a second call loads the finished run instead of fitting again
    monkeypatch.setattr(
        "helpers.training.loop.fit_linear_head", lambda *a, **k: (_ for _ in ()).throw(AssertionError("fitted twice"))
    )
    again = train(config, progress=False)
    assert again.metrics["head_selection"] == metrics["head_selection"]


@pytest.mark.slow
def test_svm_and_mlp_heads_train(corpus_root, tmp_path):
    from helpers.training.loop import train

    svm = train(_config(corpus_root, tmp_path, "birdnet-svm", model_options={"Cs": [0.1]}), progress=False)
    assert svm.metrics["checkpoints"]["last_plain"]["splits"]["devel"]["uar"] == 1.0
    mlp = train(
        _config(
            corpus_root,
            tmp_path,
            "birdnet-mlp",
            iterations=60,
            eval_every=20,
            ema_start=20,
            batch_size=8,
            model_options={"hidden": 32},
        ),
        progress=False,
    )
    assert {"best_ema", "best_plain", "last_ema", "last_plain"} <= set(mlp.metrics["checkpoints"])
    assert len(mlp.history) == 3
    model = load_model(mlp.run_dir / "checkpoints" / "best_ema.pt")
    assert isinstance(model, EmbeddingHead) and model.hidden == 32
    assert load_checkpoint(mlp.run_dir / "checkpoints" / "last.pt")["backbone"]["licence"] == "CC BY-NC-SA 4.0"


@pytest.mark.slow
def test_the_collectors_read_a_head_run_like_any_other(corpus_root, tmp_path):
    from helpers.experiments.collect import collect_runs
    from helpers.experiments.pretrained import head_configs
    from helpers.training.loop import train

    base = {
        "corpus": str(corpus_root),
        "data_dir": str(tmp_path),
        "cache_dir": str(tmp_path / "cache"),
        "out_dir": str(tmp_path / "runs"),
    }
    config = head_configs(base, seeds=[0])[0]
    assert (config.model, config.ema, config.mixup) == ("birdnet-logistic", False, False)
    result = train(TrainConfig(**{**config.to_dict(), "model_options": {"Cs": [1.0]}}), progress=False)
    row = collect_runs(tmp_path / "runs").set_index("model").loc["birdnet-logistic"]
    assert row["status"] == "finished" and row["weights"] == "plain"
    assert row["last_devel_uar"] == pytest.approx(result.metrics["checkpoints"]["last_plain"]["splits"]["devel"]["uar"])
