"""The configuration of a training run: :class:`TrainConfig`, its run key, and the choices that
follow from it (precision, scoring batch, fusion options).

``TrainConfig`` mirrors the ``parameters`` cell of ``03_train`` name for name. Its :meth:`~TrainConfig.key`
hashes the settings that change results; the run folder is named by it, so the same config always
lands in the same folder and is trained once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from helpers.data.audio import CLIP_SECONDS
from helpers.features.birdnet import EmbeddingSettings
from helpers.training.ema import PAPER_EMA_DECAY, PAPER_EMA_START
from helpers.features.frontend import FMIN, N_MELS, FeatureSettings
from helpers.models.checkpoint import checkpoint_identity
from helpers.models.heads import FITTED_KINDS, HEADS, is_head

#: ``TrainConfig.model`` value for the fusion of two trained models (paper section 5).
FUSION = "fusion"
FUSION_OPTIONS = ("branch_a", "branch_b", "freeze")
#: ``TrainConfig.hierarchy`` values: the paper's flat classifier, or one trunk with call and species heads.
FLAT, MULTITASK = "flat", "multitask"
HIERARCHIES = (FLAT, MULTITASK)


@dataclass
class TrainConfig:
    """Every setting of a training run; defaults are the paper's where the paper gives one.

    Deviations from the paper that the authors' code makes are options, named in the comments.
    """

    # data
    corpus: str = "demo"  # "demo", "synthetic" or a corpus folder
    data_dir: str = "data"
    cache_dir: str = "data/cache"
    sample_rate: int = 16_000  # 16000 or 8000 (paper); 32000 is PANNs' own rate (init_from)
    # front end (docs/reference.md §2); other species need other clip lengths and bands
    clip_seconds: float = CLIP_SECONDS  # clip length in s (paper: 47,860 samples at 16 kHz = 2.99 s)
    n_mels: int = N_MELS  # mel bands (paper: 64)
    fmin: float = FMIN  # lowest mel edge in Hz (paper: 10)
    fmax: float | None = None  # highest mel edge in Hz; None: half the sample rate (paper)
    # model
    model: str = "cnn10"  # cnn6, cnn10, mobilenetv1, resnet22, wrn28_2, or "fusion"; with
    #                                   hierarchy="multitask" the trunk of the multi-task model
    #                                   pretrained starting points (helpers.models.heads): "birdnet-logistic",
    #                                   "birdnet-svm" (scikit-learn, C chosen on devel), "birdnet-mlp" (this loop),
    #                                   heads on frozen BirdNET 2.4 embeddings (CC BY-NC-SA 4.0)
    model_options: dict = field(default_factory=dict)  # constructor options, e.g. {"channels": [16, 32, 64, 128]};
    # heads: {"Cs": [...]} for logistic/svm (the devel grid), {"hidden": 256, "dropout": 0.2} for mlp
    # fusion: {"branch_a": CKPT, "branch_b": CKPT, "freeze": True} (two trained runs' checkpoints)
    # background first (helpers.models.hierarchical): "flat" (paper) or "multitask": one trunk,
    # a call-vs-background head and a species-among-calls head, loss = w * call + (1 - w) * species
    hierarchy: str = "flat"
    # Start from trained weights instead of a random initialisation: one of this project's checkpoints, or
    # PANNs' AudioSet checkpoint (e.g. Cnn10_mAP=0.380.pth) for cnn6/cnn10 (helpers.models.pretrained_init)
    init_from: str | None = None
    call_loss_weight: float = 0.5  # w above, in (0, 1)
    background_class: str = "background"  # the class the call head says "no call" for
    # sampling and augmentation
    sampler: str = "balanced"  # "balanced" (paper) or "uniform"
    spec_augment: bool = True
    spec_augment_mode: str = "batch"  # "batch" (paper: one mask per mini-batch) or "per_example" (authors' code)
    spec_time_width: int = 16  # authors' code: 16 for CNN10, 64 for the other models
    spec_freq_width: int = 8
    spec_max_stripes: int = 2
    mixup: bool = True
    mixup_alpha: float = 1.0  # authors' code; the paper says "always smaller than 1.0"
    mixup_pairs: str = "consecutive"  # "consecutive": balanced batches cycle through the classes, so MixUp
    #                                   pairs always join two classes (with 2 classes: always one of each);
    #                                   "shuffled": each balanced batch is permuted first (the two-stage
    #                                   call detector needs it; a deviation, docs/reference.md §11)
    time_stretch: bool = False  # waveform-level, rate ~ U[0.9, 1.1] (the paper: no gain)
    pitch_shift: bool = False  # waveform-level, 0-3 quarter tones up or down (no gain)
    wave_augment_copies: int = 4  # augmented copies of the train set when either is on
    # optimisation
    batch_size: int = 32
    iterations: int = 60_000  # optimiser steps; with stop_when_flat the most a run may take
    # Train until the devel curve has flattened (a deviation; the paper trains a fixed number of steps): stop
    # at the first devel evaluation from min_iterations on where helpers.evaluation.curves calls the curve
    # flat (mean devel UAR of the last quarter of the steps at most 3 points above the quarter before).
    # The stop is decided on devel, so even a last checkpoint's devel score is then slightly optimistic.
    stop_when_flat: bool = False
    min_iterations: int = 0  # with stop_when_flat: the first step at which the run may stop (iterations
    #                                   stays the cap: a quick run with fewer iterations simply takes them all)
    lr: float = 1e-3
    amsgrad: bool = False  # the authors' code uses amsgrad=True; the paper says Adam
    # EMA
    ema: bool = True
    ema_decay: float = PAPER_EMA_DECAY
    ema_start: int = PAPER_EMA_START
    ema_mode: str = "correct"  # "correct" or "reference" (the authors' store/restore bug)
    ema_decay_schedule: str = "constant"  # "constant" (paper) or "warmup": min(decay, (1+n)/(10+n)) (authors' code)
    ema_average_buffers: bool = True  # False: BN running statistics copied, not averaged (authors' code)
    # evaluation and checkpoints
    eval_every: int = 200
    select_from: int = 0  # evaluations before this step are not candidates for "best"
    checkpoint_every: int = 1_000  # resumable checkpoint interval (steps)
    eval_batch_size: int | None = None  # clips per scoring batch; None: 512 on CUDA, 64 on CPU (faster there)
    score_train: bool = False  # also score the train split at the end (predictions/train-*.csv)
    # reproducibility and hardware
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when present, else CPU
    amp: bool = True  # bf16 autocast on CUDA
    cpu_amp: bool = False  # bf16 autocast on the CPU too: ~2x on CPUs with native bf16
    #                                   (AVX512-BF16, AMX), slower elsewhere; off = fp32, the faithful default
    channels_last: bool = True  # NHWC memory layout for the convolutions (CPU and CUDA)
    num_threads: int | None = None  # CPU threads; default OMP_NUM_THREADS or all cores
    log_every: int = 50
    # output
    out_dir: str = "runs/train"
    run_name: str | None = None  # default: model-sr-key of the config

    def __post_init__(self) -> None:
        checks = {
            "sampler": ("balanced", "uniform"),
            "spec_augment_mode": ("batch", "per_example"),
            "ema_mode": ("correct", "reference"),
            "sample_rate": (16_000, 8_000, 32_000),
            "ema_decay_schedule": ("constant", "warmup"),
            "ema_average_buffers": (True, False),
            "hierarchy": HIERARCHIES,
            "mixup_pairs": ("consecutive", "shuffled"),
        }
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}; allowed: {allowed}")
        for name in ("iterations", "batch_size", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.min_iterations < 0:
            raise ValueError(
                f"TrainConfig.min_iterations={self.min_iterations} must be >= 0: the first step at "
                "which stop_when_flat may stop the run."
            )
        if not 0.0 < self.call_loss_weight < 1.0:
            raise ValueError(
                f"TrainConfig.call_loss_weight={self.call_loss_weight!r} must lie strictly between 0 and 1 "
                "(the call loss's share; the species loss gets 1 - call_loss_weight)."
            )
        if self.hierarchy == MULTITASK and self.model == FUSION:
            raise ValueError(
                "TrainConfig hierarchy='multitask' needs a registry backbone as model (cnn6, cnn10, "
                "mobilenetv1, resnet22, wrn28_2), not 'fusion'; use hierarchy='flat' for a fusion."
            )
        if is_head(self.model):
            self._check_head()
        try:
            self.feature_settings()
        except ValueError as exc:
            raise ValueError(f"TrainConfig front end (clip_seconds, n_mels, fmin, fmax): {exc}") from None

    def _check_head(self) -> None:
        """A head on frozen embeddings: what reads log-mels or waveforms does not apply."""
        wrong = {
            name: getattr(self, name)
            for name, off in (
                ("spec_augment", False),
                ("time_stretch", False),
                ("pitch_shift", False),
                ("hierarchy", FLAT),
            )
            if getattr(self, name) != off
        }
        if self.init_from:
            wrong["init_from"] = self.init_from
        if wrong:
            raise ValueError(
                f"TrainConfig model={self.model!r} is a head on frozen {HEADS[self.model][0]} embeddings: "
                f"{', '.join(f'{k}={v!r}' for k, v in wrong.items())} cannot apply to embeddings; set "
                "spec_augment=False, time_stretch=False, pitch_shift=False, hierarchy='flat', "
                "init_from=None."
            )

    @property
    def is_fitted_head(self) -> bool:
        """A head fitted by scikit-learn (logistic, SVM) rather than trained by gradient steps."""
        return is_head(self.model) and HEADS[self.model][1] in FITTED_KINDS

    def feature_settings(self) -> FeatureSettings | EmbeddingSettings:
        """The front end of this run: log-mel rate, clip length and mel bands, or for a head the backbone
        (stored with every checkpoint, so ``predict`` and ``scan`` read audio exactly as the model was
        trained on it)."""
        if is_head(self.model):
            return EmbeddingSettings.current()
        return FeatureSettings(
            sample_rate=self.sample_rate,
            clip_seconds=float(self.clip_seconds),
            n_mels=int(self.n_mels),
            fmin=float(self.fmin),
            fmax=None if self.fmax is None else float(self.fmax),
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (e.g. a notebook's parameters), rejecting unknown names."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(names)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of all settings, in declaration order (a notebook's parameters use the same names)."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]) -> "TrainConfig":
        """Pick the settings out of a namespace such as a notebook's ``globals()``."""
        return cls.from_dict({k: namespace[k] for k in cls.field_names() if k in namespace})

    def key(self) -> str:
        """Short hash of the settings that change results (not paths, device or logging)."""
        skip = {
            "data_dir",
            "cache_dir",
            "out_dir",
            "run_name",
            "device",
            "num_threads",
            "log_every",
            "checkpoint_every",
            "eval_batch_size",
            "score_train",
        }
        values = {k: v for k, v in self.to_dict().items() if k not in skip}
        # Options added after runs existed enter the key only when set, so those runs keep their folders.
        for name, default in KEY_OMITTED_DEFAULTS.items():
            if values.get(name) == default:
                del values[name]
        if self.init_from:
            values["init_from"] = checkpoint_identity(self.init_from)  # the weights, not where they lie
        if is_head(self.model):
            values["backbone"] = self.feature_settings().to_dict()  # another model file is another run
        if self.model == FUSION:
            # A fusion run is defined by its branches' weights, not by where they are stored.
            values["model_options"] = {
                k: checkpoint_identity(v) if k.startswith("branch_") else v for k, v in self.model_options.items()
            }
        payload = json.dumps(values, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:10]

    def run_dir(self) -> Path:
        # A multi-task run says so in its folder name; a flat run's name is unchanged.
        model = f"{self.model}-{MULTITASK}" if self.hierarchy == MULTITASK else self.model
        rate = "48k" if is_head(self.model) else f"{self.sample_rate // 1000}k"  # a head reads its backbone's rate
        name = self.run_name or f"{model}-{rate}-{self.key()}"
        return Path(self.out_dir) / name


