"""Flat, two-stage and multi-task models side by side (notebook ``10_hierarchical``).

The paper's closing question: most errors are between background and every primate class, so
would "background first, then species" help? Three forms of one backbone, same corpus, same seeds:

* ``flat``: the paper's model (the ablation's full-recipe runs: the same run folders as ``05``);
* ``two-stage``: a call detector trained on ``CORPUS+call-detector`` (with ``mixup_pairs="shuffled"``:
  with two classes, unshuffled balanced batches make every MixUp pair one background and one call
  clip, and the detector learns nothing) and a species classifier on
  ``CORPUS+calls-only`` (:mod:`helpers.data.corpora.views`); a clip is background when P(call) is under a
  threshold chosen on devel (so the two-stage devel scores are optimistic; test scores are not);
* ``multi-task``: one trunk, a call head and a species head (``hierarchy="multitask"``).

All are ordinary runs of the grid (:func:`hierarchy_configs` -> :func:`helpers.experiments.grid.run_grid`);
:func:`compare_forms` scores them on devel and test and :func:`form_table` summarises the seeds::

    configs = hierarchy_configs("demo", base)
    run_grid([c for group in configs.values() for c in group])
    scores = compare_forms(configs)            # one row per form, seed and split
    form_table(scores)                         # mean ± std (min-max, n) per form, the paper beside

In long recordings a model with a call head detects on its P(call) (:mod:`helpers.recordings.scan`);
:func:`compare_detection_scores` measures on a semi-synthetic recording with exact truth whether
that gives more precision at equal recall than the best class score, and :func:`detection_table`
summarises the seeds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core import run_folder
from helpers.data.corpus import UNKNOWN_LABEL
from helpers.experiments.collect import spread_text, summarise
from helpers.experiments.grid import (
    FULL_SETTING,
    PAPER_TABLE2,
    ablation_configs,
    model_label,
    profile_settings,
    width_of,
)
from helpers.training.config import MULTITASK, TrainConfig
from helpers.recordings.scan_store import read_windows

#: The three forms, in table order.
FORMS = ("flat", "two-stage", "multi-task")
#: The metrics of :func:`compare_forms`, fractions in 0..1: UAR, mAP, the recall of background (the
#: background *row* of the confusion matrix) and the share of call clips called background (its
#: *column*, off the diagonal): the paper's stated problem.
FORM_METRICS = ("uar", "map", "background_recall", "calls_as_background")
METRIC_NAMES = {
    "uar": "UAR",
    "map": "mAP",
    "background_recall": "background recall",
    "calls_as_background": "calls called background",
}


def hierarchy_configs(
    profile: str,
    base: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
    model_options: dict[str, dict] | None = None,
) -> dict[str, list[TrainConfig]]:
    """The runs of the comparison: ``{"flat", "multi-task", "detector", "species"}`` -> configs, one per seed.

    The backbone is the profile's ``hierarchy_run`` (demo: CNN10-8k at an eighth of its channels;
    paper: CNN10-16k, the paper's best model) with the ablation's options and the full recipe, so the
    flat runs are the ablation's full-recipe runs (trained once). ``model_options`` (per model) replaces the profile's
    constructor options as in the grid notebooks; ``seeds`` defaults to the profile's ablation seeds.
    """
    model, rate = profile_settings(profile).hierarchy_run
    flat = ablation_configs(model, rate, profile, seeds=seeds, base=base, settings=[FULL_SETTING])
    if model_options and model in model_options:
        flat = [dataclasses.replace(c, model_options=dict(model_options[model])) for c in flat]
    return {
        "flat": flat,
        "multi-task": [dataclasses.replace(c, hierarchy=MULTITASK) for c in flat],
        # two classes: unshuffled balanced batches would pair every background clip with a call in MixUp
        "detector": [
            dataclasses.replace(
                c, corpus=f"{c.corpus}+call-detector", mixup_pairs="shuffled" if c.mixup else c.mixup_pairs
            )
            for c in flat
        ],
        "species": [dataclasses.replace(c, corpus=f"{c.corpus}+calls-only") for c in flat],
    }


def _checkpoint(config: TrainConfig, which: str) -> str:
    """``"best"``/``"last"`` -> the run's checkpoint name (EMA weights when the run has EMA)."""
    if which not in ("best", "last"):
        raise ValueError(f"checkpoint {which!r}: use 'best' (selected on devel: optimistic) or 'last'")
    return f"{which}_{'ema' if config.ema else 'plain'}"


def _weights(config: TrainConfig, which: str) -> Path:
    """The inference checkpoint of a finished run: ``best_*.pt``, or the final weights exported from ``last.pt``."""
    from helpers.models.checkpoint import export_final_weights

    name = _checkpoint(config, which)
    if which == "last":
        return export_final_weights(config.run_dir(), name)
    return run_folder.checkpoint_path(config.run_dir(), name)


