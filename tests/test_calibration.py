"""Per-class thresholds from reviewed detections: a constructed case with a known answer, the classes
that cannot be calibrated, and scan applying the file."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from helpers.evaluation.calibration import (
    calibrate,
    calibrated_thresholds,
    calibration_table,
    read_calibration,
    write_calibration,
)


def reviews_with_known_curve(a: float, b: float, n: int, label: str, seed: int) -> pd.DataFrame:
    """Scores uniform in [0, 1]; each event correct with probability 1 / (1 + exp(-(a + b score)))."""
    rng = np.random.default_rng(seed)
    score = rng.uniform(0, 1, n)
    correct = rng.uniform(0, 1, n) < 1 / (1 + np.exp(-(a + b * score)))
    decision = np.where(correct, "call", np.where(rng.uniform(0, 1, n) < 0.5, "not_call", "other"))
    return pd.DataFrame({"label": label, "score": score, "decision": decision})


def test_the_threshold_of_a_known_curve_is_found_within_its_interval():
    # gibbon: P(correct) = 0.9 at score (ln 9 + 4) / 10 = 0.62; argus: a steeper curve further right
    reviews = pd.concat(
        [reviews_with_known_curve(-4.0, 10.0, 600, "gibbon", 1), reviews_with_known_curve(-12.0, 15.0, 600, "argus", 2)]
    )
    fitted = calibrate(reviews, target_precision=0.9, n_bootstrap=100)
    for label, (a, b) in {"gibbon": (-4.0, 10.0), "argus": (-12.0, 15.0)}.items():
        entry = fitted["classes"][label]
        truth = (math.log(9) - a) / b
        assert entry["calibrated"] and entry["n"] == 600
        assert abs(entry["threshold"] - truth) < 0.05, (label, entry["threshold"], truth)
        low, high = entry["threshold_interval"]
        assert low < entry["threshold"] < high and low - 0.02 < truth < high + 0.02
    assert fitted["classes"]["argus"]["threshold"] > fitted["classes"]["gibbon"]["threshold"]


def test_classes_that_cannot_be_calibrated_say_why(tmp_path):
    few = pd.DataFrame({"label": "chimp", "score": [0.9, 0.8, 0.7], "decision": ["call", "not_call", "call"]})
    all_right = pd.DataFrame({"label": "argus", "score": np.linspace(0.5, 1, 20), "decision": "call"})
    unsure = pd.DataFrame({"label": "argus", "score": [0.1] * 5, "decision": ["unsure", "skip"] * 2 + ["unsure"]})
    fitted = calibrate(pd.concat([few, all_right, unsure]))
    table = calibration_table(fitted).set_index("class")
    assert not table["calibrated"].any()
    assert "fewer than 10" in table.loc["chimp", "note"] and "all 20 reviews say correct" in table.loc["argus", "note"]
    assert table.loc["argus", "n"] == 20  # unsure and skip are not evidence either way
    path = write_calibration(fitted, tmp_path / "calibration.json")
    with pytest.raises(ValueError, match="chimp .*fewer than 10"):
        calibrated_thresholds(path, ["background", "chimp", "argus"])
    assert calibrated_thresholds(path, ["background", "chimp", "argus"], fallback=0.5) == {"chimp": 0.5, "argus": 0.5}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a calibration file"):
        read_calibration(tmp_path / "bad.json")


@pytest.mark.slow
def test_scan_applies_the_calibrated_thresholds(tmp_path):
    import torch

    from helpers.recordings.scan import scan
    from helpers.features.frontend import FeatureSettings
    from helpers.models.checkpoint import checkpoint_payload, save_checkpoint
    from helpers.models.registry import create_model
    from tests.conftest import write_tone

    torch.manual_seed(0)
    settings = FeatureSettings(sample_rate=8000, clip_seconds=1.0)
    model = create_model("cnn6", n_classes=3, channels=[4, 8, 8, 8]).eval()
    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        checkpoint_payload(
            model, classes=["background", "a", "b"], feature_settings=settings.to_dict(), score="softmax"
        ),
    )
    (tmp_path / "rec").mkdir()
    write_tone(tmp_path / "rec" / "r.wav", 500, seconds=6.0, sr=8000)
    fitted = {
        "classes": {
            "b": {"calibrated": True, "threshold": 0.0, "n": 30, "n_correct": 20, "note": ""},
            "a": {"calibrated": False, "n": 2, "n_correct": 1, "note": "2 usable reviews"},
        }
    }
    path = write_calibration(fitted, tmp_path / "calibration.json")
    result = scan(
        ckpt, tmp_path / "rec", tmp_path / "out", threshold=1.01, thresholds_from=path, progress=False, device="cpu"
    )
    assert result.settings["threshold"] == {"a": 1.01, "b": 0.0} and result.settings["uncalibrated"] == ["a"]
    from helpers.recordings.detect import detect_events

    windows = pd.read_csv(tmp_path / "out" / "r.wav.scores.csv").assign(recording="r.wav")
    expected = detect_events(windows, ["background", "a", "b"], threshold={"a": 1.01, "b": 0.0})
    assert len(expected) >= 1 and len(result.detections) == len(expected) and set(result.detections["label"]) <= {"b"}
    unchanged = scan(ckpt, tmp_path / "rec", tmp_path / "out", threshold=1.01, progress=False, device="cpu")
    assert len(unchanged.detections) == 0  # without the file, 1.01 holds for both
    assert "not calibrated, at the given threshold: a" in result.format()


def test_a_target_the_scores_never_reach_turns_the_class_off_and_says_so():
    # P(correct) = 0.9 at (ln 9 + 1) / 2 = 1.6: beyond any score
    fitted = calibrate(reviews_with_known_curve(-1.0, 2.0, 400, "gibbon", 3), target_precision=0.9, n_bootstrap=20)
    entry = fitted["classes"]["gibbon"]
    assert entry["calibrated"] and entry["threshold"] > 1.0
    assert "turns it off" in entry["note"]
    assert calibrated_thresholds(fitted, ["background", "gibbon"]) == {"gibbon": 1.0}
