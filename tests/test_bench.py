"""The benchmark command: its rows hold what the table promises, the ratios are the ratios of
the numbers beside them, and the CLI writes the documented JSON. Nothing here asserts a speed."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from helpers import bench
from helpers.bench import (ROW_KEYS, format_evaluation, format_table, measure_evaluation,
                           measure_feature_extraction, measure_matmul_tflops, measure_training)
from helpers.models.registry import create_model
from helpers.models.cost import forward_flops
from tests.conftest import REPO_ROOT

# A narrow CNN10 keeps each measurement to seconds on 2 cores (as in tests/test_train.py).
TINY = {"channels": [8, 16, 32, 64]}
POSITIVE = ("s_per_step", "clips_per_s", "gflop_per_step", "achieved_tflops", "matmul_tflops", "efficiency")


@pytest.fixture(scope="module")
def row() -> dict:
    return measure_training("cnn10", 8000, "cpu", steps=2, warmup=1, model_options=TINY, matmul_size=512)


def test_training_row_has_every_documented_field(row):
    assert set(row) == set(ROW_KEYS)
    assert (row["model"], row["sample_rate"], row["device"], row["precision"]) == ("cnn10", 8000, "cpu", "fp32")
    assert (row["batch"], row["steps"], row["warmup"]) == (32, 2, 1)
    assert row["model_options"] == TINY
    assert row["matmul"] == "fp32 512^3"
    for key in POSITIVE:
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert math.isfinite(row["loss"])
    assert row["peak_mib"] is None or row["peak_mib"] >= 0


def test_training_row_ratios_are_consistent(row):
    assert row["efficiency"] == pytest.approx(row["achieved_tflops"] / row["matmul_tflops"])
    assert row["achieved_tflops"] == pytest.approx(row["gflop_per_step"] / row["s_per_step"] / 1e3)
    assert row["clips_per_s"] == pytest.approx(row["batch"] / row["s_per_step"])
    # 3 x forward FLOPs of one 75 x 64 clip (8 kHz) x batch 32
    expected = 3 * forward_flops(create_model("cnn10", n_classes=5, **TINY), 75) * 32 / 1e9
    assert row["gflop_per_step"] == pytest.approx(expected)


def test_measure_training_rejects_bad_counts():
    with pytest.raises(ValueError, match="steps"):
        measure_training("cnn10", 8000, "cpu", steps=0, warmup=1, model_options=TINY)


def test_unknown_models_are_named():
    with pytest.raises(ValueError, match="nope.*valid names"):
        bench.check_models(["cnn10", "nope"])
    assert bench.check_models(None) == list(bench.MODELS)


def test_matmul_reference_is_positive():
    assert measure_matmul_tflops("cpu", size=128, repeats=1) > 0


def test_format_table_has_a_header_and_one_line_per_row(row):
    lines = format_table([row, dict(row, model="cnn6", peak_mib=None)]).splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:3] == ["model", "rate", "device"]
    assert lines[1].split()[:5] == ["cnn10", "8000", "cpu", "fp32", "32"]
    assert lines[2].startswith("cnn6") and lines[2].endswith("-")
    assert f"{row['efficiency']:.1%}" in lines[1]
    assert format_table([]).splitlines() == lines[:1]


def test_feature_extraction_reports_each_stage():
    result = measure_feature_extraction("cpu", n_clips=4, pipeline_rates=(8000,))
    assert result["n_clips"] == 4 and result["fft_precision"] == "float64"
    assert result["logmel_clips_per_s"] > 0
    assert set(result["pipeline_clips_per_s"]) == {"8000"}
    assert all(v > 0 for v in result["pipeline_clips_per_s"].values())
    assert measure_feature_extraction("cpu", n_clips=2, pipeline=False)["pipeline_clips_per_s"] is None


def test_evaluation_extrapolates_and_says_so():
    result = measure_evaluation("cpu", n_clips=8, model_options=TINY)
    assert result["scores_shape"] == [8, 5]
    assert result["extrapolated"] and result["target_clips"] == 7000
    assert result["seconds_for_target"] == pytest.approx(result["seconds"] * 7000 / 8)
    assert "EXTRAPOLATED from 8 clips" in format_evaluation(result)


def test_evaluation_times_each_scoring_precision():
    for precision in ("fp32", "int8", "bf16"):
        result = measure_evaluation("cpu", n_clips=4, model_options=TINY, precision=precision)
        assert result["precision"] == precision and result["scores_shape"] == [4, 5]
        assert result["batch_size"] == 64  # the CPU's default scoring batch
    assert bench.evaluation_precisions(bench.resolve_device("cpu"), "resnet22")[-1] != "int8"


def test_cpu_amp_row_is_timed_against_a_bf16_matmul():
    row = measure_training("cnn10", 8000, "cpu", steps=1, warmup=0, model_options=TINY, matmul_size=256,
                           cpu_amp=True)
    assert row["precision"] == "bf16-autocast" and row["matmul"].startswith("bf16")
    assert math.isfinite(row["loss"]) and row["efficiency"] == pytest.approx(row["achieved_tflops"] / row["matmul_tflops"])


def test_main_delegates_to_the_command_line():
    assert bench.main(["--models", "nope"]) == 2


def test_cli_prints_one_table_and_writes_the_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "bench", "--models", "cnn10", "--rates", "8000", "--steps", "1",
         "--warmup", "0", "--no-features", "--eval-clips", "16", "--threads", "2",
         "--model-options", json.dumps(TINY), "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert {"device", "device_name", "torch_threads", "settings", "columns", "rows", "feature_extraction",
            "evaluation", "environment", "arguments"} <= set(data)
    assert data["torch_threads"] == 2 and data["feature_extraction"] is None
    assert data["columns"] == ROW_KEYS
    assert len(data["rows"]) == 1 and set(data["rows"][0]) == set(ROW_KEYS)
    assert data["rows"][0]["model_options"] == TINY
    assert [e["precision"] for e in data["evaluation"]] == bench.evaluation_precisions(bench.resolve_device("cpu"))
    assert all(e["n_clips"] == 16 and e["extrapolated"] for e in data["evaluation"])
    lines = proc.stdout.splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("model ")]
    assert len(header) == 1 and lines[header[0] + 1].startswith("cnn10")
    assert "EXTRAPOLATED" in proc.stdout and f"wrote {out}" in proc.stdout
