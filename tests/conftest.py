"""Shared fixtures: tiny corpora written straight with soundfile, so tests do not depend on
the generators they may be testing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("MPLBACKEND", "Agg")

#: Threads per test process, the one place tests take them from: both cores when the suite runs
#: serially; one per process under pytest-xdist, whose two workers would otherwise run four
#: threads on two cores (OpenMP's spin-waiting makes that several times slower, measured). The
#: variables reach the processes the tests start (training workers, notebook kernels, CLIs).
TEST_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_name] = str(TEST_THREADS)

try:
    import torch

    torch.set_num_threads(TEST_THREADS)
except ImportError:  # pragma: no cover
    pass

from helpers.core.provenance import PROJECT_ROOT  # noqa: E402  (after the thread settings above)

REPO_ROOT = PROJECT_ROOT  # the one definition of the project root is helpers.core.provenance
SHARED_MIRROR = REPO_ROOT.parent / "shared" / "mirror"


def write_tone(
    path: Path, freq: float, seconds: float = 1.0, sr: int = 16000, channels: int = 1, subtype: str = "PCM_16"
) -> None:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    sf.write(str(path), x, sr, subtype=subtype)


def make_tiny_corpus(
    root: Path, labels=("background", "chimpanze", "redcap"), per_split: int = 2, test_hidden: bool = True
) -> Path:
    """A valid corpus: ``per_split`` clips per class in train and devel, test with '?' labels."""
    (root / "wav").mkdir(parents=True)
    (root / "lab").mkdir()
    for split in ("train", "devel", "test"):
        lines = ["filename,label"]
        n = 0
        for k, label in enumerate(labels):
            for _ in range(per_split):
                n += 1
                name = f"{split}_{n:05d}.wav"
                write_tone(root / "wav" / name, 200 + 300 * k, seconds=0.5 + 0.1 * n)
                lines.append(f"{name},{'?' if (split == 'test' and test_hidden) else label}")
        (root / "lab" / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    return make_tiny_corpus(tmp_path / "corpus")


@pytest.fixture(scope="session")
def scan_checkpoint(tmp_path_factory):
    """An untrained narrow CNN10 at 8 kHz with 1-s clips and classes background, call_a, call_b: scan's
    mechanics do not need a good model."""
    import torch

    from helpers.features.frontend import FeatureSettings
    from helpers.models.checkpoint import checkpoint_payload, save_checkpoint
    from helpers.models.registry import create_model

    torch.manual_seed(0)
    settings = FeatureSettings(sample_rate=8000, clip_seconds=1.0)
    model = create_model("cnn10", n_classes=3, channels=[4, 8, 16, 32]).eval()
    calib = torch.randn(8, settings.n_frames, 64).mul(20).sub(40).half()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(
        path,
        checkpoint_payload(
            model,
            kind="best_ema",
            classes=["background", "call_a", "call_b"],
            feature_settings=settings.to_dict(),
            score="softmax",
            calibration=calib,
        ),
    )
    return path
