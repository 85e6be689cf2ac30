"""helpers: the importable library behind the notebooks.

Modules (each with its tests in ``tests/``):
audio (reading, resampling, padding), corpus (challenge-layout reader and validator),
synthetic and demo (named corpora), datasets (build-or-locate by name), download (verified
fetching), features (log-mel front end and cache), models (the paper's networks and their
fusion), augment (SpecAugment, MixUp, waveform augmentation), sampler, ema, metrics (UAR, mAP,
bootstrap), train (the training engine and run folders), evaluate and predict, bench
(throughput against the matmul peak), hardware (devices, threads), parallel and
parallel_worker (several runs at once), embeddings (SVM, t-SNE), grid (the paper's experiments
as configs, profiles), collect (run folders to tables), report (HTML + Markdown report), plots,
runs (records, timers), fileio (atomic writes, checksums), notebooks (papermill runner).
"""
__version__ = "0.1.0"
