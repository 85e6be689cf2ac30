"""Scanning long recordings with heads on BirdNET embeddings: recordings at any rate, the stored window
embeddings, and rescoring a scanned folder with another head without the audio."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from helpers.recordings.scan import EMBEDDINGS_SUFFIX, rescore, scan
from helpers.training.config import TrainConfig
from tests.conftest import REPO_ROOT, make_tiny_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """A logistic and an SVM head on the embeddings of a tiny corpus of tones."""
    from helpers.training.loop import train

    tmp = tmp_path_factory.mktemp("rescore")
    root = make_tiny_corpus(tmp / "corpus", per_split=2)
    paths = {}
    for model in ("birdnet-logistic", "birdnet-svm"):
        config = TrainConfig(
            model=model,
            corpus=str(root),
            data_dir=str(tmp),
            cache_dir=str(tmp / "cache"),
            out_dir=str(tmp / "runs"),
            spec_augment=False,
            model_options={"Cs": [0.1, 1.0]},
        )
        paths[model] = train(config, progress=False).run_dir / "checkpoints" / "last_plain.pt"
    return paths


def _recording(path, rate, seconds, channels=1):
    rng = np.random.default_rng(rate)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.02 * rng.normal(size=t.size)
    for start in (3.0, 11.0):
        on = (t >= start) & (t < start + 1.5)
        wave[on] += 0.3 * np.sin(2 * np.pi * 500 * t[on])
    if channels > 1:
        wave = np.stack([wave] * channels, axis=1)
    sf.write(str(path), wave, rate)


@pytest.fixture()
def field(tmp_path):
    root = tmp_path / "field"
    (root / "site").mkdir(parents=True)
    _recording(root / "a16k.wav", 16000, 20.0)
    _recording(root / "site" / "b44k.flac", 44100, 16.5, channels=2)
    return root


def test_any_rate_is_read_at_48_khz_in_3_s_windows(heads, field, tmp_path):
    result = scan(heads["birdnet-logistic"], field, tmp_path / "out", progress=False, device="cpu")
    assert result.errors.empty
    windows = pd.read_csv(tmp_path / "out" / "a16k.wav.scores.csv")
    # 3-s windows every 1.5 s (half a window) up to the end, the last one ending at the recording's end
    np.testing.assert_allclose(windows["end"] - windows["begin"], 3.0, atol=1e-6)
    assert windows["begin"].iloc[1] == pytest.approx(1.5) and windows["end"].iloc[-1] == pytest.approx(20.0)
    stored = np.load(tmp_path / "out" / f"a16k.wav{EMBEDDINGS_SUFFIX}")
    assert stored.dtype == np.float16 and stored.shape == (len(windows), 1024)
    other = pd.read_csv(tmp_path / "out" / "site" / "b44k.flac.scores.csv")
    assert other["end"].iloc[-1] == pytest.approx(16.5, abs=1e-3)
    summary = json.loads((tmp_path / "out" / "scan.json").read_text())
    assert summary["settings"]["features"]["backbone"] == "birdnet-2.4"
    assert summary["settings"]["features"]["sample_rate"] == 48000


def test_rescoring_equals_scanning_again_without_the_audio(heads, field, tmp_path):
    scan(heads["birdnet-logistic"], field, tmp_path / "a", progress=False, device="cpu", threshold=0.3)
    direct = scan(heads["birdnet-svm"], field, tmp_path / "b", progress=False, device="cpu", threshold=0.3)
    hidden = tmp_path / "moved-away"
    shutil.move(str(field), str(hidden))  # rescoring must not need the recordings
    result = rescore(heads["birdnet-svm"], tmp_path / "a", tmp_path / "c", threshold=0.3, progress=False)
    assert result.errors.empty and set(result.recordings["status"]) == {"rescored"}
    for name in ("a16k.wav", "site/b44k.flac"):
        again = pd.read_csv(tmp_path / "b" / f"{name}.scores.csv")
        rescored = pd.read_csv(tmp_path / "c" / f"{name}.scores.csv")
        pd.testing.assert_frame_equal(again, rescored)
        assert (tmp_path / "b" / f"{name}.detections.csv").read_text() == (
            tmp_path / "c" / f"{name}.detections.csv"
        ).read_text()
    assert len(result.detections) == len(direct.detections)
    # in place, then a scan with that head over the same audio finds nothing left to do
    rescore(heads["birdnet-svm"], tmp_path / "a", threshold=0.3, progress=False)
    shutil.move(str(hidden), str(field))
    resumed = scan(heads["birdnet-svm"], field, tmp_path / "a", progress=False, device="cpu", threshold=0.3)
    assert set(resumed.recordings["status"]) == {"resumed"}


def test_rescore_refuses_what_it_cannot_rescore(heads, field, tmp_path):
    scan(heads["birdnet-logistic"], field / "a16k.wav", tmp_path / "a", progress=False, device="cpu")
    summary_path = tmp_path / "a" / "scan.json"
    summary = json.loads(summary_path.read_text())
    summary["settings"]["features"]["model_sha256"] = "f" * 64  # embeddings of another model file
    summary_path.write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="same backbone"):
        rescore(heads["birdnet-svm"], tmp_path / "a", progress=False)
    summary["settings"]["features"] = {"sample_rate": 8000, "fmin": 10.0, "fmax": None}
    summary_path.write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="log-mel"):
        rescore(heads["birdnet-svm"], tmp_path / "a", progress=False)
    with pytest.raises(FileNotFoundError, match="scan.json"):
        rescore(heads["birdnet-svm"], tmp_path / "nothing", progress=False)


def test_a_recording_without_stored_embeddings_is_listed_not_skipped(heads, field, tmp_path):
    scan(heads["birdnet-logistic"], field, tmp_path / "a", progress=False, device="cpu")
    (tmp_path / "a" / f"a16k.wav{EMBEDDINGS_SUFFIX}").unlink()
    result = rescore(heads["birdnet-svm"], tmp_path / "a", tmp_path / "c", progress=False)
    assert list(result.recordings["recording"]) == ["site/b44k.flac"]
    assert len(result.errors) == 1 and "no stored embeddings" in result.errors["error"].iloc[0]
    assert "a16k.wav" in pd.read_csv(tmp_path / "c" / "errors.csv")["path"].iloc[0]


def test_predict_scan_and_rescore_from_the_command_line(heads, field, tmp_path):
    def env_run(*args):
        return subprocess.run(
            [sys.executable, "-m", "helpers", *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True
        )

    proc = env_run("predict", heads["birdnet-logistic"], field / "a16k.wav", "--out", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(tmp_path / "p.csv")) == 1
    proc = env_run("scan", heads["birdnet-logistic"], field, "--out", tmp_path / "s", "--quiet", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    proc = env_run("rescore", heads["birdnet-svm"], tmp_path / "s", "--out", tmp_path / "r", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "2 rescored" in proc.stdout and (tmp_path / "r" / "detections.selections.txt").is_file()
    proc = env_run("scan", heads["birdnet-logistic"], field, "--out", tmp_path / "s8", "--quiet", "--precision", "int8")
    assert proc.returncode == 1 and "fp32 only" in proc.stderr


def test_a_packed_scan_rescores_like_a_scan_in_files(heads, field, tmp_path):
    from helpers.recordings.scan_store import read_embeddings, read_windows

    scan(heads["birdnet-logistic"], field, tmp_path / "files", progress=False, device="cpu", threshold=0.3)
    scan(
        heads["birdnet-logistic"],
        field,
        tmp_path / "packed",
        progress=False,
        device="cpu",
        threshold=0.3,
        layout="packed",
    )
    for name in ("a16k.wav", "site/b44k.flac"):
        np.testing.assert_array_equal(
            read_embeddings(tmp_path / "packed", name), read_embeddings(tmp_path / "files", name)
        )
    files = rescore(heads["birdnet-svm"], tmp_path / "files", tmp_path / "files-svm", threshold=0.3, progress=False)
    packed = rescore(heads["birdnet-svm"], tmp_path / "packed", tmp_path / "packed-svm", threshold=0.3, progress=False)
    assert packed.settings["layout"] == "packed" and not list((tmp_path / "packed-svm").rglob("*.scores.csv"))
    assert (tmp_path / "packed-svm" / "detections.csv").read_text() == (
        tmp_path / "files-svm" / "detections.csv"
    ).read_text()
    assert len(packed.detections) == len(files.detections)
    np.testing.assert_allclose(
        read_windows(tmp_path / "packed-svm", "a16k.wav").filter(like="score_"),
        read_windows(tmp_path / "files-svm", "a16k.wav").filter(like="score_"),
        atol=1e-6,
    )
    # in place: the packs are replaced, not added to, and a scan with that head then resumes
    rescore(heads["birdnet-svm"], tmp_path / "packed", threshold=0.3, progress=False)
    assert len(list((tmp_path / "packed" / "packs").glob("*.npz"))) == 1
    resumed = scan(heads["birdnet-svm"], field, tmp_path / "packed", progress=False, device="cpu", threshold=0.3)
    assert set(resumed.recordings["status"]) == {"resumed"}
