"""What one training run steps with: the model, Adam, EMA, the sampler and the step function.

:func:`build_training` builds them exactly as :func:`helpers.training.train` uses them; the
benchmarks call it too, so they measure the same computation. :func:`scoring_model` is the fast
copy every score of a run comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from helpers.evaluation.inference import prepare_for_inference
from helpers.models.checkpoint import fusion_from_checkpoints
from helpers.models.heads import EmbeddingHead, is_head
from helpers.models.hierarchical import MultiTaskModel
from helpers.models.pretrained_init import initialise_from
from helpers.models.registry import create_model
from helpers.training.augment import ce_loss, mixup, mixup_bce_loss, sample_mixup_lambda, SpecAugmentConfig
from helpers.training.config import FUSION, MULTITASK, TrainConfig, autocast_enabled, fusion_options, score_function
from helpers.training.multitask import multitask_loss
from helpers.training.ema import ExponentialMovingAverage
from helpers.training.sampler import BalancedBatchSampler, UniformBatchSampler


def scoring_model(model: nn.Module, config: TrainConfig, device: torch.device) -> nn.Module:
    """The fast scoring copy the run evaluates with: BatchNorm folded (fp32 results to ~1e-6), under
    bf16 autocast where training autocasts (:func:`helpers.evaluation.inference.prepare_for_inference`)."""
    precision = "bf16" if autocast_enabled(config, device) else "fp32"
    return prepare_for_inference(model, precision, channels_last=config.channels_last)


def make_step_function(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    n_classes: int,
    device: torch.device,
    generator: torch.Generator,
):
    """One optimisation step as the config says, as a function ``step(x, y) -> loss``.

    ``x``: log-mels ``(draw, time, mel)`` on the device, ``y``: class indices ``(draw,)``, where
    ``draw`` is ``2 * batch_size`` with MixUp (pairs are mixed into one batch) and ``batch_size``
    without. Order: first BatchNorm, SpecAugment, MixUp, rest of the model, loss, Adam step, as
    in the authors' code. The loss is returned as a device tensor (no host synchronisation).
    Shared by :func:`train` and the benchmarks, so both measure the same computation.

    With ``hierarchy="multitask"`` the model is a :class:`~helpers.models.hierarchical.MultiTaskModel`:
    the same augmentation, then its two heads and :func:`helpers.training.multitask.multitask_loss`
    on the (mixed) one-hot class targets.
    """
    spec = SpecAugmentConfig(
        enabled=config.spec_augment,
        mode=config.spec_augment_mode,
        max_time_stripes=config.spec_max_stripes,
        max_freq_stripes=config.spec_max_stripes,
        time_width=config.spec_time_width,
        freq_width=config.spec_freq_width,
        min_stripes=config.spec_max_stripes if config.spec_augment_mode == "per_example" else None,
    )
    use_amp = autocast_enabled(config, device)
    to_channels_last = config.channels_last
    if config.hierarchy == MULTITASK:
        return _multitask_step_function(model, optimizer, config, n_classes, device, generator, spec)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            z = model.normalize(x)
            if to_channels_last and z.dim() == 4:  # embedding heads take (batch, dim)
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


def _multitask_step_function(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    n_classes: int,
    device: torch.device,
    generator: torch.Generator,
    spec: SpecAugmentConfig,
):
    """:func:`make_step_function` for a multi-task model: first BN, SpecAugment, MixUp of one-hot targets
    (when on), both heads, the weighted sum of the call and species losses, Adam step."""
    if not isinstance(model, MultiTaskModel):
        raise ValueError(
            f"hierarchy='multitask' needs a MultiTaskModel, got {type(model).__name__}; build it "
            "with helpers.training.steps.build_training(..., classes=...)."
        )
    use_amp = autocast_enabled(config, device)
    score = score_function(config)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            z = model.normalize(x)
            if config.channels_last:
                z = z.contiguous(memory_format=torch.channels_last)
            z = spec.apply(z, generator)
            targets = torch.nn.functional.one_hot(y, n_classes).float()
            if config.mixup:
                lam = sample_mixup_lambda(config.mixup_alpha, generator)
                z, targets = mixup(z, targets, lam)
            call_logit, species_logits, _ = model.heads_normalized(z)
            loss = multitask_loss(
                call_logit, species_logits, targets, model.background_index, config.call_loss_weight, score
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def build_multitask_model(config: TrainConfig, classes: Sequence[str] | None) -> MultiTaskModel:
    """The multi-task model of ``config``: a registry trunk (``config.model``, ``model_options``) for the
    K-1 call classes, a call head, outputs in the run's score convention. ``classes``: the corpus's
    class names, which must contain ``config.background_class``."""
    if classes is None:
        raise ValueError(
            "hierarchy='multitask' needs the class names to find the background class: pass "
            "build_training(..., classes=corpus.classes)."
        )
    classes = list(classes)
    if config.background_class not in classes:
        raise ValueError(
            f"TrainConfig.background_class={config.background_class!r} is not a class of this corpus "
            f"{classes}; set background_class to the corpus's no-call class."
        )
    options = {"n_mels": config.n_mels, **config.model_options}
    trunk = create_model(config.model, n_classes=len(classes) - 1, **options)
    return MultiTaskModel(trunk, len(classes), classes.index(config.background_class), score_function(config))


def build_fusion_model(config: TrainConfig, n_classes: int) -> nn.Module:
    """The fusion model of ``config`` (see :func:`fusion_options`): both branches loaded from their
    checkpoints, which must have been trained on this config's sample rate and ``n_classes`` classes."""
    options = fusion_options(config)
    return fusion_from_checkpoints(
        options["branch_a"],
        options["branch_b"],
        n_classes,
        freeze=bool(options["freeze"]),
        sample_rate=config.sample_rate,
    )


