"""Tests of helpers.core.fileio: atomic writes leave either the old or the new file, checksums are right."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from helpers.core.fileio import atomic_write, sha256_file, write_json_atomic


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_atomic_write_creates_file_and_no_temporary(tmp_path):
    target = tmp_path / "data.bin"
    with atomic_write(target) as f:
        f.write(b"hello")
        # Nothing is visible under the final name until the block ends.
        assert not target.exists()
    assert target.read_bytes() == b"hello"
    assert leftovers(tmp_path, {"data.bin"}) == []


def test_atomic_write_replaces_existing_file(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("old")
    with atomic_write(target, "w") as f:
        f.write("new é")
    assert target.read_text(encoding="utf-8") == "new é"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_error_keeps_old_file_and_removes_temporary(tmp_path, error):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old contents")
    with pytest.raises(error):
        with atomic_write(target) as f:
            f.write(b"partial new con")
            raise error("interrupted")
    assert target.read_bytes() == b"old contents"
    assert leftovers(tmp_path, {"data.bin"}) == []


def test_atomic_write_error_without_old_file_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "new.bin") as f:
            f.write(b"x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f.bin") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    # A plain open() would give 0o644 under umask 022; a shared cache needs readable files.
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644


def test_atomic_write_rejects_other_modes(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "f", "a"):
            pass


@pytest.mark.parametrize("size", [0, 1, 1000, 3 * 1024 + 7])
def test_sha256_file_matches_hashlib(tmp_path, size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "blob"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == expected
    # A small chunk size exercises the multi-chunk loop.
    assert sha256_file(path, chunk_size=1024) == expected


def test_sha256_of_empty_file_is_the_known_digest(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_write_json_atomic_round_trip_with_paths_and_numpy(tmp_path):
    target = tmp_path / "run.json"
    obj = {"path": Path("/a/b"), "n": np.int64(3), "x": np.float32(0.5), "v": np.arange(3), "s": "ü"}
    write_json_atomic(target, obj)
    assert json.loads(target.read_text(encoding="utf-8")) == {
        "path": "/a/b",
        "n": 3,
        "x": 0.5,
        "v": [0, 1, 2],
        "s": "ü",
    }


def test_write_json_atomic_unserialisable_leaves_old_file(tmp_path):
    target = tmp_path / "run.json"
    write_json_atomic(target, {"ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert leftovers(tmp_path, {"run.json"}) == []
