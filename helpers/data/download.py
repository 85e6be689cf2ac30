"""Fetching public files by URL or from a mirror folder, always verified by SHA-256.

A file only ever appears under its final name after its checksum matched: downloads go to a
temporary file beside the target and are renamed at the end, so a failed or corrupt download
never leaves a file that a later run could take for valid.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from helpers.core.fileio import sha256_file

#: Environment variable naming a mirror folder laid out as ``<owner>/<repo>/<commit>/<path>``.
MIRROR_ENV = "PRIMATE_DEMO_MIRROR"


class ChecksumError(RuntimeError):
    """A file's SHA-256 is not the expected one."""


def _check(path: Path, expected: str, origin: str, fix: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(f"{origin}: SHA-256 mismatch for {path.name}: expected {expected}, got {actual}. {fix}")


def mirror_dir() -> Path | None:
    """The mirror folder from :data:`MIRROR_ENV`, or None when unset or empty."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def fetch_file(
    relpath: str, url: str, sha256: str, cache_dir: str | Path, mirror: str | Path | None = None, timeout: float = 60.0
) -> Path:
    """Return a local, verified copy of one public file.

    Looks, in order, in ``mirror / relpath`` (read in place, verified), then in
    ``cache_dir / relpath`` (verified; a stale or corrupt copy is deleted and fetched again),
    then downloads ``url`` into the cache. Raises :class:`ChecksumError` naming the file, the
    expected and actual checksums and what to do; raises ``RuntimeError`` when the file can be
    neither found nor downloaded.
    """
    if mirror is not None:
        candidate = Path(mirror) / relpath
        if candidate.is_file():
            _check(
                candidate,
                sha256,
                f"mirror {mirror}",
                f"The mirror copy is damaged or a different version: restore it, or unset {MIRROR_ENV} "
                "to download the original.",
            )
            return candidate
    target = Path(cache_dir) / relpath
    if target.is_file():
        try:
            _check(target, sha256, "download cache", "")
            return target
        except ChecksumError:
            target.unlink()  # stale or damaged cache entry: fetch again below
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
        _check(
            partial,
            sha256,
            url,
            "The download is corrupt or the file changed upstream: run again; if it persists, "
            f"fetch the file by hand into {target} or point {MIRROR_ENV} at a verified mirror.",
        )
        os.replace(partial, target)
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeError(
            f"cannot download {url} ({exc}). Without network access, set {MIRROR_ENV} to a folder "
            f"holding {relpath} (a mirror laid out as <owner>/<repo>/<commit>/<path>)."
        ) from exc
    finally:
        if partial.exists():
            partial.unlink()
    return target
