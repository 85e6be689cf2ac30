"""The grid runner: paper numbers, ablation settings, profiles, config grids and run_grid's table
(run_trainings replaced by a stand-in: no training)."""

from __future__ import annotations

import dataclasses

import json
from pathlib import Path

import pytest

import helpers.experiments.scheduler as parallel
from helpers.experiments import grid
from helpers.experiments.grid import (
    ABLATION_FIELDS,
    ABLATION_SETTINGS,
    FULL_SETTING,
    FUSION_VARIANTS,
    PAPER_TABLE2,
    PAPER_ABLATION_SETTINGS,
    PAPER_TABLE3,
    PROFILES,
    TABLE2_RUNS,
    ablation_configs,
    apply_model_options,
    expand_grid,
    fusion_configs,
    fusion_variant_of,
    profile_parameters,
    run_grid,
    setting_of,
    table2_configs,
)
from helpers.experiments.scheduler import RunOutcome
from helpers.training.config import TrainConfig


def test_paper_numbers_match_facts():
    assert PAPER_TABLE2["CNN10-16k"] == {
        "model": "cnn10",
        "sample_rate": 16000,
        "devel_map": 97.0,
        "devel_uar": 93.6,
        "test_uar": 92.5,
    }
    assert PAPER_TABLE2["auDeep-SVM"]["devel_map"] is None
    assert PAPER_TABLE3[("resnet22", 8000)]["no-bal, no-aug"]["devel_uar"] == 78.7
    assert PAPER_TABLE3[("cnn10", 16000)][FULL_SETTING]["devel_map"] == 97.0
    # the full-recipe row of Table 3 is Table 2's row
    for (model, sr), rows in PAPER_TABLE3.items():
        t2 = next(v for v in PAPER_TABLE2.values() if (v["model"], v["sample_rate"]) == (model, sr))
        assert (rows[FULL_SETTING]["devel_map"], rows[FULL_SETTING]["devel_uar"]) == (t2["devel_map"], t2["devel_uar"])
    assert {(v["model"], v["sample_rate"]) for v in PAPER_TABLE2.values() if v["model"]} == set(TABLE2_RUNS)


def test_ablation_settings_are_complete_and_recognisable():
    for name, overrides in ABLATION_SETTINGS.items():
        assert set(overrides) == set(ABLATION_FIELDS), name
        TrainConfig(**overrides)  # valid values
        assert setting_of(TrainConfig(**overrides)) == name
    assert ABLATION_SETTINGS["no-bal, no-aug"]["sampler"] == "uniform"
    assert ABLATION_SETTINGS["bal, specA+MixUp, no EMA"]["ema"] is False
    assert setting_of({**ABLATION_SETTINGS[FULL_SETTING], "mixup_alpha": 0.5}) == FULL_SETTING
    assert setting_of({**ABLATION_SETTINGS[FULL_SETTING], "time_stretch": True, "pitch_shift": True}) is None


def test_profiles_are_valid_configs():
    assert PROFILES["paper"].config["iterations"] == 60_000
    assert PROFILES["paper"].seeds == [0, 1, 2] and PROFILES["demo"].seeds == [0]
    for name, prof in PROFILES.items():
        TrainConfig.from_dict(prof.config)
        assert set(prof.table2_runs) <= set(TABLE2_RUNS) or name == "demo"


def test_expand_grid_is_a_cartesian_product():
    configs = expand_grid(
        {"model": "cnn6", "iterations": 5}, {"seed": [0, 1, 2], "mixup": [True, False], "sample_rate": [8000, 16000]}
    )
    assert len(configs) == 12
    assert all(c.model == "cnn6" and c.iterations == 5 for c in configs)
    assert {(c.seed, c.mixup, c.sample_rate) for c in configs} == {
        (s, m, r) for s in (0, 1, 2) for m in (True, False) for r in (8000, 16000)
    }
    assert len({c.key() for c in configs}) == 12
    assert [c.sample_rate for c in configs[:2]] == [8000, 16000]  # last axis fastest
    assert len(expand_grid({"model": "cnn6"}, {})) == 1
    with pytest.raises(ValueError, match="unknown TrainConfig"):
        expand_grid({}, {"no_such_field": [1]})
    with pytest.raises(ValueError, match="no values"):
        expand_grid({}, {"seed": []})


