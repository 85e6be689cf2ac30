"""Run records: what was run, with what, on what data, and how long it took.

Every run (a training run, an executed notebook collection, a benchmark) writes, next to its
results, a ``record.json`` with the resolved config, library versions, the machine, the corpus
checksum and timings, so a result can be traced and reproduced.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from helpers.core.fileio import write_json_atomic

#: Distributions whose versions every record lists.
TRACKED_PACKAGES = (
    "torch",
    "torchaudio",
    "numpy",
    "pandas",
    "librosa",
    "soundfile",
    "soxr",
    "scikit-learn",
    "matplotlib",
    "seaborn",
    "papermill",
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def library_versions() -> dict[str, str | None]:
    """Installed versions of :data:`TRACKED_PACKAGES` (None when absent)."""
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """The project's current commit, with ``+dirty`` when the tree has changes; None outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_record() -> dict[str, Any]:
    """Processor, core count, OS, Python, torch threads and GPU (if any)."""
    rec: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        rec["torch_threads"] = torch.get_num_threads()
        rec["cuda"] = torch.cuda.is_available()
        if rec["cuda"]:
            rec["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return rec


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths and numpy scalars to plain JSON types (recursively)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


def environment_record() -> dict[str, Any]:
    """Versions, machine and commit: the part of a record that does not depend on the run."""
    return {
        "versions": library_versions(),
        "machine": machine_record(),
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_record(
    folder: str | Path,
    config: Any = None,
    corpus: dict | None = None,
    timings: dict | None = None,
    extra: dict | None = None,
    name: str = "record.json",
) -> Path:
    """Write ``folder/record.json`` (atomically) and return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = environment_record()
    record.update({"config": to_jsonable(config), "corpus": to_jsonable(corpus), "timings": to_jsonable(timings or {})})
    if extra:
        record.update(to_jsonable(extra))
    path = folder / name
    write_json_atomic(path, record)
    return path


class Timer:
    """Collects named wall-clock durations (seconds): ``with timer("features"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to ``name`` (for spans timed by hand, e.g. a loop between checkpoints)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}
