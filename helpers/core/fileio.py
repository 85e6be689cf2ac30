"""Small file utilities shared by the caches and run folders: atomic writes and checksums.

An atomic write goes to a temporary file in the target's own folder and is moved over the target
with :func:`os.replace` only once it is complete. A reader therefore sees either the old file or
the new one, never a half-written one, even when the writer is interrupted (Ctrl-C, out of
memory, a full disk) or two processes write the same file at once (the last complete one wins).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Iterator

#: Bytes read per step by :func:`sha256_file`; large enough to keep the per-call overhead small.
HASH_CHUNK_BYTES = 1 << 20


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success move it over ``path`` atomically.

    Use as ``with atomic_write(p) as f: f.write(...)``. ``mode`` is ``"wb"`` (binary, default) or
    ``"w"`` (text, UTF-8 unless ``encoding`` says otherwise). If the block raises (including
    KeyboardInterrupt), the temporary file is removed and ``path`` is left as it was. The parent
    folder must exist.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', not {mode!r}.")
    path = Path(path)
    # Same folder as the target: os.replace is only atomic within one file system. A random
    # suffix keeps concurrent writers of the same target from sharing a temporary file.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open with mode 0o666 lets the umask decide the permissions, as a plain open() would;
    # tempfile.mkstemp would create 0o600 files that other users of a shared cache cannot read.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        if mode == "w":
            f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="")
        else:
            f = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        with f:
            yield f
            f.flush()
            # fsync before the rename: otherwise a power cut can leave the new name pointing at
            # an empty file on some file systems.
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: str | Path, chunk_size: int = HASH_CHUNK_BYTES) -> str:
    """SHA-256 of a file's bytes as 64 lowercase hex digits, read in chunks of ``chunk_size`` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _json_default(obj: Any) -> Any:
    """Convert the non-JSON types that run records commonly hold (paths, NumPy scalars and arrays)."""
    if isinstance(obj, Path):
        return str(obj)
    # NumPy is imported lazily so that this module stays usable without it.
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_json_atomic(path: str | Path, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as UTF-8 JSON to ``path`` atomically (see :func:`atomic_write`).

    Paths become strings and NumPy scalars/arrays become numbers/lists; other non-JSON objects
    raise TypeError before anything is written.
    """
    # Serialise first, so that an unserialisable object never even creates the temporary file.
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=_json_default) + "\n"
    with atomic_write(path, "w") as f:
        f.write(text)


def read_json(path: str | Path) -> Any:
    """Load a JSON file, naming the file when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); the file is damaged: delete it and rerun.") from exc