def test_a_profile_can_give_one_ablation_setting_its_own_schedule(monkeypatch):
    """``ablation_config_by_setting``: e.g. more steps for the settings with MixUp; a notebook's base still wins."""
    mixup = {name for name, o in ABLATION_SETTINGS.items() if o["mixup"]}
    changed = dataclasses.replace(
        PROFILES["demo"], ablation_config_by_setting={name: {"iterations": 600} for name in mixup}
    )
    monkeypatch.setitem(PROFILES, "demo", changed)
    steps = {setting_of(c): c.iterations for c in ablation_configs("cnn10", 8000, "demo", seeds=[0])}
    assert {s for s, n in steps.items() if n == 600} == mixup & set(steps) != set()
    assert {n for s, n in steps.items() if s not in mixup} == {PROFILES["demo"].config["iterations"]}
    assert {c.iterations for c in ablation_configs("cnn10", 8000, "demo", seeds=[0], base={"iterations": 2})} == {2}


def test_ablation_and_table2_configs(tmp_path: Path):
    configs = ablation_configs("resnet22", 8000, "paper", seeds=[0, 1], base={"out_dir": str(tmp_path)})
    assert len(configs) == 2 * len(ABLATION_SETTINGS)
    assert all(c.iterations == 60_000 and c.ema_decay == 0.995 and c.out_dir == str(tmp_path) for c in configs)
    assert [setting_of(c) for c in configs[::2]] == list(ABLATION_SETTINGS)
    # a base cannot undo the ablation
    forced = ablation_configs("cnn10", 8000, "demo", base={"mixup": True}, settings=["bal, specA"])
    assert [c.seed for c in forced] == PROFILES["demo"].ablation_seeds and len(forced) >= 3
    assert all(c.mixup is False and c.iterations == PROFILES["demo"].config["iterations"] for c in forced)
    # the demo ablates a narrowed CNN10, and Table 2's demo models are narrowed too (labelled so)
    assert forced[0].model_options == PROFILES["demo"].ablation_model_options["cnn10"]
    demo = ablation_configs("cnn10", 8000, "demo", seeds=[0])
    assert [setting_of(c) for c in demo] == list(PAPER_ABLATION_SETTINGS)
    with pytest.raises(ValueError, match="unknown ablation setting"):
        ablation_configs("cnn10", 8000, "demo", settings=["bal"])
    with pytest.raises(ValueError, match="profile"):
        table2_configs("huge")
    t2 = table2_configs("demo")
    assert [(c.model, c.sample_rate) for c in t2] == PROFILES["demo"].table2_runs
    assert all(setting_of(c) == FULL_SETTING for c in t2)
    assert len(table2_configs("paper")) == 3 * len(TABLE2_RUNS)
    # CNN10-16k with the full recipe is in both grids: the same run folder, trained once
    shared = {c.run_dir() for c in table2_configs("paper")} & {
        c.run_dir() for c in ablation_configs("cnn10", 16000, "paper")
    }
    assert len(shared) == 3


def test_run_grid_keeps_failures_as_rows(tmp_path: Path, monkeypatch):
    configs = expand_grid({"model": "cnn6", "out_dir": str(tmp_path), "iterations": 5}, {"seed": [0, 1, 2]})
    calls = []

    def fake_run_trainings(cfgs, redo=False, **kwargs):
        calls.append((len(cfgs), redo, kwargs))
        statuses = ["finished", "failed", "skipped"]
        return [
            RunOutcome(
                config=c,
                run_dir=c.run_dir(),
                status=s,
                seconds=1.5 if s != "skipped" else 0.0,
                error="RuntimeError: out of memory" if s == "failed" else None,
            )
            for c, s in zip(cfgs, statuses)
        ]

    monkeypatch.setattr(parallel, "run_trainings", fake_run_trainings)
    table = run_grid(configs + [configs[0]], redo=True, cpu_workers=1)  # a duplicate: trained once
    assert calls == [(3, True, {"cpu_workers": 1})]
    assert list(table["status"]) == ["finished", "failed", "skipped", "finished"]
    failed = table.iloc[1]
    assert failed["seed"] == 1 and "out of memory" in failed["error"]
    assert table["run_dir"].tolist()[:3] == [str(c.run_dir()) for c in configs]
    assert table["key"].tolist()[:3] == [c.key() for c in configs]
    assert set(table["setting"]) == {FULL_SETTING}
    assert run_grid([]).empty


