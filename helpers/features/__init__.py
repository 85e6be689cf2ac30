"""Log-mel features, in three modules by job:

- :mod:`helpers.features.frontend`: the front end (docs/reference.md §2): its constants and
  :data:`FEATURE_VERSION`, :class:`FeatureSettings`, the torch module :class:`LogMel` (its mel
  filterbank from torchaudio, :func:`mel_filterbank`) and the one-call helper :func:`logmel`.
- :mod:`helpers.features.extract`: batch extraction of many audio files
  (:func:`extract_logmels`) or in-memory waveforms (:func:`logmels_of_waveforms`) in worker
  blocks on the CPU or batches on a device.
- :mod:`helpers.features.cache`: the on-disk cache of one split's features
  (:func:`load_features`, :class:`FeatureSet`, :func:`audio_checksums`, :func:`cache_key`).

Imports: frontend <- extract <- cache; none imports this package's ``__init__``.
"""

from helpers.features.cache import (
    CHECKSUM_MEMO,
    REQUIRED_COLUMNS,
    FeatureSet,
    audio_checksums,
    cache_key,
    load_features,
)
from helpers.features.extract import (
    available_cores,
    CPU_BLOCK_CLIPS,
    default_num_workers,
    extract_logmels,
    logmels_of_waveforms,
)
from helpers.features.frontend import (
    AMIN,
    FEATURE_VERSION,
    FFT_PRECISIONS,
    FMIN,
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    FeatureSettings,
    LogMel,
    logmel,
    mel_filterbank,
)

__all__ = [
    "AMIN",
    "CHECKSUM_MEMO",
    "CPU_BLOCK_CLIPS",
    "FEATURE_VERSION",
    "FFT_PRECISIONS",
    "FMIN",
    "HOP_LENGTH",
    "N_FFT",
    "N_MELS",
    "REQUIRED_COLUMNS",
    "FeatureSet",
    "FeatureSettings",
    "LogMel",
    "audio_checksums",
    "available_cores",
    "cache_key",
    "default_num_workers",
    "extract_logmels",
    "load_features",
    "logmel",
    "logmels_of_waveforms",
    "mel_filterbank",
]
