"""What every layer shares: atomic files and checksums (:mod:`.fileio`), devices and thread counts
(:mod:`.hardware`), progress bars a runner can follow (:mod:`.progress`), run records: versions,
machine, commit, timers (:mod:`.provenance`), and the run folder: layout, status, lock (:mod:`.run_folder`).
"""

from helpers.core.fileio import atomic_write, read_json, sha256_file, write_json_atomic
from helpers.core.hardware import configure_threads, resolve_device
from helpers.core.progress import progress_bar

__all__ = [
    "atomic_write",
    "configure_threads",
    "progress_bar",
    "read_json",
    "resolve_device",
    "sha256_file",
    "write_json_atomic",
]
