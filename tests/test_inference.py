"""Scoring copies (helpers.evaluation.inference): folded BatchNorm scores like the trained model, int8 and
bf16 stay close to fp32 on a model that has learned something, and the original is untouched."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from helpers.evaluation.scoring import predict_scores
from helpers.evaluation.inference import (
    InferenceModel,
    agreement,
    cpu_has_native_bf16,
    fold_batchnorm,
    prepare_for_inference,
    quantize_int8,
)
from helpers.models.registry import create_model, MODELS

NARROW = {
    "cnn6": {"channels": [8, 16, 32, 64]},
    "cnn10": {"channels": [8, 16, 32, 64]},
    "mobilenetv1": {},
    "resnet22": {},
    "wrn28_2": {"widen_factor": 1, "stem_channels": 8},
}
N_CLASSES = 5


def _with_batch_statistics(model: torch.nn.Module, frames: int = 32) -> torch.nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters, as after training."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, frames, 64) * 20 - 50)
    return model.eval()


def _separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mels where class k is louder in mel bands 12k .. 12k+8: a net learns this in a few steps."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % N_CLASSES
    x = torch.randn(n, 32, 64, generator=gen) * 6 - 60
    for k in range(N_CLASSES):
        x[y == k, :, 12 * k : 12 * k + 8] += 25
    return x, y


@pytest.fixture(scope="module")
def trained_cnn10():
    torch.manual_seed(0)
    net = create_model("cnn10", N_CLASSES, **NARROW["cnn10"])
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    x, y = _separable(320, seed=0)
    net.train()
    for step in range(40):
        idx = torch.randint(0, len(x), (32,), generator=torch.Generator().manual_seed(step))
        loss = torch.nn.functional.cross_entropy(net(x[idx])[0], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    devel_x, devel_y = _separable(200, seed=1)
    scores = predict_scores(net, devel_x)
    assert (scores.argmax(1) == devel_y.numpy()).mean() > 0.9, "the fixture's net did not learn"
    return net, x, devel_x


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.slow
def test_folded_batchnorm_scores_like_the_model(name):
    model = _with_batch_statistics(create_model(name, N_CLASSES, **NARROW[name]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    n_left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    # CNNs and residual nets keep only bn0; MobileNet also its BNs after pooling.
    assert n_left < n_bn and (n_left == 1 or name == "mobilenetv1")
    x = torch.randn(6, 32, 64) * 20 - 50
    with torch.no_grad():
        (ref_logits, ref_emb), (out_logits, out_emb) = model(x), folded(x)
    assert torch.allclose(out_logits, ref_logits, atol=1e-4, rtol=1e-4)
    assert torch.allclose(out_emb, ref_emb, atol=1e-4, rtol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the original changed"


@pytest.mark.slow
def test_fp32_scoring_copy_matches_predict_scores_of_the_model(trained_cnn10):
    net, _, devel_x = trained_cnn10
    scorer = prepare_for_inference(net, "fp32")
    assert isinstance(scorer, InferenceModel) and scorer.precision == "fp32"
    ref = predict_scores(net, devel_x, batch_size=64, score="sigmoid")
    out = predict_scores(scorer, devel_x, batch_size=64, score="sigmoid")
    assert np.abs(ref - out).max() < 1e-5


@pytest.mark.slow
def test_int8_stays_close_to_fp32_on_a_trained_model(trained_cnn10):
    net, train_x, devel_x = trained_cnn10
    scorer = prepare_for_inference(net, "int8", calibration=train_x)
    ref = predict_scores(net, devel_x, score="softmax")
    out = predict_scores(scorer, devel_x, score="softmax")
    agree = agreement(ref, out)
    assert agree["top1_agreement"] >= 0.98, agree
    assert agree["max_abs_diff"] < 0.1, agree
    assert agree["max_abs_diff"] > 0, "int8 gave bit-identical scores: it did not quantise"


def test_bf16_stays_close_to_fp32(trained_cnn10):
    net, _, devel_x = trained_cnn10
    with contextlib.nullcontext() if cpu_has_native_bf16() else pytest.warns(UserWarning, match="native bf16"):
        scorer = prepare_for_inference(net, "bf16")
    agree = agreement(predict_scores(net, devel_x), predict_scores(scorer, devel_x))
    assert agree["top1_agreement"] >= 0.98 and agree["max_abs_diff"] < 0.05, agree


def test_int8_refuses_what_it_cannot_do(trained_cnn10):
    net, train_x, _ = trained_cnn10
    with pytest.raises(ValueError, match="calibration"):
        prepare_for_inference(net, "int8")
    with pytest.raises(ValueError, match="cnn6, cnn10"):
        quantize_int8(create_model("wrn28_2", N_CLASSES, **NARROW["wrn28_2"]), train_x)
    with pytest.raises(ValueError, match="calibration needs log-mels"):
        quantize_int8(net, train_x[:0])
    with pytest.raises(ValueError, match="precision must be one of"):
        prepare_for_inference(net, "fp16")


def test_agreement_known_case():
    a = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    b = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    assert agreement(a, b) == {"max_abs_diff": pytest.approx(0.2), "top1_agreement": pytest.approx(2 / 3), "n": 3}
    with pytest.raises(ValueError, match="one shape"):
        agreement(a, b[:2])
