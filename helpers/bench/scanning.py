"""Real-time factor of scanning long recordings (``python -m helpers bench scan``).

For each model, rate and precision asked for: an untrained checkpoint of the registry model at
full width (the real architecture; speed does not depend on the weights) carrying classes, the
front end, ``score="softmax"`` and 64 calibration log-mels so that int8 works
(:func:`build_checkpoint`); a long and a short field-like recording (noise with tone bursts,
16-bit WAV at 48 kHz, so that resampling is part of the work, :func:`write_field_recording`); then
:func:`helpers.recordings.scan.scan` of each file, each in a fresh Python process
(:func:`measure_scan`) so that the peak resident set of the process is the peak of that one scan:
a parent's RSS never goes down, and a second scan in the same process would inherit the first's.

The row (:data:`helpers.bench.table.SCAN_ROW_KEYS`) holds the long file's wall seconds and
real-time factor exactly as ``scan`` reports them (audio seconds / wall seconds of scoring the
recording: read, resample, window, log-mel, model, detections; the model's preparation, int8
calibration included, comes before and the writing of the tables after), windows per second, and
the peak memory of scanning the short and the long file: the two stay close when a scan streams.
:func:`scan_target` compares a row with the project's speed targets (:data:`SCAN_TARGETS`).

A head on BirdNET embeddings (``--models birdnet-logistic``) is scanned the same way: an untrained
head over the real BirdNET file, so the row measures the backbone (48 kHz, 3-s windows) and the
window embeddings the scan stores. Its row adds ``rescore_seconds``: rescoring the long scan with
a second head from those embeddings (:func:`helpers.recordings.scan.rescore`, no audio read), and
:func:`embedding_throughput` measures BirdNET alone: clips per second by thread count and batch, one
interpreter with N threads against a pool of N one-thread interpreters.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import soundfile as sf
import torch

from helpers.bench.probes import _proc_status_kib, cpu_features, device_name
from helpers.bench.table import SCAN_ROW_KEYS
from helpers.core.hardware import configure_threads, resolve_device
from helpers.core.provenance import PROJECT_ROOT, environment_record
from helpers.evaluation.inference import cpu_has_native_bf16, int8_supported, STORED_CALIBRATION_CLIPS
from helpers.bench.kernels import measure_ceiling
from helpers.features.frontend import FeatureSettings, logmel
from helpers.models.cost import forward_flops
from helpers.models.checkpoint import checkpoint_payload, save_checkpoint
from helpers.models.heads import EmbeddingHead, is_head
from helpers.models.registry import create_model

#: Rate of the written recordings (a common field-recorder rate: the scan resamples it).
SOURCE_RATE = 48_000
#: Length of the short recording, seconds, at the least (see :func:`short_seconds_for`).
SHORT_SECONDS = 30.0
DEFAULT_MINUTES = 10.0
#: Class names of the benchmark checkpoints (the challenge's, background first).
SCAN_CLASSES = ("background", "chimpanze", "geunon", "mandrille", "redcap")
#: The project's speed targets: CNN10-8k at the default hop, full width. ``threads`` None: any count.
SCAN_TARGETS: tuple[dict[str, Any], ...] = (
    {"model": "cnn10", "sample_rate": 8000, "device": "cpu", "precision": "fp32", "threads": 2, "realtime_factor": 100},
    {"model": "cnn10", "sample_rate": 8000, "device": "cpu", "precision": "int8", "threads": 2, "realtime_factor": 300},
    {
        "model": "cnn10",
        "sample_rate": 8000,
        "device": "cuda",
        "precision": None,
        "threads": None,
        "realtime_factor": 5000,
    },
    *(
        {"model": head, "sample_rate": 48000, "device": "cpu", "precision": "fp32", "threads": 2, "realtime_factor": 50}
        for head in ("birdnet-logistic", "birdnet-svm", "birdnet-mlp")
    ),
)
#: Target for rescoring an hour of scanned audio from its stored embeddings (seconds).
RESCORE_TARGET_SECONDS_PER_HOUR = 1.0
#: What the targets are compared with.
SCAN_REFERENCE = "BirdNET-Analyzer reports ~49x real time on a 4-core laptop"


# --------------------------------------------------------------------------------------------
# Inputs: recordings and checkpoint
# --------------------------------------------------------------------------------------------
def field_signal(start: int, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples from sample ``start`` of a field-like signal: white noise under a slowly
    changing level, plus a 0.6-s harmonic tone burst every 4 s (300-3,300 Hz, the burst's
    frequency fixed by its index, so blocks join seamlessly). float32 within [-1, 1]."""
    t = (start + np.arange(n)) / sample_rate
    level = 0.02 * (1.0 + 0.5 * np.sin(2 * np.pi * t / 37.0))
    x = level * rng.standard_normal(n)
    burst = np.floor(t / 4.0)
    phase = t - 4.0 * burst
    inside = phase < 0.6
    freq = 300.0 + (burst * 937.0) % 3000.0
    envelope = np.where(inside, np.sin(np.pi * np.clip(phase / 0.6, 0, 1)) ** 2, 0.0)
    x += 0.2 * envelope * (np.sin(2 * np.pi * freq * t) + 0.4 * np.sin(4 * np.pi * freq * t))
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def write_field_recording(
    path: str | Path, seconds: float, sample_rate: int = SOURCE_RATE, seed: int = 0, block_seconds: float = 20.0
) -> Path:
    """A mono 16-bit WAV of :func:`field_signal`, ``seconds`` long, written in blocks (hours take
    no more memory than one block)."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    total, block = int(round(seconds * sample_rate)), int(block_seconds * sample_rate)
    if total < 1:
        raise ValueError(f"write_field_recording: {seconds} s at {sample_rate} Hz is no sample.")
    with sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=1, subtype="PCM_16", format="WAV") as f:
        for start in range(0, total, block):
            f.write(field_signal(start, min(block, total - start), sample_rate, rng))
    return path


def short_seconds_for(batch_size: int, hop: float | None, rates: Sequence[int]) -> float:
    """Seconds of the short recording: :data:`SHORT_SECONDS`, or more where that many would not
    give one full scoring batch and a partial one at every rate (``batch_size + 1`` windows; the
    default hop is half a clip). A shorter file would score in one smaller batch, and its lower
    peak memory would come from the batch, not from the length of the file."""
    need = SHORT_SECONDS
    for rate in rates:
        settings = FeatureSettings(sample_rate=rate)
        step = hop if hop is not None else (settings.clip_samples // 2) / rate
        need = max(need, math.ceil(settings.clip_samples / rate + batch_size * step) + 1.0)
    return float(need)


def calibration_logmels(settings: FeatureSettings, n: int = STORED_CALIBRATION_CLIPS, seed: int = 1) -> torch.Tensor:
    """float16 log-mels ``(n, time, mel)`` of ``n`` clips of :func:`field_signal` at the model's
    rate (realistic dB values, as the training clips a checkpoint stores)."""
    rng = np.random.default_rng(seed)
    clips = np.stack(
        [
            field_signal(int(k * 3.7 * settings.sample_rate), settings.clip_samples, settings.sample_rate, rng)
            for k in range(n)
        ]
    )
    return torch.from_numpy(logmel(clips, settings)).half()


def build_head_checkpoint(path: str | Path, model: str, seed: int = 0) -> Path:
    """An untrained head ``model`` (``birdnet-*``) on the installed BirdNET file, with random weights."""
    from helpers.features.birdnet import LICENCE, EmbeddingSettings

    torch.manual_seed(seed)
    head = EmbeddingHead(model, len(SCAN_CLASSES)).eval()
    settings = EmbeddingSettings.current()
    payload = checkpoint_payload(
        head,
        classes=list(SCAN_CLASSES),
        feature_settings=settings.to_dict(),
        score="softmax",
        backbone={"name": settings.backbone, "settings": settings.to_dict(), **LICENCE},
    )
    return save_checkpoint(path, payload)


def embedding_throughput(
    threads: Sequence[int] = (1, 2), batches: Sequence[int] = (1, 4, 8), clips: int = 48, seed: int = 0
) -> list[dict[str, Any]]:
    """BirdNET alone: clips per second embedding ``clips`` 3-s windows, per thread count and batch, for one
    interpreter of N threads and for a pool of N one-thread interpreters; ``first_call_s`` is the first call
    (the runtime prepares its weights for the batch size then), left out of the rate."""
    from helpers.features.birdnet import WINDOW_SAMPLES, BirdNET, BirdNETPool

    waves = np.random.default_rng(seed).normal(0, 0.05, (clips, WINDOW_SAMPLES)).astype(np.float32)
    rows = []
    for n in threads:
        for batch in batches:
            for kind in ("one interpreter", "pool") if n > 1 else ("one interpreter",):
                model = BirdNET(n, batch) if kind == "one interpreter" else BirdNETPool(n, batch)
                started = time.perf_counter()
                model.embed(waves[: batch * (n if kind == "pool" else 1)])
                first = time.perf_counter() - started
                started = time.perf_counter()
                model.embed(waves)
                seconds = time.perf_counter() - started
                rows.append(
                    {
                        "threads": n,
                        "batch": batch,
                        "kind": kind,
                        "clips_per_s": clips / seconds,
                        "ms_per_clip": 1000 * seconds / clips,
                        "first_call_s": first,
                    }
                )
    return rows


def build_checkpoint(
    path: str | Path, model: str, sample_rate: int, model_options: dict[str, Any] | None = None, seed: int = 0
) -> Path:
    """An untrained checkpoint of registry ``model`` at ``sample_rate`` Hz (:data:`SCAN_CLASSES`,
    the default front end at that rate, softmax scores, :func:`calibration_logmels` for int8);
    ``model_options`` go to ``create_model`` (empty: the paper's architecture at full width).
    A head name (``birdnet-*``) gives :func:`build_head_checkpoint` (``sample_rate`` is then 48 kHz)."""
    if is_head(model):
        return build_head_checkpoint(path, model, seed)
    settings = FeatureSettings(sample_rate=sample_rate)
    torch.manual_seed(seed)
    net = create_model(model, n_classes=len(SCAN_CLASSES), n_mels=settings.n_mels, **(model_options or {})).eval()
    payload = checkpoint_payload(
        net,
        classes=list(SCAN_CLASSES),
        feature_settings=settings.to_dict(),
        score="softmax",
        calibration=calibration_logmels(settings),
    )
    return save_checkpoint(path, payload)


# --------------------------------------------------------------------------------------------
# One scan in a fresh process
# --------------------------------------------------------------------------------------------
def _peak_rss_kib() -> int:
    """This process's peak resident set in KiB: Linux VmHWM, else ``ru_maxrss`` (KiB on Linux, bytes on macOS)."""
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _scan_here(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one :func:`helpers.recordings.scan.scan` as ``spec`` says; its figures and this process's peak RSS."""
    from helpers.recordings.scan import scan

    rss_before = _proc_status_kib("VmRSS")
    extra = {
        k: spec[k] for k in ("decode_workers", "executor", "slurm", "hours_per_job", "file_list", "root") if k in spec
    }
    started = time.perf_counter()
    result = scan(
        spec["checkpoint"],
        spec["recording"],
        spec["out_dir"],
        precision=spec["precision"],
        hop=spec["hop"],
        device=spec["device"],
        num_threads=spec["threads"],
        batch_size=spec["batch_size"],
        progress=False,
        **extra,
    )
    call_seconds = time.perf_counter() - started
    expected = spec.get("expect_recordings", 1)
    if (len(result.errors) and not spec.get("allow_errors")) or len(result.recordings) != expected:
        raise RuntimeError(
            f"scan of {spec['recording']} gave {len(result.recordings)} recording(s), not {expected}: "
            f"{result.errors.to_dict(orient='records')[:3]}"
        )
    device = torch.device(result.settings["device"])
    return {
        "call_seconds": call_seconds,
        "recordings": len(result.recordings),
        "errors": len(result.errors),
        "statuses": result.recordings["status"].value_counts().to_dict(),
        "decode_wait_seconds": result.decode_wait_seconds,
        "score_seconds": result.score_seconds,
        "audio_seconds": result.audio_seconds,
        "wall_seconds": result.wall_seconds,
        "realtime_factor": result.realtime_factor,
        "windows": int(result.recordings["windows"].sum()),
        "hop_seconds": float(result.settings["hop_seconds"]),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "peak_rss_mib": _peak_rss_kib() / 1024,
        "rss_before_mib": None if rss_before is None else rss_before / 1024,
        "cuda_peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }


def child_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the fresh process: ``argv[0]`` is the JSON spec; prints the result as one JSON line."""
    spec = json.loads((sys.argv[1:] if argv is None else list(argv))[0])
    print(json.dumps(_scan_here(spec)), flush=True)
    return 0


def measure_scan(
    checkpoint: str | Path,
    recording: str | Path,
    out_dir: str | Path,
    precision: str = "fp32",
    hop: float | None = None,
    device: str = "cpu",
    threads: int | None = None,
    batch_size: int = 64,
    **scan_options: Any,
) -> dict[str, Any]:
    """Scan ``recording`` with ``checkpoint`` into ``out_dir`` in a fresh Python process; returns
    ``audio_seconds``, ``wall_seconds``, ``realtime_factor``, ``windows``, ``hop_seconds``,
    ``device``, ``threads``, ``peak_rss_mib`` (peak resident set of that process: interpreter,
    torch, model and the scan), ``rss_before_mib`` (before the scan, libraries imported) and
    ``cuda_peak_mib`` (CUDA tensors at their peak; None on a CPU), ``call_seconds`` (the whole call:
    walk, fingerprints, scans, tables), the decoding wait and scoring seconds. ``scan_options``:
    ``decode_workers``, ``executor``, ``slurm``, ``hours_per_job``, ``file_list``, ``root`` for
    :func:`~helpers.recordings.scan.scan`, and ``expect_recordings`` (default 1) and
    ``allow_errors`` for the check of what it scanned. RuntimeError with the child's error output
    when it fails."""
    spec = {
        "checkpoint": str(checkpoint),
        "recording": None if recording is None else str(recording),
        "out_dir": str(out_dir),
        "precision": precision,
        "hop": hop,
        "device": device,
        "threads": threads,
        "batch_size": batch_size,
        **scan_options,
    }
    env = dict(os.environ)
    root = str(PROJECT_ROOT)  # the child imports this very package
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from helpers.bench.scanning import child_main; sys.exit(child_main())",
            json.dumps(spec),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"bench scan: the scan of {recording} ({precision}) failed in its process "
            f"(exit {proc.returncode}):\n{proc.stderr.strip()[-3000:]}"
        )
    return json.loads(lines[-1])


# --------------------------------------------------------------------------------------------
# Targets, precisions, the whole benchmark
# --------------------------------------------------------------------------------------------
def _rescore_seconds(tmp: Path, model: str, scan_dir: Path, audio_seconds: float) -> dict[str, Any]:
    """Rescore ``scan_dir`` with a second untrained head from its stored embeddings; seconds, and per hour."""
    from helpers.recordings.scan import rescore

    other = build_head_checkpoint(tmp / f"{model}-second.pt", model, seed=1)
    started = time.perf_counter()
    rescore(other, scan_dir, tmp / f"rescored-{model}", progress=False)
    seconds = time.perf_counter() - started
    return {"rescore_seconds": seconds, "rescore_seconds_per_hour": seconds * 3600.0 / audio_seconds}


def scan_target(row: dict[str, Any]) -> dict[str, Any] | None:
    """The project's speed target for ``row`` (:data:`SCAN_TARGETS`), or None when none applies (another
    model, rate, hop than the default, or model options). Keys: ``realtime_factor`` (the target),
    ``met`` (the row reached it), ``setting`` (where the target was set), ``comparable`` (False when
    the run used another thread count than the target's) and ``text``, one line saying all that."""
    if row.get("model_options") or not row.get("default_hop"):
        return None
    device_type = str(row["device"]).split(":")[0]
    for target in SCAN_TARGETS:
        if (target["model"], target["sample_rate"], target["device"]) != (
            row["model"],
            row["sample_rate"],
            device_type,
        ):
            continue
        if target["precision"] not in (None, row["precision"]):
            continue
        setting = f"{target['threads']} CPU cores" if device_type == "cpu" else "a GPU"
        comparable = target["threads"] is None or target["threads"] == row["threads"]
        met = row["realtime_factor"] >= target["realtime_factor"]
        text = (
            f"target >= {target['realtime_factor']:,}x on {setting}: {'met' if met else 'NOT met'} "
            f"({row['realtime_factor']:,.0f}x)"
        )
        if not comparable:
            text += f"; this run used {row['threads']} threads, not the target's setting"
        return {
            "realtime_factor": target["realtime_factor"],
            "met": met,
            "setting": setting,
            "comparable": comparable,
            "text": text,
        }
    return None


def scan_precisions(precisions: Sequence[str], model: str, device: torch.device) -> tuple[list[str], list[str]]:
    """``(precisions to run, notes on those skipped or moved)`` for ``model`` on ``device``: bf16
    only on CUDA or a CPU with native bf16; int8 only for the plain CNNs (it runs on the CPU)."""
    run, notes = [], []
    if is_head(model):
        skipped = [p for p in dict.fromkeys(precisions) if p != "fp32"]
        if skipped:
            notes.append(
                f"{model}: {', '.join(skipped)} skipped: a head on BirdNET embeddings scores in fp32 (the "
                "backbone runs in the TFLite runtime)"
            )
        return ["fp32"], notes
    for precision in dict.fromkeys(precisions):
        if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            notes.append(
                f"{model}: bf16 skipped: this CPU has no native bf16 (AVX512-BF16 or AMX), so it "
                "would be emulated and slower than fp32"
            )
        elif precision == "int8" and not int8_supported(model):
            notes.append(f"{model}: int8 skipped: only the plain CNNs (cnn6, cnn10) have an int8 path")
        else:
            if precision == "int8" and device.type != "cpu":
                notes.append(f"{model}: int8 runs on the CPU (scan moves it there), not on {device}")
            run.append(precision)
    return run, notes


def run_scan_benchmark(
    models: Sequence[str] = ("cnn10",),
    rates: Sequence[int] = (8000,),
    precisions: Sequence[str] = ("fp32", "int8"),
    minutes: float = DEFAULT_MINUTES,
    hop: float | None = None,
    device: str | torch.device = "auto",
    threads: int | None = None,
    batch_size: int = 64,
    short_seconds: float | None = None,
    model_options: dict[str, Any] | None = None,
    workdir: str | Path | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The scan benchmark; returns the record the JSON file holds.

    Writes the two recordings (``minutes`` and ``short_seconds`` long, :data:`SOURCE_RATE` Hz;
    ``short_seconds`` None: :func:`short_seconds_for`, at least one full batch) and
    one checkpoint per model and rate into a temporary folder (or ``workdir``), then for every
    model, rate and precision of :func:`scan_precisions` scans the short and the long file, each
    in a fresh process (:func:`measure_scan`); ``threads`` None: torch's default (OMP_NUM_THREADS
    or all cores). ``on_row`` gets each row as it is measured. Keys: ``device``, ``device_name``,
    ``cpu_name``, ``cpu_features``, ``threads``, ``settings``, ``columns``, ``rows``, ``notes``, ``targets``,
    ``reference``, ``environment``.
    """
    device = resolve_device(device)
    if short_seconds is None:
        short_seconds = short_seconds_for(batch_size, hop, rates)
    if minutes <= 0 or short_seconds <= 0:
        raise ValueError(f"bench scan: need minutes > 0 and short seconds > 0, got {minutes}, {short_seconds}.")
    if hop is not None and hop <= 0:
        raise ValueError(f"bench scan: hop must be > 0 seconds, got {hop}.")
    threads = configure_threads(threads)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    if short_seconds > SHORT_SECONDS and short_seconds == short_seconds_for(batch_size, hop, rates):
        notes.append(
            f"short recording {short_seconds:g} s, not {SHORT_SECONDS:g} s: it must fill one scoring batch "
            f"of {batch_size} windows as the long one does, else its lower peak memory would reflect a "
            "smaller batch, not a shorter file"
        )
    with tempfile.TemporaryDirectory(prefix="bench-scan-", dir=workdir) as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        long_file = write_field_recording(tmp / "long.wav", minutes * 60.0)
        short_file = write_field_recording(tmp / "short.wav", short_seconds, seed=1)
        written = time.perf_counter() - started
        # fp32 rows are set beside the device's measured peak: the real-time factor no code could beat.
        ceiling = measure_ceiling(device, torch.float32)["ceiling_tflops"] if "fp32" in precisions else None
        for model in models:
            for rate in [48_000] if is_head(model) else rates:
                checkpoint = build_checkpoint(tmp / f"{model}-{rate}.pt", model, rate, model_options)
                flops = None  # a head's cost is BirdNET's, run by the TFLite runtime: no FLOP count here
                if not is_head(model):
                    settings = FeatureSettings(sample_rate=rate)
                    flops = forward_flops(create_model(model, 5, **dict(model_options or {})), settings.n_frames)
                run, skipped = scan_precisions(precisions, model, device)
                notes += skipped
                for precision in run:
                    measured = {}
                    for name, path in (("short", short_file), ("long", long_file)):
                        measured[name] = measure_scan(
                            checkpoint,
                            path,
                            tmp / f"out-{model}-{rate}-{precision}-{name}",
                            precision,
                            hop,
                            str(device),
                            threads,
                            batch_size,
                        )
                    long = measured["long"]
                    row = {
                        "model": model,
                        "sample_rate": int(rate),
                        "device": long["device"],
                        "precision": precision,
                        "threads": long["threads"],
                        "hop_seconds": long["hop_seconds"],
                        "default_hop": hop is None,
                        "audio_minutes": long["audio_seconds"] / 60,
                        "wall_seconds": long["wall_seconds"],
                        "realtime_factor": long["realtime_factor"],
                        "windows": long["windows"],
                        "windows_per_s": long["windows"] / long["wall_seconds"],
                        "peak_mib_short": measured["short"]["peak_rss_mib"],
                        "peak_mib_long": long["peak_rss_mib"],
                        "short_seconds": measured["short"]["audio_seconds"],
                        "short_realtime_factor": measured["short"]["realtime_factor"],
                        "rss_before_mib": long["rss_before_mib"],
                        "cuda_peak_mib_short": measured["short"]["cuda_peak_mib"],
                        "cuda_peak_mib_long": long["cuda_peak_mib"],
                        "model_options": dict(model_options or {}),
                        "gflop_per_window": flops / 1e9 if flops else None,
                        "achieved_tflops": long["windows"] / long["wall_seconds"] * flops / 1e12 if flops else None,
                        "ceiling_tflops": ceiling if precision == "fp32" and flops else None,
                        "rtf_at_ceiling": (
                            ceiling * 1e12 / flops * long["hop_seconds"]
                            if precision == "fp32" and ceiling and flops
                            else None
                        ),
                        "rescore_seconds": None,
                        "rescore_seconds_per_hour": None,
                    }
                    if is_head(model):
                        row.update(
                            _rescore_seconds(
                                tmp, model, tmp / f"out-{model}-{rate}-{precision}-long", long["audio_seconds"]
                            )
                        )
                    row["target"] = scan_target(row)
                    rows.append(row)
                    if on_row is not None:
                        on_row(row)
    return {
        "device": str(device),
        "device_name": device_name(device),
        "cpu_name": device_name(torch.device("cpu")),
        "cpu_features": cpu_features(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "settings": {
            "models": list(models),
            "rates": [int(r) for r in rates],
            "precisions": list(precisions),
            "minutes": minutes,
            "short_seconds": short_seconds,
            "hop": hop,
            "batch_size": batch_size,
            "source": f"{SOURCE_RATE} Hz mono 16-bit WAV, noise with tone bursts",
            "model_options": dict(model_options or {}),
            "recordings_written_seconds": written,
        },
        "columns": SCAN_ROW_KEYS,
        "rows": rows,
        "notes": notes,
        "targets": list(SCAN_TARGETS),
        "reference": SCAN_REFERENCE,
        "environment": environment_record(),
    }
