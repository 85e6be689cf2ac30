"""Grids of training runs: the paper's model comparison (Table 2) and ablation (Table 3).

Notebooks ``04`` (model comparison) and ``05`` (ablation) build their lists of configs here and
train them with :func:`run_grid`; the tables are then built from the run folders by
:mod:`helpers.experiments.collect`, never from notebook outputs::

    from helpers.experiments.grid import ablation_configs, table2_configs, run_grid
    base = {"corpus": "demo", "out_dir": "runs/grid/demo"}
    configs = table2_configs("demo", base) + ablation_configs("cnn10", 8000, "demo", base=base)
    outcomes = run_grid(configs)          # one row per config; failures are rows, not exceptions

Everything is a plain dict, so a notebook can print it, and a researcher can change one value
and see what the change means:

* :data:`PAPER_TABLE2`, :data:`PAPER_TABLE3`: the paper's numbers (%), to show beside ours.
* :data:`ABLATION_SETTINGS`: each row of Table 3 (and three extra rows) as TrainConfig field
  overrides. Every setting names all of :data:`ABLATION_FIELDS`, so a setting means the same
  whatever base config it is applied to, and :func:`setting_of` can read the setting back from
  a run's ``config.json`` (run folders keep their key-based names; nothing depends on a name).
* :data:`PROFILES`: ``"demo"`` (minutes on a 2-core CPU) and ``"paper"`` (the paper's schedule;
  needs a GPU: one CNN10 step takes about 2 s on 2 CPU cores, docs/reference.md §7).

Identical configs (the full setting of CNN10-16k is both a Table 2 row and a Table 3 row) have
the same key and, with the same ``out_dir``, the same run folder: they are trained once. This
is why Table 2 and Table 3 configs of a profile share one ``out_dir``.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.training.config import TrainConfig, paper_schedule

# --- the paper's numbers ----------------------------------------------------------------------

#: Paper Table 2, in %: devel mAP, devel UAR, test UAR (None where the paper gives none).
#: ``model``/``sample_rate`` link a row to our runs (None for the challenge baselines, which we
#: do not reproduce). Row order is the paper's.
PAPER_TABLE2: dict[str, dict[str, Any]] = {
    "ELM": {"model": None, "sample_rate": None, "devel_map": 60.3, "devel_uar": 61.0, "test_uar": 70.7},
    "auDeep-SVM": {"model": None, "sample_rate": None, "devel_map": None, "devel_uar": 84.6, "test_uar": 86.6},
    "CNN6-8k": {"model": "cnn6", "sample_rate": 8000, "devel_map": 92.9, "devel_uar": 88.2, "test_uar": None},
    "CNN10-8k": {"model": "cnn10", "sample_rate": 8000, "devel_map": 95.4, "devel_uar": 91.9, "test_uar": 90.6},
    "MobileNetV1-8k": {
        "model": "mobilenetv1",
        "sample_rate": 8000,
        "devel_map": 91.4,
        "devel_uar": 88.0,
        "test_uar": None,
    },
    "ResNet22-8k": {"model": "resnet22", "sample_rate": 8000, "devel_map": 93.8, "devel_uar": 91.2, "test_uar": 89.1},
    "WideResNet28-2-8k": {
        "model": "wrn28_2",
        "sample_rate": 8000,
        "devel_map": 92.8,
        "devel_uar": 87.7,
        "test_uar": None,
    },
    "ResNet22-16k": {"model": "resnet22", "sample_rate": 16000, "devel_map": 95.7, "devel_uar": 92.6, "test_uar": None},
    "CNN10-16k": {"model": "cnn10", "sample_rate": 16000, "devel_map": 97.0, "devel_uar": 93.6, "test_uar": 92.5},
}

#: Paper Table 3, in %: ``{(model, sample_rate): {setting: {"devel_map", "devel_uar", "test_uar"}}}``.
#: The paper reports devel scores only (test_uar None). The extra rows of
#: :data:`ABLATION_SETTINGS` ("+ time stretch", ...) have no numbers in the paper (section 3.3
#: says the waveform augmentations brought no gain) and are absent here.
PAPER_TABLE3: dict[tuple[str, int], dict[str, dict[str, float | None]]] = {
    ("resnet22", 8000): {
        "no-bal, no-aug": {"devel_map": 87.9, "devel_uar": 78.7, "test_uar": None},
        "bal, no-aug": {"devel_map": 89.8, "devel_uar": 82.6, "test_uar": None},
        "bal, specA": {"devel_map": 92.6, "devel_uar": 88.1, "test_uar": None},
        "bal, MixUp": {"devel_map": 92.4, "devel_uar": 88.8, "test_uar": None},
        "bal, specA+MixUp": {"devel_map": 93.8, "devel_uar": 91.2, "test_uar": None},
        "bal, specA+MixUp, no EMA": {"devel_map": 93.1, "devel_uar": 90.0, "test_uar": None},
    },
    ("cnn10", 16000): {
        "no-bal, no-aug": {"devel_map": 94.7, "devel_uar": 90.9, "test_uar": None},
        "bal, no-aug": {"devel_map": 94.7, "devel_uar": 92.1, "test_uar": None},
        "bal, specA": {"devel_map": 94.1, "devel_uar": 92.1, "test_uar": None},
        "bal, MixUp": {"devel_map": 96.0, "devel_uar": 92.5, "test_uar": None},
        "bal, specA+MixUp": {"devel_map": 97.0, "devel_uar": 93.6, "test_uar": None},
        "bal, specA+MixUp, no EMA": {"devel_map": 96.7, "devel_uar": 93.0, "test_uar": None},
    },
}

#: Paper section 5, in %: the ResNet22-CNN10 fusion (frozen branches, SpecAugment + MixUp was
#: the best of the variants the paper tried; it gives no numbers for the others).
PAPER_FUSION: dict[str, dict[str, float | None]] = {
    "frozen, specA+MixUp": {"devel_map": 96.2, "devel_uar": 91.6, "test_uar": None},
}
#: Paper section 5: a linear SVM on CNN10 embeddings, devel UAR in %.
PAPER_SVM_DEVEL_UAR = 88.8

#: Display names of the models, as the paper writes them.
MODEL_NAMES = {
    "cnn6": "CNN6",
    "cnn10": "CNN10",
    "mobilenetv1": "MobileNetV1",
    "resnet22": "ResNet22",
    "wrn28_2": "WideResNet28-2",
    "fusion": "Fusion",
}


#: How a narrowed network (``model_options={"width": w}``) is written in labels.
WIDTH_NAMES = {0.5: "½", 0.25: "¼", 0.125: "⅛"}


def width_of(model_options: dict[str, Any] | str | None) -> float:
    """The channel multiplier of a run's ``model_options`` (a dict, or the JSON text a collected table
    holds): its ``width``, 1.0 (the paper's network) when unset."""
    if isinstance(model_options, str):
        import json

        model_options = json.loads(model_options) if model_options.strip() else {}
    return float((model_options or {}).get("width", 1.0))


def model_label(model: str, sample_rate: int, width: float = 1.0) -> str:
    """``("cnn10", 16000)`` -> ``"CNN10-16k"``, the paper's row name; a narrowed network says so:
    ``("cnn10", 8000, 0.25)`` -> ``"CNN10-8k (¼ width)"``."""
    label = f"{MODEL_NAMES.get(model, model)}-{int(sample_rate) // 1000}k"
    width = 1.0 if width is None or (isinstance(width, float) and width != width) else float(width)
    if width != 1.0:
        label += f" ({WIDTH_NAMES.get(width, f'{width:g}x')} width)"
    return label


# --- the ablation -----------------------------------------------------------------------------

#: The TrainConfig fields an ablation setting decides; every setting names all of them.
ABLATION_FIELDS = ("sampler", "spec_augment", "mixup", "ema", "ema_mode", "time_stretch", "pitch_shift")
_FULL = {
    "sampler": "balanced",
    "spec_augment": True,
    "mixup": True,
    "ema": True,
    "ema_mode": "correct",
    "time_stretch": False,
    "pitch_shift": False,
}
#: The paper's full recipe: the setting of every Table 2 run.
FULL_SETTING = "bal, specA+MixUp"
#: Table 3's rows (the paper's names and order), then three rows the paper does not tabulate:
#: waveform time stretching and pitch shifting added to the full recipe (the paper: no gain), and
#: the full recipe with the authors' EMA store/restore behaviour (``ema_mode="reference"``).
ABLATION_SETTINGS: dict[str, dict[str, Any]] = {
    "no-bal, no-aug": {**_FULL, "sampler": "uniform", "spec_augment": False, "mixup": False},
    "bal, no-aug": {**_FULL, "spec_augment": False, "mixup": False},
    "bal, specA": {**_FULL, "mixup": False},
    "bal, MixUp": {**_FULL, "spec_augment": False},
    "bal, specA+MixUp": dict(_FULL),
    "bal, specA+MixUp, no EMA": {**_FULL, "ema": False},
    "+ time stretch": {**_FULL, "time_stretch": True},
    "+ pitch shift": {**_FULL, "pitch_shift": True},
    "EMA reference mode": {**_FULL, "ema_mode": "reference"},
}
#: The six settings of the paper's Table 3.
PAPER_ABLATION_SETTINGS = tuple(list(ABLATION_SETTINGS)[:6])


def setting_of(config: dict[str, Any] | TrainConfig) -> str | None:
    """The name in :data:`ABLATION_SETTINGS` whose overrides ``config`` matches, else None.

    ``ema_mode`` does not matter when ``ema`` is off (a run without EMA matches "no EMA" whatever
    its ``ema_mode``).
    """
    values = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    for name, overrides in ABLATION_SETTINGS.items():
        fields = [f for f in ABLATION_FIELDS if not (f == "ema_mode" and not overrides["ema"])]
        if all(values.get(f) == overrides[f] for f in fields):
            return name
    return None


# --- profiles ---------------------------------------------------------------------------------

#: ``03_train``'s default model and sample rate (its parameters cell).
TRAIN_NOTEBOOK_RUN = ("cnn10", 8000)
#: Table 2's trained rows, as (model, sample rate), in the paper's order.
TABLE2_RUNS: list[tuple[str, int]] = [
    ("cnn6", 8000),
    ("cnn10", 8000),
    ("mobilenetv1", 8000),
    ("resnet22", 8000),
    ("wrn28_2", 8000),
    ("resnet22", 16000),
    ("cnn10", 16000),
]

#: Per profile: ``config``, the TrainConfig overrides every run of the profile gets (a notebook's
#: own ``base`` overrides them in turn); ``seeds`` (Table 2 and the fusion); ``table2_runs``, the
#: (model, sample rate) pairs of Table 2 it trains, with ``table2_config_by_model[model]`` over ``config``;
#: ``model_options``, per model the constructor options of its Table 2 runs and the fusion branches
#: (e.g. a ``width``); ``ablation_runs``, the
#: (model, sample rate) pairs of Table 3, with their own ``ablation_config`` (over ``config``) and
#: ``ablation_config_by_setting[setting]`` (over that), ``ablation_model_options``,
#: ``ablation_seeds`` and ``ablation_settings`` (None: all of :data:`ABLATION_SETTINGS`);
#: ``fusion_config``, TrainConfig overrides of the fusion runs, and ``fusion_variants`` (None: all of
#: :data:`FUSION_VARIANTS`); ``hierarchy_run``, the (model, sample
#: rate) of notebook 10's flat/two-stage/multi-task comparison (with the ablation's options, seeds
#: and schedule, so its flat runs are ablation runs); ``fusion_branches``, the two
#: (model, sample rate) runs whose best checkpoints are fused; ``train_notebook``, the values
#: :func:`profile_parameters` gives ``03_train``.
#:
#: ``demo``: sized so the whole collection (00-10) finishes in under 30 minutes on a
#: 2-core laptop CPU *and* its tables carry information. Every run trains until its own devel curve
#: is flat (``stop_when_flat``, docs/reference.md §12: the test that 04 and 05 print, from
#: :mod:`helpers.evaluation.curves`), between ``min_iterations`` and the cap ``iterations``: 400-800
#: steps of 32 clips for Table 2 (about 120-240 passes over the 105 training clips; ResNet22 200-400,
#: flat from step ~125, MobileNetV1 800-1200, still rising at 400), 400-800 steps of 16 for the
#: ablation and notebook 10 (MixUp slows learning: the full recipe was still rising at 400 and flat at
#: 800 on three seeds), 100-200 for the fusion, which starts from trained branches. WideResNet28-2 is
#: left out (measured: even at an eighth of its width still rising after 800 steps, 8.5 min on one
#: core; 04 says so). So the networks are narrowed, and say so in every label: Table 2's models at a
#: quarter of the paper's channels ("CNN10-8k (¼ width)": 0.31 M parameters instead of 4.95 M; its
#: first seed is also 03_train's run), the ablation on CNN10-8k at an eighth, three seeds per setting
#: (the paper's six settings), so that a table shows the seed spread. 8 kHz everywhere, EMA from step
#: 100 with decay 0.98 (0.995 would still be mostly the weights of step 100 at step 400). The fusion
#: trains three of the four variants (one trainable). Its timings: docs/results.md.
#:
#: ``paper``: the paper's schedule (60 000 steps of 32, devel evaluation every 200, EMA from step
#: 15 000 with decay 0.995), all Table 2 rows, the ablation on ResNet22-8k and CNN10-16k as in
#: Table 3, three seeds (the paper reports one run per row), the fusion of the best single
#: models (ResNet22-16k and CNN10-16k), the paper's full-width networks. Needs a GPU.
_PROFILE_VALUES: dict[str, dict[str, Any]] = {
    "demo": {
        # every run trains until its devel curve is flat: at least min_iterations, at most iterations
        "config": {
            "sample_rate": 8000,
            "batch_size": 32,
            "iterations": 800,
            "min_iterations": 400,
            "stop_when_flat": True,
            "eval_every": 25,
            "ema_start": 100,
            "ema_decay": 0.98,
            "checkpoint_every": 100,
            "log_every": 25,
        },
        "seeds": [0],
        # longest run first, so that two CPU workers finish together (the tables keep the paper's order);
        # not WideResNet28-2: it learns slowest, and does not flatten within the budget (04 says so)
        "table2_runs": [("resnet22", 8000), ("cnn6", 8000), ("cnn10", 8000), ("mobilenetv1", 8000)],
        "model_options": {m: {"width": 0.25} for m in ("cnn6", "cnn10", "mobilenetv1", "resnet22", "wrn28_2")},
        # measured: ResNet22 flat from step ~125, MobileNetV1 still rising at 400 and flat at 800
        "table2_config_by_model": {
            "resnet22": {"min_iterations": 200, "iterations": 400},
            "mobilenetv1": {"min_iterations": 800, "iterations": 1200},
        },
        "ablation_runs": [("cnn10", 8000)],
        "ablation_model_options": {"cnn10": {"width": 0.125}},
        "ablation_config": {"batch_size": 16},
        # MixUp slows learning: three seeds of the full recipe were all still rising at 400 steps by
        # the test of helpers.evaluation.curves, two of three flat at 600, all at 800 (stop_when_flat
        # trains each run as long as it needs, up to the profile's 800)
        "ablation_config_by_setting": {},
        "ablation_seeds": [0, 1, 2],
        "ablation_settings": list(PAPER_ABLATION_SETTINGS),
        "fusion_config": {"iterations": 200, "min_iterations": 100, "ema_start": 50, "eval_every": 25},
        "fusion_variants": ["trainable, specA+MixUp", "frozen, specA+MixUp", "frozen, no-aug"],  # longest first
        "hierarchy_run": ("cnn10", 8000),
        "fusion_branches": [("resnet22", 8000), ("cnn10", 8000)],
        "train_notebook": {},  # 03_train's own defaults are the demo's CNN10 (¼ width) run
    },
    "paper": {
        "config": paper_schedule(),  # 60,000 steps of 32, EMA 0.995 from step 15,000: TrainConfig's defaults
        "seeds": [0, 1, 2],
        "table2_runs": list(TABLE2_RUNS),
        "model_options": {},
        "table2_config_by_model": {},
        "ablation_runs": [("resnet22", 8000), ("cnn10", 16000)],
        "ablation_model_options": {},
        "ablation_config": {},
        "ablation_config_by_setting": {},
        "ablation_seeds": [0, 1, 2],
        "ablation_settings": None,
        "fusion_config": {},
        "fusion_variants": None,
        "hierarchy_run": ("cnn10", 16000),
        "fusion_branches": [("resnet22", 16000), ("cnn10", 16000)],
        "train_notebook": {
            "sample_rate": 16000,
            "model": "cnn10",
            "model_options": {},
            "batch_size": 32,
            "iterations": 60_000,
            "stop_when_flat": False,
            "min_iterations": 0,
            "eval_every": 200,
            "ema_start": 15_000,
            "ema_decay": 0.995,
            "checkpoint_every": 1_000,
            "log_every": 50,
        },
    },
}


@dataclass(frozen=True)
class Profile:
    """What a profile fixes (:data:`PROFILES`): the TrainConfig values of every run (``config``) and of the
    runs of each table, the seeds, which runs each table holds, and 03_train's parameters."""

    config: dict[str, Any]
    seeds: list[int]
    table2_runs: list[tuple[str, int]]
    model_options: dict[str, dict[str, Any]]
    table2_config_by_model: dict[str, dict[str, Any]]
    ablation_runs: list[tuple[str, int]]
    ablation_model_options: dict[str, dict[str, Any]]
    ablation_config: dict[str, Any]
    ablation_config_by_setting: dict[str, dict[str, Any]]
    ablation_seeds: list[int]
    ablation_settings: list[str] | None
    fusion_config: dict[str, Any]
    fusion_variants: list[str]
    hierarchy_run: tuple[str, int]
    fusion_branches: list[tuple[str, int]]
    train_notebook: dict[str, Any]


PROFILES: dict[str, Profile] = {name: Profile(**values) for name, values in _PROFILE_VALUES.items()}


def profile_settings(profile: str) -> Profile:
    """The :data:`PROFILES` entry of ``profile``; ValueError naming the known profiles otherwise."""
    return _profile(profile)


def _profile(profile: str) -> Profile:
    if profile not in PROFILES:
        raise ValueError(
            f"profile {profile!r} is unknown; known: {sorted(PROFILES)} (helpers.experiments.grid.PROFILES)"
        )
    return PROFILES[profile]


# --- building configs -------------------------------------------------------------------------


def _chosen(names: list[str] | None, known: dict[str, Any], what: str) -> list[str]:
    """``names`` (default: all of ``known``, in order), refusing unknown ones with the known list."""
    chosen = list(known) if names is None else list(names)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {list(known)}")
    return chosen


def expand_grid(base: dict[str, Any], axes: dict[str, list]) -> list[TrainConfig]:
    """One TrainConfig per combination of the ``axes`` values (cartesian product) over ``base``.

    ``expand_grid({"model": "cnn10"}, {"seed": [0, 1], "mixup": [True, False]})`` gives 4 configs,
    the last axis varying fastest. Unknown field names raise (naming the known ones); an axis with
    no values raises (it would silently give an empty grid).
    """
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise ValueError(f"expand_grid axis {name!r} must be a list of values, got {values!r}")
        if len(list(values)) == 0:
            raise ValueError(f"expand_grid axis {name!r} has no values: the grid would be empty")
    names = list(axes)
    return [
        TrainConfig.from_dict({**base, **dict(zip(names, combo))})
        for combo in itertools.product(*(list(axes[n]) for n in names))
    ]


def ablation_configs(
    model: str,
    sample_rate: int,
    profile: str = "demo",
    seeds: list[int] | None = None,
    base: dict[str, Any] | None = None,
    settings: list[str] | None = None,
) -> list[TrainConfig]:
    """The ablation grid of one model: every setting x every seed, setting-major.

    Config = profile config, then ``base`` (e.g. ``{"corpus": "/data/primates"}``), then model,
    sample rate and seed, then the setting's overrides (which always win: they are the ablation).
    ``seeds`` defaults to the profile's ``ablation_seeds``; ``settings`` to its ``ablation_settings``
    (None there: all of :data:`ABLATION_SETTINGS`); the model's constructor options to its
    ``ablation_model_options``.
    """
    prof = _profile(profile)
    seeds = list(prof.ablation_seeds if seeds is None else seeds)
    names = _chosen(prof.ablation_settings if settings is None else settings, ABLATION_SETTINGS, "ablation setting")
    own = {
        "model": model,
        "sample_rate": sample_rate,
        "model_options": dict(prof.ablation_model_options.get(model, {})),
    }
    by_setting = prof.ablation_config_by_setting
    return [
        c
        for name in names
        for c in expand_grid(
            {
                **prof.config,
                **prof.ablation_config,
                **by_setting.get(name, {}),
                **(base or {}),
                **own,
                **ABLATION_SETTINGS[name],
            },
            {"seed": seeds},
        )
    ]


def table2_configs(
    profile: str = "demo",
    base: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
    runs: list[tuple[str, int]] | None = None,
) -> list[TrainConfig]:
    """Table 2's runs of a profile: each (model, sample rate) of ``runs`` (default the profile's
    ``table2_runs``) x each seed, with the full recipe (:data:`FULL_SETTING`), the profile's
    ``table2_config_by_model`` of the model over its ``config``, and the profile's ``model_options``
    of the model."""
    prof = _profile(profile)
    seeds = list(prof.seeds if seeds is None else seeds)
    pairs = prof.table2_runs if runs is None else runs
    out: list[TrainConfig] = []
    for model, sample_rate in pairs:
        values = {
            **prof.config,
            **prof.table2_config_by_model.get(model, {}),
            **(base or {}),
            "model": model,
            "sample_rate": sample_rate,
            "model_options": dict(prof.model_options.get(model, {})),
            **ABLATION_SETTINGS[FULL_SETTING],
        }
        out.extend(expand_grid(values, {"seed": seeds}))
    return out


def apply_model_options(configs: list[TrainConfig], by_model: dict[str, dict] | None) -> list[TrainConfig]:
    """Give each config the constructor options ``by_model[config.model]`` (e.g. narrow test nets:
    ``{"cnn10": {"channels": [8, 16, 32, 64]}}``); configs of other models are returned unchanged."""
    import dataclasses

    by_model = by_model or {}
    unknown = sorted(set(by_model) - set(MODEL_NAMES))
    if unknown:
        raise ValueError(f"model_options for unknown model(s) {unknown}; known: {sorted(MODEL_NAMES)}")
    return [
        dataclasses.replace(c, model_options=dict(by_model[c.model])) if c.model in by_model else c for c in configs
    ]


# --- fusion -----------------------------------------------------------------------------------

#: The fusion variants of notebook 07 as TrainConfig overrides: branches frozen (only the new
#: classifier learns) or trainable, with the full recipe or without augmentation (the paper
#: tried these and reports the best, frozen with both augmentations).
FUSION_VARIANTS: dict[str, dict[str, Any]] = {
    "frozen, specA+MixUp": {"freeze": True, "spec_augment": True, "mixup": True},
    "frozen, no-aug": {"freeze": True, "spec_augment": False, "mixup": False},
    "trainable, specA+MixUp": {"freeze": False, "spec_augment": True, "mixup": True},
    "trainable, no-aug": {"freeze": False, "spec_augment": False, "mixup": False},
}


def fusion_variant_of(config: dict[str, Any] | TrainConfig) -> str | None:
    """The :data:`FUSION_VARIANTS` name of a fusion config (None for other models or other settings)."""
    values = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    if values.get("model") != "fusion":
        return None
    options = values.get("model_options") or {}
    if isinstance(options, str):  # a collected table holds it as JSON text
        import json

        options = json.loads(options)
    for name, v in FUSION_VARIANTS.items():
        if (
            bool(options.get("freeze", True)) == v["freeze"]
            and values.get("spec_augment") == v["spec_augment"]
            and values.get("mixup") == v["mixup"]
        ):
            return name
    return None


def fusion_configs(
    branch_a: str | Path,
    branch_b: str | Path,
    sample_rate: int,
    profile: str = "demo",
    base: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
    variants: list[str] | None = None,
) -> list[TrainConfig]:
    """Fusion runs of two trained checkpoints (``RUN/checkpoints/best_ema.pt`` of each branch): one
    per variant of :data:`FUSION_VARIANTS` (default all) and seed. Config = profile config and
    ``fusion_config``, then ``base``, then the variant; the rest of the recipe (balanced sampling, EMA) is the
    paper's."""
    prof = _profile(profile)
    seeds = list(prof.seeds if seeds is None else seeds)
    names = _chosen(prof.fusion_variants if variants is None else variants, FUSION_VARIANTS, "fusion variant")
    out: list[TrainConfig] = []
    for name in names:
        v = FUSION_VARIANTS[name]
        values = {
            **prof.config,
            **prof.fusion_config,
            **(base or {}),
            **ABLATION_SETTINGS[FULL_SETTING],
            "model": "fusion",
            "sample_rate": sample_rate,
            "spec_augment": v["spec_augment"],
            "mixup": v["mixup"],
            "model_options": {"branch_a": str(branch_a), "branch_b": str(branch_b), "freeze": v["freeze"]},
        }
        out.extend(expand_grid(values, {"seed": seeds}))
    return out


def fusion_branch_keys(
    profile: str, branches: list | None = None, model_options: dict[str, dict] | None = None
) -> list[tuple[str, int, float]]:
    """The fused branches as ``(model, sample rate, width)``, what :func:`helpers.experiments.collect.fusion_table`
    takes: ``branches`` (default the profile's ``fusion_branches``) with the width of the profile's
    ``model_options``, or of ``model_options`` (a notebook's per-model override) where it names the model."""
    prof = _profile(profile)
    pairs = prof.fusion_branches if branches is None else [tuple(b) for b in branches]
    options = {**prof.model_options, **(model_options or {})}
    return [(m, int(r), width_of(options.get(m))) for m, r in pairs]


def profile_parameters(profile: str, corpus: str | None = None, runs_root: str = "../runs/grid") -> dict[str, Any]:
    """Parameters for the whole notebook collection under ``profile`` (``python -m helpers notebooks
    --profile``): ``profile`` for the grid notebooks (04, 05, 07, 08, 10) and the profile's
    ``train_notebook`` values for ``03_train``.

    With ``corpus``, ``03_train``'s run *is* Table 2's first run of its model: ``out_dir`` puts it
    in the grid's folder (``runs_root/profile``, relative to ``notebooks/``), where ``04`` finds it
    finished instead of training it again, and ``run_dir`` points ``06`` and ``09`` at it."""
    prof = _profile(profile)
    params = {"profile": profile, **prof.train_notebook}
    if corpus is not None:
        shared = shared_train_run(profile, corpus, runs_root)
        params.update(out_dir=shared.out_dir, run_dir=str(shared.run_dir()))
    return params


def shared_train_run(profile: str, corpus: str, runs_root: str = "../runs/grid") -> TrainConfig:
    """The Table 2 config that ``03_train`` trains under ``profile``: the first seed of the model and
    sample rate of ``03``'s defaults overridden by the profile's ``train_notebook`` values (demo:
    CNN10-8k at a quarter width; paper: CNN10-16k)."""
    prof = _profile(profile)
    model = prof.train_notebook.get("model", TRAIN_NOTEBOOK_RUN[0])
    rate = prof.train_notebook.get("sample_rate", TRAIN_NOTEBOOK_RUN[1])
    base = {"corpus": corpus, "out_dir": str(Path(runs_root) / profile)}
    return table2_configs(profile, base, seeds=prof.seeds[:1], runs=[(model, rate)])[0]


def grid_notebook_settings(
    profile: str,
    corpus: str,
    data_dir: str,
    cache_dir: str,
    runs_root: str,
    overrides: dict[str, Any],
    cpu_workers: int | None,
    threads_per_run: int | None,
    max_per_gpu: int,
    via_notebook: bool,
    executor: str = "local",
    slurm_config: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The grid notebooks' (04, 05, 07) parameters as ``(base, parallel)``: ``base`` holds the
    TrainConfig values every run shares (corpus, paths, run folders under ``runs_root/profile``,
    ``overrides``), ``parallel`` the keyword arguments of :func:`run_grid` (workers, threads, GPUs,
    ``via="notebook"`` to train each run through ``03_train``, and the executor: ``"local"`` or
    ``"slurm"`` with the SLURM options file ``slurm_config``)."""
    _profile(profile)
    _check_executor(executor, slurm_config)
    base = {
        "corpus": corpus,
        "data_dir": data_dir,
        "cache_dir": cache_dir,
        "out_dir": str(Path(runs_root) / profile),
        **overrides,
    }
    parallel = {
        "cpu_workers": cpu_workers,
        "threads_per_run": threads_per_run,
        "max_per_gpu": max_per_gpu,
        "via": "notebook" if via_notebook else "python",
        "executor": executor,
        "slurm": slurm_config,
    }
    return base, parallel


@dataclass
class GridNotebook:
    """The parameters the grid notebooks (04, 05, 07, 10) share, read from the notebook's namespace in one
    line, ``setup = GridNotebook.from_namespace(globals())``, as :meth:`TrainConfig.from_namespace` does for
    03: the profile, corpus and paths, the runs' common ``overrides`` and ``model_options``, and how they run
    (workers, threads, GPUs, through ``03_train`` or not, local or SLURM). :attr:`base` and :attr:`parallel`
    are what :func:`run_grid` takes; :attr:`settings` the profile's."""

    profile: str = "demo"
    corpus: str = "demo"
    data_dir: str = "../data"
    cache_dir: str = "../data/cache"
    runs_root: str = "../runs/grid"
    seeds: list[int] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    cpu_workers: int | None = None
    threads_per_run: int | None = None
    max_per_gpu: int = 4
    via_notebook: bool = False
    executor: str = "local"
    slurm_config: str | None = None
    redo: bool = False
    fail_on_error: bool = True
    figures_dir: str = "../figures"

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]) -> "GridNotebook":
        """The fields found in ``namespace`` (a notebook's ``globals()``); the others keep their defaults."""
        return cls(**{f.name: namespace[f.name] for f in dataclasses.fields(cls) if f.name in namespace})

    def _both(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return grid_notebook_settings(
            self.profile,
            self.corpus,
            self.data_dir,
            self.cache_dir,
            self.runs_root,
            self.overrides,
            self.cpu_workers,
            self.threads_per_run,
            self.max_per_gpu,
            self.via_notebook,
            self.executor,
            self.slurm_config,
        )

    @property
    def base(self) -> dict[str, Any]:
        return self._both()[0]

    @property
    def parallel(self) -> dict[str, Any]:
        return self._both()[1]

    @property
    def settings(self) -> Profile:
        return _profile(self.profile)


# --- running ----------------------------------------------------------------------------------

#: Columns of :func:`run_grid`'s table.
GRID_COLUMNS = ["run_dir", "key", "model", "sample_rate", "seed", "setting", "status", "error", "seconds"]
#: Where :func:`run_grid` trains: ``"local"`` (:mod:`helpers.experiments.scheduler`, processes on
#: this machine) or ``"slurm"`` (:mod:`helpers.experiments.cluster`, one SLURM job per run).
EXECUTORS = ("local", "slurm")
#: The ``run_grid`` keywords that only the local scheduler uses (SLURM places the jobs itself).
LOCAL_ONLY_KWARGS = ("max_per_gpu", "cpu_workers", "threads_per_run")


def _check_executor(executor: str, slurm: Any) -> None:
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r}; use one of {EXECUTORS}")
    if executor == "local" and slurm is not None:
        raise ValueError(
            f"SLURM options ({slurm!r}) were given but executor='local'; set executor='slurm' "
            "to use them, or leave the SLURM options unset"
        )


