"""Several training runs at once: each in its own process, failures reported and kept, finished runs
skipped, thread and GPU settings delivered to the child."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import helpers.experiments.scheduler as parallel
from helpers.experiments.scheduler import RunOutcome, run_trainings
from helpers.data.corpora.synthetic import make_synthetic_corpus
from helpers.training.config import TrainConfig

# Trains models, runs notebooks or starts processes: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

# The narrow CNN10 of tests/test_train.py: a run takes seconds on 2 cores.
TINY = {"channels": [8, 16, 32, 64]}
RUN_FILES = [
    "config.json",
    "record.json",
    "history.csv",
    "metrics.json",
    "submission-test.csv",
    "checkpoints/last.pt",
    "checkpoints/best_plain.pt",
    "checkpoints/best_ema.pt",
    "predictions/test-best_ema.csv",
    "figures/learning_curves.png",
    "worker.log",
]


def _config(base: Path, **kw) -> TrainConfig:
    values = dict(
        corpus="unused",
        sample_rate=8000,
        model="cnn10",
        model_options=TINY,
        iterations=6,
        eval_every=3,
        ema_start=3,
        checkpoint_every=6,
        cache_dir=str(base / "cache"),
        out_dir=str(base / "runs"),
        seed=0,
        device="cpu",
    )
    values.update(kw)
    return TrainConfig(**values)


# A stand-in for the child process, for the tests of the scheduler alone (no torch, no seconds).


class FakeWorker:
    """Stands in for a child: finishes after a few polls, writing the files of a finished run."""

    running: dict[str, int] = {}
    peak: dict[str, int] = {}

    def __init__(self, job_file, env, log_path, polls: int = 3):
        job = json.loads(Path(job_file).read_text())
        self.config = job["config"]
        self.env = env
        self.gpu = env.get("CUDA_VISIBLE_DEVICES", "none")
        self.left = polls
        self.returncode = None
        FakeWorker.running[self.gpu] = FakeWorker.running.get(self.gpu, 0) + 1
        FakeWorker.peak[self.gpu] = max(FakeWorker.peak.get(self.gpu, 0), FakeWorker.running[self.gpu])
        Path(log_path).write_text("fake\n")

    def poll(self):
        if self.returncode is None:
            self.left -= 1
            if self.left <= 0:
                run_dir = TrainConfig.from_dict(self.config).run_dir()
                (run_dir / "metrics.json").write_text("{}")
                (run_dir / "record.json").write_text("{}")
                FakeWorker.running[self.gpu] -= 1
                self.returncode = 0
        return self.returncode


@pytest.fixture
def fake_machine(monkeypatch):
    started: list[FakeWorker] = []
    FakeWorker.running, FakeWorker.peak = {}, {}

    def start(job_file, env, log_path):
        worker = FakeWorker(job_file, env, log_path)
        started.append(worker)
        return worker

    monkeypatch.setattr(parallel, "start_worker", start)
    monkeypatch.setattr(parallel, "_precompute_features", lambda jobs, root, progress: {})
    monkeypatch.setattr(parallel, "POLL_SECONDS", 0.001)
    monkeypatch.setattr(parallel, "available_cores", lambda: 16)
    return started


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Two good runs and one that fails inside the child, two at a time, one thread each."""
    base = tmp_path_factory.mktemp("parallel")
    root = make_synthetic_corpus(
        base / "corpus", n_clips=40, seed=5, hidden_test_labels=False, class_proportions=[1, 1, 1, 1, 1]
    )
    # TrainConfig accepts any model name; only create_model, in the child, rejects it.
    configs = [_config(base, seed=0), _config(base, model="no_such_model", run_name="broken"), _config(base, seed=1)]
    outcomes = run_trainings(configs, cpu_workers=2, threads_per_run=1, corpus_root=str(root), progress=False)
    failed_json = configs[1].run_dir() / "failed.json"
    return {
        "base": base,
        "root": root,
        "configs": configs,
        "outcomes": outcomes,
        "failed_json": json.loads(failed_json.read_text()) if failed_json.is_file() else None,
    }


