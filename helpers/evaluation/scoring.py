"""Scoring clips with a trained model: class scores, prediction tables, submissions, metrics.

Evaluation runs in large batches under ``torch.inference_mode`` with the whole split already in
memory (on the GPU when there is one) and copies the scores back once, so it adds no per-batch
host synchronisation to training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from helpers.core.fileio import atomic_write
from helpers.evaluation.metrics import classification_metrics

#: How a model's logits become class scores: sigmoid for BCE-trained (MixUp) models, softmax
#: otherwise. Both give the same argmax; the scores feed mAP and the prediction tables.
SCORE_FUNCTIONS = ("sigmoid", "softmax")


@torch.inference_mode()
def predict_scores(
    model: nn.Module,
    features: torch.Tensor | np.ndarray,
    batch_size: int = 512,
    score: str = "softmax",
    device: torch.device | str | None = None,
    amp: bool = False,
    return_embeddings: bool = False,
):
    """Class scores ``(n, classes)`` (float32 numpy) for log-mels ``(n, time, mel)``.

    The model is put in eval mode for the call and restored afterwards. With
    ``return_embeddings`` also returns the embeddings ``(n, embedding_dim)``.
    """
    if score not in SCORE_FUNCTIONS:
        raise ValueError(f"score must be one of {SCORE_FUNCTIONS}, not {score!r}")
    was_training = model.training
    model.eval()
    if device is None:  # an InferenceModel says where it runs; a plain model by its weights
        device = getattr(model, "device", None) or next(model.parameters()).device
    device = torch.device(device)
    x_all = features if torch.is_tensor(features) else torch.from_numpy(np.ascontiguousarray(features))
    outs, embs = [], []
    use_amp = amp  # the caller decides (CUDA, or a CPU with native bf16: helpers.training.loop.autocast_enabled)
    for start in range(0, x_all.shape[0], batch_size):
        x = x_all[start : start + batch_size].to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits, emb = model(x)
        logits = logits.float()
        outs.append(torch.sigmoid(logits) if score == "sigmoid" else torch.softmax(logits, dim=1))
        if return_embeddings:
            embs.append(emb.float())
    model.train(was_training)
    scores = torch.cat(outs).cpu().numpy() if outs else np.zeros((0, 0), np.float32)
    if return_embeddings:
        return scores, (torch.cat(embs).cpu().numpy() if embs else np.zeros((0, 0), np.float32))
    return scores


def prediction_table(
    filenames: Sequence[str], scores: np.ndarray, classes: Sequence[str], labels: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per clip: ``filename``, ``label`` (true, when known), one ``score_<class>`` column per
    class and ``prediction`` (the class with the highest score)."""
    table = pd.DataFrame({"filename": list(filenames)})
    if labels is not None:
        table["label"] = list(labels)
    for k, name in enumerate(classes):
        table[f"score_{name}"] = scores[:, k]
    table["prediction"] = [classes[i] for i in scores.argmax(axis=1)] if len(table) else []
    return table


def write_submission(table: pd.DataFrame, path: str | Path) -> Path:
    """The challenge submission file: CSV ``filename,prediction`` in the corpus's label spellings."""
    path = Path(path)
    with atomic_write(path, mode="w") as fh:
        table[["filename", "prediction"]].to_csv(fh, index=False)
    return path


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a CSV atomically (a crash never leaves half a table)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, mode="w") as fh:
        table.to_csv(fh, index=False)
    return path


def split_metrics(
    labels: np.ndarray, scores: np.ndarray, classes: Sequence[str], n_boot: int = 0, seed: int = 0
) -> dict | None:
    """Metrics of one split, or None when its labels are unknown (the hidden test set)."""
    labels = np.asarray(labels)
    if labels.size == 0 or (labels < 0).any():
        return None
    return classification_metrics(labels, scores, list(classes), n_boot=n_boot, seed=seed)
