"""The training engine: one function, one config, every ingredient of the paper switchable.

:func:`train` takes a :class:`TrainConfig` (which mirrors the ``parameters`` cell of
``03_train``) and a corpus, trains, and leaves a run folder::

    RUN/config.json            the resolved config
    RUN/record.json            versions, machine, commit, corpus checksum, timings
    RUN/history.csv            loss and devel UAR/mAP over iterations, plain and EMA models
    RUN/checkpoints/           best_plain.pt, best_ema.pt (best devel UAR), last.pt (resumable)
    RUN/predictions/           {split}-{checkpoint}.csv: one row per clip, one score per class
    RUN/submission-test.csv    the challenge submission (filename,prediction)
    RUN/metrics.json           metrics per checkpoint and split, labelled (see below)
    RUN/figures/               learning curves, confusion matrix

Honest labelling: the "best" checkpoints are chosen by their devel UAR, so their devel scores
are the best of many evaluations and optimistic (the paper's 93.6 % is such a number).
``metrics.json`` says so next to each score; the last checkpoint's devel score and any test
score are not selected on and are unbiased estimates.

The fast path keeps the cached log-mels of the whole training set in memory (on the GPU when
there is one) and does sampling, SpecAugment and MixUp as tensor operations; there is no data
loader and no per-step host synchronisation except reading the loss for the progress bar every
``log_every`` steps.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from helpers.training.augment import SpecAugmentConfig, ce_loss, mixup, mixup_bce_loss, random_wave_augment, sample_mixup_lambda
from helpers.data.corpus import Corpus
from helpers.training.ema import ExponentialMovingAverage
from helpers.evaluation.scoring import predict_scores, prediction_table, split_metrics, write_submission, write_table
from helpers.features.extract import FeatureSettings, LogMel, load_features
from helpers.core.fileio import atomic_write, write_json_atomic
from helpers.core.hardware import configure_threads, resolve_device
from helpers.evaluation.inference import prepare_for_inference, warn_if_bf16_is_emulated
from helpers.models.checkpoint import (checkpoint_identity, checkpoint_payload, fusion_from_checkpoints, load_checkpoint,
                                       load_model, save_checkpoint)
from helpers.models.cost import count_parameters
from helpers.models.registry import create_model
from helpers.core.provenance import Timer, write_record
from helpers.training.sampler import BalancedBatchSampler, UniformBatchSampler

SELECTED_NOTE = ("optimistic: this devel score was also used to choose the checkpoint (best of "
                 "{n} devel evaluations); treat it as an upper estimate, not a held-out result")
UNSELECTED_NOTE = "not used to choose the checkpoint: an unbiased estimate for this split"

#: ``TrainConfig.model`` value for the fusion of two trained models (paper section 5).
FUSION = "fusion"
FUSION_OPTIONS = ("branch_a", "branch_b", "freeze")


@dataclass
class TrainConfig:
    """Every setting of a training run; defaults are the paper's where the paper gives one.

    Deviations from the paper that the authors' code makes are options, named in the comments.
    """

    # data
    corpus: str = "demo"              # "demo", "synthetic" or a corpus folder
    data_dir: str = "data"
    cache_dir: str = "data/cache"
    sample_rate: int = 16_000         # 16000 or 8000
    # model
    model: str = "cnn10"              # cnn6, cnn10, mobilenetv1, resnet22, wrn28_2, or "fusion"
    model_options: dict = field(default_factory=dict)  # constructor options, e.g. {"channels": [16, 32, 64, 128]};
    # fusion: {"branch_a": CKPT, "branch_b": CKPT, "freeze": True} (two trained runs' checkpoints)
    # sampling and augmentation
    sampler: str = "balanced"         # "balanced" (paper) or "uniform"
    spec_augment: bool = True
    spec_augment_mode: str = "batch"  # "batch" (paper: one mask per mini-batch) or "per_example" (authors' code)
    spec_time_width: int = 16         # authors' code: 16 for CNN10, 64 for the other models
    spec_freq_width: int = 8
    spec_max_stripes: int = 2
    mixup: bool = True
    mixup_alpha: float = 1.0          # authors' code; the paper says "always smaller than 1.0"
    time_stretch: bool = False        # waveform-level, rate ~ U[0.9, 1.1] (the paper: no gain)
    pitch_shift: bool = False         # waveform-level, 0-3 quarter tones up or down (no gain)
    wave_augment_copies: int = 4      # augmented copies of the train set when either is on
    # optimisation
    batch_size: int = 32
    iterations: int = 60_000
    lr: float = 1e-3
    amsgrad: bool = False             # the authors' code uses amsgrad=True; the paper says Adam
    # EMA
    ema: bool = True
    ema_decay: float = 0.995
    ema_start: int = 15_000
    ema_mode: str = "correct"         # "correct" or "reference" (the authors' store/restore bug)
    # evaluation and checkpoints
    eval_every: int = 200
    select_from: int = 0              # evaluations before this step are not candidates for "best"
    checkpoint_every: int = 1_000     # resumable checkpoint interval (steps)
    eval_batch_size: int | None = None  # clips per scoring batch; None: 512 on CUDA, 64 on CPU (faster there)
    score_train: bool = False         # also score the train split at the end (predictions/train-*.csv)
    # reproducibility and hardware
    seed: int = 0
    device: str = "auto"              # "auto": CUDA when present, else CPU
    amp: bool = True                  # bf16 autocast on CUDA
    cpu_amp: bool = False             # bf16 autocast on the CPU too: ~2x on CPUs with native bf16
    #                                   (AVX512-BF16, AMX), slower elsewhere; off = fp32, the faithful default
    channels_last: bool = True        # NHWC memory layout for the convolutions (CPU and CUDA)
    num_threads: int | None = None    # CPU threads; default OMP_NUM_THREADS or all cores
    log_every: int = 50
    # output
    out_dir: str = "runs/train"
    run_name: str | None = None       # default: model-sr-key of the config

    def __post_init__(self) -> None:
        checks = {
            "sampler": ("balanced", "uniform"), "spec_augment_mode": ("batch", "per_example"),
            "ema_mode": ("correct", "reference"), "sample_rate": (16_000, 8_000),
        }
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}; allowed: {allowed}")
        for name in ("iterations", "batch_size", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")

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
        import hashlib

        skip = {"data_dir", "cache_dir", "out_dir", "run_name", "device", "num_threads", "log_every",
                "checkpoint_every", "eval_batch_size", "score_train"}
        values = {k: v for k, v in self.to_dict().items() if k not in skip}
        # Options added after runs existed enter the key only when set, so those runs keep their folders.
        for name, default in KEY_OMITTED_DEFAULTS.items():
            if values.get(name) == default:
                del values[name]
        if self.model == FUSION:
            # A fusion run is defined by its branches' weights, not by where they are stored.
            values["model_options"] = {k: checkpoint_identity(v) if k.startswith("branch_") else v
                                       for k, v in self.model_options.items()}
        payload = json.dumps(values, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:10]

    def run_dir(self) -> Path:
        name = self.run_name or f"{self.model}-{self.sample_rate // 1000}k-{self.key()}"
        return Path(self.out_dir) / name


#: TrainConfig fields left out of the run key while at these values (added after runs existed).
KEY_OMITTED_DEFAULTS = {"cpu_amp": False}

#: Scoring batch when ``TrainConfig.eval_batch_size`` is None: large batches feed a GPU; on a CPU
#: 64 clips ran ~10 % faster than 512 (cache) and need an eighth of the memory.
DEFAULT_EVAL_BATCH = {"cuda": 512, "cpu": 64}


def autocast_enabled(config: TrainConfig, device: torch.device) -> bool:
    """Whether training and scoring run under bf16 autocast: CUDA with ``amp``, CPU with ``cpu_amp``."""
    return (device.type == "cuda" and config.amp) or (device.type == "cpu" and config.cpu_amp)


def eval_batch_size(config: TrainConfig, device: torch.device) -> int:
    """``config.eval_batch_size``, or the device's default (:data:`DEFAULT_EVAL_BATCH`) when None."""
    if config.eval_batch_size is not None:
        return int(config.eval_batch_size)
    return DEFAULT_EVAL_BATCH.get(device.type, DEFAULT_EVAL_BATCH["cpu"])


