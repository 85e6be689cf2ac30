"""Starting a run from trained weights: PANNs' AudioSet checkpoints, or any checkpoint of this project.

``TrainConfig(init_from=PATH)`` calls :func:`initialise_from` on the freshly built model:

- **PANNs** (Kong et al. 2020; e.g. ``Cnn10_mAP=0.380.pth``, a dict whose ``model`` entry is the
  state dict): the paper's CNN10 and CNN6 are PANNs' Cnn10 and Cnn6, so their tensors map one to
  one (:func:`panns_key_map`): ``bn0``, ``conv_blockB.convC`` / ``conv_blockB.bnC`` onto the
  backbone's convolution and BatchNorm of block B, ``fc1`` onto ``head.fc_embedding``. PANNs'
  AudioSet classifier (``fc_audioset``, 527 classes) and its front-end buffers
  (``spectrogram_extractor.*``, ``logmel_extractor.*``) are skipped: the project computes its own
  log-mels and the classifier is new.
- **this project's checkpoints** (:mod:`helpers.models.checkpoint`): every tensor whose name and
  shape match is loaded; the classifier is kept when the classes agree in number, else left new
  (fine-tuning a demo model on one's own corpus).

Either way the loaded and skipped tensors are printed and returned, and a tensor whose shape does
not fit (another width, another number of mel bands) refuses the whole file with one line naming
the first mismatch. PANNs' weights were trained on 32 kHz log-mels with 64 bands between 50 Hz and
14 kHz (window 1024, hop 320): ``sample_rate=32000, fmin=50, fmax=14000`` reproduces that front end,
and a warning says when the run's front end differs.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: The front end PANNs' AudioSet models were trained with (Kong et al. 2020).
PANNS_FRONT_END = {
    "sample_rate": 32_000,
    "n_fft": 1024,
    "hop_length": 320,
    "n_mels": 64,
    "fmin": 50.0,
    "fmax": 14_000.0,
}
#: PANNs tensors that never map onto this project's models.
PANNS_SKIPPED_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.", "fc_audioset.")
_BLOCK = re.compile(r"^conv_block(\d+)\.(conv|bn)(\d+)\.(.+)$")


@dataclass
class InitReport:
    """What :func:`initialise_from` did: the file, its format and the tensors loaded and skipped."""

    path: str
    source: str  # "panns" or "checkpoint"
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # tensors of the file not loaded
    new: list[str] = field(default_factory=list)  # tensors of the model left as initialised

    def format(self) -> str:
        return (
            f"init_from {self.path} ({self.source}): loaded {len(self.loaded)} tensors, skipped "
            f"{len(self.skipped)} of the file ({', '.join(self.skipped[:6])}"
            f"{' ...' if len(self.skipped) > 6 else ''}), "
            f"{len(self.new)} of the model left new ({', '.join(self.new[:6])}{' ...' if len(self.new) > 6 else ''})"
        )


def panns_key_map(key: str, convs_per_block: int) -> str | None:
    """This project's name for a PANNs Cnn6/Cnn10 tensor name, or None when it has none.

    The project's plain CNNs hold block B at ``backbone.{3(B-1)}`` (block, pooling, dropout) and, inside
    a block, conv/BN/ReLU triples: PANNs' ``convC``/``bnC`` are positions ``3(C-1)`` and ``3(C-1)+1``."""
    if key.startswith(PANNS_SKIPPED_PREFIXES):
        return None
    if key.startswith("bn0."):
        return key
    if key.startswith("fc1."):
        return "head.fc_embedding." + key[len("fc1.") :]
    match = _BLOCK.match(key)
    if match:
        block, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        if index > convs_per_block:
            return None
        position = 3 * (index - 1) + (0 if kind == "conv" else 1)
        return f"backbone.{3 * (block - 1)}.{position}.{rest}"
    return None


