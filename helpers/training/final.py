"""The end of a run: every checkpoint scores every split, and the run folder gets its prediction
tables, the challenge submission, labelled metrics and figures.

Honest labelling: the "best" checkpoints are chosen by their devel UAR, so their devel scores are
the best of many evaluations and optimistic (the paper's 93.6 % is such a number); ``metrics.json``
says so next to each score. The last checkpoint's devel score and every test score are not
selected on and are unbiased estimates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from helpers.core import run_folder
from helpers.data.corpus import Corpus
from helpers.evaluation.scoring import predict_scores, prediction_table, split_metrics, write_submission, write_table
from helpers.features.frontend import FeatureSettings
from helpers.models.checkpoint import load_model
from helpers.training.config import TrainConfig, eval_batch_size
from helpers.training.ema import ExponentialMovingAverage
from helpers.training.steps import scoring_model

SELECTED_NOTE = (
    "optimistic: this devel score was also used to choose the checkpoint (best of "
    "{n} devel evaluations); treat it as an upper estimate, not a held-out result"
)
HEAD_SELECTED_NOTE = (
    "optimistic: the head's C was chosen on this devel split; treat it as an upper estimate, not a held-out result"
)
UNSELECTED_NOTE = "not used to choose the checkpoint: an unbiased estimate for this split"


def final_evaluation(
    run_dir: Path,
    config: TrainConfig,
    corpus: Corpus,
    feats: dict,
    model: nn.Module,
    ema: ExponentialMovingAverage | None,
    best: dict,
    history: list[dict],
    classes: list[str],
    settings: FeatureSettings,
    score_fn: str,
    device: torch.device,
    last_step: int | None = None,
    selected_on_devel: bool = False,
) -> dict:
    """Score every split with every checkpoint; write prediction tables, submission, metrics.
    ``last_step``: the step of the last weights (default ``config.iterations``; earlier when
    ``stop_when_flat`` ended the run). ``selected_on_devel``: the last weights themselves were
    chosen on devel (a head whose C was picked there), so their devel score is labelled optimistic."""
    last_step = config.iterations if last_step is None else int(last_step)
    candidates: dict[str, tuple[nn.Module, int]] = {"last_plain": (model, last_step)}
    if ema is not None:
        candidates["last_ema"] = (ema.shadow, last_step)
    for kind in ("plain", "ema"):
        path = run_folder.checkpoint_path(run_dir, f"best_{kind}")
        if best[kind]["step"] is not None and path.is_file():
            candidates[f"best_{kind}"] = (load_model(path, map_location=device), int(best[kind]["step"]))
    n_evals = len(history)
    out: dict[str, Any] = {
        "classes": classes,
        "note": "best_* checkpoints were chosen by devel UAR: their devel scores are "
        "optimistic. last_* and all test scores are not selected on.",
        "checkpoints": {},
    }
    table_by_split = {s: corpus.split(s) for s in feats}
    # Scoring train costs as much as devel and test together and no table uses it: opt-in.
    splits = {s: fs for s, fs in feats.items() if s != "train" or config.score_train}
    scored: dict[str, dict[str, np.ndarray]] = {}
    for name, (m, step) in candidates.items():
        chosen = name.startswith("best") or selected_on_devel
        entry = {"step": step, "selected_on": "devel" if chosen else None, "splits": {}}
        # A best checkpoint taken at the last evaluation holds the last weights: reuse their scores.
        twin = next((other for other in scored if same_weights(candidates[other][0], m)), None)
        scored[name] = {}
        for split, fs in splits.items():
            if twin is not None:
                scores = scored[twin][split]
            else:
                scores = predict_scores(
                    scoring_model(m, config, device),
                    fs.features,
                    batch_size=eval_batch_size(config, device),
                    score=score_fn,
                )
            scored[name][split] = scores
            labels = list(table_by_split[split]["label"])
            table = prediction_table(fs.filenames, scores, classes, labels=labels)
            write_table(table, run_dir / "predictions" / f"{split}-{name}.csv")
            met = split_metrics(fs.labels, scores, classes, n_boot=1000 if split == "test" else 0, seed=config.seed)
            if met is not None:
                selected = chosen and split == "devel"
                met["selected_on_this_split"] = selected
                met["note"] = (
                    (HEAD_SELECTED_NOTE if selected_on_devel else SELECTED_NOTE.format(n=n_evals))
                    if selected
                    else UNSELECTED_NOTE
                )
            entry["splits"][split] = met
        out["checkpoints"][name] = entry
    # The submission comes from the checkpoint the paper would submit: best EMA, else best plain, else last.
    submit = next((c for c in ("best_ema", "best_plain", "last_ema", "last_plain") if c in candidates), None)
    if "test" in feats and submit is not None:
        test_table = pd.read_csv(run_dir / "predictions" / f"test-{submit}.csv")
        write_submission(test_table, run_dir / "submission-test.csv")
        out["submission_checkpoint"] = submit
    return out


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """True when two models of one architecture hold identical parameters and buffers."""
    if a is b:
        return True
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)


def save_run_figures(run_dir: Path, history: pd.DataFrame, metrics: dict, classes: list[str]) -> None:
    """The run's figures in RUN/figures: learning curves and the devel confusion matrix of the best EMA checkpoint
    (else the best plain, else the last)."""
    import matplotlib.pyplot as plt

    from helpers.reporting.plots import plot_confusion, plot_learning_curves, save_figure

    if len(history):
        fig = plot_learning_curves(history)
        save_figure(fig, "learning_curves", run_dir / "figures")
        plt.close(fig)
    for name in ("best_ema", "best_plain", "last_ema", "last_plain"):
        m = metrics["checkpoints"].get(name, {}).get("splits", {}).get("devel")
        if m is not None:
            fig = plot_confusion(
                np.array(m["confusion_matrix"]), classes, title=f"devel confusion ({name}, row-normalised)"
            )
            save_figure(fig, "confusion_devel", run_dir / "figures")
            plt.close(fig)
            break
