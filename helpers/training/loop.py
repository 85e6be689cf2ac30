"""The training engine: one function, one config, every ingredient of the paper switchable.

:func:`train` takes a :class:`~helpers.training.config.TrainConfig` (which mirrors the
``parameters`` cell of ``03_train``) and a corpus, trains, and leaves a run folder (layout and
status: :mod:`helpers.core.run_folder`). The pieces live beside this module: the config
(:mod:`.config`), the model, optimiser, EMA, sampler and step (:mod:`.steps`), the waveform
augmentation bank (:mod:`.wave_augment`) and the final scoring (:mod:`.final`).

The fast path keeps the cached log-mels of the whole training set in memory (on the GPU when
there is one) and does sampling, SpecAugment and MixUp as tensor operations; there is no data
loader and no per-step host synchronisation except reading the loss for the progress bar every
``log_every`` steps.

One process at a time writes a run folder: a second :func:`train` of the same config waits for
the first (or stops at once with ``wait=False``), then finds the run finished and loads it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from helpers.core import run_folder
from helpers.core.fileio import write_json_atomic
from helpers.core.hardware import configure_threads, resolve_device
from helpers.core.progress import progress_bar
from helpers.core.provenance import Timer, write_record
from helpers.data.corpus import Corpus
from helpers.evaluation.curves import curve_flatness
from helpers.evaluation.inference import calibration_indices, warn_if_bf16_is_emulated
from helpers.evaluation.scoring import predict_scores, split_metrics, write_table
from helpers.features.cache import load_features
from helpers.features.birdnet import LICENCE
from helpers.models.checkpoint import (
    checkpoint_identity,
    checkpoint_payload,
    export_final_weights,
    load_checkpoint,
    save_checkpoint,
)
from helpers.models.cost import count_parameters
from helpers.training.config import FUSION, TrainConfig, autocast_enabled, eval_batch_size, score_function
from helpers.models.heads import HEADS, is_head
from helpers.training.final import final_evaluation, save_run_figures
from helpers.training.fitted_heads import DEFAULT_CS, SELECTION_RULE, fit_linear_head
from helpers.training.steps import build_training, scoring_model
from helpers.training.wave_augment import wave_augment_bank

HISTORY_COLUMNS = ["step", "train_loss", "uar_plain", "map_plain", "uar_ema", "map_ema"]


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
                rows.append(
                    {
                        "checkpoint": ckpt,
                        "step": per_split["step"],
                        "split": split,
                        "uar": m["uar"],
                        "map": m["map"],
                        "selected_on_this_split": m["selected_on_this_split"],
                    }
                )
        return pd.DataFrame(rows)


def train(
    config: TrainConfig, corpus: Corpus | None = None, progress: bool = True, resume: bool = True, wait: bool = True
) -> TrainResult:
    """Train one model as ``config`` says and write its run folder (see :mod:`helpers.core.run_folder`).

    ``corpus`` defaults to :func:`helpers.data.corpora.named.prepare_corpus` of ``config.corpus``. With
    ``resume`` an interrupted run with the same config continues from ``checkpoints/last.pt``;
    on CPU with a fixed seed it ends with the same weights as an uninterrupted run. A finished
    run is not retrained: its results are loaded. While another process writes the same run
    folder, ``wait=True`` waits for it (then loads its results); ``wait=False`` raises
    :class:`helpers.core.run_folder.RunFolderBusy` at once.
    """
    timer = Timer()
    configure_threads(config.num_threads)
    device = resolve_device(config.device)
    run_dir = config.run_dir()
    with run_folder.lock(run_dir, wait=wait, on_wait=lambda message: print(f"train: {message}", flush=True)):
        if corpus is None:
            from helpers.data.corpora.named import prepare_corpus

            corpus = prepare_corpus(config.corpus, config.data_dir, progress=progress, clip_seconds=config.clip_seconds)
        run = _Run(config, corpus, device, timer, progress)
        stored = run.restore() if resume else None
        if stored is not None:
            return stored
        run.loop()
        return run.finish()


class _Run:
    """One training run's state between :func:`train`'s phases (prepare, restore, loop, finish)."""

    def __init__(self, config: TrainConfig, corpus: Corpus, device: torch.device, timer: Timer, progress: bool) -> None:
        self.config, self.corpus, self.device, self.timer, self.progress = config, corpus, device, timer, progress
        self.run_dir = config.run_dir()
        (self.run_dir / run_folder.CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
        self.classes = list(corpus.classes)
        self.settings = config.feature_settings()
        write_json_atomic(self.run_dir / run_folder.CONFIG, config.to_dict())
        self._load_data()
        self.head = is_head(config.model)
        self.setup = build_training(
            config,
            len(self.classes),
            device,
            self.feats["train"].labels,
            classes=self.classes,
            train_features=self.feats["train"].features if self.head else None,
        )
        # A head on a pretrained backbone inherits the backbone's licence: every file it writes says so.
        self.backbone = (
            {"name": HEADS[config.model][0], "settings": self.settings.to_dict(), **LICENCE} if self.head else None
        )
        self.fitted = False  # a scikit-learn head has been fitted (it takes no gradient steps)
        self.selection: list[dict] = []
        self.score_fn = score_function(config)
        self.use_amp = autocast_enabled(config, device)
        if self.use_amp and device.type == "cpu":
            warn_if_bf16_is_emulated("cpu_amp=True")
        self.eval_batch = eval_batch_size(config, device)
        self.step = 0
        self.stopped_when_flat = False  # stop_when_flat ended the run before config.iterations
        self.history: list[dict] = []
        self.best = {"plain": {"uar": -1.0, "step": None}, "ema": {"uar": -1.0, "step": None}}
        self.last_path = self.run_dir / run_folder.LAST_CHECKPOINT

    def _load_data(self) -> None:
        """Cached log-mels of every split; train (and the waveform-augmentation bank) and devel on the device."""
        config, corpus, device = self.config, self.corpus, self.device
        with self.timer("features"):
            self.feats = {
                split: load_features(
                    corpus.table,
                    split,
                    self.settings,
                    config.cache_dir,
                    corpus.name,
                    device="cpu",
                    progress=self.progress,
                )
                for split in corpus.splits
            }
        if "train" not in self.feats:
            raise ValueError(f"corpus {corpus.root} has no train split; cannot train.")
        devel = self.feats.get("devel")
        self.has_devel = devel is not None and len(devel.labels) > 0 and bool((devel.labels >= 0).all())
        if config.is_fitted_head and not self.has_devel:
            raise ValueError(
                f"corpus {corpus.root} has no labelled devel split, and {config.model} chooses its C on "
                "devel; use a corpus with a devel split."
            )
        if config.stop_when_flat and not self.has_devel:
            raise ValueError(
                f"corpus {corpus.root} has no labelled devel split, so stop_when_flat=True cannot see "
                "the devel curve flatten; set stop_when_flat=False (a fixed number of iterations)."
            )
        # Everything the loop touches lives on the device: no loader, no per-step copies.
        self.x_train = torch.from_numpy(np.ascontiguousarray(self.feats["train"].features)).to(device)
        self.y_train = torch.from_numpy(self.feats["train"].labels).to(device)
        self.bank = None
        if config.time_stretch or config.pitch_shift:
            with self.timer("wave_augment_bank"):
                self.bank = torch.from_numpy(wave_augment_bank(corpus, config, self.settings, self.progress)).to(device)
        self.x_devel = torch.from_numpy(np.ascontiguousarray(devel.features)).to(device) if self.has_devel else None
        # int8 scoring calibrates on these training clips, stored with every checkpoint (never on the files scored).
        train_feats = self.feats["train"]
        picked = calibration_indices(train_feats.labels, seed=config.seed)
        self.calibration = torch.from_numpy(np.ascontiguousarray(train_feats.features[picked])).to(torch.float16)

    # -- checkpoints ------------------------------------------------------------------------------
    def _payload(self, model: nn.Module, kind: str) -> dict:
        extra = {"backbone": self.backbone} if self.backbone else {}
        return checkpoint_payload(
            model,
            kind=kind,
            step=self.step,
            classes=self.classes,
            feature_settings=self.settings.to_dict(),
            train_config=self.config.to_dict(),
            score=self.score_fn,
            calibration=self.calibration,
            **extra,
        )

    def save_last(self) -> None:
        """The resumable checkpoint: weights plus optimiser, EMA, sampler, generators, history, timings."""
        s = self.setup
        payload = self._payload(s.model, "last")
        payload.update(
            {
                "train_config_key": self.config.key(),
                "optimizer": s.optimizer.state_dict(),
                "sampler": json.dumps(s.sampler.state_dict()),
                "generator": s.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": json.dumps(self.history),
                "best": json.dumps(self.best),
                "timings": json.dumps(self.timer.seconds),
                "stopped_when_flat": self.stopped_when_flat,
                "fitted": self.fitted,
                "selection": json.dumps(self.selection),
            }
        )
        if s.ema is not None:
            payload["ema"] = s.ema.state_dict()
        if self.device.type == "cuda":
            payload["cuda_rng"] = torch.cuda.get_rng_state()
        save_checkpoint(self.last_path, payload)

    def restore(self) -> TrainResult | None:
        """Continue from ``last.pt`` when there is one; a finished run returns its stored results."""
        if not self.last_path.is_file():
            return None
        config, s = self.config, self.setup
        state = load_checkpoint(self.last_path, map_location=self.device)
        if state.get("train_config_key") != config.key():
            raise RuntimeError(
                f"{self.last_path} belongs to a run with another config; choose another run_name or out_dir, "
                "or delete the folder to start again."
            )
        s.model.load_state_dict(state["state_dict"])
        s.optimizer.load_state_dict(state["optimizer"])
        if s.ema is not None:
            s.ema.load_state_dict(state["ema"])
        s.sampler.load_state_dict(json.loads(state["sampler"]))
        s.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu())
        self.step = int(state["step"])
        self.history = json.loads(state["history"])
        self.best = json.loads(state["best"])
        self.timer.seconds.update(json.loads(state.get("timings", "{}")))
        self.stopped_when_flat = bool(state.get("stopped_when_flat", False))
        self.fitted = bool(state.get("fitted", False))
        self.selection = json.loads(state.get("selection") or "[]")
        if self.done() and run_folder.is_finished(self.run_dir):
            # A finished run: return what it wrote instead of training or evaluating again.
            stored = run_folder.load(self.run_dir)
            return TrainResult(
                run_dir=self.run_dir,
                config=config,
                history=stored["history"],
                metrics=stored["metrics"],
                classes=self.classes,
                timings=stored["record"].get("timings", {}),
            )
        return None

    # -- the loop ---------------------------------------------------------------------------------
    def done(self) -> bool:
        """Whether training is over: all ``config.iterations`` taken, stopped on a flat devel curve, or a
        scikit-learn head fitted."""
        return self.fitted or self.stopped_when_flat or self.step >= self.config.iterations

    def _flat_now(self) -> bool:
        """``stop_when_flat``: is the devel curve flat at this evaluation (from ``min_iterations`` on)?"""
        config = self.config
        if not config.stop_when_flat or self.step < config.min_iterations or self.step >= config.iterations:
            return False
        return bool(curve_flatness(pd.DataFrame(self.history, columns=HISTORY_COLUMNS))["flat"])

    def _devel_scores(self, model: nn.Module) -> tuple[float, float]:
        scores = predict_scores(
            scoring_model(model, self.config, self.device),
            self.x_devel,
            batch_size=self.eval_batch,
            score=self.score_fn,
        )
        met = split_metrics(self.feats["devel"].labels, scores, self.classes)
        return float(met["uar"]), float(met["map"]) if met["map"] is not None else float("nan")

    def evaluate(self, train_loss: float) -> dict:
        """Score devel with the live and the EMA model, keep the best checkpoints, one history row."""
        config, s, step = self.config, self.setup, self.step
        row = {"step": step, "train_loss": train_loss}
        row["uar_plain"], row["map_plain"] = self._devel_scores(s.model)
        if s.ema is not None and step > config.ema_start:
            row["uar_ema"], row["map_ema"] = self._devel_scores(s.ema.shadow)
        else:
            row["uar_ema"] = row["map_ema"] = float("nan")
        self.history.append(row)
        if step >= config.select_from:
            checkpoints = self.run_dir / run_folder.CHECKPOINT_DIR
            if row["uar_plain"] > self.best["plain"]["uar"]:
                self.best["plain"] = {"uar": row["uar_plain"], "step": step}
                save_checkpoint(checkpoints / "best_plain.pt", self._payload(s.model, "best_plain"))
            if s.ema is not None and not math.isnan(row["uar_ema"]) and row["uar_ema"] > self.best["ema"]["uar"]:
                self.best["ema"] = {"uar": row["uar_ema"], "step": step}
                save_checkpoint(checkpoints / "best_ema.pt", self._payload(s.ema.shadow, "best_ema"))
        if s.ema is not None:
            s.ema.after_evaluation(s.model, step - 1)
        return row

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(self.setup.sampler.next_batch()).to(self.device, non_blocking=True)
        if self.bank is None:
            return self.x_train[idx], self.y_train[idx]
        # each example: the original (0) or one of the augmented copies (1..C)
        choice = torch.randint(
            0, self.bank.shape[0] + 1, (idx.shape[0],), generator=self.setup.generator, device=self.device
        )
        x = torch.where((choice == 0)[:, None, None], self.x_train[idx], self.bank[(choice - 1).clamp_min(0), idx])
        return x, self.y_train[idx]

    def fit(self) -> None:
        """A scikit-learn head (logistic, SVM): fit it over its C grid, choose C on devel (the rule is
        :data:`helpers.training.fitted_heads.SELECTION_RULE`), keep a resumable record."""
        config, s = self.config, self.setup
        with self.timer("training_loop"):
            table = fit_linear_head(
                s.model,
                self.x_train,
                self.feats["train"].labels,
                self.x_devel,
                self.feats["devel"].labels,
                config.model_options.get("Cs", DEFAULT_CS),
                seed=config.seed,
            )
        self.selection = table.to_dict(orient="records")
        self.fitted = True
        with self.timer("checkpoints"):
            self.save_last()

    def loop(self) -> None:
        config, s = self.config, self.setup
        if config.is_fitted_head:
            if not self.done():
                self.fit()
            return
        bar = None
        if not self.done():
            # display=progress: silent when asked, yet a runner watching the kernel (make paper) still sees it
            bar = progress_bar(
                config.iterations, f"train {self.run_dir.name}", unit="step", initial=self.step, display=self.progress
            )
        running_loss = torch.zeros((), device=self.device)
        loss_count = 0
        t_loop = time.perf_counter()
        s.model.train()
        while not self.done():
            loss = s.step(*self._batch())
            if s.ema is not None:
                s.ema.update(s.model, self.step)
            running_loss += loss.detach()
            loss_count += 1
            self.step += 1
            step = self.step
            if bar is not None and (step % config.log_every == 0 or step == config.iterations):
                bar.update(step - bar.n)
            if self.has_devel and (step % config.eval_every == 0 or step == config.iterations):
                with self.timer("evaluation"):
                    row = self.evaluate(float(running_loss / max(loss_count, 1)))
                running_loss.zero_()
                loss_count = 0
                if bar is not None:
                    bar.set_postfix(loss=f"{row['train_loss']:.3f}", uar=f"{row['uar_plain']:.3f}")
                self.stopped_when_flat = self._flat_now()
            if step % config.checkpoint_every == 0 or self.done():
                self.timer.add("training_loop", time.perf_counter() - t_loop)
                t_loop = time.perf_counter()
                with self.timer("checkpoints"):
                    self.save_last()
        if bar is not None:
            bar.close()
        self.timer.add("training_loop", time.perf_counter() - t_loop)

    # -- the end ----------------------------------------------------------------------------------
    def finish(self) -> TrainResult:
        """Final scoring, history, metrics, figures and the record (written last: the run is finished)."""
        config, s, run_dir = self.config, self.setup, self.run_dir
        with self.timer("final_evaluation"):
            metrics = final_evaluation(
                run_dir,
                config,
                self.corpus,
                self.feats,
                s.model,
                s.ema,
                self.best,
                self.history,
                self.classes,
                self.settings,
                self.score_fn,
                self.device,
                last_step=self.step,
                selected_on_devel=self.fitted,
            )
        metrics["training"] = {
            "steps": self.step,
            "iterations": config.iterations,
            "stop_when_flat": config.stop_when_flat,
            "min_iterations": config.min_iterations,
            "stopped_when_flat": self.stopped_when_flat,
        }
        if self.fitted:
            metrics["training"]["fitted"] = True  # a scikit-learn head: no steps at all
            chosen = next(row for row in self.selection if row["chosen"])
            metrics["head_selection"] = {"rule": SELECTION_RULE, "chosen_C": chosen["C"], "grid": self.selection}
            write_table(pd.DataFrame(self.selection), run_dir / "head_selection.csv")
            export_final_weights(run_dir, "last_plain")  # the head's one inference checkpoint
        if self.backbone:
            metrics["backbone"] = self.backbone
        history = pd.DataFrame(self.history, columns=HISTORY_COLUMNS)
        write_table(history, run_dir / run_folder.HISTORY)
        metrics["n_parameters"] = count_parameters(s.model, trainable_only=False)
        metrics["n_trainable_parameters"] = count_parameters(s.model)
        write_json_atomic(run_dir / run_folder.METRICS, metrics)
        save_run_figures(run_dir, history, metrics, self.classes)
        timings = self.timer.as_dict()
        fusion_record = (
            {
                name: {
                    "path": str(config.model_options[name]),
                    "sha256": checkpoint_identity(config.model_options[name]),
                }
                for name in ("branch_a", "branch_b")
            }
            if config.model == FUSION
            else None
        )
        write_record(
            run_dir,
            config=config,
            corpus=self.corpus.record(),
            timings=timings,
            extra={
                "device": str(self.device),
                "n_parameters": metrics["n_parameters"],
                "fusion_branches": fusion_record,
                "backbone": self.backbone,
                "init_from": s.init,
                "scoring": {
                    "precision": "bf16-autocast" if self.use_amp else "fp32",
                    "batch": self.eval_batch,
                    "batchnorm": "folded into the convolutions (helpers.evaluation.inference)",
                },
                "feature_settings": self.settings.to_dict(),
                "feature_cache": {split: str(f.cache_path) for split, f in self.feats.items()},
            },
        )
        return TrainResult(
            run_dir=run_dir, config=config, history=history, metrics=metrics, classes=self.classes, timings=timings
        )
