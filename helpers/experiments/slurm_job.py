"""The job side of :mod:`helpers.experiments.cluster`: one training run as a requeueable SLURM job.

submitit pickles a :class:`TrainingJob` into the submission folder; on the node,
``python -m submitit.core._submit`` unpickles and calls it. It trains through the same entry point
as the local scheduler's worker process (:func:`helpers.experiments.worker.run_job`, which calls
:func:`helpers.training.train` with ``resume=True``) and returns the run folder.

Preemption and time limits: SLURM sends ``USR2`` (submitit asks for it ``signal_delay_s``
before the limit). submitit then calls :meth:`TrainingJob.checkpoint`, requeues the job under
the same job id and exits. The callable holds no training state: everything needed to continue
is in ``RUN/checkpoints/last.pt``, which the engine writes every ``checkpoint_every`` steps, so
the requeued job resumes from there, and on CPU with a fixed seed it ends with exactly the
weights of an uninterrupted run. Steps after the last checkpoint are trained again.

The requeue itself is made robust: submitit calls ``scontrol requeue`` from its signal handler, and
the requeue makes SLURM send SIGTERM to the job's processes, which can kill that ``scontrol`` before
it exits (seen as ``CalledProcessError ... died with SIGTERM`` and a failed run). The job runs it
with SIGTERM ignored (:func:`helpers.core.slurm.install_robust_requeue`).

Imported only when a grid runs with ``executor="slurm"`` (and by the job itself): it needs submitit.
"""

from __future__ import annotations

import os
from pathlib import Path

from submitit.helpers import Checkpointable, DelayedSubmission

from helpers.core import run_folder
from helpers.core.slurm import install_robust_requeue


class TrainingJob(Checkpointable):
    """Train one config in a SLURM job; ``job()`` returns the run folder (a str).

    ``config``: ``TrainConfig.to_dict()`` (``num_threads`` already the job's CPU count).
    ``corpus_root``: a corpus folder every run reads instead of the config's named corpus, or None.
    ``workdir``: the submitting process's working directory: relative paths in the config
    (``out_dir``, ``cache_dir``, ``data_dir``) mean the same on the node (a shared file system).
    ``via``: ``"python"`` or ``"notebook"``, as in :func:`helpers.experiments.scheduler.run_trainings`.
    """

    def __init__(self, config: dict, corpus_root: str | None, workdir: str, via: str = "python") -> None:
        self.config = dict(config)
        self.corpus_root = corpus_root
        self.workdir = workdir
        self.via = via

    def __call__(self) -> str:
        install_robust_requeue()
        os.chdir(self.workdir)
        threads = self.config.get("num_threads")
        if threads:
            # before the training engine imports torch in this process (the pools read these once)
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                os.environ[name] = str(threads)
        from helpers.experiments.worker import run_job
        from helpers.training.config import TrainConfig

        run_dir = TrainConfig.from_dict(self.config).run_dir()
        self.say_where_it_starts(run_dir)
        run_job({"config": self.config, "corpus_root": self.corpus_root, "via": self.via})
        return str(run_dir)

    @staticmethod
    def say_where_it_starts(run_dir: Path) -> None:
        """One line in the job's log: a fresh start, or the step it resumes from (after a requeue)."""
        last = run_dir / run_folder.LAST_CHECKPOINT
        where = f"starting {run_dir}"
        if last.is_file():
            from helpers.models.checkpoint import load_checkpoint

            where = f"resuming {run_dir} from {last} at step {int(load_checkpoint(last)['step'])}"
        print(f"[slurm job {os.environ.get('SLURM_JOB_ID', '?')}] {where}", flush=True)

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        """What submitit resubmits after preemption or a time limit: this same callable. Nothing
        to save here: ``RUN/checkpoints/last.pt`` holds the run's state (see the module docstring)."""
        return DelayedSubmission(TrainingJob(self.config, self.corpus_root, self.workdir, self.via))
