"""The benchmark command: its rows hold what the table promises, the ratios are the ratios of
the numbers beside them, and the CLI writes the documented JSON. Nothing here asserts a speed."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from helpers import bench
from helpers.bench import cli as bench_cli, kernels as bench_kernels
from helpers.bench import (
    ROW_KEYS,
    build_parser,
    ceiling_warning,
    conv_flops,
    format_evaluation,
    format_row,
    format_table,
    measure_ceiling,
    measure_conv_tflops,
    measure_evaluation,
    measure_feature_extraction,
    measure_matmul_tflops,
    measure_training,
    pick_ceiling,
)
from helpers.models.registry import create_model
from helpers.models.cost import forward_flops
from tests.conftest import REPO_ROOT

# A narrow CNN10 keeps each measurement to seconds on 2 cores (as in tests/test_train.py).
TINY = {"channels": [8, 16, 32, 64]}
POSITIVE = (
    "s_per_step",
    "clips_per_s",
    "gflop_per_step",
    "achieved_tflops",
    "matmul_tflops",
    "conv_tflops",
    "ceiling_tflops",
    "efficiency",
)
#: Small reference kernels: (batch, channels, side) of the convolution, side of the matmul.
SMALL_CONV = (2, 64, 16)


@pytest.fixture(scope="module")
def row() -> dict:
    return measure_training(
        "cnn10", 8000, "cpu", steps=2, warmup=1, model_options=TINY, matmul_size=512, conv_shape=SMALL_CONV
    )


@pytest.mark.slow
def test_training_row_has_every_documented_field(row):
    assert set(row) == set(ROW_KEYS)
    assert (row["model"], row["sample_rate"], row["device"], row["precision"]) == ("cnn10", 8000, "cpu", "fp32")
    assert (row["batch"], row["steps"], row["warmup"]) == (32, 2, 1)
    assert row["model_options"] == TINY
    assert row["matmul"] == "fp32 512^3"
    assert row["conv"] == "fp32 3x3 64->64 ch, 2x16x16, channels-last"  # the step's layout (TrainConfig default)
    assert row["ceiling"] in ("matmul", "conv") and row["above_ceiling"] is (row["efficiency"] > 1)
    for key in POSITIVE:
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert math.isfinite(row["loss"])
    assert row["peak_mib"] is None or row["peak_mib"] >= 0


def test_training_row_ratios_are_consistent(row):
    assert row["ceiling_tflops"] == max(row["matmul_tflops"], row["conv_tflops"])
    assert row["ceiling_tflops"] == row[f"{row['ceiling']}_tflops"]
    assert row["efficiency"] == pytest.approx(row["achieved_tflops"] / row["ceiling_tflops"])
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


def test_reference_kernels_are_positive():
    assert measure_matmul_tflops("cpu", size=128, repeats=1) > 0
    for channels_last in (True, False):
        assert measure_conv_tflops("cpu", shape=(1, 16, 8), channels_last=channels_last, repeats=1) > 0
    assert conv_flops(2, 64, 16) == 2 * (2 * 16 * 16) * (64 * 64 * 9)  # 2 x MACs


def test_ceiling_is_the_fastest_kernel_measured(monkeypatch):
    assert pick_ceiling({"matmul": 0.2, "conv": 0.3}) == ("conv", 0.3)
    assert pick_ceiling({"matmul": 0.4, "conv": 0.3}) == ("matmul", 0.4)
    with pytest.raises(ValueError):
        pick_ceiling({})
    seen = []

    def fake(name, tflops):
        def measure(device, dtype=None, **kwargs):
            seen.append((name, dtype, kwargs))
            return tflops

        return measure

    for matmul, conv, winner in ((0.2, 0.3, "conv"), (0.5, 0.3, "matmul")):
        seen.clear()
        # measure_ceiling looks the kernels up in its own module, helpers.bench.kernels
        monkeypatch.setattr(bench_kernels, "measure_matmul_tflops", fake("matmul", matmul))
        monkeypatch.setattr(bench_kernels, "measure_conv_tflops", fake("conv", conv))
        result = measure_ceiling("cpu", torch.bfloat16, channels_last=False, matmul_size=64, conv_shape=(1, 8, 4))
        assert (result["ceiling"], result["ceiling_tflops"]) == (winner, max(matmul, conv))
        assert (result["matmul_tflops"], result["conv_tflops"]) == (matmul, conv)
        assert result["matmul"] == "bf16 64^3" and result["conv"] == "bf16 3x3 8->8 ch, 1x4x4, NCHW"
        # both kernels measured, in the precision and layout asked for
        assert [name for name, _, _ in seen] == ["matmul", "conv"]
        assert all(dtype == torch.bfloat16 for _, dtype, _ in seen)
        assert seen[1][2]["channels_last"] is False and seen[1][2]["shape"] == (1, 8, 4)


@pytest.mark.slow
def test_a_step_above_its_ceiling_is_flagged_not_reported(monkeypatch, capsys):
    """A fake, absurdly slow ceiling: the step outruns it, and the row, table and CLI say the
    ceiling is wrong instead of printing the ratio as a result."""
    monkeypatch.setattr(bench_kernels, "measure_matmul_tflops", lambda *a, **k: 1e-9)
    monkeypatch.setattr(bench_kernels, "measure_conv_tflops", lambda *a, **k: 2e-9)
    slow = measure_training("cnn6", 8000, "cpu", steps=1, warmup=0, model_options=TINY)
    assert slow["ceiling"] == "conv" and slow["ceiling_tflops"] == 2e-9
    assert slow["efficiency"] > 1 and slow["above_ceiling"] is True
    warning = ceiling_warning(slow)
    assert warning.startswith("WARNING: cnn6 8000 fp32") and "CEILING WAS MEASURED WRONG" in warning
    line = format_row(slow)
    assert bench.ABOVE_CEILING_MARK + f"{slow['efficiency']:.1%}" in line
    lines = format_table([slow]).splitlines()
    assert len(lines) == 3 and lines[2] == warning
    bench_cli._print_row(slow)
    assert capsys.readouterr().out.splitlines() == [line, warning]
    # a row at or under its ceiling has neither mark nor warning
    fine = dict(slow, ceiling_tflops=1.0, efficiency=0.5, above_ceiling=False)
    assert ceiling_warning(fine) is None and bench.ABOVE_CEILING_MARK not in format_row(fine)


def test_format_table_has_a_header_and_one_line_per_row(row):
    lines = format_table([row, dict(row, model="cnn6", peak_mib=None)]).splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:3] == ["model", "rate", "device"]
    assert lines[1].split()[:5] == ["cnn10", "8000", "cpu", "fp32", "32"]
    assert lines[2].startswith("cnn6") and lines[2].endswith("-")
    assert f"{row['efficiency']:.1%}" in lines[1] and row["ceiling"] in lines[1].split()
    assert ["matmul", "TF/s", "conv", "TF/s", "ceiling", "eff."] == lines[0].split()[9:15]
    assert format_table([]).splitlines() == lines[:1]


@pytest.mark.slow
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


@pytest.mark.slow
def test_evaluation_times_each_scoring_precision():
    for precision in ("fp32", "int8", "bf16"):
        result = measure_evaluation("cpu", n_clips=4, model_options=TINY, precision=precision)
        assert result["precision"] == precision and result["scores_shape"] == [4, 5]
        assert result["batch_size"] == 64  # the CPU's default scoring batch
    assert bench.evaluation_precisions(bench.resolve_device("cpu"), "resnet22")[-1] != "int8"


@pytest.mark.slow
def test_cpu_amp_row_is_timed_against_bf16_kernels():
    row = measure_training(
        "cnn10",
        8000,
        "cpu",
        steps=1,
        warmup=0,
        model_options=TINY,
        matmul_size=256,
        cpu_amp=True,
        conv_shape=(1, 32, 8),
    )
    assert row["precision"] == "bf16-autocast"
    assert row["matmul"].startswith("bf16") and row["conv"].startswith("bf16")
    assert math.isfinite(row["loss"]) and row["efficiency"] == pytest.approx(
        row["achieved_tflops"] / row["ceiling_tflops"]
    )


#: Every bench option with a value that is not its default, and what it parses to.
EVERY_OPTION = {
    "models": (["--models", "cnn6", "cnn10"], ["cnn6", "cnn10"]),
    "rates": (["--rates", "8000"], [8000]),
    "steps": (["--steps", "7"], 7),
    "warmup": (["--warmup", "0"], 0),
    "device": (["--device", "cpu"], "cpu"),
    "threads": (["--threads", "2"], 2),
    "json": (["--json", "out/b.json"], "out/b.json"),
    "cpu_amp": (["--cpu-amp"], True),
    "eval_clips": (["--eval-clips", "16"], 16),
    "feature_clips": (["--feature-clips", "8"], 8),
    "no_features": (["--no-features"], True),
    "no_eval": (["--no-eval"], True),
    "model_options": (["--model-options", json.dumps(TINY)], TINY),
}


def test_parser_round_trips_every_option():
    parser = build_parser()
    assert parser.prog == "python -m helpers bench"
    dests = {a.dest for a in parser._actions if a.dest != "help"}
    assert dests == set(EVERY_OPTION), "a bench option without a test here, or a test for a lost option"
    defaults = vars(parser.parse_args([]))
    assert defaults == {
        "models": None,
        "rates": [16000, 8000],
        "steps": None,
        "warmup": None,
        "device": "auto",
        "threads": None,
        "json": None,
        "cpu_amp": False,
        "eval_clips": None,
        "feature_clips": 256,
        "no_features": False,
        "no_eval": False,
        "model_options": None,
    }
    argv = [text for flags, _ in EVERY_OPTION.values() for text in flags]
    parsed = vars(parser.parse_args(argv))
    assert parsed == {dest: value for dest, (_, value) in EVERY_OPTION.items()}
    for dest, (flags, value) in EVERY_OPTION.items():  # each alone changes only itself
        assert vars(parser.parse_args(flags)) == dict(defaults, **{dest: value}), dest
        assert value != defaults[dest], dest


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rates", "11025"], "invalid choice"),
        (["--model-options", "[8, 16]"], "expected a JSON object"),
        (["--model-options", "{bad"], "not valid JSON"),
        (["--device", "tpu"], "invalid choice"),
    ],
)
def test_parser_rejects_bad_values(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_main_reports_unknown_models():
    assert bench.main(["--models", "nope"]) == 2


@pytest.mark.slow
def test_cli_prints_one_table_and_writes_the_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers",
            "bench",
            "--models",
            "cnn10",
            "--rates",
            "8000",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--no-features",
            "--eval-clips",
            "16",
            "--threads",
            "2",
            "--model-options",
            json.dumps(TINY),
            "--json",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert {
        "device",
        "device_name",
        "torch_threads",
        "settings",
        "columns",
        "rows",
        "feature_extraction",
        "evaluation",
        "environment",
        "arguments",
    } <= set(data)
    assert data["torch_threads"] == 2 and data["feature_extraction"] is None
    assert data["columns"] == ROW_KEYS
    assert len(data["rows"]) == 1 and set(data["rows"][0]) == set(ROW_KEYS)
    assert data["arguments"]["model_options"] == TINY and "func" not in data["arguments"]
    assert data["warnings"] == [w for w in [ceiling_warning(data["rows"][0])] if w]
    assert "matmul" in data["settings"]["reference_kernels"] and "convolution" in data["settings"]["reference_kernels"]
    assert data["rows"][0]["model_options"] == TINY
    assert [e["precision"] for e in data["evaluation"]] == bench.evaluation_precisions(bench.resolve_device("cpu"))
    assert all(e["n_clips"] == 16 and e["extrapolated"] for e in data["evaluation"])
    lines = proc.stdout.splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("model ")]
    assert len(header) == 1 and lines[header[0] + 1].startswith("cnn10")
    assert "EXTRAPOLATED" in proc.stdout and f"wrote {out}" in proc.stdout


# ---------------------------------------------------------------- bench scan
from helpers.bench import probes as bench_probes, scanning  # noqa: E402


def _scan_row(**changes) -> dict:
    row = {
        "model": "cnn10",
        "sample_rate": 8000,
        "device": "cpu",
        "precision": "fp32",
        "threads": 2,
        "default_hop": True,
        "realtime_factor": 150.0,
        "model_options": {},
    }
    return dict(row, **changes)


def test_scan_targets_say_plainly_whether_they_were_met():
    met = scanning.scan_target(_scan_row())
    assert (met["realtime_factor"], met["met"], met["comparable"]) == (100, True, True)
    assert met["text"] == "target >= 100x on 2 CPU cores: met (150x)"
    missed = scanning.scan_target(_scan_row(precision="int8"))
    assert (missed["realtime_factor"], missed["met"]) == (300, False) and "NOT met (150x)" in missed["text"]
    other = scanning.scan_target(_scan_row(threads=4, realtime_factor=400.0))
    assert other["met"] and not other["comparable"] and "4 threads, not the target's setting" in other["text"]
    gpu = scanning.scan_target(_scan_row(device="cuda:0", precision="bf16", threads=16, realtime_factor=6000.0))
    assert (gpu["realtime_factor"], gpu["met"], gpu["comparable"], gpu["setting"]) == (5000, True, True, "a GPU")
    for changes in (
        {"model": "cnn6"},
        {"sample_rate": 16000},
        {"default_hop": False},
        {"model_options": TINY},
        {"precision": "bf16"},
    ):
        assert scanning.scan_target(_scan_row(**changes)) is None, changes
    line = bench.format_scan_row(
        dict(
            _scan_row(),
            hop_seconds=1.5,
            audio_minutes=10.0,
            wall_seconds=4.0,
            windows_per_s=100.0,
            peak_mib_short=600.0,
            peak_mib_long=610.0,
            target=met,
        )
    )
    assert line.split()[:5] == ["cnn10", "8000", "cpu", "fp32", "2"] and line.endswith(">=100x met")


def test_scan_precisions_skip_what_the_machine_or_model_lacks(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(scanning, "cpu_has_native_bf16", lambda: False)
    run, notes = scanning.scan_precisions(["fp32", "bf16", "int8", "int8"], "cnn10", cpu)
    assert run == ["fp32", "int8"] and len(notes) == 1 and "bf16 skipped" in notes[0]
    assert scanning.scan_precisions(["bf16"], "cnn10", cuda) == (["bf16"], [])
    run, notes = scanning.scan_precisions(["int8"], "cnn10", cuda)
    assert run == ["int8"] and "runs on the CPU" in notes[0]
    run, notes = scanning.scan_precisions(["fp32", "int8"], "resnet22", cpu)
    assert run == ["fp32"] and "int8 skipped" in notes[0]
    monkeypatch.setattr(scanning, "cpu_has_native_bf16", lambda: True)
    assert scanning.scan_precisions(["bf16"], "cnn10", cpu) == (["bf16"], [])


def test_scan_inputs_are_a_48k_wav_and_a_checkpoint_that_scan_reads(tmp_path):
    import soundfile as sf
    from helpers.evaluation.predict import load_for_inference
    from helpers.models.checkpoint import load_checkpoint

    wav = scanning.write_field_recording(tmp_path / "r.wav", 2.5, block_seconds=1.0)
    info = sf.info(str(wav))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (48_000, 1, 120_000, "PCM_16")
    audio, _ = sf.read(str(wav))
    assert 0.005 < audio.std() < 0.5 and abs(audio).max() <= 1.0
    path = scanning.build_checkpoint(tmp_path / "m.pt", "cnn6", 8000, TINY)
    model, classes, settings, score = load_for_inference(path, "cpu")
    assert classes[0] == "background" and len(classes) == 5 and score == "softmax"
    assert settings.sample_rate == 8000
    calibration = load_checkpoint(path)["calibration"]
    assert calibration.dtype == torch.float16 and tuple(calibration.shape) == (64, settings.n_frames, 64)
    assert -150 < float(calibration.float().mean()) < 20 and torch.isfinite(calibration.float()).all()


def test_short_recording_fills_a_scoring_batch():
    """At the default hop (half a 2.99-s clip) 64 + 1 windows need 98.7 s; few windows need only 30 s."""
    assert scanning.short_seconds_for(64, None, [8000]) == scanning.short_seconds_for(64, None, [16000]) == 100.0
    assert scanning.short_seconds_for(8, None, [8000]) == 30.0
    assert scanning.short_seconds_for(64, 3.0, [8000, 16000]) == 196.0


def test_cpu_features_line_names_what_is_missing():
    assert bench_cli._features_text(["avx2"]).startswith("features avx2 (no avx512f, avx512_vnni")
    assert bench_cli._features_text(None) == "CPU features unknown"
    assert bench_cli._features_text(list(bench_probes.CPU_FEATURES)).endswith("amx_int8")


def test_scan_parser_defaults_and_bad_values(capsys):
    args = vars(bench.build_scan_parser().parse_args([]))
    assert args == {
        "models": ["cnn10"],
        "rates": [8000],
        "precisions": ["fp32", "int8"],
        "minutes": 10.0,
        "short_seconds": None,
        "hop": None,
        "device": "auto",
        "threads": None,
        "batch_size": 64,
        "json": None,
        "model_options": None,
        "archive": None,
        "compare_files": 20,
        "decode_workers": [0, 1, 2],
        "formats": ["wav", "flac"],
        "slurm_config": None,
        "no_slurm": False,
    }
    for argv in (["--minutes", "0"], ["--hop", "-1"], ["--precisions", "fp16"]):
        with pytest.raises(SystemExit) as exc:
            bench.build_scan_parser().parse_args(argv)
        assert exc.value.code == 2
    assert bench.main(["scan", "--models", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err


@pytest.mark.slow
def test_scan_benchmark_end_to_end(tmp_path, capsys):
    """A narrow CNN6 at 8 kHz on 12 s and 5 s of 48 kHz audio, fp32 and int8, each scan in its own process."""
    out = tmp_path / "scan.json"
    assert (
        bench.main(
            [
                "scan",
                "--models",
                "cnn6",
                "--minutes",
                "0.2",
                "--short-seconds",
                "5",
                "--threads",
                "2",
                "--device",
                "cpu",
                "--model-options",
                json.dumps(TINY),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [r["precision"] for r in rows] == ["fp32", "int8"]
    for r in rows:
        assert set(r) == set(bench.SCAN_ROW_KEYS)
        assert (r["model"], r["sample_rate"], r["device"], r["threads"]) == ("cnn6", 8000, "cpu", 2)
        assert r["audio_minutes"] == pytest.approx(0.2) and r["short_seconds"] == pytest.approx(5.0)
        assert r["hop_seconds"] == pytest.approx(11965 / 8000) and r["default_hop"]
        assert r["windows"] == 8  # 12 s, windows of 2.99 s every 1.5 s: 7 full ones and the tail
        for key in (
            "wall_seconds",
            "realtime_factor",
            "windows_per_s",
            "peak_mib_short",
            "peak_mib_long",
            "short_realtime_factor",
        ):
            assert math.isfinite(r[key]) and r[key] > 0, key
        assert r["realtime_factor"] == pytest.approx(12.0 / r["wall_seconds"])
        assert r["target"] is None  # a narrow model: no target applies
    assert data["cpu_name"] and data["threads"] == 2 and data["reference"].startswith("BirdNET")
    assert data["cpu_features"] is None or set(data["cpu_features"]) <= set(bench_probes.CPU_FEATURES)
    csv_lines = out.with_suffix(".csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:4] == ["model", "sample_rate", "device", "precision"] and len(csv_lines) == 3
    printed = capsys.readouterr().out
    assert "targets (default hop, full width)" in printed and "no row matches a target" in printed
    assert any(line.startswith("cnn6") and " int8 " in line for line in printed.splitlines())


@pytest.mark.slow
def test_scan_bench_measures_a_birdnet_head_and_its_rescore(tmp_path):
    """A head row: BirdNET's 48 kHz windows, the 50x target named, the rescore from stored embeddings timed."""
    rows = []
    result = scanning.run_scan_benchmark(
        models=["birdnet-logistic"],
        rates=[8000],
        precisions=["fp32", "int8"],
        minutes=0.5,
        short_seconds=6.0,
        device="cpu",
        threads=1,
        workdir=tmp_path,
        on_row=rows.append,
    )
    (row,) = result["rows"]
    assert row is rows[0] and row["model"] == "birdnet-logistic" and row["sample_rate"] == 48_000
    assert row["hop_seconds"] == pytest.approx(1.5) and row["windows"] == 19  # (30 - 3) / 1.5 + 1
    assert row["realtime_factor"] > 0 and row["gflop_per_window"] is None
    assert 0 < row["rescore_seconds"] < row["wall_seconds"]
    assert row["target"]["realtime_factor"] == 50 and not row["target"]["comparable"]  # 1 thread, not 2
    assert any("int8 skipped" in note for note in result["notes"])
    throughput = scanning.embedding_throughput(threads=[1], batches=[1], clips=4)
    assert throughput[0]["clips_per_s"] > 0 and throughput[0]["kind"] == "one interpreter"