def _read(path: Path) -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"init_from {path}: file not found; give a PANNs .pth or a RUN/checkpoints/*.pt file.")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for foreign or damaged files
        raise ValueError(
            f"init_from {path}: cannot be read as weights ({str(exc).splitlines()[0]}); give a PANNs "
            ".pth or a checkpoint of this project."
        ) from None
    if isinstance(raw, dict) and "model_config" in raw and "state_dict" in raw:
        return dict(raw["state_dict"]), "checkpoint", raw
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        return dict(raw["model"]), "panns", raw
    if isinstance(raw, dict) and raw and all(torch.is_tensor(v) for v in raw.values()):
        return dict(raw), "panns", {}
    raise ValueError(
        f"init_from {path}: neither a PANNs checkpoint (a dict with a 'model' state dict) nor a "
        "checkpoint of this project; give one of those."
    )


def _warn_front_end(path: Path, source: str, stored: dict[str, Any], settings: Any) -> None:
    if settings is None or not hasattr(settings, "n_mels"):
        return
    trained = PANNS_FRONT_END if source == "panns" else (stored.get("feature_settings") or {})
    mine = {k: getattr(settings, k if k != "fmax" else "resolved_fmax") for k in PANNS_FRONT_END}
    differ = {
        k: (trained[k], mine[k])
        for k in PANNS_FRONT_END
        if k in trained and trained[k] is not None and float(trained[k]) != float(mine[k])
    }
    if source == "checkpoint" and "fmax" in differ and trained.get("fmax") is None:
        differ.pop("fmax")  # None is half the rate: compared through sample_rate
    if differ:
        warnings.warn(
            f"init_from {path}: the weights were trained on another front end ("
            + ", ".join(f"{k} {a} there, {b} here" for k, (a, b) in differ.items())
            + "); fine-tuning works, but the first layers see other inputs than they learned on"
            + (" (set sample_rate=32000, fmin=50, fmax=14000 for PANNs' own)" if source == "panns" else ""),
            RuntimeWarning,
            stacklevel=3,
        )


def initialise_from(model: nn.Module, path: str | Path, settings: Any = None, verbose: bool = True) -> InitReport:
    """Load the weights of ``path`` (PANNs or this project's checkpoint) into ``model`` in place.

    Raises ValueError with one line naming the first tensor whose shape does not fit."""
    path = Path(path)
    weights, source, stored = _read(path)
    target = model.state_dict()
    config = getattr(model, "config", {}) or {}
    if source == "panns":
        if config.get("name") not in ("cnn6", "cnn10"):
            raise ValueError(
                f"init_from {path}: PANNs weights map onto cnn6 and cnn10 (the paper's PANNs models), "
                f"not {config.get('name')!r}; set model='cnn10' or 'cnn6'."
            )
        convs = int(config.get("convs_per_block", 2))
        mapped = {k: panns_key_map(k, convs) for k in weights}
    else:
        mapped = {k: k for k in weights}
    report = InitReport(str(path), source)
    update: dict[str, torch.Tensor] = {}
    for key, name in mapped.items():
        if name is None or name not in target:
            report.skipped.append(key)
            continue
        if tuple(weights[key].shape) != tuple(target[name].shape):
            classifier = name.startswith("head.fc_logits.")
            if source == "checkpoint" and classifier:
                report.skipped.append(key)  # another number of classes: the classifier starts new
                continue
            raise ValueError(
                f"init_from {path}: tensor {key} has shape {tuple(weights[key].shape)} but the model's "
                f"{name} has {tuple(target[name].shape)}; use the same architecture, width and n_mels "
                "as the weights."
            )
        update[name] = weights[key]
        report.loaded.append(name)
    if not update:
        raise ValueError(
            f"init_from {path}: no tensor of the file fits the model ({config.get('name')}); "
            "it holds weights of another architecture."
        )
    model.load_state_dict(update, strict=False)
    report.new = [k for k in target if k not in update]
    _warn_front_end(path, source, stored, settings)
    if verbose:
        print(report.format(), flush=True)
    return report
