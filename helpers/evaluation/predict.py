"""Using a trained model outside the notebooks: score any audio files with a checkpoint.

``python -m helpers predict CHECKPOINT AUDIO_FILES_OR_DIR [--out table.csv] [--precision fp32|bf16|int8]``.
Scoring runs on the fast copy of :func:`helpers.evaluation.inference.prepare_for_inference` (BatchNorm folded;
``int8`` calibrates its activation ranges on the training clips stored in the checkpoint, never on
the files being scored, so a clip's score does not depend on the other files scored with it; see
that module for how close each precision stays to fp32). Files may have
any sample rate or channel count soundfile reads; they get exactly the preprocessing the model
was trained with (downmix, resample, pad/truncate, log-mel settings stored in the checkpoint).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from helpers.data.audio import AudioError, load_clip
from helpers.evaluation.scoring import predict_scores, prediction_table
from helpers.features.birdnet import EmbeddingSettings
from helpers.features.front_end import front_end, settings_from_record
from helpers.features.frontend import FeatureSettings, LogMel
from helpers.core.hardware import resolve_device
from helpers.evaluation.inference import InferenceModel, prepare_for_inference
from helpers.models.checkpoint import load_checkpoint, model_from_checkpoint, require_training_record

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")


def collect_audio_files(items: Sequence[str | Path]) -> list[Path]:
    """Expand folders (recursively, sorted) into audio files; a missing path is an error."""
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder; pass audio files or folders holding them.")
    if not files:
        raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found in {list(map(str, items))}.")
    return files


def load_for_inference(checkpoint: str | Path, device: str = "auto"):
    """(model in eval mode, classes, front-end settings, score function) from a checkpoint file; the settings
    are :class:`FeatureSettings`, or :class:`EmbeddingSettings` for a head on a pretrained backbone."""
    state = require_training_record(load_checkpoint(checkpoint, map_location="cpu"), origin=str(checkpoint))
    model = model_from_checkpoint(state).to(resolve_device(device)).eval()
    settings = settings_from_record(state["feature_settings"], origin=str(checkpoint))
    return model, list(state["classes"]), settings, state.get("score") or "softmax"


def int8_calibration(checkpoint: str | Path, settings: FeatureSettings,
                     calibration: str | Path | Sequence[str | Path] | None = None) -> torch.Tensor:
    """Log-mels ``(n, time, mel)`` to calibrate int8 scoring on: the audio files (or folders) of
    ``calibration`` when given (a few hundred clips of the training data, no labels needed), else
    the training clips stored in the checkpoint. Never the files being scored. Raises ValueError
    naming the checkpoint when it has none (written before they were stored) and none is given."""
    if calibration is not None:
        items = [calibration] if isinstance(calibration, (str, Path)) else list(calibration)
        found: list[dict] = []
        _, waves = _load_waves(collect_audio_files(items), settings, found)
        if not waves:
            raise ValueError("int8 calibration: no readable audio in " + ", ".join(map(str, items)))
        with torch.inference_mode():
            return torch.cat([LogMel.from_settings(settings)(torch.from_numpy(np.stack(waves[i:i + 32])))
                              for i in range(0, len(waves), 32)])
    stored = load_checkpoint(checkpoint, map_location="cpu").get("calibration")
    if stored is None:
        raise ValueError(f"{checkpoint}: holds no calibration clips for int8 (it was written before checkpoints "
                         "stored them); pass calibration=FILES_OR_DIR (--calibration DIR), a few hundred "
                         "training clips, or retrain.")
    return stored.float()


def prepare_scorer(checkpoint: str | Path, model: torch.nn.Module, settings: FeatureSettings, precision: str,
                   calibration: str | Path | Sequence[str | Path] | None = None) -> InferenceModel:
    """The fast scoring copy of ``model`` in ``precision`` (int8 calibrated by :func:`int8_calibration`)."""
    if isinstance(settings, EmbeddingSettings) and precision != "fp32":
        raise ValueError(f"{checkpoint}: a head on {settings.backbone} embeddings scores in fp32 only (the backbone "
                         f"runs in the TFLite runtime, the head is one small layer); use precision='fp32', not {precision!r}.")
    calib = int8_calibration(checkpoint, settings, calibration) if precision == "int8" else None
    return prepare_for_inference(model, precision, calibration=calib)


def _load_waves(paths: Sequence[Path], settings: FeatureSettings,
                errors: list[dict]) -> tuple[list[Path], list[np.ndarray]]:
    """The clips of ``paths`` that can be read; each one that cannot goes to ``errors`` with its reason."""
    kept, waves = [], []
    for path in paths:
        try:
            waves.append(load_clip(path, settings.sample_rate, settings.clip_samples))
        except (AudioError, OSError, RuntimeError, ValueError) as exc:  # soundfile raises several kinds
            errors.append({"path": str(path), "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
            continue
        kept.append(path)
    return kept, waves


def predict_files(checkpoint: str | Path, files: Sequence[str | Path], device: str = "auto",
                  batch_size: int = 64, precision: str = "fp32", errors: list[dict] | None = None,
                  calibration: str | Path | Sequence[str | Path] | None = None) -> pd.DataFrame:
    """Per-clip prediction table (``filename``, ``path``, ``score_<class>``..., ``prediction``);
    ``precision`` as :func:`helpers.evaluation.inference.prepare_for_inference` (int8: CPU, CNN6/CNN10,
    calibrated as :func:`int8_calibration` says).

    One unreadable file never stops the others: it is left out of the table and listed in
    ``errors`` (``{"path", "error"}`` per file) when a list is given, else named in a warning.
    Raises :class:`~helpers.data.audio.AudioError` listing them when no file could be scored."""
    model, classes, settings, score = load_for_inference(checkpoint, device)
    dev = next(model.parameters()).device
    found: list[dict] = [] if errors is None else errors
    paths, waves = _load_waves(collect_audio_files(files), settings, found)
    if errors is None and found:
        warnings.warn(f"{len(found)} file(s) could not be scored: " + "; ".join(
            f"{e['path']}: {e['error']}" for e in found), RuntimeWarning, stacklevel=2)
    if not paths:
        raise AudioError("no file could be scored: " + "; ".join(f"{e['path']}: {e['error']}" for e in found))
    logmel = front_end(settings, dev)
    with torch.inference_mode():
        features = torch.cat([logmel(torch.from_numpy(np.stack(waves[i:i + batch_size])).to(dev)).float()
                              for i in range(0, len(waves), batch_size)])
    scorer = prepare_scorer(checkpoint, model, settings, precision, calibration)
    scores = predict_scores(scorer, features, batch_size=batch_size, score=score)
    table = prediction_table([p.name for p in paths], scores, classes)
    table.insert(1, "path", [str(p) for p in paths])
    return table
