"""The review loop headless: rounds of simulated reviews grow the training split, the head retrains,
the scans are rescored from their embeddings and the report recording is measured every round."""
from __future__ import annotations

import pandas as pd
import pytest

from helpers.data.corpus import read_corpus
from helpers.experiments.detection import semi_synthetic_pair
from helpers.experiments.review_loop import review_loop, rounds_table
from helpers.training.config import TrainConfig
from tests.conftest import make_tiny_corpus

pytestmark = pytest.mark.slow


def test_two_rounds_grow_train_and_are_measured(tmp_path):
    root = make_tiny_corpus(tmp_path / "corpus", per_split=3, test_hidden=False)
    corpus = read_corpus(root)
    pair = semi_synthetic_pair(corpus, tmp_path / "semi", threshold_split="train", truth_split="devel",
                               duration=40.0, n_calls=5, seed=0)
    config = TrainConfig(model="birdnet-logistic", corpus=str(root), data_dir=str(tmp_path), spec_augment=False,
                         mixup=False, ema=False, cache_dir=str(tmp_path / "cache"), model_options={"Cs": [1.0]})
    rounds = review_loop(config, corpus, pair["choose"], pair["report"], tmp_path / "loop", rounds=2,
                         reviews_per_round=4, detect_threshold=0.05)
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
    from helpers.evaluation.scan import scan
    from helpers.experiments.pretrained import inference_checkpoint

    again = scan(inference_checkpoint(rounds[1].run_dir), pair["report"][0], tmp_path / "rescan", progress=False)
    assert again.errors.empty and len(again.recordings) == 1
    grown = read_corpus(tmp_path / "loop" / "corpus-round2")
    assert len(pd.read_csv(tmp_path / "loop" / "corpus-round2" / "rounds.csv")) == table["reviews"].iloc[-1]
    assert (grown.table["split"] == "devel").sum() == (corpus.table["split"] == "devel").sum()
