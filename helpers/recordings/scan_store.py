"""Where a scan keeps each recording's results: one set of files per recording, or packs of many.

Two layouts, chosen by ``scan(..., layout=...)`` (``--layout``) and recognised by every reader:

- ``files`` (default): per recording ``NAME.scores.csv``, ``.selections.txt``, ``.labels.txt``,
  ``.detections.csv``, ``.embeddings.npy`` (a backbone scan) and ``.scan.json`` (written last), as
  :mod:`helpers.recordings.scan` describes; easy to open one by one in Raven or a spreadsheet.
- ``packed``: for an archive of many files on a cluster file system, where 100,000 recordings
  would be half a million small files. Recordings are grouped into packs of up to
  :data:`PACK_RECORDINGS`; a pack is ``OUT/packs/ID.npz`` (every window of its recordings: a
  recording index, begin, end, the float32 scores and, for a backbone, the float16 embeddings),
  ``OUT/packs/ID.detections.json`` (each recording's events and the detection fingerprint) and
  ``OUT/packs/ID.json`` (the recordings' records, as ``.scan.json`` holds them, with their rows;
  written last, so a pack without it was interrupted and its recordings are scanned again). The
  folder's combined tables (``detections.csv``, ``detections.selections.txt``, ``errors.csv``,
  ``scan.json``) are the same in both layouts. A scan stopped mid-pack loses at most the
  recordings of the pack being filled; a pack is written atomically.

:func:`open_store` opens a scan folder in its layout; :func:`read_windows`,
:func:`read_embeddings` and :func:`scan_recordings` read either (``rescore``, the review tools and
the event tables use them).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.fileio import atomic_write, read_json, write_json_atomic
from helpers.data.annotations.writers import write_audacity_labels, write_events_csv, write_raven_table
from helpers.recordings.detect import EVENT_COLUMNS

LAYOUTS = ("files", "packed")
PACK_DIR = "packs"
#: Recordings per pack.
PACK_RECORDINGS = 200
#: Per-recording file of the window embeddings ``(windows, dim)`` float16 of a backbone scan (files layout).
EMBEDDINGS_SUFFIX = ".embeddings.npy"
PACK_VERSION = 1


def layout_of(out: str | Path) -> str:
    """The layout of a scan folder: ``packed`` when it holds packs, else ``files``."""
    return "packed" if any((Path(out) / PACK_DIR).glob("*.json")) else "files"


def open_store(out: str | Path, layout: str | None = None, prefix: str | None = None):
    """The store of ``out`` in ``layout`` (None: the folder's own, :func:`layout_of`)."""
    layout = layout or layout_of(out)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be {' or '.join(LAYOUTS)}, not {layout!r}")
    return FileStore(Path(out)) if layout == "files" else PackStore(Path(out), prefix)


class FileStore:
    """One set of files per recording."""

    layout = "files"

    def __init__(self, out: Path) -> None:
        self.out = out

    def record(self, name: str) -> dict | None:
        marker = self.out / f"{name}.scan.json"
        if not marker.is_file():
            return None
        try:
            return read_json(marker)
        except (OSError, ValueError):
            return None

    def records(self) -> dict[str, dict]:
        found = {}
        for marker in sorted(self.out.rglob("*.scan.json")):
            if marker.name == "scan.json" and marker.parent == self.out:
                continue
            name = marker.relative_to(self.out).as_posix()[: -len(".scan.json")]
            record = self.record(name)
            if record is not None:
                found[name] = record
        return found

    def complete(self, name: str, embeddings: bool) -> bool:
        suffixes = (".scores.csv", ".detections.csv") + ((EMBEDDINGS_SUFFIX,) if embeddings else ())
        return all((self.out / f"{name}{s}").is_file() for s in suffixes)

    def read_windows(self, name: str) -> pd.DataFrame:
        windows = pd.read_csv(self.out / f"{name}.scores.csv")
        windows.insert(0, "recording", name)
        return windows

    def read_embeddings(self, name: str) -> np.ndarray | None:
        path = self.out / f"{name}{EMBEDDINGS_SUFFIX}"
        return np.load(path, allow_pickle=False) if path.is_file() else None

    def read_events(self, name: str) -> pd.DataFrame:
        events = pd.read_csv(self.out / f"{name}.detections.csv").rename(columns={"file": "recording"})
        events["recording"] = name
        return events

    def write(
        self,
        name: str,
        windows: pd.DataFrame | None,
        events: pd.DataFrame,
        record: dict,
        low_freq: float,
        high_freq: float,
        embeddings_unchanged: bool = False,
    ) -> None:
        """The per-recording files, ``.scan.json`` last; ``windows`` None: only the detections changed."""
        base = self.out / name
        base.parent.mkdir(parents=True, exist_ok=True)
        (self.out / f"{name}.scan.json").unlink(missing_ok=True)  # outputs change: the marker goes first
        if windows is not None and "embeddings" in windows.attrs and not embeddings_unchanged:
            with atomic_write(f"{base}{EMBEDDINGS_SUFFIX}") as fh:
                np.save(fh, windows.attrs["embeddings"], allow_pickle=False)
        if windows is not None:
            with atomic_write(f"{base}.scores.csv", "w") as fh:
                # fixed decimals: %g would round the times of long recordings (0.1 s beyond 10,000 s)
                windows.drop(columns="recording").to_csv(fh, index=False, float_format="%.6f")
        write_raven_table(events, f"{base}.selections.txt", low_freq=low_freq, high_freq=high_freq)
        write_audacity_labels(events, f"{base}.labels.txt")
        write_events_csv(events, f"{base}.detections.csv")
        write_json_atomic(f"{base}.scan.json", record)

    def close(self) -> None:
        return None


class PackStore:
    """Packs of many recordings (module docstring)."""

    layout = "packed"

    def __init__(self, out: Path, prefix: str | None = None, max_recordings: int | None = None) -> None:
        self.out, self.folder = out, out / PACK_DIR
        self.prefix = prefix or f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.max_recordings, self.count = int(max_recordings or PACK_RECORDINGS), 0
        self.index: dict[str, tuple[str, dict]] = {}
        for meta in sorted(self.folder.glob("*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name)):
            if meta.name.endswith(".detections.json"):
                continue
            try:
                pack = read_json(meta)
            except (OSError, ValueError):
                continue
            for record in pack.get("recordings", []):
                self.index[record["recording"]] = (meta.name[: -len(".json")], record)
        self.pending: list[tuple[str, pd.DataFrame, dict, pd.DataFrame]] = []
        self.changed: dict[str, dict[str, Any]] = {}
        self._cache: tuple[str, Any] | None = None

    def record(self, name: str) -> dict | None:
        entry = self.index.get(name)
        if entry is None:
            return None
        detections = self._detections(entry[0]).get(name, {})
        return {
            **entry[1],
            **(
                {"detect_fingerprint": detections["detect_fingerprint"], "detections": len(detections["events"])}
                if detections
                else {}
            ),
        }

    def records(self) -> dict[str, dict]:
        return {name: self.record(name) for name in self.index}

    def complete(self, name: str, embeddings: bool) -> bool:
        entry = self.index.get(name)
        return entry is not None and (self.folder / f"{entry[0]}.npz").is_file()

    def _arrays(self, pack: str):
        if self._cache is None or self._cache[0] != pack:
            with np.load(self.folder / f"{pack}.npz", allow_pickle=False) as data:
                self._cache = (pack, {k: data[k] for k in data.files})
        return self._cache[1]

    def _detections(self, pack: str) -> dict[str, Any]:
        if pack in self.changed:
            return self.changed[pack]
        path = self.folder / f"{pack}.detections.json"
        return read_json(path) if path.is_file() else {}

    def read_windows(self, name: str) -> pd.DataFrame:
        pack, record = self.index[name]
        arrays = self._arrays(pack)
        start, stop = record["rows"]
        table = pd.DataFrame(arrays["scores"][start:stop].astype(np.float64), columns=list(arrays["columns"]))
        table.insert(0, "end", arrays["end"][start:stop])
        table.insert(0, "begin", arrays["begin"][start:stop])
        table.insert(0, "recording", name)
        return table

    def read_embeddings(self, name: str) -> np.ndarray | None:
        pack, record = self.index[name]
        arrays = self._arrays(pack)
        if "embeddings" not in arrays:
            return None
        start, stop = record["rows"]
        return arrays["embeddings"][start:stop]

    def read_events(self, name: str) -> pd.DataFrame:
        pack, _ = self.index[name]
        events = pd.DataFrame(self._detections(pack)[name]["events"])
        if events.empty:
            return pd.DataFrame(columns=EVENT_COLUMNS)
        return events

    def write(
        self,
        name: str,
        windows: pd.DataFrame | None,
        events: pd.DataFrame,
        record: dict,
        low_freq: float,
        high_freq: float,
        embeddings_unchanged: bool = False,
    ) -> None:
        if windows is None:  # only the detections changed: rewrite its pack's detections at close()
            pack, _ = self.index[name]
            detections = dict(self._detections(pack))
            detections[name] = _events_entry(events, record["detect_fingerprint"])
            self.changed[pack] = detections
            return
        self.pending.append((name, windows, record, events))
        if len(self.pending) >= self.max_recordings:
            self.flush()

    def flush(self) -> None:
        """Write the pack being filled: its arrays, its detections, then its records (the marker)."""
        if not self.pending:
            return
        pack = f"{self.prefix}-{self.count:04d}"
        self.count += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        columns = [c for c in self.pending[0][1].columns if c.startswith("score_")]
        index, begin, end, scores, embeddings, records, detections = [], [], [], [], [], [], {}
        row = 0
        for i, (name, windows, record, events) in enumerate(self.pending):
            n = len(windows)
            index.append(np.full(n, i, np.int32))
            begin.append(windows["begin"].to_numpy(np.float64))
            end.append(windows["end"].to_numpy(np.float64))
            scores.append(windows[columns].to_numpy(np.float32))
            if "embeddings" in windows.attrs:
                embeddings.append(windows.attrs["embeddings"].astype(np.float16))
            records.append(
                {
                    **{k: v for k, v in record.items() if k not in ("detect_fingerprint", "detections")},
                    "rows": [row, row + n],
                }
            )
            detections[name] = _events_entry(events, record["detect_fingerprint"])
            row += n
        arrays = {
            "recording": np.concatenate(index),
            "begin": np.concatenate(begin),
            "end": np.concatenate(end),
            "scores": np.concatenate(scores),
            "columns": np.array(columns),
        }
        if embeddings:
            arrays["embeddings"] = np.concatenate(embeddings)
        with atomic_write(self.folder / f"{pack}.npz") as fh:
            np.savez(fh, **arrays)
        write_json_atomic(self.folder / f"{pack}.detections.json", detections)
        write_json_atomic(self.folder / f"{pack}.json", {"version": PACK_VERSION, "recordings": records})
        for record in records:
            self.index[record["recording"]] = (pack, record)
        self.pending = []

    def close(self) -> None:
        """Write the pack being filled and the changed detections; remove packs every recording of which
        a later pack holds (a rescore in place), records first."""
        self.flush()
        for pack, detections in self.changed.items():
            write_json_atomic(self.folder / f"{pack}.detections.json", detections)
        self.changed = {}
        live = {pack for pack, _ in self.index.values()}
        for meta in self.folder.glob("*.json"):
            pack = meta.name[: -len(".detections.json")] if meta.name.endswith(".detections.json") else meta.stem
            if pack not in live and not meta.name.endswith(".detections.json"):
                meta.unlink(missing_ok=True)
                (self.folder / f"{pack}.detections.json").unlink(missing_ok=True)
                (self.folder / f"{pack}.npz").unlink(missing_ok=True)


def _events_entry(events: pd.DataFrame, detect_fingerprint: str) -> dict[str, Any]:
    rows = events.reindex(columns=EVENT_COLUMNS).to_dict(orient="records")
    return {"detect_fingerprint": detect_fingerprint, "events": rows}


def scan_recordings(scan_dir: str | Path) -> list[str]:
    """The names of the recordings a scan folder holds results of, in either layout."""
    return sorted(open_store(scan_dir).records())


def read_windows(scan_dir: str | Path, name: str) -> pd.DataFrame:
    """A scanned recording's window table (recording, begin, end, score_<class>...), in either layout."""
    return open_store(scan_dir).read_windows(name)


def read_embeddings(scan_dir: str | Path, name: str) -> np.ndarray | None:
    """A backbone scan's window embeddings of one recording (float16), in either layout; None without."""
    return open_store(scan_dir).read_embeddings(name)
