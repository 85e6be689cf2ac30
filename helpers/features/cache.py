"""An on-disk cache of the log-mels of one corpus split, keyed by settings and audio contents.

:func:`load_features` computes the features of one split once (with
:func:`helpers.features.extract.extract_logmels`) and stores them as
``cache_dir/corpus_name/{split}-{label}-{key}.npy`` (label ``16000hz``, ``birdnet24``...) with a JSON
sidecar. The key hashes the
settings, the feature code version (:data:`helpers.features.frontend.FEATURE_VERSION`) and the
SHA-256 of every audio file in row order, so changing a setting or an audio file gives a new key
and a recomputation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torchaudio
from helpers.core.progress import progress_bar

from helpers.core.fileio import atomic_write, sha256_file, write_json_atomic
from helpers.data import audio as audio
from helpers.features.birdnet import EmbeddingSettings, extract_embeddings
from helpers.features.extract import extract_logmels
from helpers.features.frontend import FeatureSettings

REQUIRED_COLUMNS = ("split", "filename", "path", "label", "class_index")


@dataclasses.dataclass
class FeatureSet:
    """The log-mels of one split with what identifies them.

    ``features``: float32 ``(n, time, mel)`` dB; ``filenames``: n file names in table order;
    ``labels``: int64 ``(n,)`` class indices, -1 where the label is unknown (test ``?``);
    ``cache_path``: the ``.npy`` file; ``key``: its cache key.
    """

    features: np.ndarray
    filenames: list[str]
    labels: np.ndarray
    split: str
    settings: FeatureSettings
    cache_path: Path
    key: str

    def __len__(self) -> int:
        return len(self.filenames)


#: Name of the checksum memo in each corpus cache folder.
CHECKSUM_MEMO = "audio-sha256-memo.json"


def audio_checksums(
    paths: Sequence[str | Path], memo_path: str | Path | None = None, progress: bool = False, use_memo: bool = True
) -> list[str]:
    """SHA-256 hex digests of ``paths``, in order, reusing ``memo_path`` where a file is unchanged.

    The memo maps an absolute path to ``[size, mtime_ns, sha256]``; a file whose size or
    modification time (ns) differ from the memo's is hashed again, and the memo is rewritten
    atomically when anything was added. Trade-off: hashing ~7,000 short WAVs costs seconds on
    every run, the memo makes it milliseconds, but a file rewritten with the same size AND its old
    modification time restored (``cp -p``, ``rsync -t``, ``touch -r``, some archive extractions)
    keeps its old checksum. ``use_memo=False`` (what ``load_features(recompute=True)`` does)
    hashes every file again.
    """
    memo: dict[str, list] = {}
    # Read the memo even when not trusting it, so that rewriting it keeps other splits' entries.
    if memo_path is not None and Path(memo_path).exists():
        try:
            memo = json.loads(Path(memo_path).read_text(encoding="utf-8"))
            if not isinstance(memo, dict):
                memo = {}
        except (OSError, ValueError):
            memo = {}  # a damaged memo only costs re-hashing
    changed = False
    digests = []
    for path in progress_bar(None, desc="sha256", unit="file", enabled=progress, iterable=paths, leave=False):
        absolute = str(Path(path).resolve())
        try:
            stat = os.stat(absolute)
        except OSError as exc:
            raise audio.AudioError(
                f"{path}: cannot be read ({exc}); check the path column of the corpus table."
            ) from exc
        entry = memo.get(absolute)
        if (
            use_memo
            and isinstance(entry, list)
            and len(entry) == 3
            and entry[0] == stat.st_size
            and entry[1] == stat.st_mtime_ns
        ):
            digests.append(entry[2])
            continue
        digest = sha256_file(absolute)
        memo[absolute] = [stat.st_size, stat.st_mtime_ns, digest]
        changed = True
        digests.append(digest)
    if memo_path is not None and changed:
        Path(memo_path).parent.mkdir(parents=True, exist_ok=True)
        # Concurrent runs may overwrite each other's additions; that only costs re-hashing.
        write_json_atomic(memo_path, memo, indent=None)
    return digests


def cache_key(settings: FeatureSettings, filenames: Sequence[str], checksums: Sequence[str]) -> str:
    """16-hex-digit key of a split's features: settings key + (filename, audio SHA-256) in row order."""
    digest = hashlib.sha256()
    digest.update(settings.key().encode())
    for name, checksum in zip(filenames, checksums, strict=True):
        digest.update(b"\0" + str(name).encode() + b"\0" + checksum.encode())
    return digest.hexdigest()[:16]