def scoring_model(model: nn.Module, config: TrainConfig, device: torch.device) -> nn.Module:
    """The fast scoring copy the run evaluates with: BatchNorm folded (fp32 results to ~1e-6), under
    bf16 autocast where training autocasts (:func:`helpers.evaluation.inference.prepare_for_inference`)."""
    precision = "bf16" if autocast_enabled(config, device) else "fp32"
    return prepare_for_inference(model, precision, channels_last=config.channels_last)


@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder and the main tables, already loaded."""

    run_dir: Path
    config: TrainConfig
    history: pd.DataFrame
    metrics: dict
    classes: list[str]
    timings: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """One row per (checkpoint, split): UAR, mAP and whether the score is devel-selected."""
        rows = []
        for ckpt, per_split in self.metrics["checkpoints"].items():
            for split, m in per_split["splits"].items():
                if m is None:
                    continue
                rows.append({"checkpoint": ckpt, "step": per_split["step"], "split": split,
                             "uar": m["uar"], "map": m["map"], "selected_on_this_split": m["selected_on_this_split"]})
        return pd.DataFrame(rows)


# --- data -----------------------------------------------------------------------------------


def _wave_augment_bank(corpus: Corpus, config: TrainConfig, settings: FeatureSettings,
                       progress: bool) -> np.ndarray:
    """Log-mels ``(copies, n_train, time, mel)`` of randomly stretched/pitch-shifted train clips.

    Waveform augmentation needs a new log-mel per draw, far too slow inside the loop; instead a
    fixed number of augmented copies is computed once (and cached), and each training example
    picks the original or one of the copies uniformly. This is an approximation of per-draw
    augmentation, documented as such.
    """
    from helpers.data.audio import load_clip
    import hashlib

    train = corpus.split("train")
    tag = json.dumps({"stretch": config.time_stretch, "pitch": config.pitch_shift, "copies": config.wave_augment_copies,
                      "seed": config.seed, "features": settings.key(), "audio": list(train["sha256"])})
    key = hashlib.sha256(tag.encode()).hexdigest()[:12]
    path = Path(config.cache_dir) / corpus.name / f"train-waveaug-{settings.sample_rate}hz-{key}.npy"
    if path.is_file():
        return np.load(path)
    logmel = LogMel.from_settings(settings)
    bank = np.empty((config.wave_augment_copies, len(train), settings.n_frames, settings.n_mels), np.float32)
    iterator = range(config.wave_augment_copies * len(train))
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc="wave augmentation", unit="clip")
    for flat in iterator:
        c, i = divmod(flat, len(train))
        rng = np.random.default_rng([config.seed, c, i])
        wave = load_clip(train.loc[i, "path"], sample_rate=settings.sample_rate, length=settings.clip_samples)
        wave = random_wave_augment(wave, settings.sample_rate, rng,
                                   stretch=(0.9, 1.1) if config.time_stretch else None,
                                   pitch_quarter_tones=3 if config.pitch_shift else None)
        with torch.no_grad():
            bank[c, i] = logmel(torch.from_numpy(wave)[None])[0].numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        np.save(fh, bank)
    return bank


# --- the loop ---------------------------------------------------------------------------------


def make_step_function(model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
                       n_classes: int, device: torch.device, generator: torch.Generator):
    """One optimisation step as the config says, as a function ``step(x, y) -> loss``.

    ``x``: log-mels ``(draw, time, mel)`` on the device, ``y``: class indices ``(draw,)``, where
    ``draw`` is ``2 * batch_size`` with MixUp (pairs are mixed into one batch) and ``batch_size``
    without. Order: first BatchNorm, SpecAugment, MixUp, rest of the model, loss, Adam step, as
    in the authors' code. The loss is returned as a device tensor (no host synchronisation).
    Shared by :func:`train` and the benchmarks, so both measure the same computation.
    """
    spec = SpecAugmentConfig(enabled=config.spec_augment, mode=config.spec_augment_mode,
                             max_time_stripes=config.spec_max_stripes, max_freq_stripes=config.spec_max_stripes,
                             time_width=config.spec_time_width, freq_width=config.spec_freq_width,
                             min_stripes=config.spec_max_stripes if config.spec_augment_mode == "per_example" else None)
    use_amp = autocast_enabled(config, device)
    to_channels_last = config.channels_last

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            z = model.normalize(x)
            if to_channels_last:
                z = z.contiguous(memory_format=torch.channels_last)
            z = spec.apply(z, generator)
            if config.mixup:
                lam = sample_mixup_lambda(config.mixup_alpha, generator)
                targets = torch.nn.functional.one_hot(y, n_classes).float()
                z, t = mixup(z, targets, lam)
                logits, _ = model.forward_normalized(z)
                loss = mixup_bce_loss(logits.float(), t)
            else:
                logits, _ = model.forward_normalized(z)
                loss = ce_loss(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step



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
            "RUN/checkpoints/best_ema.pt.")
    options.setdefault("freeze", True)
    return options


def build_fusion_model(config: TrainConfig, n_classes: int) -> nn.Module:
    """The fusion model of ``config`` (see :func:`fusion_options`): both branches loaded from their
    checkpoints, which must have been trained on this config's sample rate and ``n_classes`` classes."""
    options = fusion_options(config)
    return fusion_from_checkpoints(options["branch_a"], options["branch_b"], n_classes,
                                   freeze=bool(options["freeze"]), sample_rate=config.sample_rate)