def test_good_runs_finish_with_complete_folders(grid):
    outcomes = grid["outcomes"]
    assert [o.status for o in outcomes] == ["finished", "failed", "finished"], [o.error for o in outcomes]
    for i in (0, 2):
        outcome, config = outcomes[i], grid["configs"][i]
        assert outcome.run_dir == config.run_dir() and outcome.placement == "cpu" and outcome.error is None
        for rel in RUN_FILES:
            assert (outcome.run_dir / rel).is_file(), rel
        assert not (outcome.run_dir / "failed.json").exists()
        assert outcome.metrics == json.loads((outcome.run_dir / "metrics.json").read_text())
        assert outcome.seconds > 0
    assert outcomes[0].run_dir != outcomes[2].run_dir


def test_thread_settings_reach_the_child(grid):
    for i in (0, 2):
        run_dir = grid["outcomes"][i].run_dir
        record = json.loads((run_dir / "record.json").read_text())
        assert record["machine"]["torch_threads"] == 1
        assert json.loads((run_dir / "config.json").read_text())["num_threads"] == 1
        assert "OMP_NUM_THREADS=1" in (run_dir / "worker.log").read_text()
        assert grid["outcomes"][i].config.num_threads == 1


def test_failure_inside_the_child_is_reported_and_kept(grid):
    outcome = grid["outcomes"][1]
    assert outcome.status == "failed" and outcome.metrics is None
    assert outcome.error.startswith("ValueError: unknown model 'no_such_model'")
    assert "create_model" in outcome.error  # the traceback's last lines
    assert str(outcome.run_dir) in outcome.error and "worker.log" in outcome.error
    saved = grid["failed_json"]
    assert saved is not None, "failed.json was not written"
    assert saved["error_type"] == "ValueError" and "no_such_model" in saved["message"]
    assert saved["run_dir"] == str(outcome.run_dir) and saved["config"]["model"] == "no_such_model"


def test_second_call_starts_no_process_for_finished_runs(grid, monkeypatch):
    def no_start(job_file, env, log_path):
        raise AssertionError(f"a process was started for a finished run: {job_file}")

    monkeypatch.setattr(parallel, "start_worker", no_start)
    good = [grid["configs"][0], grid["configs"][2]]
    again = run_trainings(good, cpu_workers=2, threads_per_run=1, corpus_root=str(grid["root"]), progress=False)
    assert [o.status for o in again] == ["skipped", "skipped"]
    assert again[0].metrics == grid["outcomes"][0].metrics and again[0].seconds == 0.0 and again[0].error is None


def test_redo_clears_the_run_artefacts_and_starts_again(grid, fake_machine, monkeypatch, tmp_path):
    # On a copy of a finished run, so the other tests keep their folders.
    finished = grid["configs"][0]
    copy = TrainConfig(**{**finished.to_dict(), "out_dir": str(tmp_path / "runs")})
    shutil.copytree(finished.run_dir(), copy.run_dir())
    (copy.run_dir() / "notes.txt").write_text("not a run artefact: redo must leave it alone")
    assert parallel.config_finished(copy)
    seen_at_start = {}

    def start(job_file, env, log_path):
        seen_at_start.update(
            {
                rel: (copy.run_dir() / rel).exists()
                for rel in ["metrics.json", "checkpoints", "figures", "config.json", "notes.txt"]
            }
        )
        return FakeWorker(job_file, env, log_path)

    monkeypatch.setattr(parallel, "start_worker", start)
    [outcome] = run_trainings([copy], cpu_workers=1, threads_per_run=1, redo=True, progress=False)
    assert outcome.status == "finished"
    assert seen_at_start == {
        "metrics.json": False,
        "checkpoints": False,
        "figures": False,
        "config.json": False,
        "notes.txt": True,
    }


def test_later_success_removes_failed_json(fake_machine, monkeypatch, tmp_path):
    monkeypatch.setattr(parallel, "visible_gpus", lambda: [])
    config = _config(tmp_path, run_name="flaky")
    config.run_dir().mkdir(parents=True)
    (config.run_dir() / "failed.json").write_text('{"status": "failed"}')
    [outcome] = run_trainings([config], progress=False)
    assert outcome.status == "finished" and not (config.run_dir() / "failed.json").exists()