def _read_valid_cache(
    npy_path: Path, json_path: Path, expected: dict[str, Any], mmap_mode: str | None
) -> np.ndarray | None:
    """The cached array if the sidecar matches ``expected`` and the data its checksum; else warn, None."""
    if not npy_path.exists() and not json_path.exists():
        return None

    def reject(reason: str) -> None:
        warnings.warn(f"Feature cache {npy_path}: {reason}; ignoring it and recomputing.", stacklevel=4)

    if not npy_path.exists():
        reject("the data file is missing (only its sidecar exists)")
        return None
    if not json_path.exists():
        reject(f"its sidecar {json_path.name} is missing (interrupted or foreign write)")
        return None
    try:
        sidecar = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reject(f"its sidecar {json_path.name} cannot be read ({exc})")
        return None
    for field, value in expected.items():
        if not isinstance(sidecar, dict) or sidecar.get(field) != value:
            reject(f"its sidecar does not match the requested features (field {field!r})")
            return None
    # The data checksum catches truncated or overwritten files, and a data file from one writer
    # paired with the sidecar of another; hashing costs ~0.2 s per 250 MB, little next to
    # re-extraction.
    if sha256_file(npy_path) != sidecar.get("data_sha256"):
        reject("its contents do not match the checksum in its sidecar (corrupt or truncated)")
        return None
    try:
        features = np.load(npy_path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reject(f"it cannot be loaded ({exc})")
        return None
    if list(features.shape) != expected["shape"] or features.dtype != np.float32:
        reject(f"it holds {features.dtype} {features.shape}, expected float32 {tuple(expected['shape'])}")
        return None
    return features


def load_features(
    table: pd.DataFrame,
    split: str,
    settings: FeatureSettings | EmbeddingSettings | None,
    cache_dir: str | Path,
    corpus_name: str,
    device: str | torch.device = "cpu",
    progress: bool = True,
    recompute: bool = False,
    mmap_mode: str | None = None,
    **extract_kwargs: Any,
) -> FeatureSet:
    """Log-mels (or, with :class:`~helpers.features.birdnet.EmbeddingSettings`, a pretrained
    backbone's embeddings ``(n, dim)``) of the rows of ``table`` whose ``split`` column equals
    ``split``, cached on disk.

    ``table`` needs columns ``split, filename, path, label, class_index`` (class_index -1 where
    the label is unknown); rows keep their table order. The features are read from
    ``cache_dir/corpus_name/{split}-{label}-{key}.npy`` (label ``16000hz``, ``birdnet24``...) when that file
    and its ``.json`` sidecar
    exist and match, else extracted with :func:`extract_logmels` (``device``, ``progress`` and
    ``extract_kwargs`` are passed on) and written atomically. A cache file whose sidecar is
    missing or does not match, or whose data fail their checksum, is ignored with a warning and
    rebuilt. ``recompute=True`` re-hashes every audio file and re-extracts. ``mmap_mode`` is
    passed to :func:`numpy.load` for cache hits (e.g. ``"r"`` for a read-only memory map).
    """
    settings = settings or FeatureSettings()
    rows = _split_rows(table, split)
    filenames = [str(name) for name in rows["filename"]]
    paths = [Path(p) for p in rows["path"]]
    labels = rows["class_index"].to_numpy(dtype=np.int64)

    folder = Path(cache_dir) / corpus_name
    folder.mkdir(parents=True, exist_ok=True)
    checksums = _split_checksums(rows, paths, folder, progress, recompute)
    key = cache_key(settings, filenames, checksums)
    stem = f"{split}-{settings.cache_label}-{key}"
    npy_path, json_path = folder / f"{stem}.npy", folder / f"{stem}.json"
    expected = {
        "feature_version": settings.feature_version,
        "key": key,
        "settings": settings.to_dict(),
        "filenames": filenames,
        "audio_sha256": checksums,
        "shape": [len(filenames), *settings.feature_shape],
    }

    # Called from here, not from a helper: its warnings point at load_features's caller (stacklevel).
    features = None if recompute else _read_valid_cache(npy_path, json_path, expected, mmap_mode)
    if features is None:
        features = _extract_and_store(
            paths,
            settings,
            npy_path,
            json_path,
            expected,
            {"corpus_name": corpus_name, "split": split},
            device,
            progress,
            extract_kwargs,
        )
        if mmap_mode is not None:
            features = np.load(npy_path, mmap_mode=mmap_mode, allow_pickle=False)
    return FeatureSet(
        features=features,
        filenames=filenames,
        labels=labels,
        split=split,
        settings=settings,
        cache_path=npy_path,
        key=key,
    )


def _split_rows(table: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of ``split`` in table order; ValueError naming a missing column or an absent split."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"load_features: the corpus table lacks column(s) {missing}; it needs {list(REQUIRED_COLUMNS)}."
        )
    rows = table[table["split"] == split]
    if rows.empty:
        available = sorted(map(str, table["split"].unique()))
        raise ValueError(f"load_features: no rows with split {split!r}; the table has splits {available}.")
    return rows


def _split_checksums(rows: pd.DataFrame, paths: list[Path], folder: Path, progress: bool, recompute: bool) -> list[str]:
    """SHA-256 of each row's audio: the table's ``sha256`` column when complete (and not
    ``recompute``), else :func:`audio_checksums` with the folder's memo."""
    if "sha256" in rows.columns and not recompute and rows["sha256"].notna().all():
        # read_corpus hashed exactly these bytes while validating them: no need to hash twice.
        return [str(c) for c in rows["sha256"]]
    return audio_checksums(paths, folder / CHECKSUM_MEMO, progress=progress, use_memo=not recompute)


def _extract_and_store(
    paths: list[Path],
    settings: FeatureSettings,
    npy_path: Path,
    json_path: Path,
    expected: dict[str, Any],
    origin: dict[str, str],
    device: str | torch.device,
    progress: bool,
    extract_kwargs: dict[str, Any],
) -> np.ndarray:
    """Extract the log-mels of ``paths`` and write them to ``npy_path`` with their sidecar
    ``json_path`` (``expected`` plus ``origin``, provenance and the data checksum); returns them."""
    started = time.perf_counter()
    if isinstance(settings, EmbeddingSettings):
        features = extract_embeddings(paths, settings, progress=progress, **extract_kwargs)
    else:
        features = extract_logmels(paths, settings, device=device, progress=progress, **extract_kwargs)
    seconds = time.perf_counter() - started
    # Remove the old sidecar first: if we are interrupted between the two writes below, a new
    # data file never sits next to a sidecar that vouches for the old one. The data checksum
    # would catch that too; this keeps the warning message accurate.
    json_path.unlink(missing_ok=True)
    with atomic_write(npy_path) as f:
        np.save(f, features, allow_pickle=False)
    write_json_atomic(
        json_path,
        {
            **expected,
            **origin,
            "settings_key": settings.key(),
            "dtype": "float32",
            "data_sha256": sha256_file(npy_path),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "extraction_seconds": round(seconds, 3),
            "device": str(device),
            "versions": {"torch": torch.__version__, "torchaudio": torchaudio.__version__, "numpy": np.__version__},
        },
    )
    return features
