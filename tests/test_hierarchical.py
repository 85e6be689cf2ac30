"""Background first, then species: the multi-task model's combined scores, its training
targets and loss, the two-stage combination and its threshold, and a tiny multi-task run end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.evaluation.scoring import predict_scores
from helpers.evaluation.two_stage import (
    calls_only,
    choose_threshold,
    relabel_to_calls,
    two_stage_predictions,
    two_stage_scores,
)
from helpers.models.checkpoint import checkpoint_payload, load_model, save_checkpoint
from helpers.models.hierarchical import MultiTaskModel, combine_call_and_species
from helpers.models.registry import create_model, model_from_config
from helpers.training.config import KEY_OMITTED_DEFAULTS, TrainConfig
from helpers.training.multitask import call_and_species_targets, multitask_loss

NARROW = {"channels": [8, 16, 32, 64]}


def _scores(outputs: torch.Tensor, score: str) -> torch.Tensor:
    return torch.softmax(outputs, dim=1) if score == "softmax" else torch.sigmoid(outputs)


@pytest.mark.parametrize("background_index", [0, 2])
def test_softmax_convention_gives_the_combined_distribution(background_index):
    g = torch.Generator().manual_seed(0)
    call, species = torch.randn(64, generator=g) * 4, torch.randn(64, 4, generator=g) * 4
    scores = _scores(combine_call_and_species(call, species, background_index, "softmax"), "softmax")
    p_call, others = torch.sigmoid(call), [k for k in range(5) if k != background_index]
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(64))
    torch.testing.assert_close(scores[:, background_index], 1 - p_call)
    torch.testing.assert_close(scores[:, others], p_call[:, None] * torch.softmax(species, dim=1))


@pytest.mark.parametrize("background_index", [0, 3])
def test_sigmoid_convention_gives_scores_in_unit_interval(background_index):
    g = torch.Generator().manual_seed(1)
    call, species = torch.randn(64, generator=g) * 4, torch.randn(64, 4, generator=g) * 4
    outputs = combine_call_and_species(call, species, background_index, "sigmoid")
    assert torch.isfinite(outputs).all()
    scores = _scores(outputs, "sigmoid")
    p_call, others = torch.sigmoid(call), [k for k in range(5) if k != background_index]
    assert ((scores >= 0) & (scores <= 1)).all()
    torch.testing.assert_close(scores[:, background_index], 1 - p_call)
    torch.testing.assert_close(scores[:, others], p_call[:, None] * torch.sigmoid(species), rtol=1e-5, atol=1e-6)
    # saturated heads stay finite (P rounds to 1 in float32)
    extreme = combine_call_and_species(torch.full((2,), 40.0), torch.full((2, 4), 40.0), background_index, "sigmoid")
    assert torch.isfinite(extreme).all() and (torch.sigmoid(extreme) <= 1).all()


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
def test_multitask_model_scores_like_any_model_and_rebuilds_from_config(score):
    torch.manual_seed(0)
    model = MultiTaskModel(create_model("cnn10", 4, **NARROW), n_classes=5, background_index=0, score=score)
    x = torch.randn(6, 40, 64)
    scores = predict_scores(model, x, score=score)
    assert scores.shape == (6, 5) and ((scores >= 0) & (scores <= 1)).all()
    p_call = model.eval().call_probability(x).numpy()
    np.testing.assert_allclose(scores[:, 0], 1 - p_call, atol=1e-6)
    if score == "softmax":
        np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-5)
    rebuilt = model_from_config(model.config)
    rebuilt.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(predict_scores(rebuilt, x, score=score), scores)
    with pytest.raises(ValueError, match="n_classes=4"):
        MultiTaskModel(create_model("cnn10", 5, **NARROW), n_classes=5, background_index=0, score=score)


def test_mixed_targets_give_call_and_renormalised_species_targets():
    # classes: background(0), a(1), b(2), c(3)
    targets = torch.tensor(
        [
            [1.0, 0, 0, 0],  # pure background
            [0, 0, 1.0, 0],  # pure b
            [0.3, 0.7, 0, 0],  # background mixed with a
            [0, 0.25, 0, 0.75],
        ]
    )  # a mixed with c
    call, species = call_and_species_targets(targets, background_index=0)
    torch.testing.assert_close(call, torch.tensor([0.0, 1.0, 0.7, 1.0]))
    torch.testing.assert_close(species, torch.tensor([[0.0, 0, 0], [0, 1, 0], [1, 0, 0], [0.25, 0, 0.75]]))
    # background in the middle of the class order
    call, species = call_and_species_targets(targets[:, [1, 0, 2, 3]], background_index=1)
    torch.testing.assert_close(call, torch.tensor([0.0, 1.0, 0.7, 1.0]))


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
def test_multitask_loss_weights_species_by_call_mass(score):
    g = torch.Generator().manual_seed(2)
    call_logit, species_logits = torch.randn(4, generator=g), torch.randn(4, 3, generator=g)
    targets = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0.3, 0.7, 0, 0], [0, 0.25, 0, 0.75]])
    c, s = call_and_species_targets(targets, 0)
    call_loss = torch.nn.functional.binary_cross_entropy_with_logits(call_logit, c)
    if score == "softmax":
        per_clip = -(s * torch.log_softmax(species_logits, 1)).sum(1)
    else:
        per_clip = torch.nn.functional.binary_cross_entropy_with_logits(species_logits, s, reduction="none").mean(1)
    species_loss = (0.0 * per_clip[0] + 1.0 * per_clip[1] + 0.7 * per_clip[2] + 1.0 * per_clip[3]) / 2.7
    got = multitask_loss(call_logit, species_logits, targets, 0, 0.3, score)
    torch.testing.assert_close(got, 0.3 * call_loss + 0.7 * species_loss)
    # the pure background row does not move the species head
    species_logits = species_logits.clone().requires_grad_(True)
    multitask_loss(call_logit, species_logits, targets, 0, 0.3, score).backward()
    assert species_logits.grad[0].abs().max() == 0 and species_logits.grad[1].abs().max() > 0
    # a batch without calls: species loss 0, no NaN
    none = multitask_loss(call_logit[:1], species_logits[:1], targets[:1], 0, 0.3, score)
    assert torch.isfinite(none)


def test_new_options_enter_the_run_key_only_when_set():
    for name in ("hierarchy", "call_loss_weight", "background_class"):
        assert name in KEY_OMITTED_DEFAULTS
    base = TrainConfig().key()
    assert TrainConfig(hierarchy="flat", call_loss_weight=0.5, background_class="background").key() == base
    assert (
        len(
            {
                base,
                TrainConfig(hierarchy="multitask").key(),
                TrainConfig(hierarchy="multitask", call_loss_weight=0.3).key(),
            }
        )
        == 3
    )
    assert TrainConfig(hierarchy="multitask", sample_rate=8000).run_dir().name.startswith("cnn10-multitask-8k-")
    assert TrainConfig(sample_rate=8000).run_dir().name.startswith("cnn10-8k-")
    with pytest.raises(ValueError, match="hierarchy"):
        TrainConfig(hierarchy="tree")
    with pytest.raises(ValueError, match="call_loss_weight"):
        TrainConfig(call_loss_weight=1.0)
    with pytest.raises(ValueError, match="registry backbone"):
        TrainConfig(hierarchy="multitask", model="fusion")


def test_two_stage_decision_scores_and_threshold_on_a_hand_made_example():
    # classes: background(0), a(1), b(2); species classifier scores columns (a, b)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    p_call = np.array([0.05, 0.30, 0.55, 0.40, 0.90, 0.45, 0.80, 0.95])
    species = np.array([[0.5, 0.5], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.4, 0.6]])
    np.testing.assert_array_equal(two_stage_predictions(p_call, species, 0, 0.5), [0, 0, 2, 0, 1, 0, 2, 2])
    # the detector alone: background clip 2 (0.55) outscores call clips 3 and 5; thresholds in (0.30, 0.40]
    # pass every call and stop 2 of 3 backgrounds: UAR (2/3 + 1) / 2, better than (0.55, 0.80]: (1 + 3/5) / 2
    alone = choose_threshold(p_call, labels != 0)
    assert alone.threshold == pytest.approx(0.35) and alone.devel_uar == pytest.approx(5 / 6)
    assert "optimistic" in alone.note
    # the combined decision at 0.35: only background clip 2 is wrong (called b): UAR (2/3 + 1 + 1) / 3
    combined = choose_threshold(p_call, labels != 0, species_scores=species, labels=labels, background_index=0)
    assert combined.threshold == pytest.approx(0.35) and combined.devel_uar == pytest.approx(8 / 9)
    # threshold 0.5 misses call clips 3 and 5 and passes background clip 2: UAR (2/3 + 1/2 + 2/3) / 3
    at_half = combined.uars[np.argmin(np.abs(combined.candidates - 0.5))]
    assert combined.candidates[np.argmin(np.abs(combined.candidates - 0.5))] == pytest.approx(0.5)
    assert at_half == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    # scores: argmax is the decision; softmax species -> rows sum to 1; P(background) = 1 - recalibrated P(call)
    for t in (0.35, 0.5, 0.7):
        scores = two_stage_scores(p_call, species, 0, t)
        np.testing.assert_array_equal(scores.argmax(1), two_stage_predictions(p_call, species, 0, t))
        np.testing.assert_allclose(scores.sum(1), 1)
    np.testing.assert_allclose(two_stage_scores(p_call, np.eye(2)[[0, 1, 0, 1, 0, 1, 0, 1]], 0, 0.5)[:, 0], 1 - p_call)
    sigmoid_species = species * 0.5  # per-class sigmoid scores need not sum to 1
    scores = two_stage_scores(p_call, sigmoid_species, 0, 0.35)
    assert ((scores >= 0) & (scores <= 1)).all()
    np.testing.assert_array_equal(scores.argmax(1), two_stage_predictions(p_call, sigmoid_species, 0, 0.35))


def test_relabel_to_calls_and_calls_only(tmp_path):
    from helpers.data.corpus import read_corpus
    from tests.conftest import make_tiny_corpus

    root = make_tiny_corpus(tmp_path / "tiny", labels=("background", "chimpanze", "redcap"))
    corpus = read_corpus(root, name="tiny")
    detector = relabel_to_calls(corpus)
    assert detector.classes == ["background", "call"]
    known = corpus.table["class_index"] >= 0
    np.testing.assert_array_equal(detector.table["class_index"][known], (corpus.table["class_index"][known] > 0))
    assert set(detector.table["label"][known]) == {"background", "call"}
    assert corpus.classes == ["background", "chimpanze", "redcap"]  # the original is untouched
    species = calls_only(corpus)
    assert species.classes == ["chimpanze", "redcap"]
    assert set(species.table["label"]) == {"chimpanze", "redcap"}
    np.testing.assert_array_equal(
        species.table["class_index"], species.table["label"].map({"chimpanze": 0, "redcap": 1})
    )
    with pytest.raises(ValueError, match="background_class"):
        calls_only(corpus, background_class="noise")


@pytest.fixture(scope="module")
def synthetic_corpus(tmp_path_factory):
    from helpers.data.corpus import read_corpus
    from helpers.data.corpora.synthetic import make_synthetic_corpus

    root = tmp_path_factory.mktemp("hierarchical") / "corpus"
    make_synthetic_corpus(root, n_clips=120, seed=3, hidden_test_labels=False)
    return read_corpus(root, name="synthetic-mt")


def _tiny_config(tmp_path, **changes) -> TrainConfig:
    return TrainConfig(
        **{
            **dict(
                corpus="synthetic-mt",
                model="cnn10",
                model_options=NARROW,
                iterations=40,
                eval_every=20,
                ema_start=10,
                checkpoint_every=20,
                batch_size=8,
                sample_rate=8000,
                cache_dir=str(tmp_path / "cache"),
                out_dir=str(tmp_path / "runs"),
                device="cpu",
                num_threads=1,
                seed=3,
            ),
            **changes,
        }
    )


@pytest.mark.slow
def test_tiny_multitask_run_saves_a_loadable_checkpoint_that_predict_scores(tmp_path, synthetic_corpus):
    from helpers.evaluation.predict import predict_files
    from helpers.training import train

    corpus = synthetic_corpus
    config = _tiny_config(tmp_path, hierarchy="multitask", call_loss_weight=0.4)
    result = train(config, corpus=corpus, progress=False)
    assert np.isfinite(result.history["train_loss"]).all()
    ckpt = result.run_dir / "checkpoints" / "best_ema.pt"
    model = load_model(ckpt)
    assert isinstance(model, MultiTaskModel) and model.score == "sigmoid"  # MixUp on: the BCE convention
    assert model.background_index == corpus.classes.index("background")
    test = corpus.split("test")
    table = predict_files(ckpt, list(test["path"][:6]), device="cpu")
    scores = table[[f"score_{c}" for c in corpus.classes]].to_numpy()
    assert scores.shape == (6, len(corpus.classes)) and ((scores >= 0) & (scores <= 1)).all()
    assert set(table["prediction"]) <= set(corpus.classes)
    # a checkpoint written by hand round-trips through the one loader
    save_checkpoint(tmp_path / "copy.pt", checkpoint_payload(model, classes=corpus.classes, score=model.score))
    again = load_model(tmp_path / "copy.pt")
    x = torch.randn(3, 75, 64)
    torch.testing.assert_close(again(x)[0], model(x)[0])
    # without MixUp the softmax convention: combined scores sum to 1
    ce_config = TrainConfig(**{**config.to_dict(), "mixup": False, "iterations": 20, "eval_every": 20})
    ce_run = train(ce_config, corpus=corpus, progress=False)
    ce_table = predict_files(ce_run.run_dir / "checkpoints" / "best_plain.pt", list(test["path"][:6]), device="cpu")
    np.testing.assert_allclose(ce_table.filter(like="score_").to_numpy().sum(axis=1), 1, atol=1e-5)


@pytest.mark.slow
def test_tiny_two_stage_system_scores_with_a_devel_threshold(tmp_path, synthetic_corpus):
    from helpers.evaluation.metrics import classification_metrics
    from helpers.evaluation.two_stage import stage_scores
    from helpers.features.cache import load_features
    from helpers.training import train

    corpus = synthetic_corpus
    background = corpus.classes.index("background")
    detector = train(
        _tiny_config(tmp_path, corpus="synthetic-mt+call-detector", iterations=20),
        corpus=relabel_to_calls(corpus),
        progress=False,
    )
    species = train(
        _tiny_config(tmp_path, corpus="synthetic-mt+calls-only", iterations=20),
        corpus=calls_only(corpus),
        progress=False,
    )
    assert detector.run_dir != species.run_dir
    settings = detector.config.feature_settings()
    scored = {}
    for split in ("devel", "test"):
        fs = load_features(corpus.table, split, settings, tmp_path / "cache", corpus.name, progress=False)
        scored[split] = (
            fs.labels,
            *stage_scores(
                detector.run_dir / "checkpoints" / "best_ema.pt",
                species.run_dir / "checkpoints" / "best_ema.pt",
                fs.features,
                corpus.classes,
            ),
        )
    labels, p_call, species_scores = scored["devel"]
    assert p_call.shape == labels.shape and species_scores.shape == (len(labels), len(corpus.classes) - 1)
    choice = choose_threshold(
        p_call, labels != background, species_scores=species_scores, labels=labels, background_index=background
    )
    assert 0 < choice.threshold < 1 and choice.devel_uar == choice.uars.max()
    labels, p_call, species_scores = scored["test"]
    scores = two_stage_scores(p_call, species_scores, background, choice.threshold)
    np.testing.assert_array_equal(
        scores.argmax(1), two_stage_predictions(p_call, species_scores, background, choice.threshold)
    )
    metrics = classification_metrics(labels, scores, corpus.classes)
    assert 0 <= metrics["uar"] <= 1
    with pytest.raises(ValueError, match="calls_only"):
        stage_scores(
            detector.run_dir / "checkpoints" / "best_ema.pt",
            detector.run_dir / "checkpoints" / "best_ema.pt",
            fs.features,
            corpus.classes,
        )


@pytest.mark.slow
def test_an_interrupted_multitask_run_resumes_to_identical_weights(tmp_path, synthetic_corpus, monkeypatch):
    from helpers.models.checkpoint import load_checkpoint
    from helpers.training import train
    from helpers.training.ema import ExponentialMovingAverage as EMA

    settings = dict(hierarchy="multitask", iterations=30, eval_every=10, ema_start=10, checkpoint_every=10)
    ref = train(_tiny_config(tmp_path, run_name="ref", **settings), corpus=synthetic_corpus, progress=False)
    real_update = EMA.update

    def crash(self, model, step):
        if step == 15:
            raise KeyboardInterrupt("simulated interruption")
        return real_update(self, model, step)

    config = _tiny_config(tmp_path, run_name="interrupted", **settings)
    monkeypatch.setattr(EMA, "update", crash)
    with pytest.raises(KeyboardInterrupt):
        train(config, corpus=synthetic_corpus, progress=False)
    monkeypatch.setattr(EMA, "update", real_update)
    resumed = train(config, corpus=synthetic_corpus, progress=False)
    a = load_checkpoint(ref.run_dir / "checkpoints" / "last.pt")["state_dict"]
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["state_dict"]
    assert any(key.startswith("call_head.") for key in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_build_training_makes_the_multitask_model_and_names_what_it_lacks():
    from helpers.training.steps import build_training

    config = TrainConfig(
        model="cnn6",
        model_options=NARROW,
        hierarchy="multitask",
        batch_size=4,
        device="cpu",
        channels_last=False,
        mixup=False,
    )
    labels = np.repeat(np.arange(4), 3)
    setup = build_training(config, 4, torch.device("cpu"), labels, classes=["chimp", "background", "a", "b"])
    assert isinstance(setup.model, MultiTaskModel) and setup.model.score == "softmax"
    assert setup.model.background_index == 1 and setup.model.trunk.name == "cnn6"
    loss = setup.step(torch.randn(4, 40, 64), torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="classes=corpus.classes"):
        build_training(config, 4, torch.device("cpu"), labels)
    with pytest.raises(ValueError, match="background_class"):
        build_training(config, 4, torch.device("cpu"), labels, classes=["noise", "x", "a", "b"])


def test_corpus_names_ask_for_the_two_stage_views(tmp_path):
    from helpers.data.corpora.named import prepare_corpus
    from helpers.data.corpora.views import split_view
    from tests.conftest import make_tiny_corpus

    assert split_view("demo+call-detector") == ("demo", "call-detector")
    assert split_view("/data/my+corpus") == ("/data/my+corpus", None)  # a '+' in a folder name is no view
    root = make_tiny_corpus(tmp_path / "corpus", labels=("background", "chimpanze", "redcap"))
    flat = prepare_corpus(str(root), progress=False)
    detector = prepare_corpus(f"{root}+call-detector", progress=False)
    species = prepare_corpus(f"{root}+calls-only", progress=False)
    assert detector.classes == ["background", "call"] and detector.name == flat.name  # features shared
    assert species.classes == ["chimpanze", "redcap"]
    assert (
        len(species.split("train")) == len(flat.split("train")) - (flat.split("train")["label"] == "background").sum()
    )
    # the view is part of the run key, so the stages never land in the flat model's folder
    configs = [TrainConfig(corpus=name) for name in (str(root), f"{root}+call-detector", f"{root}+calls-only")]
    assert len({c.run_dir() for c in configs}) == 3


@pytest.mark.slow
def test_final_weights_export_as_inference_checkpoints(tmp_path, synthetic_corpus):
    import torch

    from helpers.evaluation.predict import load_for_inference
    from helpers.models.checkpoint import export_final_weights, load_checkpoint
    from helpers.training import train

    run = train(
        _tiny_config(tmp_path, iterations=6, eval_every=3, ema_start=2, checkpoint_every=3),
        corpus=synthetic_corpus,
        progress=False,
    )
    last = load_checkpoint(run.run_dir / "checkpoints" / "last.pt")
    ema_path = export_final_weights(run.run_dir, "last_ema")
    plain_path = export_final_weights(run.run_dir, "last_plain")
    ema, plain = load_checkpoint(ema_path), load_checkpoint(plain_path)
    assert ema["kind"] == "last_ema" and ema["step"] == 6 and plain["kind"] == "last_plain"
    assert all(torch.equal(ema["state_dict"][k], last["ema"]["shadow"][k]) for k in ema["state_dict"])
    assert all(torch.equal(plain["state_dict"][k], last["state_dict"][k]) for k in plain["state_dict"])
    model, classes, _, _ = load_for_inference(ema_path)
    assert classes == synthetic_corpus.classes
    # the exported EMA weights score the devel split as the run's own last_ema predictions did
    import pandas as pd

    from helpers.evaluation.scoring import predict_scores
    from helpers.features.cache import load_features

    fs = load_features(
        synthetic_corpus.table,
        "devel",
        run.config.feature_settings(),
        run.config.cache_dir,
        synthetic_corpus.name,
        progress=False,
    )
    stored = pd.read_csv(run.run_dir / "predictions" / "devel-last_ema.csv")
    scores = predict_scores(model, fs.features, score=ema["score"])
    assert abs(scores - stored[[f"score_{c}" for c in classes]].to_numpy()).max() < 1e-4
    assert export_final_weights(run.run_dir, "last_ema") == ema_path  # written once
    with pytest.raises(ValueError, match="kind"):
        export_final_weights(run.run_dir, "best")
