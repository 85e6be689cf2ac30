"""The one checkpoint format of the project, and its one loader.

A checkpoint is a plain dict saved with ``torch.save`` and read back with
``torch.load(weights_only=True)`` (no pickled code is ever executed)::

    checkpoint_version  1
    kind                "best_plain", "best_ema", "last" (or None for a model saved by hand)
    step                training step the weights belong to
    model_config        the model's ``config``: rebuilds the architecture (registry.model_from_config)
    state_dict          the weights
    classes             class names in score-column order
    feature_settings    the front end the model reads (FeatureSettings.to_dict())
    train_config        the run's TrainConfig.to_dict()
    score               "sigmoid" (MixUp + BCE training) or "softmax"
    backbone            a head on a pretrained backbone only: its name, settings and licence (the
                        head inherits the backbone's terms; helpers.features.birdnet.LICENCE)
    calibration         float16 log-mels ``(n, time, mel)`` of up to 64 training clips, for int8
                        calibration (helpers.evaluation.inference); absent in files written before it

``last.pt`` adds the resumable training state (optimizer, EMA, sampler, generators, history).
Training, ``predict``, ``embeddings`` and fusion branches all read checkpoints through
:func:`load_checkpoint` / :func:`load_model` here.

Older files still load: a dict without ``checkpoint_version`` (written by the earlier
``checkpoint_dict(model, ...)`` helper, only ``model_config`` and ``state_dict`` guaranteed) is
read as version 0 with the missing entries set to None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from helpers.core.fileio import atomic_write, sha256_file
from helpers.models.fusion import FusionModel
from helpers.models.registry import model_from_config

CHECKPOINT_VERSION = 1
#: Keys every checkpoint must hold, whatever its version.
REQUIRED_KEYS = ("model_config", "state_dict")
#: Keys of the current format besides the required ones (None when unknown).
DESCRIPTIVE_KEYS = ("kind", "step", "classes", "feature_settings", "train_config", "score")


def checkpoint_payload(
    model: nn.Module,
    *,
    kind: str | None = None,
    step: int | None = None,
    classes: list[str] | None = None,
    feature_settings: dict | None = None,
    train_config: dict | None = None,
    score: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The checkpoint dict of ``model`` in the current format; ``extra`` entries are added as they are
    (``last.pt`` puts the resumable training state there)."""
    payload = {
        "checkpoint_version": CHECKPOINT_VERSION,
        "kind": kind,
        "step": step,
        "model_config": model.config,
        "state_dict": model.state_dict(),
        "classes": list(classes) if classes is not None else None,
        "feature_settings": feature_settings,
        "train_config": train_config,
        "score": score,
    }
    payload.update(extra)
    return payload


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` ``payload`` atomically (temp file + rename): a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        torch.save(payload, fh)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint file as a dict in the current format (older versions upgraded, see the module
    docstring). Raises FileNotFoundError or ValueError naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ValueError(
            f"{path}: cannot be loaded as a checkpoint ({exc}); it is damaged or not one of "
            "ours (retrain, or copy the file again)."
        ) from exc
    return upgrade_checkpoint(checkpoint, origin=str(path))


def upgrade_checkpoint(checkpoint: Any, origin: str = "checkpoint") -> dict[str, Any]:
    """Check a loaded checkpoint dict and bring it to the current format (missing entries None)."""
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(
            f"{origin}: not a model checkpoint; expected a dict with keys {list(REQUIRED_KEYS)}, "
            f"found {found}. Write checkpoints with helpers.models.checkpoint.save_checkpoint("
            "path, checkpoint_payload(model, ...))."
        )
    version = int(checkpoint.get("checkpoint_version", 0))
    if version > CHECKPOINT_VERSION:
        raise ValueError(
            f"{origin}: checkpoint_version {version} is newer than this code reads "
            f"({CHECKPOINT_VERSION}); update the project."
        )
    out = dict(checkpoint)
    out["checkpoint_version"] = version
    for key in DESCRIPTIVE_KEYS:
        out.setdefault(key, None)
    return out


def require_training_record(checkpoint: dict[str, Any], origin: str = "checkpoint") -> dict[str, Any]:
    """``checkpoint`` (upgraded) when it says what the model reads and answers (``classes``,
    ``feature_settings``), as every checkpoint the training engine writes does; else ValueError."""
    checkpoint = upgrade_checkpoint(checkpoint, origin)
    missing = [k for k in ("classes", "feature_settings") if checkpoint.get(k) is None]
    if missing:
        raise ValueError(
            f"{origin}: lacks {missing}, so it cannot say which classes it scores or which features "
            "it reads; use a checkpoint written by helpers.training.train (RUN/checkpoints/*.pt)."
        )
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]) -> nn.Module:
    """The model a loaded checkpoint dict describes (``model_config``) with its weights
    (``state_dict``), on the CPU, in the mode a fresh model has (train); callers choose device and mode."""
    model = model_from_config(checkpoint["model_config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model


def load_model(checkpoint: str | Path | dict[str, Any], map_location: str | torch.device = "cpu") -> nn.Module:
    """The model of a checkpoint file (or an already loaded dict), in eval mode, on ``map_location``."""
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint, map_location="cpu")
    else:
        checkpoint = upgrade_checkpoint(checkpoint)
    # load_state_dict copies into the freshly built (CPU) model: move it where the caller asked.
    return model_from_checkpoint(checkpoint).to(map_location).eval()


_IDENTITY_MEMO: dict[tuple, str] = {}


def checkpoint_identity(path: Any) -> str:
    """SHA-256 of a checkpoint file (memoised by path, size and mtime), or ``missing:PATH`` when absent.
    A fusion run's key uses it, so the key follows the branches' weights, not where they are stored."""
    p = Path(str(path))
    try:
        stat = p.stat()
    except OSError:
        return f"missing:{path}"
    memo_key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _IDENTITY_MEMO:
        _IDENTITY_MEMO[memo_key] = sha256_file(p)
    return _IDENTITY_MEMO[memo_key]


def fusion_from_checkpoints(
    path_a: str | Path, path_b: str | Path, n_classes: int, freeze: bool = True, sample_rate: int | None = None
) -> FusionModel:
    """Fusion of two trained models (paper: branches initialised from the best single models); the
    classifier is new. Each branch must have ``n_classes`` classes and, when given, ``sample_rate``."""
    branches = []
    for name, path in (("branch_a", Path(path_a)), ("branch_b", Path(path_b))):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: fusion {name} checkpoint not found; train that model first "
                "(e.g. notebooks/04_model_comparison) or fix the path."
            )
        checkpoint = load_checkpoint(path)
        rate = (checkpoint.get("feature_settings") or {}).get("sample_rate")
        if sample_rate is not None and rate is not None and int(rate) != int(sample_rate):
            raise ValueError(
                f"{path}: fusion {name} was trained at {rate} Hz but this config has sample_rate="
                f"{sample_rate}; use branches of one sample rate and set sample_rate to it."
            )
        classes = checkpoint.get("classes")
        if classes is not None and len(classes) != n_classes:
            raise ValueError(
                f"{path}: fusion {name} has {len(classes)} classes, the corpus {n_classes}; "
                "train the branches on the same corpus."
            )
        branches.append(model_from_checkpoint(checkpoint))
    return FusionModel(branches[0], branches[1], n_classes, freeze=freeze)


#: The inference checkpoints a finished run's ``last.pt`` holds: the final plain weights and, with
#: EMA, the final EMA (shadow) weights.
FINAL_KINDS = ("last_plain", "last_ema")


def export_final_weights(run_dir: str | Path, kind: str = "last_ema") -> Path:
    """``RUN/checkpoints/{kind}.pt``: the final weights of a finished run as an ordinary inference
    checkpoint (what ``predict``, ``scan`` and two-stage scoring read), written once, atomically, from
    ``last.pt`` (``last_ema``: its EMA shadow; ``last_plain``: the trained model). Reused when present.
    Raises ValueError naming the run when ``last.pt`` has no EMA state or stopped before the last step."""
    if kind not in FINAL_KINDS:
        raise ValueError(f"kind {kind!r}: use one of {FINAL_KINDS}")
    folder = Path(run_dir) / "checkpoints"
    out = folder / f"{kind}.pt"
    if out.is_file():
        return out
    last = load_checkpoint(folder / "last.pt")
    config = last.get("train_config") or {}
    finished = last.get("fitted") or last.get("stopped_when_flat") or last.get("step") == config.get("iterations")
    if config.get("iterations") is not None and not finished:
        raise ValueError(
            f"{folder / 'last.pt'}: holds step {last.get('step')} of {config['iterations']}: the run "
            "has not finished; finish it (train again resumes it) before reading its final weights."
        )
    weights = last["state_dict"]
    if kind == "last_ema":
        if not isinstance(last.get("ema"), dict) or "shadow" not in last["ema"]:
            raise ValueError(f"{folder / 'last.pt'}: the run has no EMA weights (ema=False); use kind='last_plain'.")
        weights = last["ema"]["shadow"]
    payload = {
        k: last.get(k)
        for k in (
            "checkpoint_version",
            "model_config",
            "classes",
            "feature_settings",
            "train_config",
            "score",
            "calibration",
            "backbone",
        )
        if k in last
    }
    payload.update(kind=kind, step=last.get("step"), state_dict=weights)
    return save_checkpoint(out, payload)
