"""The review loop headless: rounds of simulated reviews grow the training split, the head retrains,
the scans are rescored from their embeddings and the report recording is measured every round."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from helpers.data.corpus import read_corpus
from helpers.experiments.detection import semi_synthetic_pair
from helpers.experiments.review_loop import review_loop, rounds_table
from helpers.training.config import TrainConfig
from tests.conftest import make_tiny_corpus, write_tone

pytestmark = pytest.mark.slow


def head_config(root, tmp_path) -> TrainConfig:
    """A logistic head on BirdNET embeddings of the tiny corpus, one C: it trains in a second."""
    return TrainConfig(
        model="birdnet-logistic",
        corpus=str(root),
        data_dir=str(tmp_path),
        spec_augment=False,
        mixup=False,
        ema=False,
        cache_dir=str(tmp_path / "cache"),
        model_options={"Cs": [1.0]},
    )


def test_two_rounds_grow_train_and_are_measured(tmp_path):
    root = make_tiny_corpus(tmp_path / "corpus", per_split=3, test_hidden=False)
    corpus = read_corpus(root)
    pair = semi_synthetic_pair(
        corpus, tmp_path / "semi", threshold_split="train", truth_split="devel", duration=40.0, n_calls=5, seed=0
    )
    config = head_config(root, tmp_path)
    rounds = review_loop(
        config,
        corpus,
        pair["choose"],
        pair["report"],
        tmp_path / "loop",
        rounds=2,
        reviews_per_round=4,
        detect_threshold=0.05,
    )
    table = rounds_table(rounds)
    assert list(table["round"]) == [0, 1, 2]
    # each round reviews up to 4 new detections of the pool and adds one training clip per review
    assert table["reviews"].iloc[0] == 0 and table["reviews"].is_monotonic_increasing and table["reviews"].iloc[1] > 0
    assert (table["reviews"].diff().dropna() <= 4).all()
    assert (table["train clips"] - table["train clips"].iloc[0]).tolist() == table["reviews"].tolist()
    assert table["event F1"].between(0, 1).all()
    reviews = pd.read_csv(tmp_path / "loop" / "reviews" / "review.csv")
    assert set(reviews["reviewer"]) == {"simulated"} and len(reviews) == table["reviews"].iloc[-1]
    # a retrained round's run folder is an ordinary one: scan reads its checkpoint
    from helpers.recordings.scan import scan
    from helpers.experiments.pretrained import inference_checkpoint

    again = scan(inference_checkpoint(rounds[1].run_dir), pair["report"][0], tmp_path / "rescan", progress=False)
    assert again.errors.empty and len(again.recordings) == 1
    grown = read_corpus(tmp_path / "loop" / "corpus-round2")
    assert len(pd.read_csv(tmp_path / "loop" / "corpus-round2" / "rounds.csv")) == table["reviews"].iloc[-1]
    assert (grown.table["split"] == "devel").sum() == (corpus.table["split"] == "devel").sum()


def test_real_recordings_reviewed_and_measured_at_the_recordings_level(tmp_path):
    root = make_tiny_corpus(tmp_path / "corpus", per_split=3, test_hidden=False)
    field = tmp_path / "field"
    field.mkdir()
    for name, freq in (("focal_train.wav", 500), ("focal_test.wav", 500), ("other_test.wav", 800)):
        write_tone(field / name, freq, seconds=15.0)
    sf.write(str(field / "quiet_test.wav"), 0.01 * np.random.default_rng(0).standard_normal(16000 * 12), 16000)
    # the corpus was cut from the first 6 s of the training recording: events centred there are not reviewed
    pd.DataFrame(
        {
            "split": ["train"],
            "filename": ["train_00001.wav"],
            "source_recording": ["focal_train"],
            "source_path": ["site/focal_train.wav"],
            "offset_s": [0.0],
            "duration_s": [6.0],
        }
    ).to_csv(root / "manifest.csv", index=False)
    corpus = read_corpus(root)
    pair = semi_synthetic_pair(
        corpus, tmp_path / "semi", threshold_split="train", truth_split="devel", duration=30.0, n_calls=4, seed=0
    )
    config = head_config(root, tmp_path)
    report = {field / "focal_test.wav": "chimpanze", field / "other_test.wav": "redcap", field / "quiet_test.wav": None}
    rounds = review_loop(
        config,
        corpus,
        None,
        pair["report"],
        tmp_path / "loop",
        rounds=1,
        reviews_per_round=6,
        detect_threshold=0.0,
        field_pool={field / "focal_train.wav": "chimpanze"},
        field_report=report,
    )
    table = rounds_table(rounds)
    assert list(table["round"]) == [0, 1]
    for column in (
        "field: false alarms per hour (no calls)",
        "field: precision (focal)",
        "field: species found (focal)",
    ):
        assert column in table
    field_scores = rounds[0].field.set_index("recording")
    assert set(field_scores.index) == {"focal_test.wav", "other_test.wav", "quiet_test.wav"}
    assert (field_scores["n_correct"] + field_scores["n_false"] == field_scores["n_detected"]).all()
    assert field_scores.loc["quiet_test.wav", "n_correct"] == 0
    reviews = pd.read_csv(tmp_path / "loop" / "reviews" / "review.csv")
    assert len(reviews) and set(reviews["recording"]) == {"focal_train.wav"}
    centres = 0.5 * (reviews["begin"] + reviews["end"])
    assert (centres >= 6.0).all()
    # the recording-level reviewer: its own class a call, another call class unsure, background never queued
    expected = np.where(reviews["label"] == "chimpanze", "call", "unsure")
    assert list(reviews["decision"]) == list(expected)
    added = (reviews["decision"] == "call").sum()
    assert table["train clips"].iloc[1] - table["train clips"].iloc[0] == added