def test_model_options_by_model():
    configs = apply_model_options(table2_configs("demo"), {"cnn10": {"channels": [8, 16, 32, 64]}})
    by_model = {c.model: c.model_options for c in configs}
    assert by_model["cnn10"] == {"channels": [8, 16, 32, 64]}
    assert by_model["cnn6"] == PROFILES["demo"].model_options["cnn6"]  # the profile's, untouched
    assert {c.model: c.model_options for c in table2_configs("paper")}["cnn6"] == {}
    assert apply_model_options(configs, None) == configs
    with pytest.raises(ValueError, match="unknown model"):
        apply_model_options(configs, {"cnn11": {}})


def test_fusion_configs_and_variants(tmp_path: Path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    # the demo trains three of the four variants; naming them all trains all
    assert [fusion_variant_of(c) for c in fusion_configs(a, b, 8000, "demo")] == PROFILES["demo"].fusion_variants
    assert len(fusion_configs(a, b, 8000, "paper")) == 3 * len(FUSION_VARIANTS)
    configs = fusion_configs(
        a, b, 8000, "demo", base={"out_dir": str(tmp_path)}, seeds=[0, 1], variants=list(FUSION_VARIANTS)
    )
    assert len(configs) == 2 * len(FUSION_VARIANTS)
    assert [fusion_variant_of(c) for c in configs[::2]] == list(FUSION_VARIANTS)
    first = configs[0]
    assert first.model == "fusion" and first.model_options == {"branch_a": str(a), "branch_b": str(b), "freeze": True}
    assert (
        first.sampler == "balanced" and first.ema and first.iterations == PROFILES["demo"].fusion_config["iterations"]
    )
    assert len({c.run_dir() for c in configs}) == len(configs)
    # a collected table holds model_options as JSON text
    row = {**configs[4].to_dict(), "model_options": json.dumps(configs[4].model_options)}
    assert fusion_variant_of(row) == "trainable, specA+MixUp"
    assert fusion_variant_of(table2_configs("demo")[0]) is None
    with pytest.raises(ValueError, match="unknown fusion variant"):
        fusion_configs(a, b, 8000, variants=["melted"])


def test_profile_notebook_parameters():
    assert profile_parameters("demo") == {"profile": "demo"}  # 03_train's own defaults are the demo's
    paper = profile_parameters("paper")
    assert paper["profile"] == "paper" and paper["iterations"] == 60_000 and paper["sample_rate"] == 16000
    TrainConfig.from_dict({k: v for k, v in paper.items() if k != "profile"})
    with pytest.raises(ValueError, match="profile"):
        profile_parameters("huge")


def test_grid_notebook_settings_split_config_and_scheduling():
    base, parallel = grid.grid_notebook_settings(
        "demo",
        "demo",
        "data",
        "data/cache",
        "runs/grid",
        {"iterations": 7},
        cpu_workers=2,
        threads_per_run=None,
        max_per_gpu=3,
        via_notebook=True,
    )
    assert base == {
        "corpus": "demo",
        "data_dir": "data",
        "cache_dir": "data/cache",
        "out_dir": "runs/grid/demo",
        "iterations": 7,
    }
    assert parallel == {
        "cpu_workers": 2,
        "threads_per_run": None,
        "max_per_gpu": 3,
        "via": "notebook",
        "executor": "local",
        "slurm": None,
    }
    with pytest.raises(ValueError):
        grid.grid_notebook_settings("nope", "demo", "data", "c", "r", {}, None, None, 1, False)
    _, on_slurm = grid.grid_notebook_settings(
        "demo", "demo", "data", "c", "r", {}, None, None, 1, False, executor="slurm", slurm_config="slurm.json"
    )
    assert on_slurm["executor"] == "slurm" and on_slurm["slurm"] == "slurm.json"
    with pytest.raises(ValueError, match="executor"):
        grid.grid_notebook_settings("demo", "demo", "data", "c", "r", {}, None, None, 1, False, executor="pbs")
    with pytest.raises(ValueError, match="executor='slurm'"):
        grid.grid_notebook_settings(
            "demo", "demo", "data", "c", "r", {}, None, None, 1, False, slurm_config="slurm.json"
        )


@pytest.mark.parametrize("profile", ["demo", "paper"])
def test_the_training_notebook_run_is_table2_first_run(profile):
    """`make demo`/`make paper`: 03_train's run is Table 2's first run of its model, so 04 reuses it."""
    import nbformat

    from helpers.experiments.notebooks import NOTEBOOK_DIR

    nb = nbformat.read(NOTEBOOK_DIR / "03_train.ipynb", as_version=4)
    params: dict = {}
    exec(next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", [])), {}, params)
    params.update(profile_parameters(profile, corpus="demo"), corpus="demo")  # what papermill injects
    from_notebook = TrainConfig.from_namespace(params)
    table2_run = grid.shared_train_run(profile, "demo")
    assert from_notebook.key() == table2_run.key()
    assert from_notebook.run_dir() == table2_run.run_dir() == Path(params["run_dir"])
    assert table2_run in table2_configs(profile, {"corpus": "demo", "out_dir": table2_run.out_dir})


def test_hierarchy_comparison_shares_the_flat_runs_and_the_paper_profile_compares_cnn10_16k():
    from helpers.experiments.hierarchy import hierarchy_configs

    for profile in ("demo", "paper"):
        configs = hierarchy_configs(profile, {"corpus": "demo", "out_dir": "runs/x"})
        model, rate = PROFILES[profile].hierarchy_run
        flat_ablation = {
            c.run_dir() for c in ablation_configs(model, rate, profile, base={"corpus": "demo", "out_dir": "runs/x"})
        }
        assert {c.run_dir() for c in configs["flat"]} <= flat_ablation  # the ablation's full-recipe runs
        assert [c.seed for c in configs["flat"]] == PROFILES[profile].ablation_seeds
        assert all(c.hierarchy == "multitask" for c in configs["multi-task"])
        assert {c.corpus for c in configs["detector"]} == {"demo+call-detector"}
        assert {c.corpus for c in configs["species"]} == {"demo+calls-only"}
        assert len({c.run_dir() for group in configs.values() for c in group}) == 4 * len(configs["flat"])
    paper = hierarchy_configs("paper", {"corpus": "demo", "out_dir": "runs/x"})["flat"][0]
    assert (paper.model, paper.sample_rate, paper.model_options) == ("cnn10", 16000, {})


def test_a_grid_notebook_sets_itself_up_from_its_namespace():
    from helpers.experiments.grid import GridNotebook, grid_notebook_settings

    namespace = {
        "profile": "demo",
        "corpus": "synthetic",
        "runs_root": "/tmp/r",
        "overrides": {"iterations": 5},
        "cpu_workers": 2,
        "via_notebook": True,
        "unrelated": 1,
    }
    setup = GridNotebook.from_namespace(namespace)
    assert setup.corpus == "synthetic" and setup.max_per_gpu == 4  # given, and a default
    assert (setup.base, setup.parallel) == grid_notebook_settings(
        "demo", "synthetic", "../data", "../data/cache", "/tmp/r", {"iterations": 5}, 2, None, 4, True
    )
    assert setup.base["out_dir"] == "/tmp/r/demo" and setup.parallel["via"] == "notebook"
    with pytest.raises(ValueError, match="profile 'huge' is unknown"):
        GridNotebook.from_namespace({"profile": "huge"}).settings
