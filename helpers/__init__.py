"""helpers: the importable library behind the notebooks, in subpackages by job.

Data flows corpus -> features -> training -> run folder -> collectors -> report:

- :mod:`helpers.data`: audio I/O, the challenge-layout corpus reader and validator, named corpora
  (demo from public recordings, synthetic), verified downloads.
- :mod:`helpers.features`: the log-mel front end, batch extraction, the feature cache.
- :mod:`helpers.models`: the paper's networks, fusion, the registry, the one checkpoint format.
- :mod:`helpers.training`: config and run key, augmentation, samplers, EMA, the loop, final scoring.
- :mod:`helpers.evaluation`: metrics, scoring, fast inference copies, predict, embeddings.
- :mod:`helpers.experiments`: the paper's grids, the run scheduler, collectors, the notebook runner.
- :mod:`helpers.reporting`: plots, display helpers, the HTML/Markdown report.
- :mod:`helpers.core`: files, devices and threads, progress, provenance, the run folder.
- ``helpers.bench`` (developer tool) and ``python -m helpers`` (the command line).

Each subpackage re-exports its public names for short notebook imports
(``from helpers.training import TrainConfig, train``); inside the package, modules import from
concrete modules only.
"""

__version__ = "0.1.0"