@dataclass
class TrainingSetup:
    """Everything one training run steps with, built by :func:`build_training`."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: ExponentialMovingAverage | None
    sampler: BalancedBatchSampler | UniformBatchSampler
    generator: torch.Generator
    step: Any  # step(x, y) -> loss, from make_step_function
    init: dict | None = None  # what init_from loaded and skipped (helpers.models.pretrained_init.InitReport)


def build_training(
    config: TrainConfig,
    n_classes: int,
    device: torch.device,
    train_labels: np.ndarray,
    classes: Sequence[str] | None = None,
    train_features: np.ndarray | None = None,
) -> TrainingSetup:
    """Seed, model (channels-last when configured), Adam, EMA, sampler, augmentation generator and
    the step function, exactly as :func:`train` uses them (the benchmarks call this too, so they
    measure the same thing). ``train_labels``: class indices ``(n_train,)`` for the sampler;
    ``classes``: the class names, needed by ``hierarchy="multitask"`` (to find the background class);
    ``train_features``: the training embeddings ``(n_train, dim)``, needed by a head on a pretrained
    backbone (its standardisation). ``config.init_from`` loads starting weights
    (:func:`helpers.models.pretrained_init.initialise_from`) before the optimiser is built."""
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    if config.hierarchy == MULTITASK:
        if classes is not None and len(classes) != n_classes:
            raise ValueError(f"build_training: {len(classes)} class names for n_classes={n_classes}.")
        model = build_multitask_model(config, classes).to(device)
    elif config.model == FUSION:
        model = build_fusion_model(config, n_classes).to(device)
    elif is_head(config.model):
        if train_features is None:
            raise ValueError(f"build_training: {config.model} needs train_features, the training embeddings.")
        options = {k: v for k, v in config.model_options.items() if k != "Cs"}
        model = EmbeddingHead(config.model, n_classes, in_features=int(train_features.shape[1]), **options)
        model.set_standardisation(train_features)
        model = model.to(device)
    else:
        options = {"n_mels": config.n_mels, **config.model_options}
        model = create_model(config.model, n_classes=n_classes, **options).to(device)
    init = None
    if config.init_from:
        report = initialise_from(model, config.init_from, config.feature_settings())
        init = {
            "path": report.path,
            "source": report.source,
            "loaded": report.loaded,
            "skipped": report.skipped,
            "new": report.new,
        }
    if config.channels_last:
        # NHWC lets the convolution kernels (cuDNN and oneDNN alike) skip layout conversions.
        model = model.to(memory_format=torch.channels_last)
    # Frozen fusion branches have requires_grad=False: Adam only sees what learns.
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, amsgrad=config.amsgrad
    )
    ema = (
        ExponentialMovingAverage(
            model,
            decay=config.ema_decay,
            start_step=config.ema_start,
            mode=config.ema_mode,
            decay_schedule=config.ema_decay_schedule,
            average_buffers=config.ema_average_buffers,
        )
        if config.ema and not config.is_fitted_head
        else None
    )
    draw = config.batch_size * (2 if config.mixup else 1)  # MixUp halves 2B examples into B
    if config.sampler == "balanced":
        sampler = BalancedBatchSampler(
            train_labels, draw, seed=config.seed, n_classes=n_classes, shuffle_slots=config.mixup_pairs == "shuffled"
        )
    else:
        sampler = UniformBatchSampler(len(train_labels), draw, seed=config.seed)
    gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    step = make_step_function(model, optimizer, config, n_classes, device, gen)
    return TrainingSetup(model, optimizer, ema, sampler, gen, step, init)
