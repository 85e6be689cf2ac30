"""Scanning an archive of many files (``python -m helpers bench scan --archive N``).

Builds ``N`` one-minute recordings at 48 kHz (noise with tone bursts, as the single-file benchmark,
:func:`helpers.bench.scanning.write_field_recording`), a few of them broken (one WAV in a hundred
cut to half its data, so its header declares more than it holds, and one garbage file), with one
checkpoint, and measures, each scan in a fresh process (:func:`helpers.bench.scanning.measure_scan`):

* **decoding ahead of the model**: the real-time factor of scanning the first ``compare_files``
  files as 16-bit WAV and as FLAC with 0, 1 and 2 decoding workers, the seconds the model waited
  for audio and the share of the scan that was;
* **the single-file rate**: one file as long as those ``compare_files`` together, scanned with the
  default workers: the archive's rate should be within 10 % of it;
* **the whole archive** locally: wall time, real-time factor, peak memory, and the peak memory of
  scanning a tenth of it (memory should not grow with the number of files);
* **the rerun over the finished archive**: wall seconds and files per second of the walk and the
  fingerprints (target: under 5 s for 500 files);
* **through SLURM with two shards** (when a SLURM answers here, or ``slurm`` names an options file):
  wall time and real-time factor, the shard jobs' submission and queueing included.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import soundfile as sf

from helpers.bench.scanning import build_checkpoint, measure_scan, write_field_recording
from helpers.core.provenance import environment_record

#: Targets of the archive benchmark on 2 cores.
ARCHIVE_TARGETS = {"rerun_seconds_per_500": 5.0, "rate_within": 0.10}
RECORDING_SECONDS = 60.0


def write_archive(
    folder: str | Path, n: int, seconds: float = RECORDING_SECONDS, fmt: str = "wav", seed: int = 0, broken: bool = True
) -> dict[str, Any]:
    """``n`` recordings in ``folder`` (10 per subfolder); with ``broken``, one in a hundred (at least one)
    is a WAV cut to half its data, and one more file is no audio at all. Returns counts and the paths."""
    folder = Path(folder)
    broken = (set(range(99, n, 100)) or {n - 1}) if broken else set()
    paths = []
    for i in range(n):
        path = folder / f"site{i // 10:03d}" / f"rec{i:05d}.{'flac' if fmt == 'flac' and i not in broken else 'wav'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        wav = path if path.suffix == ".wav" else path.with_suffix(".wav")
        write_field_recording(wav, seconds, seed=seed + i)
        if path.suffix == ".flac":
            data, rate = sf.read(str(wav), dtype="int16")
            sf.write(str(path), data, rate, subtype="PCM_16", format="FLAC")
            wav.unlink()
        if i in broken:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        paths.append(path)
    if broken:
        (folder / "site000" / "garbage.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    return {"paths": paths, "truncated": len(broken), "garbage": int(bool(broken)), "n": n}


def _subset(folder: Path, paths: Sequence[Path], k: int) -> Path:
    """A file list of the first ``k`` recordings of the archive (relative to it)."""
    listing = folder.parent / f"first-{k}.txt"
    listing.write_text("".join(f"{p.relative_to(folder).as_posix()}\n" for p in paths[:k]))
    return listing


def slurm_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def run_archive_benchmark(
    n: int = 500,
    model: str = "cnn10",
    sample_rate: int = 8000,
    threads: int | None = None,
    compare_files: int = 20,
    workers: Sequence[int] = (0, 1, 2),
    formats: Sequence[str] = ("wav", "flac"),
    slurm: str | Path | dict | None = "auto",
    model_options: dict[str, Any] | None = None,
    workdir: str | Path | None = None,
    on_line: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The archive benchmark (module docstring); returns the record the JSON holds."""
    if n < 10:
        raise ValueError(f"--archive needs at least 10 recordings, not {n}")
    compare_files = min(compare_files, n)
    tmp_owner = tempfile.TemporaryDirectory(prefix="bench-archive-") if workdir is None else None
    base = Path(workdir) if workdir is not None else Path(tmp_owner.name)
    try:
        ckpt = build_checkpoint(base / "model.pt", model, sample_rate, model_options)
        rows: list[dict[str, Any]] = []
        common = {"precision": "fp32", "hop": None, "device": "cpu", "threads": threads}

        def row(kind: str, figures: dict[str, Any], **labels: Any) -> dict[str, Any]:
            wait, score = figures.get("decode_wait_seconds", 0.0), figures.get("score_seconds", 0.0)
            record = {
                "kind": kind,
                **labels,
                "recordings": figures["recordings"],
                "errors": figures["errors"],
                "audio_minutes": figures["audio_seconds"] / 60,
                "wall_seconds": figures["wall_seconds"],
                "call_seconds": figures["call_seconds"],
                "realtime_factor": figures["realtime_factor"],
                "decode_wait_seconds": wait,
                "wait_share": wait / figures["wall_seconds"] if figures["wall_seconds"] else None,
                "score_seconds": score,
                "peak_rss_mib": figures["peak_rss_mib"],
            }
            rows.append(record)
            on_line(format_archive_row(record))
            return record

        archives = {}
        for fmt in formats:
            folder = base / f"archive-{fmt}"
            made = write_archive(folder, n if fmt == formats[0] else compare_files, fmt=fmt, broken=fmt == formats[0])
            archives[fmt] = (folder, made)
        on_line(
            f"archive: {n} one-minute 48 kHz recordings ({archives[formats[0]][1]['truncated']} cut short, 1 "
            f"garbage file); decoding compared on the first {compare_files} as {', '.join(formats)}"
        )
        for fmt in formats:
            folder, made = archives[fmt]
            listing = _subset(folder, made["paths"], compare_files)
            expect = compare_files
            for w in workers:
                figures = measure_scan(
                    ckpt,
                    None,
                    base / f"cmp-{fmt}-{w}",
                    file_list=str(listing),
                    root=str(folder),
                    decode_workers=w,
                    expect_recordings=expect,
                    allow_errors=True,
                    **common,
                )
                row("decode", figures, format=fmt, decode_workers=w)
        single = base / "single.wav"
        write_field_recording(single, compare_files * RECORDING_SECONDS, seed=7)
        single_row = row(
            "single file", measure_scan(ckpt, single, base / "single", **common), format="wav", decode_workers="default"
        )
        folder, made = archives[formats[0]]
        tenth = _subset(folder, made["paths"], max(1, n // 10))
        tenth_row = row(
            "archive, a tenth",
            measure_scan(
                ckpt,
                None,
                base / "tenth",
                file_list=str(tenth),
                root=str(folder),
                expect_recordings=max(1, n // 10),
                allow_errors=True,
                **common,
            ),
            format=formats[0],
            decode_workers="default",
        )
        whole = row(
            "archive",
            measure_scan(ckpt, folder, base / "whole", expect_recordings=n, allow_errors=True, **common),
            format=formats[0],
            decode_workers="default",
        )
        rerun = row(
            "rerun, finished",
            measure_scan(ckpt, folder, base / "whole", expect_recordings=n, allow_errors=True, **common),
            format=formats[0],
            decode_workers="default",
        )
        rerun["files_per_second"] = n / rerun["call_seconds"]
        on_line(
            f"rerun over {n} finished recordings: {rerun['call_seconds']:.2f} s, {rerun['files_per_second']:.0f} "
            f"files/s (target: under {ARCHIVE_TARGETS['rerun_seconds_per_500'] * n / 500:.1f} s)"
        )
        notes = []
        if slurm == "auto":
            slurm = (
                {"cpus_per_task": max(1, (threads or 2) // 2), "mem_gb": 2, "poll_seconds": 2}
                if slurm_answers()
                else None
            )
        if slurm is not None:
            hours = whole["audio_minutes"] / 60 / 2 * 1.001
            row(
                "archive via SLURM, 2 shards",
                measure_scan(
                    ckpt,
                    folder,
                    base / "slurm",
                    executor="slurm",
                    slurm=slurm,
                    hours_per_job=hours,
                    expect_recordings=n,
                    allow_errors=True,
                    **common,
                ),
                format=formats[0],
                decode_workers="default",
            )
        else:
            notes.append(
                "no SLURM answers here (sinfo): the SLURM row is left out; start the local one with "
                "scripts/slurm_local.sh start"
            )
        ratio = whole["realtime_factor"] / single_row["realtime_factor"]
        notes.append(
            f"archive rate / single-file rate: {ratio:.2f} (target within {ARCHIVE_TARGETS['rate_within']:.0%})"
        )
        notes.append(
            f"peak memory, a tenth of the archive vs all of it: {tenth_row['peak_rss_mib']:.0f} vs "
            f"{whole['peak_rss_mib']:.0f} MiB"
        )
        for line in notes:
            on_line(line)
        return {
            "settings": {
                "n": n,
                "model": model,
                "sample_rate": sample_rate,
                "threads": threads,
                "compare_files": compare_files,
                "workers": list(workers),
                "formats": list(formats),
                "model_options": model_options or {},
            },
            "rows": rows,
            "notes": notes,
            "targets": ARCHIVE_TARGETS,
            "environment": environment_record(),
        }
    finally:
        if tmp_owner is not None:
            tmp_owner.cleanup()


def format_archive_row(row: dict[str, Any]) -> str:
    wait = (
        f"{row['decode_wait_seconds']:.1f} s waiting ({row['wait_share']:.0%})"
        if row.get("wait_share") is not None
        else ""
    )
    return (
        f"{row['kind']:<28} {row.get('format', ''):<5} workers {str(row.get('decode_workers', '')):<8} "
        f"{row['recordings']:>5} rec {row['errors']:>3} err {row['audio_minutes']:8.1f} min "
        f"{row['call_seconds']:8.2f} s call {row['realtime_factor']:7.1f}x {wait} peak {row['peak_rss_mib']:.0f} MiB"
    )
