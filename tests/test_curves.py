"""helpers.evaluation.curves: is a devel curve flat at the end of training?"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.evaluation.curves import (
    curve_flatness,
    devel_curve,
    flatness_summary,
    flatness_table,
    run_histories,
    training_length,
)


def _history(uar_ema, uar_plain=None, every=25):
    steps = np.arange(1, len(uar_ema) + 1) * every
    plain = uar_plain if uar_plain is not None else [0.1] * len(uar_ema)
    return pd.DataFrame(
        {"step": steps, "train_loss": 1.0, "uar_plain": plain, "map_plain": 0.5, "uar_ema": uar_ema, "map_ema": 0.5}
    )


def test_devel_curve_takes_ema_where_it_exists_and_plain_before():
    history = _history([np.nan, np.nan, 0.6, 0.7], uar_plain=[0.2, 0.3, 0.4, 0.5])
    curve = devel_curve(history)
    assert curve["uar"].tolist() == [0.2, 0.3, 0.6, 0.7]
    no_ema = history.drop(columns=["uar_ema", "map_ema"])
    assert devel_curve(no_ema)["uar"].tolist() == [0.2, 0.3, 0.4, 0.5]
    with pytest.raises(KeyError, match="'step' and 'uar_plain'"):
        devel_curve(history.drop(columns=["uar_plain"]))


def test_rising_and_flat_curves_are_told_apart():
    # 16 evaluations, 400 steps: windows are steps 325-400 and 225-300 (four evaluations each)
    rising = _history(list(np.linspace(0.3, 0.9, 16)))
    flat = _history([0.3, 0.5, 0.6, 0.7] + [0.8, 0.82, 0.78, 0.8] * 3)
    r = curve_flatness(rising)
    f = curve_flatness(flat)
    assert r["flat"] is False and r["gain"] == pytest.approx(4 * 0.6 / 15, abs=1e-9)
    assert f["flat"] is True and abs(f["gain"]) < 1e-9
    assert r["last step"] == 400 and r["final devel UAR"] == pytest.approx(0.9)
    # a drop at the end is flat by this test (the tolerance bounds the gain, not its size)
    falling = _history(list(np.linspace(0.9, 0.5, 16)))
    assert curve_flatness(falling)["flat"] is True
    # the tolerance decides: the rising curve passes with a loose one
    assert curve_flatness(rising, tolerance=0.2)["flat"] is True


def test_noise_of_single_evaluations_is_averaged_out():
    rng = np.random.default_rng(0)
    noisy = _history(list(0.8 + rng.choice([-0.05, 0.05], size=40)), every=10)
    assert curve_flatness(noisy)["flat"] is True  # single points jump by 0.1


def test_too_few_evaluations_and_bad_tail_are_reported():
    one = _history([0.5], every=400)
    assert curve_flatness(one)["flat"] is None
    assert curve_flatness(_history([np.nan, np.nan], uar_plain=[np.nan, np.nan]))["flat"] is None
    with pytest.raises(ValueError, match="tail=0.8"):
        curve_flatness(one, tail=0.8)


def test_table_and_summary_name_the_rising_runs():
    table = flatness_table(
        {"A": _history(list(np.linspace(0.3, 0.9, 16))), "B": _history([0.8] * 16), "C": _history([0.5], every=400)}
    )
    assert table.loc["A", "verdict"] == "still rising" and table.loc["B", "verdict"] == "flat"
    assert table.loc["C", "verdict"] == "too few evaluations"
    text = flatness_summary(table)
    assert text.startswith("1 of 3 curves are flat") and "still rising: A (+16.0 points)" in text
    assert "cannot tell (not started, or too few evaluations): C" in text
    # an all-bool column (no unknown run) is read the same way
    two = flatness_table({"A": _history(list(np.linspace(0.3, 0.9, 16))), "B": _history([0.8] * 16)})
    assert flatness_summary(two).startswith("1 of 2 curves are flat")


def test_histories_are_read_from_run_folders_and_a_missing_one_is_listed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _history([0.8] * 16).to_csv(tmp_path / "a" / "history.csv", index=False)
    histories = run_histories({"A": tmp_path / "a", "B": tmp_path / "b"})
    assert histories["B"] is None and len(histories["A"]) == 16
    table = flatness_table(histories)
    assert table.loc["A", "verdict"] == "flat" and table.loc["B", "verdict"] == "no history"
    assert "cannot tell (not started, or too few evaluations): B" in flatness_summary(table)


def test_training_length_says_why_the_run_stopped():
    flat = _history([0.3, 0.5, 0.6, 0.7] + [0.8, 0.82, 0.78, 0.8] * 3)
    rising = _history(list(np.linspace(0.3, 0.9, 16)))
    stopped = {
        "steps": 400,
        "iterations": 800,
        "stop_when_flat": True,
        "min_iterations": 300,
        "stopped_when_flat": True,
    }
    text = training_length(flat, stopped)
    assert text.startswith("Trained 400 steps, stopped at the first devel evaluation from step 300 on")
    assert "cap was 800" in text and "+0.0 points" in text and text.endswith(": flat.")
    capped = {**stopped, "iterations": 400, "stopped_when_flat": False}
    text = training_length(rising, capped)
    assert "reached the cap of 400 steps" in text and "+16.0 points" in text and text.endswith("still rising.")
    assert training_length(rising, None).startswith("Trained 400 steps, a fixed number of steps")
    assert "too few evaluations" in training_length(_history([0.5]), None)
