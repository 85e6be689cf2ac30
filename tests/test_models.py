"""Tests of helpers.models.networks: the five registered networks, fusion, checkpoints, parameter and FLOP counts.

Every registered model goes through the same parametrised tests (timm-style). Models are built
once per test module and shared, because ResNet22 (62.6 M parameters) takes about a second to
initialise on 2 CPU cores; its forward passes use batches of 2.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from helpers.models.registry import create_model, model_from_config, MODELS
from helpers.models.networks import BasicBlock, PAPER_PARAMETER_COUNTS
from helpers.models.fusion import FusionModel
from helpers.models.checkpoint import (
    checkpoint_payload,
    fusion_from_checkpoints,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from helpers.models.cost import count_parameters, forward_flops


NAMES = sorted(MODELS)
EMBEDDING_DIMS = {"cnn6": 512, "cnn10": 512, "mobilenetv1": 1024, "resnet22": 2048, "wrn28_2": 128}
FRAMES_16K, FRAMES_8K, N_MELS = 150, 75, 64
#: A short clip for the tests that check behaviour rather than the paper's input sizes (speed).
FRAMES_SHORT = 32


def logmel_batch(batch: int, frames: int, n_mels: int = N_MELS, seed: int = 0) -> torch.Tensor:
    """Random log-mels in a realistic dB range (about -100 ... +20 dB), ``(batch, frames, n_mels)``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, n_mels, generator=g) * 20.0 - 40.0


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: create_model(name, n_classes=5) for name in NAMES}


def small_cnn(n_classes: int = 5, seed: int = 0) -> nn.Module:
    """A narrow CNN6 (same code path, few parameters) for the fusion and checkpoint tests."""
    torch.manual_seed(seed)
    return create_model("cnn6", n_classes, channels=[8, 16, 32, 64])


def small_wrn(n_classes: int = 5, seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("wrn28_2", n_classes, depth=10, widen_factor=1, stem_channels=16)


# ---------------------------------------------------------------- single models
@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_paper(models, name):
    assert count_parameters(models[name]) == PAPER_PARAMETER_COUNTS[name]
    # bn0 running statistics are buffers, not parameters: the totals agree when nothing is frozen.
    assert count_parameters(models[name], trainable_only=False) == PAPER_PARAMETER_COUNTS[name]


@pytest.mark.parametrize("frames", [FRAMES_16K, FRAMES_8K])
@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_finite_and_nonnegative_embedding(models, name, frames):
    model = models[name].eval()
    assert model.embedding_dim == EMBEDDING_DIMS[name]
    with torch.no_grad():
        logits, embedding = model(logmel_batch(2, frames))
    assert logits.shape == (2, 5)
    assert embedding.shape == (2, EMBEDDING_DIMS[name])
    assert torch.isfinite(logits).all() and torch.isfinite(embedding).all()
    assert (embedding >= 0).all(), "the embedding is taken after the ReLU"


@pytest.mark.parametrize("name", NAMES)
def test_train_mode_forward(models, name):
    model = models[name].train()
    try:
        with torch.no_grad():
            logits, embedding = model(logmel_batch(2, FRAMES_8K))
    finally:
        model.eval()
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    assert (embedding >= 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_normalize_shape_and_split_forward_equals_forward(models, name):
    model = models[name].eval()
    x = logmel_batch(2, FRAMES_SHORT, seed=1)
    with torch.no_grad():
        z = model.normalize(x)
        assert z.shape == (2, 1, FRAMES_SHORT, N_MELS)
        split = model.forward_normalized(z)
        whole = model(x)
    for a, b in zip(split, whole):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_short_clips_work_thanks_to_global_pooling(models, name):
    model = models[name].eval()
    with torch.no_grad():
        logits, _ = model(logmel_batch(2, 8))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()


# Every model with 3 classes; 11 classes for two of them (ResNet22 is built once only: 62.6 M parameters).
@pytest.mark.parametrize(("name", "n_classes"), [(name, 3) for name in NAMES] + [("cnn6", 11), ("wrn28_2", 11)])
def test_any_number_of_classes(name, n_classes):
    model = create_model(name, n_classes).eval()
    assert model.n_classes == n_classes
    with torch.no_grad():
        logits, _ = model(logmel_batch(2, FRAMES_SHORT))
    assert logits.shape == (2, n_classes)
    # Only the last FC depends on the class count.
    delta = count_parameters(model) - PAPER_PARAMETER_COUNTS[name]
    assert delta == (n_classes - 5) * (EMBEDDING_DIMS[name] + 1)


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        create_model("cnn14", 5)
    for name in NAMES:
        assert name in str(info.value)


def test_wrong_input_shape_is_reported(models):
    with pytest.raises(ValueError, match="expects"):
        models["cnn6"](torch.zeros(2, 150, 128))


@pytest.mark.parametrize("name", NAMES)
def test_initialisation(models, name):
    model = models[name]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert convs[0].weight.abs().sum() > 0
    assert all(m.bias is None for m in convs), "convs are followed by BN and carry no bias"
    assert all((m.bias == 0).all() for m in linears)
    residual_last_bns = {id(b.bn2) for b in model.modules() if isinstance(b, BasicBlock)}
    assert bool(residual_last_bns) == (name in ("resnet22", "wrn28_2"))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert (m.bias == 0).all()
            expected = 0.0 if id(m) in residual_last_bns else 1.0
            assert (m.weight == expected).all()


@pytest.mark.parametrize("name", NAMES)
def test_config_is_plain_json_and_rebuilds_the_model(models, name):
    model = models[name]
    config = json.loads(json.dumps(model.config))
    assert config == model.config
    assert config["name"] == name and config["n_classes"] == 5 and config["n_mels"] == N_MELS
    if name != "resnet22":  # spare the 62 M parameter rebuild; same code path
        rebuilt = model_from_config(config)
        assert type(rebuilt) is type(model)
        assert count_parameters(rebuilt) == count_parameters(model)


def test_options_reach_the_config_and_the_model():
    model = create_model("cnn10", 4, n_mels=40, block_dropout=0.3)
    assert model.config["block_dropout"] == 0.3 and model.config["n_mels"] == 40
    assert model.bn0.num_features == 40
    assert all(m.p == 0.3 for m in model.backbone.modules() if isinstance(m, nn.Dropout))


def test_cnn10_flops_match_the_paper(models):
    flops = forward_flops(models["cnn10"], FRAMES_16K)
    assert flops == pytest.approx(2 * 1.9e9, rel=0.10)
    # Halving the frames (8 kHz) roughly halves the cost.
    assert forward_flops(models["cnn10"], FRAMES_8K) == pytest.approx(flops / 2, rel=0.05)


def test_forward_flops_counts_a_known_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4, 3))
    assert forward_flops(model, time_frames=6, n_mels=4) == 2 * 24 * 3