def _metrics_row(labels: np.ndarray, scores: np.ndarray, classes: list[str], background: int) -> dict[str, float]:
    from helpers.evaluation.metrics import classification_metrics

    m = classification_metrics(labels, scores, classes)
    cm = np.asarray(m["confusion_matrix"], dtype=float)
    calls = np.arange(len(classes)) != background
    n_calls = cm[calls].sum()
    return {
        "uar": m["uar"],
        "map": m["map"],
        "background_recall": cm[background, background] / max(cm[background].sum(), 1),
        "calls_as_background": cm[calls, background].sum() / max(n_calls, 1),
        "confusion_matrix": cm,
    }


def _from_predictions(
    config: TrainConfig, split: str, checkpoint: str
) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Labels, scores and classes of a run's stored predictions; None when the split's truth is hidden."""
    path = config.run_dir() / "predictions" / f"{split}-{checkpoint}.csv"
    table = pd.read_csv(path, keep_default_na=False)
    classes = [c[len("score_") :] for c in table.columns if c.startswith("score_")]
    if (table["label"].astype(str) == UNKNOWN_LABEL).any():
        return None
    labels = table["label"].map({c: i for i, c in enumerate(classes)})
    if labels.isna().any():
        raise ValueError(
            f"{path}: labels {sorted(set(table['label'][labels.isna()]))} are not among the score "
            f"columns {classes}; the predictions do not belong to this corpus"
        )
    return labels.to_numpy(dtype=int), table[[f"score_{c}" for c in classes]].to_numpy(dtype=float), classes


def compare_forms(
    configs: dict[str, list[TrainConfig]],
    checkpoint: str = "last",
    splits: tuple[str, ...] = ("devel", "test"),
    background_class: str = "background",
) -> pd.DataFrame:
    """Score every form and seed of :func:`hierarchy_configs` (finished runs) on ``splits``.

    Flat and multi-task scores are the runs' stored predictions of ``checkpoint`` (``"last"``: not
    selected on anything; ``"best"``: selected on devel, optimistic). The two-stage system scores
    each split with both stages (:func:`helpers.evaluation.two_stage.stage_scores`) and takes its
    threshold from devel (:func:`~helpers.evaluation.two_stage.choose_threshold`), so its devel row
    is optimistic twice over; ``threshold`` says which was used. A split whose labels are hidden is
    left out. Columns: ``form``, ``seed``, ``split``, :data:`FORM_METRICS`, ``threshold``,
    ``optimistic`` (True where the number was selected on), ``confusion_matrix`` (counts).
    """
    from helpers.data.corpora.named import prepare_corpus
    from helpers.evaluation.two_stage import choose_threshold, stage_scores, two_stage_scores
    from helpers.features.cache import load_features

    rows: list[dict[str, Any]] = []
    flat = configs["flat"]
    corpus = prepare_corpus(flat[0].corpus, flat[0].data_dir, progress=False, clip_seconds=flat[0].clip_seconds)
    background = corpus.classes.index(background_class)
    for form in ("flat", "multi-task"):
        for config in configs[form]:
            name = _checkpoint(config, checkpoint)
            for split in splits:
                if not (config.run_dir() / "predictions" / f"{split}-{name}.csv").is_file():
                    continue
                stored = _from_predictions(config, split, name)
                if stored is None:
                    continue
                labels, scores, classes = stored
                rows.append(
                    {
                        "form": form,
                        "seed": config.seed,
                        "split": split,
                        "threshold": np.nan,
                        "optimistic": checkpoint == "best" and split == "devel",
                        **_metrics_row(labels, scores, classes, classes.index(background_class)),
                    }
                )
    for detector, species in zip(configs["detector"], configs["species"]):
        scored = {}
        for split in ("devel", *[s for s in splits if s != "devel"]):
            fs = load_features(
                corpus.table, split, detector.feature_settings(), detector.cache_dir, corpus.name, progress=False
            )
            if len(fs.labels) == 0 or (fs.labels < 0).any():
                continue
            p_call, species_scores = stage_scores(
                _weights(detector, checkpoint),
                _weights(species, checkpoint),
                fs.features,
                corpus.classes,
                background_class=background_class,
            )
            scored[split] = (fs.labels, p_call, species_scores)
        if "devel" not in scored:
            raise ValueError(
                f"the two-stage threshold is chosen on devel, and corpus {corpus.name!r} has no labelled devel split"
            )
        labels, p_call, species_scores = scored["devel"]
        choice = choose_threshold(
            p_call, labels != background, species_scores=species_scores, labels=labels, background_index=background
        )
        for split in splits:
            if split not in scored:
                continue
            labels, p_call, species_scores = scored[split]
            scores = two_stage_scores(p_call, species_scores, background, choice.threshold)
            rows.append(
                {
                    "form": "two-stage",
                    "seed": detector.seed,
                    "split": split,
                    "threshold": choice.threshold,
                    "optimistic": split == "devel",
                    **_metrics_row(labels, scores, corpus.classes, background),
                }
            )
    columns = ["form", "seed", "split", *FORM_METRICS, "threshold", "optimistic", "confusion_matrix"]
    return pd.DataFrame(rows, columns=columns)


def form_table(scores: pd.DataFrame, paper: str | None = "CNN10-16k", as_text: bool = True) -> pd.DataFrame:
    """One row per form and split: each metric of :data:`FORM_METRICS` over seeds (in %, as
    ``mean ± std (min-max, n=N)``; ``as_text=False``: the means), whether the numbers were selected on
    (``optimistic``), and the paper's flat UAR of row ``paper`` of its Table 2 beside the flat rows
    (the paper has no hierarchical numbers)."""
    if scores.empty:
        return pd.DataFrame(columns=["form", "split"])
    table = scores.assign(status="finished")
    summary = summarise(table, by=["form", "split"], metric_cols=list(FORM_METRICS), n_boot=0)
    order = {f: i for i, f in enumerate(FORMS)}
    summary = summary.sort_values(["split", "form"], key=lambda col: col.map(order) if col.name == "form" else col)
    rows = []
    reference = PAPER_TABLE2.get(paper, {}) if paper else {}
    for _, r in summary.iterrows():
        row: dict[str, Any] = {"form": r["form"], "split": r["split"]}
        for metric in FORM_METRICS:
            row[METRIC_NAMES[metric] + " (%)"] = spread_text(r, metric, as_text)
        picked = scores[(scores["form"] == r["form"]) & (scores["split"] == r["split"])]
        row["selected on devel"] = "yes (optimistic)" if picked["optimistic"].any() else "no"
        key = {"devel": "devel_uar", "test": "test_uar"}.get(r["split"])
        row[f"paper {paper} UAR (flat)"] = reference.get(key) if (r["form"] == "flat" and key) else None
        rows.append(row)
    return pd.DataFrame(rows)


def mean_confusion(scores: pd.DataFrame, form: str, split: str) -> np.ndarray:
    """The confusion matrix (counts) of ``form`` on ``split``, averaged over seeds."""
    picked = scores[(scores["form"] == form) & (scores["split"] == split)]
    if picked.empty:
        raise ValueError(f"no scores of form {form!r} on split {split!r}; forms scored: {sorted(set(scores['form']))}")
    return np.mean(np.stack(list(picked["confusion_matrix"])), axis=0)


def backbone_label(configs: dict[str, list[TrainConfig]]) -> str:
    """The backbone of the comparison as the tables write it, e.g. ``"CNN10-8k (⅛ width)"``."""
    c = configs["flat"][0]
    return model_label(c.model, c.sample_rate, width_of(c.model_options))


def run_dirs(configs: dict[str, list[TrainConfig]]) -> list[Path]:
    """Every run folder of the comparison (for :func:`helpers.experiments.collect.collect_runs`)."""
    return [c.run_dir() for group in configs.values() for c in group]


#: What :func:`compare_detection_scores` compares: (form, detection score, label in the tables).
DETECTION_VARIANTS = (
    ("flat", "class", "flat, best class score"),
    ("multi-task", "class", "multi-task, best class score"),
    ("multi-task", "call", "multi-task, P(call) of the call head"),
)


def semi_synthetic_recording(
    configs: dict[str, list[TrainConfig]],
    out_dir: str | Path,
    split: str = "auto",
    minutes: float = 3.0,
    n_calls: int = 12,
    snr_db: tuple[float, float] = (-5.0, 10.0),
    seed: int = 0,
) -> tuple[Path, pd.DataFrame, str]:
    """A long recording with exact truth for :func:`compare_detection_scores`: ``n_calls`` calls of
    ``split`` over a bed of its background (:func:`helpers.recordings.semi_synthetic.make_long_recording`) at the
    comparison's sample rate, in ``out_dir``. ``split="auto"``: test where its labels exist, else
    devel (the challenge hides its test labels; no run trained on devel, though the ``best``
    checkpoints were chosen on it). Returns ``(wav path, truth table, split used)``."""
    from helpers.data.annotations import read_annotations
    from helpers.recordings.semi_synthetic import make_long_recording
    from helpers.data.corpora.named import prepare_corpus
    from helpers.recordings.detect import align_recordings

    flat = configs["flat"][0]
    corpus = prepare_corpus(flat.corpus, flat.data_dir, progress=False, clip_seconds=flat.clip_seconds)
    if split == "auto":
        test = corpus.split("test")
        split = "test" if len(test) and not (test["label"].astype(str) == UNKNOWN_LABEL).any() else "devel"
    wav = Path(out_dir) / f"{corpus.name}-{split}-{minutes:g}min-seed{seed}.wav"
    make_long_recording(
        corpus,
        wav,
        split=split,
        duration=minutes * 60,
        n_calls=n_calls,
        snr_db=tuple(snr_db),
        sample_rate=flat.sample_rate,
        seed=seed,
    )
    truth = align_recordings(read_annotations(wav.with_suffix(".truth.csv")).table, [wav.name])
    return wav, truth, split


def compare_detection_scores(
    configs: dict[str, list[TrainConfig]],
    recording: str | Path,
    truth: pd.DataFrame,
    out_dir: str | Path,
    checkpoint: str = "last",
    recalls: tuple[float, ...] = (0.5, 0.75),
    min_iou: float = 0.3,
    hop: float | None = None,
    background_class: str = "background",
) -> pd.DataFrame:
    """Event precision at equal recall of the flat and multi-task runs scanning one long recording.

    Each finished flat and multi-task run of :func:`hierarchy_configs` scans ``recording`` (a
    semi-synthetic recording from :func:`helpers.recordings.semi_synthetic.make_long_recording`, built from a
    split no run trained on) into ``out_dir`` (one folder per run; a rerun resumes). The window
    scores are thresholded over the default sweep with each detection score of
    :data:`DETECTION_VARIANTS` (the multi-task runs twice: their best class score, and the call
    head's P(call) = 1 - score_background), events matched to ``truth`` (same label, IoU >=
    ``min_iou``), and the precision read at each recall of ``recalls``
    (:func:`helpers.recordings.event_scores.precision_at_recall`: the best threshold for that recall,
    chosen on this recording, so it describes the scores, not a deployed threshold).

    Returns one row per variant and seed: ``form``, ``score_from``, ``variant`` (its label),
    ``seed``, ``precision@R`` per recall R (fraction; NaN where the recall is never reached),
    ``max_recall`` (the highest event recall of the sweep) and ``n_truth`` (reference events).
    """
    from helpers.recordings.event_scores import precision_at_recall, precision_recall_curve_events
    from helpers.recordings.scan import scan

    recording, out = Path(recording), Path(out_dir)
    calls_in_truth = int((truth["label"].astype(str) != background_class).sum())
    rows: list[dict[str, Any]] = []
    for form in ("flat", "multi-task"):
        for config in configs[form]:
            folder = out / f"{config.run_dir().name}-{checkpoint}"
            result = scan(
                _weights(config, checkpoint),
                recording,
                folder,
                hop=hop,
                progress=False,
                background=background_class,
                device=config.device,
            )
            windows = read_windows(folder, recording.name)
            for variant_form, score_from, label in DETECTION_VARIANTS:
                if variant_form != form:
                    continue
                curve = precision_recall_curve_events(
                    windows,
                    truth,
                    result.settings["classes"],
                    background=background_class,
                    min_iou=min_iou,
                    score_from=score_from,
                )
                at = precision_at_recall(curve, recalls)
                row: dict[str, Any] = {"form": form, "score_from": score_from, "variant": label, "seed": config.seed}
                row.update({f"precision@{r:g}": p for r, p in zip(at["recall_target"], at["precision"])})
                row["max_recall"] = float(curve.loc[curve["class"] == "all", "recall"].max())
                row["n_truth"] = calls_in_truth
                rows.append(row)
    return pd.DataFrame(rows)


def detection_table(detection: pd.DataFrame, as_text: bool = True) -> pd.DataFrame:
    """:func:`compare_detection_scores` over seeds: one row per variant, each ``precision@R`` and
    ``max_recall`` in % as ``mean ± std (min-max, n=N)`` (``as_text=False``: the means). A seed
    whose sweep never reached a recall has no precision there, so ``n`` can differ between columns."""
    if detection.empty:
        return pd.DataFrame(columns=["variant"])
    metrics = [c for c in detection.columns if c.startswith("precision@")] + ["max_recall"]
    summary = summarise(detection.assign(status="finished"), by=["variant"], metric_cols=metrics, n_boot=0)
    order = {label: i for i, (_, _, label) in enumerate(DETECTION_VARIANTS)}
    summary = summary.sort_values("variant", key=lambda col: col.map(order))
    names = {
        m: (f"precision at recall {m.split('@')[1]} (%)" if m.startswith("precision@") else "max recall (%)")
        for m in metrics
    }
    rows = [
        {"variant": r["variant"], **{names[m]: spread_text(r, m, as_text) for m in metrics}}
        for _, r in summary.iterrows()
    ]
    return pd.DataFrame(rows)
