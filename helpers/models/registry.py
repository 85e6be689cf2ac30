"""Models by name: the one registry (:data:`MODELS`) and rebuilding a model from its ``config``.

``create_model("cnn10", n_classes=5)`` gives a freshly initialised network; ``model_from_config``
rebuilds any model (fusion included) from the ``config`` dict a model carries and a checkpoint
stores. No ``eval`` of names: unknown names fail with the list of valid ones.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from helpers.models.fusion import FusionModel
from helpers.models.heads import HEADS, head_from_config
from helpers.models.hierarchical import MultiTaskModel
from helpers.models.networks import (
    HEAD_DROPOUT,
    AudioClassifier,
    CNN10,
    CNN6,
    MobileNetV1,
    N_MELS,
    ResNet22,
    WideResNet,
)

#: Registry name -> model class (the names ``TrainConfig.model`` accepts, besides ``"fusion"``).
MODELS: dict[str, type[AudioClassifier]] = {cls.name: cls for cls in (CNN6, CNN10, MobileNetV1, ResNet22, WideResNet)}


def create_model(name: str, n_classes: int, n_mels: int = N_MELS, **kwargs: Any) -> AudioClassifier:
    """A freshly initialised model by registry name (``"cnn6"``, ``"cnn10"``, ``"mobilenetv1"``,
    ``"resnet22"``, ``"wrn28_2"``); ``kwargs`` are the class's options (e.g. ``block_dropout``).
    Input ``(batch, time, n_mels)`` log-mels in dB."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    return MODELS[name](n_classes, n_mels, **kwargs)


def model_from_config(config: dict[str, Any]) -> nn.Module:
    """A model with the architecture described by ``config`` (a model's ``config`` attribute),
    freshly initialised. Single models go through :data:`MODELS`; ``name="fusion"`` builds both
    branches from their own configs, then the :class:`~helpers.models.fusion.FusionModel`;
    ``name="multitask"`` builds the trunk from its config, then the
    :class:`~helpers.models.hierarchical.MultiTaskModel`."""
    if "name" not in config:
        raise ValueError(f"model config has no 'name' key: {config!r}")
    if config["name"] == FusionModel.name:
        return FusionModel(
            model_from_config(config["branch_a"]),
            model_from_config(config["branch_b"]),
            config["n_classes"],
            freeze=config.get("freeze", True),
            **({"dropout": config["dropout"]} if "dropout" in config else {}),
        )
    if config["name"] == MultiTaskModel.name:
        return MultiTaskModel(
            model_from_config(config["trunk"]),
            config["n_classes"],
            config["background_index"],
            config["score"],
            dropout=config.get("dropout", HEAD_DROPOUT),
        )
    if config["name"] in HEADS:
        return head_from_config(config)
    options = {k: v for k, v in config.items() if k not in ("name", "n_classes", "n_mels")}
    return create_model(config["name"], config["n_classes"], config.get("n_mels", N_MELS), **options)