# --- the scheduler alone ----------------------------------------------------------------------


def test_gpu_slots_round_robin_and_pinning(fake_machine, monkeypatch, tmp_path):
    monkeypatch.setattr(parallel, "visible_gpus", lambda: ["0", "GPU-abc"])
    configs = [_config(tmp_path, seed=s, device="auto") for s in range(5)]
    configs += [_config(tmp_path, seed=10, device="cuda:1"), _config(tmp_path, seed=11, device="cpu")]
    outcomes = run_trainings(configs, max_per_gpu=2, cpu_workers=1, progress=False)
    assert all(isinstance(o, RunOutcome) and o.status == "finished" for o in outcomes)
    assert [o.config.seed for o in outcomes] == [0, 1, 2, 3, 4, 10, 11]  # the order of configs
    by_seed = {w.config["seed"]: w for w in fake_machine}
    assert [by_seed[s].gpu for s in range(4)] == ["0", "GPU-abc", "0", "GPU-abc"]  # round robin
    assert by_seed[10].gpu == "GPU-abc" and outcomes[5].placement == "gpu GPU-abc"  # cuda:1 stays on GPU 1
    assert by_seed[11].gpu == "" and outcomes[6].placement == "cpu"  # a CPU run sees no GPU
    assert FakeWorker.peak["0"] == 2 and FakeWorker.peak["GPU-abc"] == 2  # never more than max_per_gpu
    assert all(w.config["device"] == "cuda" for s, w in by_seed.items() if s != 11)
    # 16 cores over 4 GPU slots + 1 CPU worker: 3 threads each, in the env and in the config
    assert {w.env["OMP_NUM_THREADS"] for w in fake_machine} == {"3"}
    assert {w.config["num_threads"] for w in fake_machine} == {3}


def test_cpu_pool_thread_budget_and_oversubscription_warning(fake_machine, monkeypatch, tmp_path):
    monkeypatch.setattr(parallel, "visible_gpus", lambda: [])
    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    configs = [_config(tmp_path, seed=s, device="auto") for s in range(4)]
    with pytest.warns(RuntimeWarning, match="oversubscribe the 2 cores"):
        run_trainings(configs, cpu_workers=4, progress=False)
    assert FakeWorker.peak["none"] == 4
    assert {w.env[v] for w in fake_machine for v in parallel.THREAD_ENV_VARS} == {"1"}
    # the defaults on 2 cores: two runs at a time with one thread each (measured faster)
    fake_machine.clear()
    FakeWorker.running, FakeWorker.peak = {}, {}
    run_trainings([_config(tmp_path / "b", seed=s) for s in range(3)], progress=False)
    assert FakeWorker.peak["none"] == 2 and {w.config["num_threads"] for w in fake_machine} == {1}


def test_worker_that_dies_without_report_is_a_failure(fake_machine, monkeypatch, tmp_path):
    monkeypatch.setattr(parallel, "visible_gpus", lambda: [])

    class Killed(FakeWorker):
        def poll(self):
            return -9

    monkeypatch.setattr(parallel, "start_worker", lambda job, env, log: Killed(job, env, log))
    [outcome] = run_trainings([_config(tmp_path)], progress=False)
    assert outcome.status == "failed" and "signal 9" in outcome.error and "out-of-memory" in outcome.error
    assert json.loads((outcome.run_dir / "failed.json").read_text())["returncode"] == -9


def test_shared_run_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="share the run folder"):
        run_trainings([_config(tmp_path), _config(tmp_path, device="auto")], progress=False)


def test_worker_module_reports_usage():
    import sys

    proc = subprocess.run([sys.executable, "-m", "helpers.experiments.worker"], capture_output=True, text=True)
    assert proc.returncode == 2 and "run_trainings" in proc.stderr


