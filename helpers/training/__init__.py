"""Training: the config and its run key (:mod:`.config`), SpecAugment and MixUp (:mod:`.augment`),
waveform augmentations (:mod:`.wave_augment`), the batch samplers (:mod:`.sampler`), the weight EMA
(:mod:`.ema`), the model/optimiser/step set-up (:mod:`.steps`), the loop (:mod:`.loop`) and the
final scoring of a run (:mod:`.final`).

Notebooks: ``from helpers.training import TrainConfig, train``.
"""

from helpers.training.config import TrainConfig
from helpers.training.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
