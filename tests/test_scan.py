"""scan: a folder of mixed formats, rates and channels with one corrupt file is scanned into every
output format, resumes after an interruption, and reports the corrupt file."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from helpers.data.annotations import read_annotations
from helpers.recordings import scan_core as scan_module
from helpers.recordings.scan import scan
from helpers.features.frontend import FeatureSettings
from helpers.models.checkpoint import checkpoint_payload, save_checkpoint
from helpers.models.registry import create_model
from tests.conftest import REPO_ROOT

CLASSES = ["background", "call_a", "call_b"]


@pytest.fixture(scope="module")
def checkpoint(scan_checkpoint):
    return scan_checkpoint


@pytest.fixture()
def field(tmp_path):
    """Recordings in four formats, three rates, mono and stereo, in a nested folder, plus a corrupt file."""
    rng = np.random.default_rng(1)
    root = tmp_path / "field"
    (root / "site2").mkdir(parents=True)
    sf.write(root / "a.wav", rng.normal(0, 0.1, (44_100 * 6, 2)).astype("float32"), 44_100)
    sf.write(root / "site2" / "b.flac", rng.normal(0, 0.1, 16_000 * 4).astype("float32"), 16_000)
    sf.write(
        root / "site2" / "c.ogg",
        rng.normal(0, 0.1, 22_050 * 3).astype("float32"),
        22_050,
        format="OGG",
        subtype="VORBIS",
    )
    sf.write(root / "d.mp3", rng.normal(0, 0.1, 22_050 * 5).astype("float32"), 22_050, format="MP3")
    (root / "site2" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return root


def test_every_output_and_the_corrupt_file(checkpoint, field, tmp_path):
    out = tmp_path / "out"
    result = scan(checkpoint, field, out, threshold=0.0, progress=False, device="cpu")
    assert sorted(result.recordings["recording"]) == ["a.wav", "d.mp3", "site2/b.flac", "site2/c.ogg"]
    assert set(result.recordings["status"]) == {"scanned"}
    assert len(result.errors) == 1 and result.errors["path"].iloc[0].endswith("corrupt.wav")
    assert "corrupt.wav" in pd.read_csv(out / "errors.csv")["path"].iloc[0]
    for name, seconds in [("a.wav", 6.0), ("site2/b.flac", 4.0), ("site2/c.ogg", 3.0), ("d.mp3", 5.0)]:
        scores = pd.read_csv(out / f"{name}.scores.csv")
        # 1-s windows every 0.5 s cover the recording; scores are a distribution (softmax)
        assert scores["begin"].iloc[0] == 0 and scores["end"].iloc[-1] == pytest.approx(seconds, abs=0.06)
        np.testing.assert_allclose(scores.filter(like="score_").sum(axis=1), 1.0, atol=1e-5)
        for suffix in (".selections.txt", ".labels.txt", ".detections.csv", ".scan.json"):
            assert (out / f"{name}{suffix}").is_file(), name + suffix
    # threshold 0: every window is a detection of its best call class, merged into events per class
    raven = read_annotations(out / "a.wav.selections.txt", recording=field / "a.wav").table
    mine = result.detections[result.detections["recording"] == "a.wav"]
    assert len(raven) == len(mine) > 0
    np.testing.assert_allclose(raven["begin"], mine["begin"], atol=1e-5)
    assert set(raven["label"]) <= {"call_a", "call_b"}
    header = (out / "a.wav.selections.txt").read_text().splitlines()[0].split("\t")
    assert header[:7] == [
        "Selection",
        "View",
        "Channel",
        "Begin Time (s)",
        "End Time (s)",
        "Low Freq (Hz)",
        "High Freq (Hz)",
    ]
    combined = read_annotations(out / "detections.selections.txt", audio_root=field).table
    assert len(combined) == len(result.detections)
    summary = json.loads((out / "scan.json").read_text())["summary"]
    assert summary["recordings"] == 4 and summary["errors"] == 1 and summary["realtime_factor"] > 0


def test_a_recording_without_detections_still_gets_its_table(checkpoint, field, tmp_path):
    result = scan(
        checkpoint, field / "site2" / "b.flac", tmp_path / "out", threshold=1.01, progress=False, device="cpu"
    )
    assert len(result.detections) == 0
    lines = (tmp_path / "out" / "b.flac.selections.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Selection\tView")


def test_rerun_resumes_redetects_and_rescans_what_changed(checkpoint, field, tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = []
    original = scan_module._Scanner.score_recording

    def interrupted(self, path, name, bar, *args):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user stops the scan during the third recording
        return original(self, path, name, bar, *args)

    monkeypatch.setattr(scan_module._Scanner, "score_recording", interrupted)
    with pytest.raises(KeyboardInterrupt):
        scan(checkpoint, field, out, progress=False, device="cpu")
    monkeypatch.setattr(scan_module._Scanner, "score_recording", original)
    first = scan(checkpoint, field, out, progress=False, device="cpu")
    status = dict(zip(first.recordings["recording"], first.recordings["status"]))
    assert sorted(s for s in status.values()) == ["resumed", "resumed", "scanned", "scanned"]
    before = (out / "a.wav.scores.csv").read_bytes()
    # same settings: nothing rescanned; a new threshold: detections re-derived from the stored scores
    again = scan(checkpoint, field, out, progress=False, device="cpu")
    assert set(again.recordings["status"]) == {"resumed"} and np.isnan(again.realtime_factor)
    pd.testing.assert_frame_equal(
        again.detections.reset_index(drop=True), first.detections.reset_index(drop=True), check_dtype=False
    )
    lower = scan(checkpoint, field, out, threshold=0.0, progress=False, device="cpu")
    assert set(lower.recordings["status"]) == {"redetected"} and len(lower.detections) > len(first.detections)
    assert (out / "a.wav.scores.csv").read_bytes() == before
    # a changed recording is scanned again, the others are not
    sf.write(field / "site2" / "b.flac", np.zeros(16_000 * 2, np.float32), 16_000)
    changed = scan(checkpoint, field, out, threshold=0.0, progress=False, device="cpu")
    status = dict(zip(changed.recordings["recording"], changed.recordings["status"]))
    assert status.pop("site2/b.flac") == "scanned" and set(status.values()) == {"resumed"}


def test_int8_scores_do_not_depend_on_the_other_files(checkpoint, field, tmp_path):
    alone = scan(
        checkpoint, field / "site2" / "b.flac", tmp_path / "one", precision="int8", progress=False, threshold=0.0
    )
    together = scan(checkpoint, field, tmp_path / "all", precision="int8", progress=False, threshold=0.0)
    a = pd.read_csv(tmp_path / "one" / "b.flac.scores.csv")
    b = pd.read_csv(tmp_path / "all" / "site2" / "b.flac.scores.csv")
    pd.testing.assert_frame_equal(a, b)
    assert len(alone.recordings) == 1 and len(together.recordings) == 4


@pytest.mark.slow
def test_cli_one_line_per_problem(checkpoint, field, tmp_path):
    run = [
        sys.executable,
        "-m",
        "helpers",
        "scan",
        str(checkpoint),
        str(field),
        "--out",
        str(tmp_path / "o"),
        "--quiet",
        "--threshold",
        "call_a=0.4,call_b=0.6",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(run, cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "4 recording(s)" in proc.stdout and "not scanned:" in proc.stdout and "corrupt.wav" in proc.stdout
    assert "x real time" in proc.stdout
    proc = subprocess.run(
        run[:5] + [str(field / "site2" / "corrupt.wav")] + run[6:], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    for args, message in (
        (run[:5] + [str(tmp_path / "missing")] + run[6:], "no such file or folder"),
        (run[:4] + [str(tmp_path / "missing.pt")] + run[5:], "checkpoint file not found"),
    ):
        proc = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_a_model_with_a_call_head_detects_on_its_call_probability(checkpoint, field, tmp_path):
    from helpers.recordings.detect import detect_events
    from helpers.models.hierarchical import MultiTaskModel

    torch.manual_seed(1)
    settings = FeatureSettings(sample_rate=8000, clip_seconds=1.0)
    trunk = create_model("cnn10", n_classes=2, channels=[4, 8, 16, 32])
    model = MultiTaskModel(trunk, 3, 0, "softmax").eval()
    multitask = tmp_path / "multitask.pt"
    save_checkpoint(
        multitask,
        checkpoint_payload(
            model, kind="best_ema", classes=CLASSES, feature_settings=settings.to_dict(), score="softmax"
        ),
    )
    out = tmp_path / "out"
    result = scan(multitask, field / "a.wav", out, threshold=0.3, progress=False, device="cpu")
    assert result.settings["score_from"] == "call" and result.settings["background"] == "background"
    assert "P(call) = 1 - score_background" in result.format()
    assert json.loads((out / "scan.json").read_text())["settings"]["detection_score"].startswith("P(call)")
    windows = pd.read_csv(out / "a.wav.scores.csv").assign(recording="a.wav")
    p_call = 1 - windows["score_background"]
    np.testing.assert_allclose(p_call, windows[["score_call_a", "score_call_b"]].sum(axis=1), atol=1e-5)
    expected = detect_events(windows, CLASSES, 0.3, score_from="call")
    assert (
        len(expected)
        and result.detections[["begin", "end", "label"]].values.tolist()
        == expected[["begin", "end", "label"]].values.tolist()
    )
    # the other score is a detection setting: the stored window scores are re-thresholded, not rescanned
    again = scan(multitask, field / "a.wav", out, threshold=0.3, progress=False, device="cpu", detection_score="class")
    assert again.recordings["status"].tolist() == ["redetected"] and again.settings["score_from"] == "class"
    assert (
        again.detections[["begin", "end"]].values.tolist()
        == detect_events(windows, CLASSES, 0.3)[["begin", "end"]].values.tolist()
    )
    # a flat model detects on its best class by default and on 1 - background when asked
    flat = scan(checkpoint, field / "a.wav", tmp_path / "flat", progress=False, device="cpu")
    assert flat.settings["score_from"] == "class" and "the best call class's own score" in flat.format()
    assert "the best call class's own score" in again.format()  # a call-head model told to use its classes
    asked = scan(
        checkpoint, field / "a.wav", tmp_path / "flat-call", progress=False, device="cpu", detection_score="call"
    )
    assert asked.settings["score_from"] == "call"
    with pytest.raises(ValueError, match="detection_score must be auto, class or call"):
        scan(checkpoint, field / "a.wav", tmp_path / "bad", progress=False, device="cpu", detection_score="max")
    with pytest.raises(ValueError, match="'noise' is not a class of this model"):
        scan(
            checkpoint,
            field / "a.wav",
            tmp_path / "bad",
            progress=False,
            device="cpu",
            detection_score="call",
            background="noise",
        )