def test_runs_through_the_training_notebook(grid, tmp_path):
    # The same machinery, but each child executes notebooks/03_train.ipynb with papermill.
    good = _config(tmp_path, seed=2, iterations=4, eval_every=2, ema_start=2, checkpoint_every=4)
    bad = _config(tmp_path, model="no_such_model", run_name="broken-nb")
    outcomes = run_trainings(
        [good, bad], cpu_workers=2, threads_per_run=1, corpus_root=str(grid["root"]), progress=False, via="notebook"
    )
    assert [o.status for o in outcomes] == ["finished", "failed"], [o.error for o in outcomes]
    run = outcomes[0].run_dir
    for rel in ["03_train.ipynb", "metrics.json", "record.json", "figures/03_learning_curves.png"]:
        assert (run / rel).is_file(), rel
    assert json.loads((run / "config.json").read_text())["num_threads"] == 1
    # the failing notebook names its cell and the unknown model
    assert "03_train.ipynb: cell" in outcomes[1].error and "no_such_model" in outcomes[1].error
    with pytest.raises(ValueError, match="via="):
        run_trainings([good], via="papermill")


def test_default_cpu_workers():
    assert [parallel.default_cpu_workers(c) for c in (1, 2, 4, 16)] == [1, 2, 2, 8]


def test_oversubscription_warning_points_at_the_caller(fake_machine, monkeypatch, tmp_path):
    monkeypatch.setattr(parallel, "visible_gpus", lambda: [])
    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    with pytest.warns(RuntimeWarning, match="oversubscribe") as caught:
        run_trainings([_config(tmp_path, seed=s) for s in range(3)], cpu_workers=3, threads_per_run=2, progress=False)
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]


def test_ctrl_c_stops_the_started_children(fake_machine, monkeypatch, tmp_path):
    monkeypatch.setattr(parallel, "visible_gpus", lambda: [])
    children: list = []

    class Endless(FakeWorker):
        def poll(self):
            return self.returncode

        def terminate(self):
            self.returncode = -15

        def wait(self, timeout=None):
            return self.returncode

    def start(job_file, env, log_path):
        if len(children) == 2:
            raise KeyboardInterrupt
        children.append(Endless(job_file, env, log_path))
        return children[-1]

    monkeypatch.setattr(parallel, "start_worker", start)
    with pytest.raises(KeyboardInterrupt):
        run_trainings([_config(tmp_path, seed=s) for s in range(3)], cpu_workers=3, progress=False)
    assert [c.returncode for c in children] == [-15, -15]


def test_start_failure_frees_its_gpu_slot(fake_machine, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(parallel, "visible_gpus", lambda: ["0"])

    def start(job_file, env, log_path):
        if json.loads(Path(job_file).read_text())["config"]["seed"] == 0:
            raise OSError("no python here")
        return FakeWorker(job_file, env, log_path)

    monkeypatch.setattr(parallel, "start_worker", start)
    configs = [_config(tmp_path, seed=s, device="auto") for s in range(2)]
    outcomes = run_trainings(configs, max_per_gpu=1)
    assert [o.status for o in outcomes] == ["failed", "finished"]
    assert outcomes[0].error.startswith("OSError: no python here") and outcomes[1].placement == "gpu 0"
    assert json.loads((configs[0].run_dir() / "failed.json").read_text())["error_type"] == "OSError"
    out = capsys.readouterr().out
    assert f"FAILED to start {configs[0].run_dir()}: no python here" in out
    assert f"started {configs[1].run_dir()} on gpu 0 with 16 thread(s)" in out


def test_feature_failure_fails_its_runs_without_starting_them(fake_machine, monkeypatch, tmp_path):
    monkeypatch.setattr(parallel, "visible_gpus", lambda: [])
    report = {"type": "OSError", "message": "preparing the corpus or its features in the parent failed: x"}
    monkeypatch.setattr(
        parallel,
        "_precompute_features",
        lambda jobs, root, progress: {j.index: report for j in jobs if j.config.seed == 1},
    )
    outcomes = run_trainings([_config(tmp_path, seed=s) for s in range(3)], progress=False)
    assert [o.status for o in outcomes] == ["finished", "failed", "finished"]
    assert outcomes[1].placement is None and outcomes[1].seconds == 0.0
    assert sorted(w.config["seed"] for w in fake_machine) == [0, 2]