@pytest.mark.slow
def test_archive_benchmark_measures_decoding_the_rerun_and_memory(tmp_path, capsys):
    """Ten one-minute files (one cut short, one garbage file) with a narrow CNN6: every row, in fresh processes."""
    out = tmp_path / "archive.json"
    assert (
        bench.main(
            [
                "scan",
                "--archive",
                "10",
                "--compare-files",
                "2",
                "--decode-workers",
                "0",
                "1",
                "--formats",
                "wav",
                "flac",
                "--models",
                "cnn6",
                "--threads",
                "2",
                "--no-slurm",
                "--model-options",
                json.dumps(TINY),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    kinds = [(r["kind"], r.get("format"), r.get("decode_workers")) for r in data["rows"]]
    assert kinds == [
        ("decode", "wav", 0),
        ("decode", "wav", 1),
        ("decode", "flac", 0),
        ("decode", "flac", 1),
        ("single file", "wav", "default"),
        ("archive, a tenth", "wav", "default"),
        ("archive", "wav", "default"),
        ("rerun, finished", "wav", "default"),
    ]
    rows = {r["kind"]: r for r in data["rows"]}
    # the cut WAV is scanned as far as it goes (with a note); the garbage file is the one error
    assert rows["archive"]["recordings"] == 10 and rows["archive"]["errors"] == 1
    assert rows["archive"]["audio_minutes"] == pytest.approx(9.5, abs=0.01)
    assert rows["rerun, finished"]["audio_minutes"] == 0 and rows["rerun, finished"]["files_per_second"] > 0
    for r in data["rows"][:7]:
        assert r["realtime_factor"] > 0 and 0 <= r["wait_share"] <= 1 and r["peak_rss_mib"] > 0
    printed = capsys.readouterr().out
    assert "archive rate / single-file rate" in printed and "no SLURM answers here" in printed
    assert out.with_suffix(".csv").read_text().count("\n") == 9
