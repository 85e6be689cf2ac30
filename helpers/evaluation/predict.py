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

from helpers.data.audio import AudioError, load_clip, pad_or_truncate
from helpers.evaluation.scoring import predict_scores, prediction_table
from helpers.features.birdnet import EmbeddingSettings
from helpers.features.front_end import front_end, settings_from_record
from helpers.data.audio_files import find_audio_files
from helpers.features.frontend import FeatureSettings, LogMel
from helpers.core.hardware import resolve_device
from helpers.evaluation.inference import InferenceModel, prepare_for_inference
from helpers.models.checkpoint import load_checkpoint, model_from_checkpoint, require_training_record


def collect_audio_files(items: Sequence[str | Path]) -> list[Path]:
    """The audio files of ``items`` (folders walked recursively, sorted) by the project's one finder
    (:func:`helpers.data.audio_files.find_audio_files`); a missing path is an error."""
    return [path for path, _ in find_audio_files(items).files]


def load_for_inference(checkpoint: str | Path, device: str = "auto"):
    """(model in eval mode, classes, front-end settings, score function) from a checkpoint file; the settings
    are :class:`FeatureSettings`, or :class:`EmbeddingSettings` for a head on a pretrained backbone."""
    state = require_training_record(load_checkpoint(checkpoint, map_location="cpu"), origin=str(checkpoint))
    model = model_from_checkpoint(state).to(resolve_device(device)).eval()
    settings = settings_from_record(state["feature_settings"], origin=str(checkpoint))
    return model, list(state["classes"]), settings, state.get("score") or "softmax"


def int8_calibration(
    checkpoint: str | Path, settings: FeatureSettings, calibration: str | Path | Sequence[str | Path] | None = None
) -> torch.Tensor:
    """Log-mels ``(n, time, mel)`` to calibrate int8 scoring on: the audio files (or folders) of
    ``calibration`` when given (a few hundred clips of the training data, no labels needed), else
    the training clips stored in the checkpoint. Never the files being scored. Raises ValueError
    naming the checkpoint when it has none (written before they were stored) and none is given."""
    if calibration is not None:
        items = [calibration] if isinstance(calibration, (str, Path)) else list(calibration)
        found: list[dict] = []
        _, waves, _ = _load_waves(collect_audio_files(items), settings, found)
        if not waves:
            raise ValueError("int8 calibration: no readable audio in " + ", ".join(map(str, items)))
        with torch.inference_mode():
            return torch.cat(
                [
                    LogMel.from_settings(settings)(torch.from_numpy(np.stack(waves[i : i + 32])))
                    for i in range(0, len(waves), 32)
                ]
            )
    stored = load_checkpoint(checkpoint, map_location="cpu").get("calibration")
    if stored is None:
        raise ValueError(
            f"{checkpoint}: holds no calibration clips for int8 (it was written before checkpoints "
            "stored them); pass calibration=FILES_OR_DIR (--calibration DIR), a few hundred "
            "training clips, or retrain."
        )
    return stored.float()


def prepare_scorer(
    checkpoint: str | Path,
    model: torch.nn.Module,
    settings: FeatureSettings,
    precision: str,
    calibration: str | Path | Sequence[str | Path] | None = None,
) -> InferenceModel:
    """The fast scoring copy of ``model`` in ``precision`` (int8 calibrated by :func:`int8_calibration`)."""
    if isinstance(settings, EmbeddingSettings) and precision != "fp32":
        raise ValueError(
            f"{checkpoint}: a head on {settings.backbone} embeddings scores in fp32 only (the backbone "
            f"runs in the TFLite runtime, the head is one small layer); use precision='fp32', not {precision!r}."
        )
    calib = int8_calibration(checkpoint, settings, calibration) if precision == "int8" else None
    return prepare_for_inference(model, precision, calibration=calib)


def clip_note(duration: float, clip_seconds: float) -> str:
    """What a clip model did with a file of ``duration`` seconds ("" when it is one clip long)."""
    if duration > clip_seconds + 0.01:
        return (
            f"longer than one clip ({duration:.2f} s): only its first {clip_seconds:.2f} s were scored; "
            "scan scores a long recording window by window"
        )
    if duration < clip_seconds - 0.01:
        return f"shorter than one clip ({duration:.2f} s): zero-padded to {clip_seconds:.2f} s, as in training"
    return ""


def _load_waves(
    paths: Sequence[Path], settings: FeatureSettings, errors: list[dict]
) -> tuple[list[Path], list[np.ndarray], list[str]]:
    """The clips of ``paths`` that can be read, with a note on each one's length (:func:`clip_note`);
    each one that cannot goes to ``errors`` with its reason."""
    kept, waves, notes = [], [], []
    clip_seconds = settings.clip_samples / settings.sample_rate
    for path in paths:
        try:
            wave = load_clip(path, settings.sample_rate, 0)
        except (AudioError, OSError, RuntimeError, ValueError) as exc:  # soundfile raises several kinds
            errors.append({"path": str(path), "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
            continue
        notes.append(clip_note(len(wave) / settings.sample_rate, clip_seconds))
        waves.append(pad_or_truncate(wave, settings.clip_samples))
        kept.append(path)
    return kept, waves, notes


def predict_files(
    checkpoint: str | Path,
    files: Sequence[str | Path],
    device: str = "auto",
    batch_size: int = 64,
    precision: str = "fp32",
    errors: list[dict] | None = None,
    calibration: str | Path | Sequence[str | Path] | None = None,
) -> pd.DataFrame:
    """Per-clip prediction table (``filename``, ``path``, ``score_<class>``..., ``prediction``, ``note``:
    a file longer than one clip is scored on its first clip only, and one shorter is zero-padded, and the
    note says so: :func:`clip_note`);
    ``precision`` as :func:`helpers.evaluation.inference.prepare_for_inference` (int8: CPU, CNN6/CNN10,
    calibrated as :func:`int8_calibration` says).

    One unreadable file never stops the others: it is left out of the table and listed in
    ``errors`` (``{"path", "error"}`` per file) when a list is given, else named in a warning; so is
    each file a folder walk passed over (not an audio extension).
    Raises :class:`~helpers.data.audio.AudioError` listing them when no file could be scored."""
    model, classes, settings, score = load_for_inference(checkpoint, device)
    dev = next(model.parameters()).device
    found: list[dict] = [] if errors is None else errors
    audio = find_audio_files(files)
    found += [{"path": str(path), "error": reason} for path, reason in audio.skipped]
    paths, waves, notes = _load_waves([path for path, _ in audio.files], settings, found)
    if errors is None and found:
        warnings.warn(
            f"{len(found)} file(s) could not be scored: " + "; ".join(f"{e['path']}: {e['error']}" for e in found),
            RuntimeWarning,
            stacklevel=2,
        )
    if not paths:
        raise AudioError("no file could be scored: " + "; ".join(f"{e['path']}: {e['error']}" for e in found))
    logmel = front_end(settings, dev)
    with torch.inference_mode():
        features = torch.cat(
            [
                logmel(torch.from_numpy(np.stack(waves[i : i + batch_size])).to(dev)).float()
                for i in range(0, len(waves), batch_size)
            ]
        )
    scorer = prepare_scorer(checkpoint, model, settings, precision, calibration)
    scores = predict_scores(scorer, features, batch_size=batch_size, score=score)
    table = prediction_table([p.name for p in paths], scores, classes)
    table.insert(1, "path", [str(p) for p in paths])
    table["note"] = notes
    return table
