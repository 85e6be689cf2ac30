"""TrainConfig.init_from: PANNs' AudioSet checkpoints (a state dict fabricated in PANNs' key format)
and this project's own checkpoints as starting weights."""

from __future__ import annotations

import warnings

import pytest
import torch

from helpers.features.frontend import FeatureSettings
from helpers.models.checkpoint import checkpoint_payload, save_checkpoint
from helpers.models.pretrained_init import initialise_from
from helpers.models.registry import create_model
from helpers.training.config import TrainConfig


def panns_cnn10_state(width: float = 0.125, seed: int = 0) -> dict[str, torch.Tensor]:
    """PANNs Cnn10's tensor names (models.py of Kong et al.): bn0, conv_block1-4 with conv1/bn1/conv2/bn2,
    fc1, fc_audioset, and the front-end buffers; shapes of a narrowed CNN10 so the test stays small."""
    g = torch.Generator().manual_seed(seed)
    channels = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
    state: dict[str, torch.Tensor] = {
        "spectrogram_extractor.stft.conv_real.weight": torch.randn(513, 1, 1024, generator=g),
        "spectrogram_extractor.stft.conv_imag.weight": torch.randn(513, 1, 1024, generator=g),
        "logmel_extractor.melW": torch.randn(513, 64, generator=g),
    }

    def bn(prefix: str, n: int) -> None:
        state.update(
            {
                f"{prefix}.weight": torch.rand(n, generator=g) + 0.5,
                f"{prefix}.bias": torch.randn(n, generator=g),
                f"{prefix}.running_mean": torch.randn(n, generator=g),
                f"{prefix}.running_var": torch.rand(n, generator=g) + 0.5,
                f"{prefix}.num_batches_tracked": torch.tensor(7),
            }
        )

    bn("bn0", 64)
    previous = 1
    for b, c in enumerate(channels, start=1):
        state[f"conv_block{b}.conv1.weight"] = torch.randn(c, previous, 3, 3, generator=g)
        state[f"conv_block{b}.conv2.weight"] = torch.randn(c, c, 3, 3, generator=g)
        bn(f"conv_block{b}.bn1", c)
        bn(f"conv_block{b}.bn2", c)
        previous = c
    state["fc1.weight"] = torch.randn(channels[-1], channels[-1], generator=g)
    state["fc1.bias"] = torch.randn(channels[-1], generator=g)
    state["fc_audioset.weight"] = torch.randn(527, channels[-1], generator=g)
    state["fc_audioset.bias"] = torch.randn(527, generator=g)
    return state


@pytest.fixture
def panns_file(tmp_path):
    path = tmp_path / "Cnn10_mAP=0.380.pth"
    torch.save({"model": panns_cnn10_state(), "iteration": 0}, path)
    return path


def test_panns_weights_land_where_the_paper_network_has_them(panns_file, capsys):
    state = panns_cnn10_state()
    model = create_model("cnn10", n_classes=5, width=0.125)
    report = initialise_from(model, panns_file, FeatureSettings(sample_rate=32000, fmin=50.0, fmax=14000.0))
    mine = model.state_dict()
    for b in range(1, 5):
        block = f"backbone.{3 * (b - 1)}"
        assert torch.equal(mine[f"{block}.0.weight"], state[f"conv_block{b}.conv1.weight"])
        assert torch.equal(mine[f"{block}.3.weight"], state[f"conv_block{b}.conv2.weight"])
        assert torch.equal(mine[f"{block}.1.running_var"], state[f"conv_block{b}.bn1.running_var"])
        assert torch.equal(mine[f"{block}.4.bias"], state[f"conv_block{b}.bn2.bias"])
    assert torch.equal(mine["bn0.running_mean"], state["bn0.running_mean"])
    assert torch.equal(mine["head.fc_embedding.weight"], state["fc1.weight"])
    assert set(report.skipped) == {
        "fc_audioset.weight",
        "fc_audioset.bias",
        "logmel_extractor.melW",
        "spectrogram_extractor.stft.conv_real.weight",
        "spectrogram_extractor.stft.conv_imag.weight",
    }
    assert report.new == ["head.fc_logits.weight", "head.fc_logits.bias"]
    assert len(report.loaded) == len(mine) - 2
    assert "loaded" in capsys.readouterr().out