def test_forward_flops_restores_training_mode(models):
    model = models["cnn6"].train()
    forward_flops(model, FRAMES_8K)
    assert all(m.training for m in model.modules())
    model.eval()


def test_channels_last_gives_the_same_output():
    model = small_wrn().eval()
    x = logmel_batch(2, FRAMES_SHORT)
    with torch.no_grad():
        expected, _ = model(x)
        model = model.to(memory_format=torch.channels_last)
        got, _ = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- checkpoints
def test_load_model_round_trip_with_weights_only(tmp_path):
    model = small_cnn().eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, checkpoint_payload(model, step=200, kind="best_plain", devel_uar=0.9))
    assert load_checkpoint(path)["devel_uar"] == 0.9
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config == model.config
    x = logmel_batch(2, FRAMES_SHORT)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], model(x)[0])


def test_load_model_names_the_file_when_keys_are_missing(tmp_path):
    path = tmp_path / "bare_state_dict.pt"
    torch.save({"state_dict": small_cnn().state_dict()}, path)
    with pytest.raises(ValueError, match="bare_state_dict.pt"):
        load_model(path)


def test_older_checkpoint_formats_still_load(tmp_path):
    """Files written before the one format: the bare dict of the former ``models.checkpoint_dict``
    (no version) and version 1 as the former training engine wrote it, key for key."""
    model = small_cnn().eval()
    x = logmel_batch(2, FRAMES_SHORT)
    with torch.no_grad():
        expected = model(x)[0]
    bare = tmp_path / "bare.pt"
    torch.save({"model_config": model.config, "state_dict": model.state_dict(), "iteration": 7}, bare)
    engine_v1 = tmp_path / "best_ema.pt"
    torch.save(
        {
            "checkpoint_version": 1,
            "kind": "best_ema",
            "step": 200,
            "model_config": model.config,
            "state_dict": model.state_dict(),
            "classes": ["a", "b", "c", "d", "e"],
            "feature_settings": {"sample_rate": 8000},
            "train_config": {"model": "cnn10"},
            "score": "sigmoid",
        },
        engine_v1,
    )
    old = load_checkpoint(bare)
    assert old["checkpoint_version"] == 0 and old["classes"] is None and old["iteration"] == 7
    assert load_checkpoint(engine_v1)["classes"] == ["a", "b", "c", "d", "e"]
    for path in (bare, engine_v1):
        with torch.no_grad():
            torch.testing.assert_close(load_model(path)(x)[0], expected)


def test_load_checkpoint_names_a_damaged_file(tmp_path):
    path = tmp_path / "half.pt"
    save_checkpoint(path, checkpoint_payload(small_cnn()))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="half.pt.*damaged"):
        load_checkpoint(path)


# ---------------------------------------------------------------- fusion
def bn_stats(module: nn.Module) -> list[torch.Tensor]:
    return [
        t.clone() for m in module.modules() if isinstance(m, nn.BatchNorm2d) for t in (m.running_mean, m.running_var)
    ]


def branches(fusion: FusionModel) -> nn.ModuleList:
    """Both branches as one module, to iterate over their parameters and layers."""
    return nn.ModuleList([fusion.branch_a, fusion.branch_b])


