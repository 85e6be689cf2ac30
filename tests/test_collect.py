"""Collectors: run folders (finished, failed, unfinished) to one table, summaries over seeds,
and the paper's tables. Run folders are fabricated in the layout train() writes: no training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.experiments.collect import (
    MIN_SEEDS_FOR_CI,
    ablation_gains,
    ablation_models,
    collect_runs,
    fusion_table,
    summarise,
    table2,
    table3,
)
from helpers.experiments.grid import ABLATION_SETTINGS, FULL_SETTING
from helpers.training.config import TrainConfig


def _split(uar: float, mAP: float, selected: bool) -> dict:
    return {"n": 10, "uar": uar, "map": mAP, "accuracy": uar, "selected_on_this_split": selected}


def make_run(
    out_dir: Path,
    status: str = "finished",
    uar: float = 0.9,
    mAP: float = 0.95,
    last_uar: float = 0.8,
    test_uar: float | None = 0.85,
    setting: str = FULL_SETTING,
    **config_kw,
) -> Path:
    """A run folder with the files train() (finished), run_trainings (failed) or an interrupted run leave."""
    values = {
        "model": "cnn10",
        "sample_rate": 8000,
        "seed": 0,
        "iterations": 100,
        "out_dir": str(out_dir),
        **ABLATION_SETTINGS[setting],
        **config_kw,
    }
    config = TrainConfig(**values)
    run = config.run_dir()
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    pd.DataFrame(
        {
            "step": [50, 100] if status == "finished" else [50],
            "train_loss": 1.0,
            "uar_plain": 0.5,
            "map_plain": 0.5,
            "uar_ema": 0.5,
            "map_ema": 0.5,
        }
    ).to_csv(run / "history.csv", index=False)
    if status == "finished":
        test = None if test_uar is None else _split(test_uar, 0.9, False)
        kinds = ("plain", "ema") if config.ema else ("plain",)
        checkpoints = {}
        for kind in kinds:
            checkpoints[f"best_{kind}"] = {
                "step": 50,
                "selected_on": "devel",
                "splits": {"devel": _split(uar, mAP, True), "test": test},
            }
            checkpoints[f"last_{kind}"] = {
                "step": 100,
                "selected_on": None,
                "splits": {"devel": _split(last_uar, mAP - 0.05, False), "test": test},
            }
        (run / "metrics.json").write_text(
            json.dumps({"classes": ["a", "b"], "checkpoints": checkpoints, "n_parameters": 123})
        )
        (run / "record.json").write_text(json.dumps({"timings": {"features": 1.0, "training_loop": 42.5}}))
    elif status == "failed":
        (run / "failed.json").write_text(
            json.dumps({"status": "failed", "error_type": "RuntimeError", "message": "CUDA out of memory"})
        )
    return run


def test_collect_runs_rows_and_statuses(tmp_path: Path):
    make_run(tmp_path / "grid", seed=0)
    make_run(tmp_path / "grid", status="failed", seed=1)
    make_run(tmp_path / "grid" / "deeper", status="unfinished", seed=2)
    make_run(tmp_path / "grid", seed=3, setting="bal, specA+MixUp, no EMA", test_uar=None)
    df = collect_runs(tmp_path / "grid").set_index("seed")
    assert len(df) == 4
    assert df.loc[0, "status"] == "finished" and df.loc[1, "status"] == "failed" and df.loc[2, "status"] == "unfinished"
    assert "CUDA out of memory" in df.loc[1, "error"] and df.loc[1, "error"].startswith("RuntimeError")
    assert df.loc[2, "last_step"] == 50 and not df.loc[2, "resumable"]
    assert np.isnan(df.loc[1, "best_ema_devel_uar"]) and np.isnan(df.loc[2, "best_devel_uar"])
    fin = df.loc[0]
    assert fin["best_ema_devel_uar"] == 0.9 and fin["best_ema_devel_map"] == 0.95
    assert fin["last_ema_devel_uar"] == 0.8 and fin["best_ema_test_uar"] == 0.85 and fin["best_ema_step"] == 50
    assert fin["n_parameters"] == 123 and fin["train_seconds"] == 42.5 and fin["timing_features"] == 1.0
    assert fin["model"] == "cnn10" and fin["sample_rate"] == 8000 and fin["sampler"] == "balanced"
    assert fin["setting"] == FULL_SETTING and fin["weights"] == "ema" and fin["best_devel_uar"] == 0.9
    no_ema = df.loc[3]
    assert no_ema["weights"] == "plain" and no_ema["best_devel_uar"] == 0.9
    assert np.isnan(no_ema["best_ema_devel_uar"]) and np.isnan(no_ema["best_test_uar"])
    assert no_ema["setting"] == "bal, specA+MixUp, no EMA"
    # a list of paths, one a run folder itself
    assert len(collect_runs([tmp_path / "grid" / "deeper", fin["run_dir"]])) == 2
    assert collect_runs(tmp_path / "grid" / "deeper").iloc[0]["status"] == "unfinished"
    with pytest.raises(FileNotFoundError):
        collect_runs(tmp_path / "nowhere")


def test_summarise_mean_std_ci_and_counts(tmp_path: Path):
    for seed, uar in enumerate([0.8, 0.9, 1.0]):
        make_run(tmp_path, seed=seed, uar=uar)
    make_run(tmp_path, seed=7, status="failed")
    make_run(tmp_path, seed=8, status="unfinished")
    for seed in range(MIN_SEEDS_FOR_CI):  # identical values
        make_run(tmp_path, seed=seed, model="cnn6", uar=0.7)
    for seed, uar in enumerate([0.80, 0.85, 0.90, 0.95, 1.0]):
        make_run(tmp_path, seed=seed, model="resnet22", uar=uar)
    s = summarise(collect_runs(tmp_path), by=["model"], n_boot=500).set_index("model")
    row = s.loc["cnn10"]
    assert (row["n_finished"], row["n_failed"], row["n_unfinished"]) == (3, 1, 1)
    assert row["seeds"] == [0, 1, 2]
    assert row["best_devel_uar_mean"] == pytest.approx(0.9)
    assert row["best_devel_uar_std"] == pytest.approx(0.1)  # sample std, ddof=1
    assert (row["best_devel_uar_min"], row["best_devel_uar_max"]) == pytest.approx((0.8, 1.0))
    assert row["best_devel_uar_n"] == 3
    # three seeds: no bootstrap interval (10 distinct resamples mean little); the range says more
    assert np.isnan(row["best_devel_uar_ci_low"]) and np.isnan(row["best_devel_uar_ci_high"])
    five = s.loc["resnet22"]
    assert 0.8 <= five["best_devel_uar_ci_low"] <= 0.9 <= five["best_devel_uar_ci_high"] <= 1.0
    assert five["best_devel_uar_ci_low"] < five["best_devel_uar_ci_high"]
    same = s.loc["cnn6"]
    assert (same["best_devel_uar_ci_low"], same["best_devel_uar_ci_high"]) == pytest.approx((0.7, 0.7))
    assert same["best_devel_uar_std"] == pytest.approx(0.0)
    one = summarise(collect_runs(tmp_path), by=["model", "seed"], n_boot=100).set_index(["model", "seed"])
    assert np.isnan(one.loc[("cnn10", 0), "best_devel_uar_std"])
    assert one.loc[("cnn10", 7), "n_failed"] == 1 and one.loc[("cnn10", 7), "best_devel_uar_n"] == 0
    with pytest.raises(KeyError, match="no_such"):
        summarise(collect_runs(tmp_path), by=["no_such"])


def test_table2_beside_the_paper(tmp_path: Path):
    make_run(tmp_path, seed=0, uar=0.90)
    make_run(tmp_path, seed=1, uar=0.92)
    make_run(tmp_path, seed=2, status="failed")
    make_run(tmp_path, seed=0, model="cnn6", sample_rate=16000)  # not in the paper
    make_run(tmp_path, seed=0, setting="bal, specA")  # an ablation run: not a Table 2 row
    t = table2(collect_runs(tmp_path), n_boot=200)
    assert {
        "paper devel mAP",
        "paper devel UAR",
        "paper test UAR",
        "devel UAR, best (selected on devel: optimistic)",
        "devel mAP, last",
        "devel UAR, last",
        "test UAR, last",
    } <= set(t.columns)
    t = t.set_index("model")
    assert list(t.index[:3]) == ["ELM", "auDeep-SVM", "CNN6-8k"] and t.index[-1] == "CNN6-16k"
    row = t.loc["CNN10-8k"]
    assert row["paper devel UAR"] == 91.9 and row["paper test UAR"] == 90.6
    assert row["devel UAR, best (selected on devel: optimistic)"] == "91.0 ± 1.4 (90.0-92.0, n=2)"
    assert (row["seeds finished"], row["failed"]) == (2, 1) and row["weights"] == "EMA"
    assert t.loc["ResNet22-8k", "devel UAR, last"] == "" and t.loc["ResNet22-8k", "seeds finished"] == 0
    assert pd.isna(t.loc["CNN6-16k", "paper devel UAR"])
    assert row["parameters (M)"] == pytest.approx(123 / 1e6, abs=0.01) and row["training time (s)"] == 42.5
    numbers = table2(collect_runs(tmp_path), as_text=False, n_boot=0).set_index("model")
    assert numbers.loc["CNN10-8k", "devel UAR, best (selected on devel: optimistic)"] == pytest.approx(91.0)


def test_table3_beside_the_paper(tmp_path: Path):
    for setting in ("no-bal, no-aug", "bal, specA+MixUp, no EMA", "+ pitch shift"):
        make_run(tmp_path, setting=setting, model="resnet22", uar=0.8)
    t = table3(collect_runs(tmp_path), n_boot=100)
    assert {"paper devel mAP", "paper devel UAR", "devel mAP, best (selected on devel: optimistic)"} <= set(t.columns)
    r22 = t[t["model"] == "ResNet22-8k"].set_index("setting")
    assert list(r22.index) == list(ABLATION_SETTINGS)[:6] + ["+ pitch shift"]
    assert r22.loc["no-bal, no-aug", "paper devel UAR"] == 78.7
    assert r22.loc["no-bal, no-aug", "devel UAR, best (selected on devel: optimistic)"] == "80.0 (n=1)"
    assert r22.loc["bal, specA+MixUp, no EMA", "weights"] == "plain (no EMA)"
    assert pd.isna(r22.loc["+ pitch shift", "paper devel UAR"])
    assert r22.loc["bal, MixUp", "seeds finished"] == 0 and r22.loc["bal, MixUp", "weights"] == "EMA"
    cnn = t[t["model"] == "CNN10-16k"]
    assert len(cnn) == 6 and cnn["paper devel mAP"].tolist()[-2] == 97.0
    assert set(table3(collect_runs(tmp_path), paper_models=False, n_boot=0)["model"]) == {"ResNet22-8k"}
    (tmp_path / "empty").mkdir()
    empty = collect_runs(tmp_path / "empty")
    assert empty.empty and "status" in empty
    assert len(table3(empty)) == 12 and len(table2(empty)) == 9


def test_fusion_table_beside_single_models(tmp_path: Path):
    make_run(tmp_path / "grid", model="resnet22", uar=0.88)
    make_run(tmp_path / "grid", model="cnn10", uar=0.90)
    branches = {"branch_a": str(tmp_path / "a.pt"), "branch_b": str(tmp_path / "b.pt")}
    fusion = tmp_path / "grid" / "fusion"
    make_run(fusion, model="fusion", uar=0.93, model_options={**branches, "freeze": True})
    make_run(fusion, model="fusion", status="failed", model_options={**branches, "freeze": False})
    make_run(
        fusion, model="fusion", status="unfinished", model_options={**branches, "freeze": True}, setting="bal, no-aug"
    )
    runs = collect_runs(tmp_path / "grid")
    assert runs["fusion_variant"].notna().sum() == 3
    # fusion runs are neither Table 2 nor Table 3 rows
    assert "Fusion-8k" not in set(table2(runs, n_boot=0)["model"])
    assert not table3(runs, n_boot=0)["model"].str.startswith("Fusion").any()
    t = fusion_table(runs, [("resnet22", 8000), ("cnn10", 8000)], n_boot=0)
    assert t["variant"].tolist() == ["single model, specA+MixUp"] * 2 + [
        "frozen, specA+MixUp",
        "frozen, no-aug",
        "trainable, specA+MixUp",
    ]
    frozen = t.set_index("variant").loc["frozen, specA+MixUp"]
    assert frozen["model"] == "fusion ResNet22-8k + CNN10-8k"
    assert (
        frozen["paper devel UAR"] == 91.6 and frozen["devel UAR, best (selected on devel: optimistic)"] == "93.0 (n=1)"
    )
    statuses = t.set_index("variant")[["seeds finished", "failed", "unfinished"]]
    assert statuses.loc["trainable, specA+MixUp"].tolist() == [0, 1, 0]
    assert statuses.loc["frozen, no-aug"].tolist() == [0, 0, 1]
    assert t.iloc[0]["paper devel UAR"] == 91.2 and t.iloc[1]["paper devel UAR"] == 91.9


def test_ablation_models_and_gains(tmp_path: Path):
    for setting, uar in (("bal, no-aug", 0.80), (FULL_SETTING, 0.90)):
        for seed, delta in ((0, 0.0), (1, 0.02)):
            make_run(tmp_path, setting=setting, model="resnet22", seed=seed, uar=uar + delta)
    make_run(tmp_path, model="cnn6")  # a Table 2 run only: not an ablated model
    runs = collect_runs(tmp_path)
    assert ablation_models(runs) == [("resnet22", 8000, 1.0)]
    t3 = table3(runs, paper_models=False, models=ablation_models(runs), n_boot=0)
    assert set(t3["model"]) == {"ResNet22-8k"}
    gains = ablation_gains(summarise(runs, n_boot=0))
    r22 = gains[gains["model"] == "ResNet22-8k"].set_index("setting")
    assert list(r22.index) == ["bal, no-aug", FULL_SETTING]
    assert r22.loc[FULL_SETTING, "ours_mean"] == pytest.approx(91.0)
    assert r22.loc[FULL_SETTING, "gain over bal, no-aug"] == pytest.approx(10.0)
    assert r22.loc[FULL_SETTING, "paper gain over bal, no-aug"] == pytest.approx(91.2 - 82.6)
    assert r22.loc["bal, no-aug", "ours_std"] == pytest.approx(100 * np.std([0.80, 0.82], ddof=1))


def test_narrowed_networks_get_their_own_labelled_rows_beside_the_paper(tmp_path: Path):
    from helpers.experiments.grid import model_label

    assert model_label("cnn10", 8000) == "CNN10-8k" and model_label("cnn10", 8000, 0.25) == "CNN10-8k (¼ width)"
    assert model_label("cnn10", 8000, 0.3) == "CNN10-8k (0.3x width)"
    make_run(tmp_path, seed=0, uar=0.90)  # the paper's CNN10-8k
    for seed, uar in enumerate([0.80, 0.84]):
        make_run(tmp_path, seed=seed, uar=uar, model_options={"width": 0.25})
    for seed in range(3):
        make_run(tmp_path, seed=seed, uar=0.7, model_options={"width": 0.125}, setting="bal, no-aug")
    runs = collect_runs(tmp_path)
    assert sorted(runs["width"]) == [0.125] * 3 + [0.25] * 2 + [1.0]
    t = table2(runs, n_boot=0).set_index("model")
    names = list(t.index)
    # the narrow row follows the paper's row of its model and carries the paper's numbers beside it
    assert names[names.index("CNN10-8k") + 1] == "CNN10-8k (¼ width)"
    narrow = t.loc["CNN10-8k (¼ width)"]
    assert (
        narrow["paper devel UAR"] == 91.9
        and narrow["devel UAR, best (selected on devel: optimistic)"] == "82.0 ± 2.8 (80.0-84.0, n=2)"
    )
    assert t.loc["CNN10-8k", "devel UAR, best (selected on devel: optimistic)"] == "90.0 (n=1)"  # not mixed
    assert ablation_models(runs) == [("cnn10", 8000, 0.125)]
    t3 = table3(runs, paper_models=False, models=ablation_models(runs), n_boot=0)
    assert set(t3["model"]) == {"CNN10-8k (⅛ width)"}
    assert t3.set_index("setting").loc["bal, no-aug", "seeds finished"] == 3
    gains = ablation_gains(summarise(runs, n_boot=0))
    assert set(gains["model"]) == {"CNN10-8k", "CNN10-8k (¼ width)", "CNN10-8k (⅛ width)"}


def test_multitask_runs_and_two_stage_stages_stay_out_of_the_paper_tables(tmp_path: Path):
    make_run(tmp_path, seed=0, uar=0.90)
    make_run(tmp_path, seed=0, uar=0.10, hierarchy="multitask")
    make_run(tmp_path, seed=0, uar=0.20, corpus="demo+call-detector")
    make_run(tmp_path, seed=0, uar=0.30, corpus="demo+calls-only")
    runs = collect_runs(tmp_path)
    assert sorted(runs["form"]) == ["call-detector", "calls-only", "flat", "multi-task"]
    row = table2(runs, n_boot=0).set_index("model").loc["CNN10-8k"]
    assert row["devel UAR, best (selected on devel: optimistic)"] == "90.0 (n=1)" and row["seeds finished"] == 1
    t3 = table3(runs, paper_models=False, n_boot=0)
    assert t3.set_index("setting").loc[FULL_SETTING, "seeds finished"] == 1