#: TrainConfig fields left out of the run key while at these values (added after runs existed).
KEY_OMITTED_DEFAULTS = {
    "cpu_amp": False,
    "ema_decay_schedule": "constant",
    "ema_average_buffers": True,
    "clip_seconds": CLIP_SECONDS,
    "n_mels": N_MELS,
    "fmin": FMIN,
    "fmax": None,
    "hierarchy": FLAT,
    "call_loss_weight": 0.5,
    "background_class": "background",
    "mixup_pairs": "consecutive",
    "stop_when_flat": False,
    "min_iterations": 0,
    "init_from": None,
}

#: Scoring batch when ``TrainConfig.eval_batch_size`` is None: large batches feed a GPU; on a CPU
#: 64 clips ran ~10 % faster than 512 (cache) and need an eighth of the memory.
DEFAULT_EVAL_BATCH = {"cuda": 512, "cpu": 64}


def score_function(config: TrainConfig) -> str:
    """How the run's model outputs become class scores (:func:`helpers.evaluation.scoring.predict_scores`):
    ``"sigmoid"`` for MixUp + BCE training, ``"softmax"`` for cross-entropy. A multi-task model outputs
    its combined class scores in the same convention (:mod:`helpers.models.hierarchical`). A scikit-learn
    head scores as it was fitted: softmax for the multinomial logistic regression (its probabilities),
    sigmoid of the one-vs-rest margins for the SVM (monotone in the margins; not probabilities)."""
    if config.is_fitted_head:
        return "softmax" if HEADS[config.model][1] == "logistic" else "sigmoid"
    return "sigmoid" if config.mixup else "softmax"