def run_grid(
    configs: list[TrainConfig], redo: bool = False, executor: str = "local", slurm: Any = None, **parallel_kwargs: Any
) -> pd.DataFrame:
    """Train ``configs``; one row per config, in order.

    ``executor="local"`` (the default) trains with :func:`helpers.experiments.scheduler.run_trainings`
    on this machine; ``executor="slurm"`` submits one SLURM job per run through submitit
    (:func:`helpers.experiments.cluster.run_on_slurm`), with ``slurm`` the options: a JSON/YAML
    file, a mapping or None for the defaults (keys in :mod:`helpers.experiments.cluster`).

    Columns :data:`GRID_COLUMNS`; ``status`` is ``finished`` (trained now), ``skipped`` (finished
    before) or ``failed`` (``error`` says why; also in ``RUN/failed.json``). Failed runs are rows,
    never dropped. Configs that share a run folder (the same config listed twice, e.g. CNN10-16k
    in Table 2 and Table 3) are trained once and each gets the row of that run. ``parallel_kwargs``
    go to ``run_trainings`` (``max_per_gpu``, ``cpu_workers``, ``threads_per_run``, ``corpus_root``,
    ``progress``, ``via``); with SLURM only ``corpus_root``, ``progress`` and ``via`` apply (the
    others, :data:`LOCAL_ONLY_KWARGS`, are ignored: SLURM places the jobs, ``cpus_per_task`` sets
    their threads).
    """
    import helpers.experiments.scheduler as parallel  # looked up at call time, so tests can replace run_trainings

    _check_executor(executor, slurm)

    unique: dict[Path, TrainConfig] = {}
    for config in configs:
        folder = config.run_dir().resolve()
        if folder in unique and unique[folder].key() != config.key():
            raise ValueError(
                f"two different configs share the run folder {config.run_dir()}: give them distinct run_name or out_dir"
            )
        unique.setdefault(folder, config)
    folders = list(unique)
    if not folders:
        outcomes = []
    elif executor == "slurm":
        from helpers.experiments.cluster import run_on_slurm

        kwargs = {k: v for k, v in parallel_kwargs.items() if k not in LOCAL_ONLY_KWARGS}
        outcomes = run_on_slurm(list(unique.values()), slurm=slurm, redo=redo, **kwargs)
    else:
        outcomes = parallel.run_trainings(list(unique.values()), redo=redo, **parallel_kwargs)
    if len(outcomes) != len(folders):
        raise RuntimeError(f"run_trainings returned {len(outcomes)} outcomes for {len(folders)} configs")
    by_folder = dict(zip(folders, outcomes))
    rows = []
    for config in configs:
        outcome = by_folder[config.run_dir().resolve()]
        rows.append(
            {
                "run_dir": str(config.run_dir()),
                "key": config.key(),
                "model": config.model,
                "sample_rate": config.sample_rate,
                "seed": config.seed,
                "setting": setting_of(config),
                "status": outcome.status,
                "error": outcome.error,
                "seconds": float(outcome.seconds),
            }
        )
    return pd.DataFrame(rows, columns=GRID_COLUMNS)
