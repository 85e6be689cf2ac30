"""helpers: the importable library behind the notebooks.

Modules (each with its tests in ``tests/test_<module>.py``):
audio (reading, resampling, padding), corpus (challenge-layout reader and validator),
synthetic and demo (named corpora), datasets (build-or-locate by name), download (verified
fetching), features (log-mel front end and cache), fileio (atomic writes, checksums),
notebooks (papermill runner).
"""
__version__ = "0.1.0"
