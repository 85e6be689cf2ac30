"""The training engine: it learns, leaves a complete and honestly labelled run folder, resumes
exactly, and its checkpoints load without pickled code."""

from __future__ import annotations

import json
from importlib import metadata
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from helpers.data.corpus import read_corpus
from helpers.data.corpora.synthetic import make_synthetic_corpus
from helpers.training.loop import train
from helpers.training.config import TrainConfig
from helpers.models.checkpoint import load_checkpoint
from tests.conftest import TEST_THREADS, REPO_ROOT

# Trains models, runs notebooks or starts processes: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

# A narrow CNN10 keeps every test run to seconds on 2 cores; the full-width models are
# covered by tests/test_models.py.
TINY = {"channels": [8, 16, 32, 64]}


@pytest.fixture(scope="module")
def easy_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("easy") / "synthetic"
    make_synthetic_corpus(
        root, n_clips=240, seed=3, snr_db=(12.0, 20.0), hidden_test_labels=False, class_proportions=[1, 1, 1, 1, 1]
    )
    return read_corpus(root, name="easy-synthetic")


def _config(tmp_path, **kw):
    base = dict(
        corpus="unused",
        sample_rate=8000,
        model="cnn10",
        model_options=TINY,
        iterations=120,
        eval_every=40,
        ema_start=40,
        checkpoint_every=40,
        cache_dir=str(tmp_path / "cache"),
        out_dir=str(tmp_path / "runs"),
        seed=0,
        device="cpu",
        num_threads=TEST_THREADS,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_learns_far_above_chance(easy_corpus, tmp_path):
    # Without MixUp and SpecAugment the tiny net fits in a few hundred steps; with them it needs
    # more (their regularisation is the point), which would not fit a unit test's budget.
    result = train(
        _config(tmp_path, iterations=200, eval_every=50, ema_start=100, mixup=False, spec_augment=False),
        corpus=easy_corpus,
        progress=False,
    )
    best = result.history["uar_plain"].max()
    assert best > 0.6, f"devel UAR {best:.2f} (chance 0.2): the loop does not learn"
    last = result.metrics["checkpoints"]["last_plain"]["splits"]["test"]["uar"]
    assert last > 0.5


def test_run_folder_is_complete_and_labelled(easy_corpus, tmp_path):
    result = train(_config(tmp_path), corpus=easy_corpus, progress=False)
    run = result.run_dir
    for rel in [
        "config.json",
        "record.json",
        "history.csv",
        "metrics.json",
        "submission-test.csv",
        "checkpoints/last.pt",
        "checkpoints/best_plain.pt",
        "checkpoints/best_ema.pt",
        "figures/learning_curves.png",
        "figures/confusion_devel.png",
    ]:
        assert (run / rel).is_file(), rel
    record = json.loads((run / "record.json").read_text())
    assert record["versions"]["torch"] == metadata.version("torch")  # what is installed, whatever it is
    assert record["corpus"]["checksum"] == easy_corpus.checksum()
    assert record["config"]["model_options"] == TINY and record["timings"]["training_loop"] > 0
    assert record["scoring"] == {
        "precision": "fp32",
        "batch": 64,
        "batchnorm": "folded into the convolutions (helpers.evaluation.inference)",
    }
    history = pd.read_csv(run / "history.csv")
    assert list(history["step"]) == [40, 80, 120]
    assert history["uar_ema"].isna().tolist() == [True, False, False]  # EMA evaluated after it starts
    metrics = result.metrics
    assert set(metrics["checkpoints"]) == {"last_plain", "last_ema", "best_plain", "best_ema"}
    for name, entry in metrics["checkpoints"].items():
        for split, m in entry["splits"].items():
            assert m["selected_on_this_split"] == (name.startswith("best") and split == "devel")
            assert ("optimistic" in m["note"]) == m["selected_on_this_split"]
            assert set(m["per_class_recall"]) == set(easy_corpus.classes)
    table = pd.read_csv(run / "predictions" / "test-best_ema.csv")
    assert len(table) == len(easy_corpus.split("test"))
    assert [c for c in table.columns if c.startswith("score_")] == [f"score_{c}" for c in easy_corpus.classes]
    sub = pd.read_csv(run / "submission-test.csv")
    assert list(sub.columns) == ["filename", "prediction"] and set(sub["prediction"]) <= set(easy_corpus.classes)
    summary = result.summary()
    assert summary[(summary.checkpoint == "best_plain") & (summary.split == "devel")]["selected_on_this_split"].all()


def test_checkpoints_load_weights_only(easy_corpus, tmp_path):
    result = train(_config(tmp_path, iterations=40), corpus=easy_corpus, progress=False)
    for name in ("last.pt", "best_plain.pt"):
        state = torch.load(result.run_dir / "checkpoints" / name, weights_only=True)
        assert state["classes"] == easy_corpus.classes and "state_dict" in state
    from helpers.models.checkpoint import load_model

    model = load_model(result.run_dir / "checkpoints" / "best_plain.pt")
    assert model.n_classes == len(easy_corpus.classes)


def test_resume_gives_identical_weights(easy_corpus, tmp_path, monkeypatch):
    ref = train(
        _config(tmp_path, run_name="ref", iterations=60, eval_every=20, ema_start=20, checkpoint_every=20),
        corpus=easy_corpus,
        progress=False,
    )

    from helpers.training.ema import ExponentialMovingAverage as EMA

    real_update = EMA.update

    def crash(self, model, step):
        if step == 29:
            raise KeyboardInterrupt("simulated interruption")
        return real_update(self, model, step)

    cfg = _config(tmp_path, run_name="interrupted", iterations=60, eval_every=20, ema_start=20, checkpoint_every=20)
    monkeypatch.setattr(EMA, "update", crash)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, corpus=easy_corpus, progress=False)
    assert load_checkpoint(cfg.run_dir() / "checkpoints" / "last.pt")["step"] == 20
    monkeypatch.setattr(EMA, "update", real_update)
    resumed = train(cfg, corpus=easy_corpus, progress=False)

    a = load_checkpoint(ref.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 60
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for key in a["ema"]["shadow"]:
        assert torch.equal(a["ema"]["shadow"][key], b["ema"]["shadow"][key]), key
    pd.testing.assert_frame_equal(ref.history, resumed.history)


def test_resume_refuses_other_config(easy_corpus, tmp_path):
    train(_config(tmp_path, run_name="x", iterations=40), corpus=easy_corpus, progress=False)
    with pytest.raises(RuntimeError, match="another config"):
        train(_config(tmp_path, run_name="x", iterations=40, lr=0.01), corpus=easy_corpus, progress=False)


def test_switches_change_the_run(easy_corpus, tmp_path):
    base = _config(tmp_path, iterations=12, eval_every=4, ema_start=4, checkpoint_every=12)
    losses = {}
    for name, kw in {
        "paper": {},
        "uniform_ce": dict(sampler="uniform", mixup=False, spec_augment=False),
        "authors_specaug": dict(spec_augment_mode="per_example", amsgrad=True),
        "reference_ema": dict(ema_mode="reference"),
    }.items():
        cfg = TrainConfig(**{**base.to_dict(), **kw, "run_name": name})
        losses[name] = train(cfg, corpus=easy_corpus, progress=False).history["train_loss"].tolist()
    assert len({tuple(v) for v in losses.values()}) == 4


def test_stop_when_flat_ends_at_the_first_flat_evaluation_and_survives_an_interruption(
    easy_corpus, tmp_path, monkeypatch
):
    from helpers.evaluation.curves import curve_flatness
    from helpers.models.checkpoint import export_final_weights
    import helpers.training.loop as loop

    kw = dict(
        iterations=400,
        min_iterations=60,
        stop_when_flat=True,
        eval_every=20,
        ema_start=20,
        checkpoint_every=100,
        mixup=False,
        spec_augment=False,
    )
    ref = train(_config(tmp_path, run_name="ref", **kw), corpus=easy_corpus, progress=False)
    history = ref.history
    stop = int(history["step"].iloc[-1])
    assert 60 <= stop < 400, f"stopped at {stop}: the easy corpus should flatten well before the cap"
    # the stop is the first evaluation from min_iterations on where the curve is flat, by the notebooks' own test
    verdicts = {int(s): curve_flatness(history[history["step"] <= s])["flat"] for s in history["step"] if s >= 60}
    assert verdicts[stop] is True and not any(v for s, v in verdicts.items() if s < stop)
    training = ref.metrics["training"]
    assert training == {
        "steps": stop,
        "iterations": 400,
        "stop_when_flat": True,
        "min_iterations": 60,
        "stopped_when_flat": True,
    }
    assert ref.metrics["checkpoints"]["last_ema"]["step"] == stop
    last = load_checkpoint(ref.run_dir / "checkpoints" / "last.pt")
    assert last["step"] == stop and last["stopped_when_flat"] is True
    assert load_checkpoint(export_final_weights(ref.run_dir))["step"] == stop  # a stopped run is a finished run

    # interrupted after the stop, before the final scoring: the rerun finishes without training further
    real_final = loop.final_evaluation
    monkeypatch.setattr(loop, "final_evaluation", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt("crash")))
    cfg = _config(tmp_path, run_name="interrupted", **kw)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, corpus=easy_corpus, progress=False)
    monkeypatch.setattr(loop, "final_evaluation", real_final)
    resumed = train(cfg, corpus=easy_corpus, progress=False)
    pd.testing.assert_frame_equal(resumed.history, history)
    assert resumed.metrics["training"] == training
    # and a finished stopped run is loaded, not trained again
    assert train(cfg, corpus=easy_corpus, progress=False).metrics["training"] == training

    # the cap wins over min_iterations: a short run takes all its steps
    short = train(_config(tmp_path, run_name="short", **{**kw, "iterations": 40}), corpus=easy_corpus, progress=False)
    assert short.metrics["training"]["steps"] == 40 and short.metrics["training"]["stopped_when_flat"] is False


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="sampler"):
        TrainConfig(sampler="balance")
    with pytest.raises(ValueError, match="unknown TrainConfig"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    assert TrainConfig().key() == TrainConfig(device="cuda", out_dir="elsewhere").key()
    assert TrainConfig().key() != TrainConfig(seed=1).key()
    with pytest.raises(ValueError, match="min_iterations"):
        TrainConfig(min_iterations=-1)
    # the stopping rule changes results, so it names its own run folder
    assert TrainConfig(stop_when_flat=True).key() != TrainConfig().key()


def test_predict_cli_on_any_audio(easy_corpus, tmp_path):
    result = train(_config(tmp_path, iterations=20, eval_every=20), corpus=easy_corpus, progress=False)
    folder = tmp_path / "field"
    folder.mkdir()
    t = np.arange(44100 * 2) / 44100
    sf.write(folder / "stereo44k.wav", np.stack([np.sin(2 * np.pi * 800 * t)] * 2, axis=1) * 0.2, 44100)
    sf.write(folder / "mono16k.flac", np.sin(2 * np.pi * 300 * t[:32000]) * 0.2, 16000)
    out = tmp_path / "pred.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers",
            "predict",
            str(result.run_dir / "checkpoints" / "best_plain.pt"),
            str(folder),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out)
    assert list(table["filename"]) == ["mono16k.flac", "stereo44k.wav"]
    assert set(table["prediction"]) <= set(easy_corpus.classes)
    scores = table[[f"score_{c}" for c in easy_corpus.classes]].to_numpy()
    assert np.isfinite(scores).all()
    # int8 scoring (calibrated on the training clips stored in the checkpoint) stays close to fp32,
    # and a file's int8 score does not depend on which other files are scored with it.
    from helpers.evaluation.predict import predict_files

    ckpt = result.run_dir / "checkpoints" / "best_plain.pt"
    stored = load_checkpoint(ckpt)["calibration"]
    assert stored.dtype == torch.float16 and stored.shape[1:] == (75, 64) and 5 <= stored.shape[0] <= 64
    int8 = predict_files(ckpt, [folder], device="cpu", precision="int8")
    int8_scores = int8[[f"score_{c}" for c in easy_corpus.classes]].to_numpy()
    assert np.abs(int8_scores - scores).max() < 0.1
    alone = predict_files(ckpt, [folder / "mono16k.flac"], device="cpu", precision="int8")
    # (equal up to float rounding of a batch of 1 vs 2; calibrating on the scored files moved it by ~1e-2)
    np.testing.assert_allclose(alone.filter(like="score_").to_numpy()[0], int8_scores[0], atol=1e-6)
    # explicit calibration files replace the stored clips; a checkpoint without stored clips asks for them
    other = predict_files(ckpt, [folder], device="cpu", precision="int8", calibration=[folder / "stereo44k.wav"])
    assert np.isfinite(other.filter(like="score_").to_numpy()).all()
    bare = load_checkpoint(ckpt)
    del bare["calibration"]
    torch.save(bare, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="no calibration clips"):
        predict_files(tmp_path / "old.pt", [folder], device="cpu", precision="int8")

    # One unreadable file never stops the others: it is named on stderr, the rest is scored.
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers",
            "predict",
            str(result.run_dir / "checkpoints" / "best_plain.pt"),
            str(folder),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "not scored:" in proc.stderr and "corrupt.wav" in proc.stderr and "Traceback" not in proc.stderr
    assert list(pd.read_csv(out)["filename"]) == ["mono16k.flac", "stereo44k.wav"]
    errors: list[dict] = []
    kept = predict_files(result.run_dir / "checkpoints" / "best_plain.pt", [folder], device="cpu", errors=errors)
    assert len(kept) == 2 and [e["path"].endswith("corrupt.wav") for e in errors] == [True]
    # nothing readable: a non-zero exit with one clear line, no traceback
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers",
            "predict",
            str(result.run_dir / "checkpoints" / "best_plain.pt"),
            str(folder / "corrupt.wav"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "no file could be scored" in proc.stderr and "Traceback" not in proc.stderr


def test_waveform_augmentation_bank(easy_corpus, tmp_path):
    """Time stretching and pitch shifting (the paper's 'no gain' rows) run through a cached bank
    of augmented copies of the train set; the bank differs from the plain features and is reused."""
    cfg = _config(
        tmp_path,
        iterations=4,
        eval_every=4,
        ema_start=2,
        checkpoint_every=4,
        time_stretch=True,
        pitch_shift=True,
        wave_augment_copies=1,
    )
    result = train(cfg, corpus=easy_corpus, progress=False)
    banks = list((tmp_path / "cache" / easy_corpus.name).glob("train-waveaug-8000hz-*.npy"))
    assert len(banks) == 1 and "wave_augment_bank" in result.timings
    bank = np.load(banks[0])
    from helpers.features.frontend import FeatureSettings
    from helpers.features.cache import load_features

    plain = load_features(
        easy_corpus.table, "train", FeatureSettings(sample_rate=8000), cfg.cache_dir, easy_corpus.name, progress=False
    ).features
    assert bank.shape == (1, *plain.shape) and np.isfinite(bank).all()
    assert not np.allclose(bank[0], plain)
    mtime = banks[0].stat().st_mtime_ns
    train(TrainConfig(**{**cfg.to_dict(), "run_name": "again"}), corpus=easy_corpus, progress=False)
    assert banks[0].stat().st_mtime_ns == mtime


def test_final_scoring_skips_train_and_reuses_identical_checkpoints(easy_corpus, tmp_path):
    # one evaluation, at the last step: the best checkpoints ARE the last weights
    config = _config(tmp_path, iterations=4, eval_every=4, ema_start=1, checkpoint_every=4)
    result = train(config, corpus=easy_corpus, progress=False)
    ckpts = result.metrics["checkpoints"]
    assert ckpts["best_plain"]["step"] == ckpts["last_plain"]["step"] == 4
    for kind in ("plain", "ema"):
        best, last = (pd.read_csv(result.run_dir / "predictions" / f"devel-{w}_{kind}.csv") for w in ("best", "last"))
        pd.testing.assert_frame_equal(best, last)
    assert not list((result.run_dir / "predictions").glob("train-*.csv"))
    assert set(ckpts["last_ema"]["splits"]) == {"devel", "test"}
    # opt-in: train scored too, with the same run folder (score_train does not change results)
    again = train(
        _config(tmp_path / "b", iterations=4, eval_every=4, ema_start=1, checkpoint_every=4, score_train=True),
        corpus=easy_corpus,
        progress=False,
    )
    assert again.config.key() == config.key()
    assert (again.run_dir / "predictions" / "train-last_ema.csv").is_file()
    assert again.metrics["checkpoints"]["last_ema"]["splits"]["train"]["uar"] >= 0


def test_front_end_options_travel_with_the_checkpoint(easy_corpus, tmp_path):
    # Other species, other clips and bands: the run's front end is recorded in its checkpoints, and
    # predict reads audio exactly as the model was trained on it.
    config = _config(tmp_path, iterations=20, eval_every=20, clip_seconds=2.0, n_mels=32, fmin=100.0, fmax=3500.0)
    result = train(config, corpus=easy_corpus, progress=False)
    state = load_checkpoint(result.run_dir / "checkpoints" / "best_plain.pt")
    fs = state["feature_settings"]
    assert (fs["clip_seconds"], fs["n_mels"], fs["fmin"], fs["fmax"]) == (2.0, 32, 100.0, 3500.0)
    assert state["model_config"]["n_mels"] == 32 and state["calibration"].shape[1:] == (51, 32)
    from helpers.evaluation.predict import predict_files

    table = predict_files(
        result.run_dir / "checkpoints" / "best_plain.pt", [easy_corpus.split("test")["path"].iloc[0]], device="cpu"
    )
    assert np.isfinite(table.filter(like="score_").to_numpy()).all()