def train_step(model: nn.Module, x: torch.Tensor) -> None:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    logits, _ = model(x)
    loss = nn.functional.cross_entropy(logits, torch.arange(x.shape[0]) % logits.shape[1])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_fusion_api_shapes():
    fusion = FusionModel(small_cnn(), small_wrn(), n_classes=5).eval()
    assert fusion.embedding_dim == 64 + 64
    x = logmel_batch(2, FRAMES_SHORT)
    with torch.no_grad():
        z = fusion.normalize(x)
        assert z.shape == (2, 2, FRAMES_SHORT, N_MELS)
        logits, embedding = fusion.forward_normalized(z)
        whole = fusion(x)
    assert logits.shape == (2, 5) and embedding.shape == (2, 128)
    torch.testing.assert_close(whole[0], logits)
    # The fused embedding is the two branch embeddings side by side.
    torch.testing.assert_close(embedding[:, :64], fusion.branch_a(x)[1])
    torch.testing.assert_close(embedding[:, 64:], fusion.branch_b(x)[1])


def test_frozen_branches_stay_in_eval_mode_and_do_not_learn():
    fusion = FusionModel(small_cnn(), small_wrn(), n_classes=5, freeze=True)
    fusion.train()
    assert fusion.training and fusion.classifier.training
    assert not any(m.training for m in (*fusion.branch_a.modules(), *fusion.branch_b.modules()))
    assert count_parameters(fusion) == 128 * 5 + 5
    stats_before = bn_stats(branches(fusion))
    weights_before = [p.clone() for p in branches(fusion).parameters()]
    classifier_before = fusion.classifier.weight.clone()

    train_step(fusion, logmel_batch(4, FRAMES_SHORT))

    assert all(p.grad is None for p in branches(fusion).parameters())
    for a, b in zip(stats_before, bn_stats(branches(fusion))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(weights_before, branches(fusion).parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(classifier_before, fusion.classifier.weight)


def test_trainable_fusion_updates_the_branches():
    fusion = FusionModel(small_cnn(), small_wrn(), n_classes=5, freeze=False)
    fusion.train()
    assert fusion.branch_a.training and fusion.branch_b.training
    stats_before = bn_stats(fusion.branch_a)
    weights_before = [p.clone() for p in fusion.branch_a.parameters()]

    train_step(fusion, logmel_batch(4, FRAMES_SHORT))

    assert any(not torch.equal(a, b) for a, b in zip(weights_before, fusion.branch_a.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(stats_before, bn_stats(fusion.branch_a)))


def test_fusion_from_checkpoints_and_back(tmp_path):
    branch_a, branch_b = small_cnn().eval(), small_wrn().eval()
    save_checkpoint(tmp_path / "a.pt", checkpoint_payload(branch_a))
    save_checkpoint(tmp_path / "b.pt", checkpoint_payload(branch_b))
    fusion = fusion_from_checkpoints(tmp_path / "a.pt", tmp_path / "b.pt", n_classes=5, freeze=True).eval()
    x = logmel_batch(2, FRAMES_SHORT)
    with torch.no_grad():
        torch.testing.assert_close(fusion(x)[1][:, :64], branch_a(x)[1])
        torch.testing.assert_close(fusion(x)[1][:, 64:], branch_b(x)[1])

    # A fusion checkpoint rebuilds through the same config mechanism.
    json.dumps(fusion.config)
    save_checkpoint(tmp_path / "fusion.pt", checkpoint_payload(fusion))
    reloaded = load_model(tmp_path / "fusion.pt")
    assert isinstance(reloaded, FusionModel) and reloaded.freeze
    assert count_parameters(reloaded) == count_parameters(fusion)
    with torch.no_grad():
        for a, b in zip(reloaded(x), fusion(x)):
            torch.testing.assert_close(a, b)


def test_fusion_rejects_branches_with_different_features():
    other = create_model("cnn6", 5, n_mels=32, channels=[8, 16, 32, 64])
    with pytest.raises(ValueError, match="n_mels"):
        FusionModel(small_cnn(), other, n_classes=5)


@pytest.mark.parametrize("name", NAMES)
def test_width_narrows_every_network_and_is_stored_only_when_set(name):
    full = create_model(name, 5)
    assert "width" not in full.config  # the paper's network keeps its stored config
    narrow = create_model(name, 5, width=0.25)
    assert narrow.config["width"] == 0.25
    # channels shrink about fourfold, so weights about sixteenfold (first/last layers less)
    ratio = count_parameters(full) / count_parameters(narrow)
    assert 8 < ratio < 20, ratio
    assert narrow.embedding_dim == max(1, round(EMBEDDING_DIMS[name] * 0.25))
    rebuilt = model_from_config(json.loads(json.dumps(narrow.config)))
    assert count_parameters(rebuilt) == count_parameters(narrow)
    with torch.no_grad():
        logits, embedding = narrow.eval()(logmel_batch(2, FRAMES_8K))
    assert logits.shape == (2, 5) and embedding.shape == (2, narrow.embedding_dim)
    with pytest.raises(ValueError, match="width must be > 0"):
        create_model(name, 5, width=0.0)
