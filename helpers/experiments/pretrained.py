"""From scratch against pretrained (notebook ``11_pretrained``): the heads on BirdNET embeddings beside
the paper's CNN10, on clips and on a long recording, with the threshold chosen on another recording.

- :func:`head_configs`: the runs of the pretrained starting points under a profile (logistic and SVM
  fitted once each, the MLP head over the profile's seeds), in the grid's run folders.
- the detection side is :mod:`helpers.experiments.detection` (shared with notebook 09): event scores
  on a semi-synthetic recording at a threshold chosen on another one.
- :func:`comparison_table`: one row per starting point, seeds summarised as mean ± std.

Licence: every row trained on BirdNET embeddings inherits BirdNET's CC BY-NC-SA 4.0 (its run folder
and checkpoint say so; :data:`helpers.features.birdnet.LICENCE`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from helpers.core import run_folder
from helpers.core.fileio import read_json
from helpers.training.config import TrainConfig

#: The pretrained starting points, in table order.
HEAD_MODELS = ("birdnet-logistic", "birdnet-svm", "birdnet-mlp")
#: What the MLP head trains with: the engine's recipe less SpecAugment (there is no spectrogram),
#: MixUp on the standardised embeddings, EMA, until the devel curve is flat.
MLP_SETTINGS = {
    "iterations": 3000,
    "min_iterations": 600,
    "stop_when_flat": True,
    "eval_every": 100,
    "ema_start": 300,
    "batch_size": 32,
    "mixup": True,
    "spec_augment": False,
    "model_options": {"hidden": 256, "dropout": 0.2},
}


def head_configs(
    base: dict[str, Any], seeds: Sequence[int] = (0, 1, 2), mlp_settings: dict[str, Any] | None = None
) -> list[TrainConfig]:
    """The runs of :data:`HEAD_MODELS` on ``base`` (corpus, paths, ``out_dir``): the two scikit-learn heads
    once (a convex fit: the seed changes nothing worth a row), the MLP head once per seed."""
    common = {**base, "spec_augment": False}
    # no MixUp and no EMA: a closed-form fit takes no gradient steps, and its config says so
    configs = [TrainConfig(model=m, mixup=False, ema=False, seed=int(seeds[0]), **common) for m in HEAD_MODELS[:2]]
    settings = {**MLP_SETTINGS, **(mlp_settings or {})}
    configs += [TrainConfig(model="birdnet-mlp", seed=int(s), **{**common, **settings}) for s in seeds]
    return configs


#: The checkpoint a run is scanned with (the run-folder module owns the rule).
inference_checkpoint = run_folder.preferred_checkpoint


def clip_scores(run_dir: str | Path) -> dict[str, Any]:
    """Devel and test UAR (in %), per-class test recall and training seconds of a finished run, from the
    checkpoint :func:`inference_checkpoint` names (its devel score is selected on devel: optimistic)."""
    run = Path(run_dir)
    name = inference_checkpoint(run).stem
    splits = run_folder.RunMetrics.of(run).splits(name)
    record = read_json(run / "record.json")
    row = {
        "checkpoint": name,
        "devel UAR": 100 * splits["devel"]["uar"],
        "test UAR": 100 * splits["test"]["uar"] if splits.get("test") else np.nan,
        "train s": record.get("timings", {}).get("training_loop", np.nan),
    }
    if splits.get("test"):
        row.update({f"test recall {c}": 100 * v for c, v in splits["test"]["per_class_recall"].items()})
    return row


#: Row labels of the starting points in the tables.
LABELS = {
    "birdnet-logistic": "BirdNET + logistic regression",
    "birdnet-svm": "BirdNET + linear SVM",
    "birdnet-mlp": "BirdNET + MLP head",
}


def label(run_dir: str | Path) -> str:
    """The table label of a run: a BirdNET head by name, any other model as 'NAME from scratch'."""
    config = read_json(Path(run_dir) / "config.json")
    return LABELS.get(config["model"], f"{config['model'].upper()}-{config['sample_rate'] // 1000}k from scratch")


def svm_scores(svm: Any) -> dict[str, Any]:
    """The clip-score row of :func:`helpers.evaluation.embeddings.fit_linear_svm`'s result (in %)."""
    row = {
        "checkpoint": "svm",
        "devel UAR": 100 * svm.devel_metrics["uar"],
        "test UAR": 100 * svm.test_metrics["uar"] if svm.test_metrics else np.nan,
        "train s": np.nan,
    }
    if svm.test_metrics:
        row.update({f"test recall {c}": 100 * v for c, v in svm.test_metrics["per_class_recall"].items()})
    return row


#: Columns of :func:`comparison_table` that describe detection in a long recording (the rest: clips).
HOUR_COLUMNS = ("event", "scan", "time saved")


def split_clips_and_hours(table: pd.DataFrame, by: str = "starting point") -> tuple[pd.DataFrame, pd.DataFrame]:
    """A :func:`comparison_table` as two narrower ones: clip scores, and the long-recording columns
    (rows without any, such as the SVM on CNN10 embeddings, left out)."""
    hours = [c for c in table.columns if str(c).startswith(HOUR_COLUMNS)]
    keys = [c for c in (by, "n") if c in table.columns]
    clip_part = table[[c for c in table.columns if c not in hours]]
    hour_part = table[keys + hours]
    return clip_part, hour_part[hour_part[hours].notna().any(axis=1)] if hours else hour_part


def weak_classes(clips: pd.DataFrame, below: float = 50.0, by: str = "starting point") -> dict[str, list[str]]:
    """Per starting point, the classes whose mean test recall (in %) is below ``below``; empty when the
    test split has no labels (no per-class recall to read)."""
    recall = [c for c in clips.columns if c.startswith("test recall ")]
    if not recall:
        return {}
    means = clips.groupby(by, sort=False)[recall].mean()
    return {name: [c[len("test recall ") :] for c in recall if row[c] < below] for name, row in means.iterrows()}


def mean_std(values: Sequence[float], digits: int = 1) -> str:
    """``"m ± s"`` over seeds (``"m"`` for one value)."""
    v = np.asarray([x for x in values if x is not None and not pd.isna(x)], float)
    if not len(v):
        return "n/a"
    return f"{v.mean():.{digits}f}" if len(v) == 1 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def comparison_table(rows: pd.DataFrame, by: str = "starting point") -> pd.DataFrame:
    """``rows`` (one per run, numbers) summarised per ``by``: the mean ± std over seeds of each numeric
    column, and the number of seeds ``n``."""
    out = []
    for name, group in rows.groupby(by, sort=False):
        entry = {by: name, "n": len(group)}
        for col in group.columns:
            if col == by or not pd.api.types.is_numeric_dtype(group[col]):
                continue
            digits = 0 if "x real time" in col else 2 if col.startswith(("time saved", "event")) else 1
            entry[col] = mean_std(group[col], digits)
        out.append(entry)
    return pd.DataFrame(out)