@dataclass
class TrainingSetup:
    """Everything one training run steps with, built by :func:`build_training`."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: ExponentialMovingAverage | None
    sampler: BalancedBatchSampler | UniformBatchSampler
    generator: torch.Generator
    step: Any  # step(x, y) -> loss, from make_step_function


def build_training(config: TrainConfig, n_classes: int, device: torch.device,
                   train_labels: np.ndarray) -> TrainingSetup:
    """Seed, model (channels-last when configured), Adam, EMA, sampler, augmentation generator and
    the step function, exactly as :func:`train` uses them (the benchmarks call this too, so they
    measure the same thing). ``train_labels``: class indices ``(n_train,)`` for the sampler."""
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    if config.model == FUSION:
        model = build_fusion_model(config, n_classes).to(device)
    else:
        model = create_model(config.model, n_classes=n_classes, **config.model_options).to(device)
    if config.channels_last:
        # NHWC lets the convolution kernels (cuDNN and oneDNN alike) skip layout conversions.
        model = model.to(memory_format=torch.channels_last)
    # Frozen fusion branches have requires_grad=False: Adam only sees what learns.
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                 amsgrad=config.amsgrad)
    ema = ExponentialMovingAverage(model, decay=config.ema_decay, start_step=config.ema_start,
                                   mode=config.ema_mode) if config.ema else None
    draw = config.batch_size * (2 if config.mixup else 1)  # MixUp halves 2B examples into B
    if config.sampler == "balanced":
        sampler = BalancedBatchSampler(train_labels, draw, seed=config.seed, n_classes=n_classes)
    else:
        sampler = UniformBatchSampler(len(train_labels), draw, seed=config.seed)
    gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    step = make_step_function(model, optimizer, config, n_classes, device, gen)
    return TrainingSetup(model, optimizer, ema, sampler, gen, step)


def train(config: TrainConfig, corpus: Corpus | None = None, progress: bool = True,
          resume: bool = True) -> TrainResult:
    """Train one model as ``config`` says and write its run folder (see the module docstring).

    ``corpus`` defaults to :func:`helpers.data.named.prepare_corpus` of ``config.corpus``. With
    ``resume`` an interrupted run with the same config continues from ``checkpoints/last.pt``;
    on CPU with a fixed seed it ends with the same weights as an uninterrupted run. A finished
    run is not retrained: its results are loaded.
    """
    timer = Timer()
    configure_threads(config.num_threads)
    device = resolve_device(config.device)
    run_dir = config.run_dir()
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    if corpus is None:
        from helpers.data.named import prepare_corpus

        corpus = prepare_corpus(config.corpus, config.data_dir, progress=progress)
    classes = list(corpus.classes)
    n_classes = len(classes)
    settings = FeatureSettings(sample_rate=config.sample_rate)
    write_json_atomic(run_dir / "config.json", config.to_dict())

    with timer("features"):
        feats = {split: load_features(corpus.table, split, settings, config.cache_dir, corpus.name,
                                      device="cpu", progress=progress) for split in corpus.splits}
    if "train" not in feats:
        raise ValueError(f"corpus {corpus.root} has no train split; cannot train.")
    has_devel = "devel" in feats and (feats["devel"].labels >= 0).all() and len(feats["devel"].labels) > 0

    # Everything the loop touches lives on the device: no loader, no per-step copies.
    x_train = torch.from_numpy(np.ascontiguousarray(feats["train"].features)).to(device)
    y_train_np = feats["train"].labels
    y_train = torch.from_numpy(y_train_np).to(device)
    bank = None
    if config.time_stretch or config.pitch_shift:
        with timer("wave_augment_bank"):
            bank = torch.from_numpy(_wave_augment_bank(corpus, config, settings, progress)).to(device)
    x_devel = torch.from_numpy(np.ascontiguousarray(feats["devel"].features)).to(device) if has_devel else None

    setup = build_training(config, n_classes, device, y_train_np)
    model, optimizer, ema, sampler, gen, step_fn = (setup.model, setup.optimizer, setup.ema, setup.sampler,
                                                    setup.generator, setup.step)
    n_params = count_parameters(model, trainable_only=False)
    n_trainable = count_parameters(model)
    fusion_record = ({name: {"path": str(config.model_options[name]),
                             "sha256": checkpoint_identity(config.model_options[name])}
                      for name in ("branch_a", "branch_b")} if config.model == FUSION else None)
    score_fn = "sigmoid" if config.mixup else "softmax"
    use_amp = autocast_enabled(config, device)
    if use_amp and device.type == "cpu":
        warn_if_bf16_is_emulated("cpu_amp=True")
    eval_batch = eval_batch_size(config, device)

    step = 0
    history: list[dict] = []
    best = {"plain": {"uar": -1.0, "step": None}, "ema": {"uar": -1.0, "step": None}}
    last_path = run_dir / "checkpoints" / "last.pt"
    if resume and last_path.is_file():
        state = load_checkpoint(last_path, map_location=device)
        if state.get("train_config_key") != config.key():
            raise RuntimeError(
                f"{last_path} belongs to a run with another config; choose another run_name or out_dir, "
                "or delete the folder to start again.")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        sampler.load_state_dict(json.loads(state["sampler"]))
        gen.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu())
        step = int(state["step"])
        history = json.loads(state["history"])
        best = json.loads(state["best"])
        timer.seconds.update(json.loads(state.get("timings", "{}")))
        if step >= config.iterations and (run_dir / "metrics.json").is_file() and (run_dir / "record.json").is_file():
            # A finished run: return what it wrote instead of training or evaluating again.
            from helpers.core.provenance import read_json

            return TrainResult(run_dir=run_dir, config=config, history=pd.read_csv(run_dir / "history.csv"),
                               metrics=read_json(run_dir / "metrics.json"), classes=classes,
                               timings=read_json(run_dir / "record.json").get("timings", {}))

    def _payload(m: nn.Module, at_step: int, kind: str) -> dict:
        return checkpoint_payload(m, kind=kind, step=at_step, classes=classes, feature_settings=settings.to_dict(),
                                  train_config=config.to_dict(), score=score_fn)

    def evaluate_devel(m: nn.Module) -> tuple[float, float]:
        scores = predict_scores(scoring_model(m, config, device), x_devel, batch_size=eval_batch, score=score_fn)
        met = split_metrics(feats["devel"].labels, scores, classes)
        return float(met["uar"]), float(met["map"]) if met["map"] is not None else float("nan")

    def save_last() -> None:
        payload = _payload(model, step, "last")
        payload.update({
            "train_config_key": config.key(), "optimizer": optimizer.state_dict(),
            "sampler": json.dumps(sampler.state_dict()), "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(), "history": json.dumps(history), "best": json.dumps(best),
            "timings": json.dumps(timer.seconds),
        })
        if ema is not None:
            payload["ema"] = ema.state_dict()
        if device.type == "cuda":
            payload["cuda_rng"] = torch.cuda.get_rng_state()
        save_checkpoint(last_path, payload)

    bar = None
    if progress and step < config.iterations:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.iterations, initial=step, desc=f"train {config.model}", unit="step")
    running_loss = torch.zeros((), device=device)
    loss_count = 0
    t_loop = time.perf_counter()
    model.train()
    while step < config.iterations:
        idx_np = sampler.next_batch()
        idx = torch.from_numpy(idx_np).to(device, non_blocking=True)
        if bank is not None:
            # each example: the original (0) or one of the augmented copies (1..C)
            choice = torch.randint(0, bank.shape[0] + 1, (idx.shape[0],), generator=gen, device=device)
            x = torch.where((choice == 0)[:, None, None], x_train[idx], bank[(choice - 1).clamp_min(0), idx])
        else:
            x = x_train[idx]
        loss = step_fn(x, y_train[idx])
        if ema is not None:
            ema.update(model, step)
        running_loss += loss.detach()
        loss_count += 1
        step += 1

        if bar is not None and (step % config.log_every == 0 or step == config.iterations):
            bar.update(step - bar.n)
        if has_devel and (step % config.eval_every == 0 or step == config.iterations):
            with timer("evaluation"):
                row = {"step": step, "train_loss": float(running_loss / max(loss_count, 1))}
                running_loss.zero_()
                loss_count = 0
                row["uar_plain"], row["map_plain"] = evaluate_devel(model)
                if ema is not None and step > config.ema_start:
                    row["uar_ema"], row["map_ema"] = evaluate_devel(ema.shadow)
                else:
                    row["uar_ema"] = row["map_ema"] = float("nan")
                history.append(row)
                if step >= config.select_from:
                    if row["uar_plain"] > best["plain"]["uar"]:
                        best["plain"] = {"uar": row["uar_plain"], "step": step}
                        save_checkpoint(run_dir / "checkpoints" / "best_plain.pt",
                                        _payload(model, step, "best_plain"))
                    if ema is not None and not math.isnan(row["uar_ema"]) and row["uar_ema"] > best["ema"]["uar"]:
                        best["ema"] = {"uar": row["uar_ema"], "step": step}
                        save_checkpoint(run_dir / "checkpoints" / "best_ema.pt",
                                        _payload(ema.shadow, step, "best_ema"))
                if ema is not None:
                    ema.after_evaluation(model, step - 1)
                if bar is not None:
                    bar.set_postfix(loss=f"{row['train_loss']:.3f}", uar=f"{row['uar_plain']:.3f}")
        if step % config.checkpoint_every == 0 or step == config.iterations:
            timer.seconds["training_loop"] = timer.seconds.get("training_loop", 0.0) + time.perf_counter() - t_loop
            t_loop = time.perf_counter()
            with timer("checkpoints"):
                save_last()
    if bar is not None:
        bar.close()
    timer.seconds["training_loop"] = timer.seconds.get("training_loop", 0.0) + time.perf_counter() - t_loop

    with timer("final_evaluation"):
        metrics = _final_evaluation(run_dir, config, corpus, feats, model, ema, best, history, classes,
                                    settings, score_fn, device)
    history_df = pd.DataFrame(history, columns=["step", "train_loss", "uar_plain", "map_plain", "uar_ema", "map_ema"])
    write_table(history_df, run_dir / "history.csv")
    metrics["n_parameters"] = n_params
    metrics["n_trainable_parameters"] = n_trainable
    write_json_atomic(run_dir / "metrics.json", metrics)
    _figures(run_dir, history_df, metrics, classes)
    timings = timer.as_dict()
    write_record(run_dir, config=config, corpus=corpus.record(), timings=timings,
                 extra={"device": str(device), "n_parameters": n_params, "fusion_branches": fusion_record,
                        "scoring": {"precision": "bf16-autocast" if use_amp else "fp32", "batch": eval_batch,
                                    "batchnorm": "folded into the convolutions (helpers.evaluation.inference)"},
                        "feature_settings": settings.to_dict(), "feature_cache": {s: str(f.cache_path) for s, f in feats.items()}})
    return TrainResult(run_dir=run_dir, config=config, history=history_df, metrics=metrics, classes=classes,
                       timings=timings)


def _final_evaluation(run_dir: Path, config: TrainConfig, corpus: Corpus, feats: dict, model: nn.Module,
                      ema: ExponentialMovingAverage | None, best: dict, history: list[dict],
                      classes: list[str], settings: FeatureSettings, score_fn: str,
                      device: torch.device) -> dict:
    """Score every split with every checkpoint; write prediction tables, submission, metrics."""
    candidates: dict[str, tuple[nn.Module, int]] = {"last_plain": (model, config.iterations)}
    if ema is not None:
        candidates["last_ema"] = (ema.shadow, config.iterations)
    for kind in ("plain", "ema"):
        path = run_dir / "checkpoints" / f"best_{kind}.pt"
        if best[kind]["step"] is not None and path.is_file():
            candidates[f"best_{kind}"] = (load_model(path, map_location=device), int(best[kind]["step"]))
    n_evals = len(history)
    out: dict[str, Any] = {
        "classes": classes, "note": "best_* checkpoints were chosen by devel UAR: their devel scores are "
        "optimistic. last_* and all test scores are not selected on.",
        "checkpoints": {},
    }
    table_by_split = {s: corpus.split(s) for s in feats}
    # Scoring train costs as much as devel and test together and no table uses it: opt-in.
    splits = {s: fs for s, fs in feats.items() if s != "train" or config.score_train}
    scored: dict[str, dict[str, np.ndarray]] = {}
    for name, (m, step) in candidates.items():
        entry = {"step": step, "selected_on": "devel" if name.startswith("best") else None, "splits": {}}
        # A best checkpoint taken at the last evaluation holds the last weights: reuse their scores.
        twin = next((other for other in scored if _same_weights(candidates[other][0], m)), None)
        scored[name] = {}
        for split, fs in splits.items():
            if twin is not None:
                scores = scored[twin][split]
            else:
                scores = predict_scores(scoring_model(m, config, device), fs.features,
                                        batch_size=eval_batch_size(config, device), score=score_fn)
            scored[name][split] = scores
            labels = list(table_by_split[split]["label"])
            table = prediction_table(fs.filenames, scores, classes, labels=labels)
            write_table(table, run_dir / "predictions" / f"{split}-{name}.csv")
            met = split_metrics(fs.labels, scores, classes, n_boot=1000 if split == "test" else 0, seed=config.seed)
            if met is not None:
                selected = name.startswith("best") and split == "devel"
                met["selected_on_this_split"] = selected
                met["note"] = SELECTED_NOTE.format(n=n_evals) if selected else UNSELECTED_NOTE
            entry["splits"][split] = met
        out["checkpoints"][name] = entry
    # The submission comes from the checkpoint the paper would submit: best EMA, else best plain, else last.
    submit = next((c for c in ("best_ema", "best_plain", "last_ema", "last_plain") if c in candidates), None)
    if "test" in feats and submit is not None:
        test_table = pd.read_csv(run_dir / "predictions" / f"test-{submit}.csv")
        write_submission(test_table, run_dir / "submission-test.csv")
        out["submission_checkpoint"] = submit
    return out


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    """True when two models of one architecture hold identical parameters and buffers."""
    if a is b:
        return True
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)


def _figures(run_dir: Path, history: pd.DataFrame, metrics: dict, classes: list[str]) -> None:
    import matplotlib.pyplot as plt

    from helpers.reporting.plots import plot_confusion, plot_learning_curves, save_figure

    if len(history):
        fig = plot_learning_curves(history)
        save_figure(fig, "learning_curves", run_dir / "figures")
        plt.close(fig)
    for name in ("best_ema", "best_plain", "last_ema", "last_plain"):
        m = metrics["checkpoints"].get(name, {}).get("splits", {}).get("devel")
        if m is not None:
            fig = plot_confusion(np.array(m["confusion_matrix"]), classes,
                                 title=f"devel confusion ({name}, row-normalised)")
            save_figure(fig, "confusion_devel", run_dir / "figures")
            plt.close(fig)
            break


def load_run(run_dir: str | Path) -> dict:
    """Config, metrics and history of a finished run folder (for collectors and notebooks)."""
    run_dir = Path(run_dir)
    from helpers.core.provenance import read_json

    return {"config": read_json(run_dir / "config.json"), "metrics": read_json(run_dir / "metrics.json"),
            "history": pd.read_csv(run_dir / "history.csv"), "record": read_json(run_dir / "record.json")}
