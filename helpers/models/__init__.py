"""Models: the paper's networks (:mod:`.networks`), their fusion (:mod:`.fusion`), the background-first
multi-task model (:mod:`.hierarchical`), the registry by
name (:mod:`.registry`), the one checkpoint format and loader (:mod:`.checkpoint`) and size and
cost (:mod:`.cost`)."""

from helpers.models.checkpoint import (
    checkpoint_payload,
    load_checkpoint,
    load_model,
    model_from_checkpoint,
    save_checkpoint,
)
from helpers.models.cost import count_parameters, forward_flops
from helpers.models.fusion import FusionModel
from helpers.models.hierarchical import MultiTaskModel
from helpers.models.networks import N_MELS, PAPER_PARAMETER_COUNTS
from helpers.models.registry import MODELS, create_model, model_from_config

__all__ = [
    "MODELS",
    "N_MELS",
    "PAPER_PARAMETER_COUNTS",
    "FusionModel",
    "MultiTaskModel",
    "checkpoint_payload",
    "count_parameters",
    "create_model",
    "forward_flops",
    "load_checkpoint",
    "load_model",
    "model_from_checkpoint",
    "model_from_config",
    "save_checkpoint",
]
