"""Run records carry config, versions, machine, corpus and timings."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest

from helpers.core.provenance import library_versions, Timer, to_jsonable, write_record
from helpers.core.fileio import read_json


@dataclass
class _Cfg:
    seed: int = 3
    name: str = "x"


def test_write_record(tmp_path):
    timer = Timer()
    with timer("work"):
        time.sleep(0.01)
    path = write_record(tmp_path / "run", config=_Cfg(), corpus={"checksum": "abc"}, timings=timer.as_dict())
    rec = json.loads(path.read_text())
    assert rec["config"] == {"seed": 3, "name": "x"} and rec["corpus"]["checksum"] == "abc"
    assert rec["timings"]["work"] >= 0.01
    from importlib import metadata

    assert rec["versions"]["torch"] == metadata.version("torch") and rec["machine"]["cpu_count"] >= 1
    assert set(library_versions()) >= {"torch", "librosa", "papermill"}


def test_to_jsonable_and_read_json(tmp_path):
    import numpy as np

    assert to_jsonable({"a": np.float32(1.5), "b": (1, 2), "c": tmp_path}) == {
        "a": 1.5,
        "b": [1, 2],
        "c": str(tmp_path),
    }
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        read_json(bad)