def test_another_front_end_is_warned_about(panns_file):
    with pytest.warns(RuntimeWarning, match="sample_rate 32000"):
        initialise_from(create_model("cnn10", n_classes=3, width=0.125), panns_file, FeatureSettings(), verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        initialise_from(
            create_model("cnn10", n_classes=3, width=0.125),
            panns_file,
            FeatureSettings(sample_rate=32000, fmin=50.0, fmax=14000.0),
            verbose=False,
        )


def test_a_shape_that_does_not_fit_is_refused_in_one_line(panns_file):
    model = create_model("cnn10", n_classes=3, width=0.25)  # twice the channels of the file
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as caught:
        initialise_from(model, panns_file, verbose=False)
    message = str(caught.value)
    assert "\n" not in message and "conv_block1.conv1.weight" in message and "(8, 1, 3, 3)" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-loaded
    with pytest.raises(ValueError, match="cnn6 and cnn10"):
        initialise_from(create_model("resnet22", n_classes=3, width=0.125), panns_file, verbose=False)


def test_a_file_that_is_not_weights_is_refused(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        initialise_from(create_model("cnn10", n_classes=3, width=0.125), bad)
    with pytest.raises(FileNotFoundError):
        initialise_from(create_model("cnn10", n_classes=3, width=0.125), tmp_path / "missing.pth")


def test_fine_tuning_from_a_project_checkpoint_keeps_the_trunk_and_renews_another_classifier(tmp_path):
    source = create_model("cnn10", n_classes=5, width=0.125)
    path = save_checkpoint(
        tmp_path / "best_ema.pt",
        checkpoint_payload(source, classes=list("abcde"), feature_settings=FeatureSettings().to_dict()),
    )
    target = create_model("cnn10", n_classes=3, width=0.125)
    report = initialise_from(target, path, FeatureSettings(), verbose=False)
    assert report.source == "checkpoint"
    assert set(report.skipped) == {"head.fc_logits.weight", "head.fc_logits.bias"}
    assert torch.equal(target.state_dict()["backbone.9.3.weight"], source.state_dict()["backbone.9.3.weight"])
    same = create_model("cnn10", n_classes=5, width=0.125)
    initialise_from(same, path, verbose=False)
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in same.state_dict().items())


def test_the_run_key_follows_the_weights_not_the_path(panns_file, tmp_path):
    copy = tmp_path / "elsewhere.pth"
    copy.write_bytes(panns_file.read_bytes())
    base = dict(model="cnn10", sample_rate=32000, fmin=50.0, fmax=14000.0)
    assert TrainConfig(init_from=str(panns_file), **base).key() == TrainConfig(init_from=str(copy), **base).key()
    assert TrainConfig(init_from=str(panns_file), **base).key() != TrainConfig(**base).key()


@pytest.mark.slow
def test_a_run_starts_from_panns_weights(panns_file, tmp_path):
    from helpers.training.loop import train
    from tests.conftest import make_tiny_corpus

    root = make_tiny_corpus(tmp_path / "c", per_split=2)
    config = TrainConfig(
        corpus=str(root),
        data_dir=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
        out_dir=str(tmp_path / "runs"),
        sample_rate=32000,
        fmin=50.0,
        fmax=14000.0,
        model_options={"width": 0.125},
        init_from=str(panns_file),
        iterations=2,
        eval_every=1,
        batch_size=4,
        ema=False,
    )
    result = train(config, progress=False)
    assert result.config.init_from == str(panns_file)
    assert (result.run_dir / "checkpoints" / "best_plain.pt").is_file()
    import json

    record = json.loads((result.run_dir / "record.json").read_text())["init_from"]
    assert record["source"] == "panns" and "fc_audioset.weight" in record["skipped"]
    assert record["new"] == ["head.fc_logits.weight", "head.fc_logits.bias"]