def autocast_enabled(config: TrainConfig, device: torch.device) -> bool:
    """Whether training and scoring run under bf16 autocast: CUDA with ``amp``, CPU with ``cpu_amp``."""
    return (device.type == "cuda" and config.amp) or (device.type == "cpu" and config.cpu_amp)


def eval_batch_size(config: TrainConfig, device: torch.device) -> int:
    """``config.eval_batch_size``, or the device's default (:data:`DEFAULT_EVAL_BATCH`) when None."""
    if config.eval_batch_size is not None:
        return int(config.eval_batch_size)
    return DEFAULT_EVAL_BATCH.get(device.type, DEFAULT_EVAL_BATCH["cpu"])


def fusion_options(config: TrainConfig) -> dict[str, Any]:
    """The checked ``model_options`` of a fusion config: ``branch_a``, ``branch_b`` (checkpoint
    files of two trained single models) and ``freeze`` (default True: only the new classifier
    learns). Raises ValueError naming what is missing or unknown."""
    options = dict(config.model_options)
    unknown = sorted(set(options) - set(FUSION_OPTIONS))
    missing = [k for k in ("branch_a", "branch_b") if not options.get(k)]
    if unknown or missing:
        raise ValueError(
            f"model='fusion' needs model_options {{'branch_a': CKPT, 'branch_b': CKPT, 'freeze': bool}}; "
            f"missing {missing}, unknown {unknown}. CKPT is a checkpoint of a trained run, e.g. "
            "RUN/checkpoints/best_ema.pt."
        )
    options.setdefault("freeze", True)
    return options


#: The fields of the paper's training schedule (docs/reference.md): their values are TrainConfig's defaults.
PAPER_SCHEDULE_FIELDS = (
    "batch_size",
    "iterations",
    "eval_every",
    "ema_start",
    "ema_decay",
    "checkpoint_every",
    "log_every",
)


def paper_schedule() -> dict[str, Any]:
    """The paper's schedule as TrainConfig values: the defaults of :data:`PAPER_SCHEDULE_FIELDS`, the one place
    they are written."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return {name: defaults[name] for name in PAPER_SCHEDULE_FIELDS}
