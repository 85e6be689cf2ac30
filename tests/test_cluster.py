"""Grids on SLURM (helpers.experiments.cluster): options, job map, rows, and a real SLURM.

Two parts:

* fast unit tests of the options file, the job map's bookkeeping (attach, stale entries), the
  rows of failed and finished jobs and the routing in run_grid: no SLURM needed;
* tests marked ``slurm`` (and ``slow``) that run against a **real** single-node SLURM: a three-run
  grid (one run fails) through SLURM and through the local scheduler, giving the same table, and a
  job interrupted mid-run (submitit's simulated preemption), requeued, resumed from last.pt, whose
  final weights equal an uninterrupted run's; and a second call that attaches to the job a killed
  first call (a closed notebook) had submitted, instead of submitting it again.

Where the SLURM comes from (fixture ``slurm_cluster``): one that answers already (``sinfo`` with
the environment's ``SLURM_CONF``, or the configuration ``scripts/slurm_local.sh`` writes); else,
as root under ``CI=true``, the fixture starts one with ``scripts/slurm_local.sh start`` (installs
slurm-wlm, slurmdbd and MariaDB with apt-get when missing: about 30 s; start-up about 5 s) and
stops it afterwards; else the tests skip, saying how to run them::

    scripts/slurm_local.sh start && eval "$(scripts/slurm_local.sh env)"
    .venv/bin/python -m pytest tests/test_cluster.py -m slurm

Every SLURM test has a hard timeout (:func:`_within`): on expiry its jobs are cancelled and it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import helpers.experiments.cluster as cluster
from helpers.experiments import grid
from helpers.core.slurm import (
    SlurmOptions,
    entry_state,
    format_counts,
    job_error_report,
    progress_category,
    read_slurm_options,
    slurm_options,
)
from helpers.experiments.cluster import failed_outcome, finished_outcome, job_entry, read_job_map, write_job_map
from helpers.training.config import TrainConfig
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "slurm_local.sh"
LOCAL_SLURM_CONF = Path(os.environ.get("SLURM_LOCAL_ROOT", "/tmp/helpers-slurm")) / "etc" / "slurm.conf"
# The narrow CNN10 of tests/test_parallel.py: a run takes seconds on 2 cores.
TINY = {"channels": [8, 16, 32, 64]}


def _config(base: Path, out: str = "runs", **kw) -> TrainConfig:
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
        out_dir=str(base / out),
        seed=0,
        device="cpu",
    )
    values.update(kw)
    return TrainConfig(**values)


# --- options ----------------------------------------------------------------------------------------


def test_options_file_maps_onto_submitit_parameters(tmp_path):
    path = tmp_path / "slurm.json"
    path.write_text(
        json.dumps(
            {
                "partition": "gpu",
                "gpus_per_node": 1,
                "cpus_per_task": 4,
                "mem_gb": 16,
                "timeout_min": 240,
                "max_requeues": 5,
                "array_parallelism": 8,
                "additional_parameters": {"account": "proj42", "qos": "high"},
                "setup": ["module load cuda"],
                "python": "/envs/p/bin/python",
                "folder": "runs/submitit",
                "poll_seconds": 10,
            }
        )
    )
    options = read_slurm_options(path)
    assert options.partition == "gpu" and options.max_requeues == 5 and options.python == "/envs/p/bin/python"
    assert options.submitit_parameters("helpers-grid-x") == {
        "name": "helpers-grid-x",
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": 4,
        "mem_gb": 16,
        "timeout_min": 240,
        "slurm_array_parallelism": 8,
        "gpus_per_node": 1,
        "slurm_partition": "gpu",
        "slurm_additional_parameters": {"account": "proj42", "qos": "high"},
        "slurm_setup": ["module load cuda"],
    }
    # no GPUs and no partition: neither is asked for (a CPU-only cluster rejects --gpus-per-node)
    defaults = SlurmOptions().submitit_parameters("n")
    assert "gpus_per_node" not in defaults and "slurm_partition" not in defaults
    assert defaults["cpus_per_task"] == 2 and defaults["timeout_min"] == 60


def test_options_from_yaml_a_mapping_or_nothing(tmp_path):
    path = tmp_path / "slurm.yaml"
    path.write_text("partition: short\ncpus_per_task: 1\nadditional_parameters:\n  account: lab\n")
    assert read_slurm_options(path) == SlurmOptions(
        partition="short", cpus_per_task=1, additional_parameters={"account": "lab"}
    )
    assert slurm_options(None) == SlurmOptions()
    assert slurm_options({"mem_gb": 2.5}).mem_gb == 2.5
    assert slurm_options(str(path)).partition == "short"


def test_options_errors_name_the_file_the_key_and_the_fix(tmp_path):
    path = tmp_path / "slurm.json"
    path.write_text('{"partiton": "gpu"}')
    with pytest.raises(ValueError, match=r"slurm.json: unknown key\(s\) \['partiton'\]; known keys: .*partition"):
        read_slurm_options(path)
    path.write_text('{"cpus_per_task": "4", "mem_gb": -1}')
    with pytest.raises(ValueError) as info:
        read_slurm_options(path)
    assert "slurm.json: cpus_per_task must be an integer >= 1, got '4'" in str(info.value)
    assert "mem_gb must be a number of GB > 0, got -1" in str(info.value)
    path.write_text('{\n  "partition": "gpu",\n}')
    with pytest.raises(ValueError, match=r"slurm.json line 3, column 1: not valid JSON"):
        read_slurm_options(path)
    with pytest.raises(FileNotFoundError, match="no-such.json"):
        read_slurm_options(tmp_path / "no-such.json")


# --- the job map --------------------------------------------------------------------------------------


def test_job_map_round_trip_and_unreadable_map(tmp_path):
    config = _config(tmp_path)
    entry = job_entry("12_3", "helpers-grid-a", tmp_path / "sub", config)
    assert entry["key"] == config.key() and entry["job_id"] == "12_3" and entry["folder"] == str(tmp_path / "sub")
    assert read_job_map(tmp_path) == {}
    write_job_map(tmp_path, {str(config.run_dir()): entry})
    assert read_job_map(tmp_path) == {str(config.run_dir()): entry}
    (tmp_path / cluster.JOB_MAP).write_text("{half")
    with pytest.raises(ValueError, match="jobs.json: unreadable job map .*delete it"):
        read_job_map(tmp_path)


def test_an_entry_counts_only_while_the_queue_lists_its_id_with_its_name():
    entry = {"job_id": "7", "name": "helpers-grid-mine"}
    assert entry_state(None, {}) == "none"
    assert entry_state(entry, {"7": ("helpers-grid-mine", "PENDING")}) == "live"
    assert entry_state(entry, {"7": ("helpers-grid-mine", "RUNNING")}) == "live"
    assert entry_state(entry, {"7": ("helpers-grid-mine", "REQUEUED")}) == "live"
    assert entry_state(entry, {}) == "gone"  # ended and left the queue
    assert entry_state(entry, {"7": ("helpers-grid-mine", "COMPLETED")}) == "gone"
    # a reset SLURM restarts ids at 1: job 7 is now somebody else's
    assert entry_state(entry, {"7": ("other-job", "RUNNING")}) == "gone"


def test_progress_counts():
    assert progress_category("PENDING") == "queued" and progress_category("REQUEUED") == "queued"
    assert progress_category(None) == "queued" and progress_category("RUNNING") == "running"
    assert progress_category("CANCELLED by 0") == "queued"  # not done until its result says so
    assert format_counts({"queued": 3, "running": 1, "done": 2}) == "3 queued, 1 running, 2 done, 0 failed"


def _fake_run_on_slurm(monkeypatch, queue):
    """run_on_slurm with SLURM's side replaced: records what it attaches to, submits and watches."""
    seen = {"attached": [], "submitted": [], "watched": []}
    monkeypatch.setattr(cluster, "require_slurm", lambda: None)
    monkeypatch.setattr(cluster, "queued_jobs", lambda: dict(queue))

    def attach(entry):
        seen["attached"].append(entry["job_id"])
        return entry["job_id"]

    def submit(configs, indices, options, folder, entries, outcomes, corpus_root, via, progress, say):
        seen["submitted"].extend(indices)
        for i in indices:
            entries[str(configs[i].run_dir().resolve())] = job_entry(f"new{i}", "helpers-grid-new", folder, configs[i])
        write_job_map(folder, entries)
        return [cluster._Watched(i, f"new{i}", 0.0) for i in indices]

    def watch(configs, watched, outcomes, options, say, progress):
        seen["watched"].extend(w.job for w in watched)
        for w in watched:
            outcomes[w.index] = cluster.RunOutcome(
                config=configs[w.index], run_dir=configs[w.index].run_dir(), status="finished", seconds=1.0
            )

    monkeypatch.setattr(cluster, "_attach", attach)
    monkeypatch.setattr(cluster, "_submit", submit)
    monkeypatch.setattr(cluster, "_watch", watch)
    return seen


def test_a_second_call_attaches_to_live_jobs_skips_finished_runs_and_resubmits_stale_ones(tmp_path, monkeypatch):
    finished, live, stale, fresh = (_config(tmp_path, seed=s) for s in range(4))
    _finish(finished)
    folder = tmp_path / "submitit"
    write_job_map(
        folder,
        {
            str(finished.run_dir().resolve()): job_entry("1", "helpers-grid-old", folder / "a", finished),
            str(live.run_dir().resolve()): job_entry("2", "helpers-grid-old", folder / "a", live),
            str(stale.run_dir().resolve()): job_entry("3", "helpers-grid-old", folder / "a", stale),
        },
    )
    # job 2 still runs under our name; id 3 now belongs to another submission (SLURM was reset)
    seen = _fake_run_on_slurm(monkeypatch, {"2": ("helpers-grid-old", "RUNNING"), "3": ("someone", "RUNNING")})
    outcomes = cluster.run_on_slurm([finished, live, stale, fresh], slurm={"folder": str(folder)}, progress=False)
    assert [o.status for o in outcomes] == ["skipped", "finished", "finished", "finished"]
    assert seen["attached"] == ["2"] and seen["submitted"] == [2, 3]
    assert seen["watched"] == ["2", "new2", "new3"]
    entries = read_job_map(folder)
    assert entries[str(stale.run_dir().resolve())]["job_id"] == "new2"  # the stale entry was replaced
    assert entries[str(live.run_dir().resolve())]["job_id"] == "2"


def test_redo_cancels_a_live_job_and_submits_again(tmp_path, monkeypatch):
    config = _config(tmp_path)
    folder = tmp_path / "submitit"
    write_job_map(folder, {str(config.run_dir().resolve()): job_entry("5", "helpers-grid-x", folder / "a", config)})
    cancelled = []
    monkeypatch.setattr(cluster, "_cancel_and_wait", lambda entry, config, say: cancelled.append(entry["job_id"]))
    seen = _fake_run_on_slurm(monkeypatch, {"5": ("helpers-grid-x", "PENDING")})
    outcomes = cluster.run_on_slurm([config], slurm={"folder": str(folder)}, redo=True, progress=False)
    assert cancelled == ["5"] and seen["attached"] == [] and seen["submitted"] == [0]
    assert outcomes[0].status == "finished"


def _finish(config: TrainConfig) -> None:
    """Make ``config``'s run folder look finished (what the scheduler checks)."""
    config.run_dir().mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "record.json"):
        (config.run_dir() / name).write_text("{}")
    (config.run_dir() / "config.json").write_text(json.dumps(config.to_dict()))


def test_without_slurm_the_error_says_how_to_start_one(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"sbatch, squeue, sacct, scancel not found.*scripts/slurm_local.sh start"):
        cluster.run_on_slurm([_config(tmp_path)], progress=False)
    # a grid whose runs all finished needs no SLURM to give its table (a notebook reopened elsewhere)
    done = _config(tmp_path, seed=9)
    _finish(done)
    assert [o.status for o in cluster.run_on_slurm([done], progress=False)] == ["skipped"]


# --- rows -----------------------------------------------------------------------------------------------


def test_failed_job_row_names_the_error_and_the_job_logs(tmp_path):
    from submitit.core.utils import FailedJobError, UncompletedJobError

    config = _config(tmp_path)
    trace = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
        "ValueError: unknown model 'no_such_model'; valid names: cnn10"
    )
    error = FailedJobError(
        f"Job (task=0) failed during processing with trace:\n----------------------\n{trace}\n"
        "----------------------\nYou can check full logs with 'job.stderr(0)'"
    )
    report = job_error_report(error, "FAILED")
    assert report["type"] == "ValueError" and report["message"].startswith("unknown model 'no_such_model'")
    assert "x.py" in report["traceback"]
    logs = (tmp_path / "12_0_log.err", tmp_path / "12_0_log.out")
    outcome = failed_outcome(config, report, 4.0, "12", "FAILED", logs)
    assert outcome.status == "failed" and outcome.log_path == logs[0] and outcome.placement == "slurm job 12"
    first, *rest = outcome.error.splitlines()
    assert first == "ValueError: unknown model 'no_such_model'; valid names: cnn10"
    assert str(logs[0]) in outcome.error and str(logs[1]) in outcome.error and str(config.run_dir()) in outcome.error
    saved = json.loads((config.run_dir() / "failed.json").read_text())
    assert saved["slurm_job_id"] == "12" and saved["logs"] == [str(p) for p in logs]
    assert saved["error_type"] == "ValueError" and saved["config"]["seed"] == 0

    cancelled = job_error_report(
        UncompletedJobError(
            "Job 13 has not produced any output (state: CANCELLED by 0)\nError stream produced:\nslurmstepd: CANCELLED"
        ),
        "CANCELLED",
    )
    assert cancelled["type"] == "UncompletedJobError" and "CANCELLED" in cancelled["message"]
    assert job_error_report(None, "COMPLETED")["type"] == "JobEndedWithoutRun"
    # a run that never got a job (its features failed): no logs to name
    assert "no SLURM job ran" in failed_outcome(config, {"type": "OSError", "message": "disk"}, 0.0).error

    (config.run_dir() / "metrics.json").write_text('{"uar": 1}')
    done = finished_outcome(config, 9.0, "14", logs[1])
    assert done.status == "finished" and done.metrics == {"uar": 1} and not (config.run_dir() / "failed.json").exists()


def test_run_grid_routes_to_slurm_without_the_local_settings(monkeypatch, tmp_path):
    calls = {}

    def fake(configs, slurm=None, redo=False, **kwargs):
        calls.update(slurm=slurm, redo=redo, kwargs=kwargs, n=len(configs))
        return [cluster.RunOutcome(config=c, run_dir=c.run_dir(), status="finished", seconds=1.0) for c in configs]

    monkeypatch.setattr(cluster, "run_on_slurm", fake)
    configs = [_config(tmp_path, seed=0), _config(tmp_path, seed=1), _config(tmp_path, seed=0)]
    table = grid.run_grid(
        configs,
        executor="slurm",
        slurm="slurm.json",
        cpu_workers=2,
        threads_per_run=1,
        max_per_gpu=3,
        via="python",
        progress=False,
    )
    assert calls == {"slurm": "slurm.json", "redo": False, "kwargs": {"via": "python", "progress": False}, "n": 2}
    assert list(table.status) == ["finished"] * 3 and list(table.columns) == grid.GRID_COLUMNS
    with pytest.raises(ValueError, match="executor='local'"):
        grid.run_grid(configs, slurm="slurm.json")
    with pytest.raises(ValueError, match="executor='cloud'"):
        grid.run_grid(configs, executor="cloud")


# --- against a real SLURM ---------------------------------------------------------------------------------


def _answers(env: dict) -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0 and out.stdout.split()[:1] in (["idle"], ["mixed"], ["allocated"])


@pytest.fixture(scope="module")
def slurm_cluster():
    """A SLURM that answers: the environment's, the local script's, or (root, CI=true) one started here."""
    if _answers(dict(os.environ)):
        yield os.environ.get("SLURM_CONF")
        return
    saved = os.environ.get("SLURM_CONF")
    if _local_controller_runs() and _answers({**os.environ, "SLURM_CONF": str(LOCAL_SLURM_CONF)}):
        os.environ["SLURM_CONF"] = str(LOCAL_SLURM_CONF)
        yield str(LOCAL_SLURM_CONF)
        _restore("SLURM_CONF", saved)
        return
    if os.environ.get("CI") != "true" or os.geteuid() != 0:
        pytest.skip(
            "no SLURM answers here (sinfo); start the local one as root with `scripts/slurm_local.sh start` "
            'and `eval "$(scripts/slurm_local.sh env)"` (CI=true as root starts it by itself)'
        )
    try:
        started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{SCRIPT} start took more than 300 s; see its logs under {LOCAL_SLURM_CONF.parent.parent}/log")
    if started.returncode != 0:
        pytest.skip(f"{SCRIPT} start failed (exit {started.returncode}): {started.stderr.strip()[-800:]}")
    os.environ["SLURM_CONF"] = str(LOCAL_SLURM_CONF)
    yield str(LOCAL_SLURM_CONF)
    subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=120)
    _restore("SLURM_CONF", saved)


def _local_controller_runs() -> bool:
    """The local script's slurmctld runs (asking sinfo without one costs about 10 s of retries)."""
    pid_file = LOCAL_SLURM_CONF.parent.parent / "run" / "slurmctld.pid"
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return LOCAL_SLURM_CONF.is_file()


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _within(seconds: float, fn, submitit_dir: Path):
    """``fn()`` in a thread, at most ``seconds``; on expiry cancel the jobs in ``submitit_dir`` and fail."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        ids = (
            [e["job_id"] for e in read_job_map(submitit_dir).values()]
            if (submitit_dir / cluster.JOB_MAP).is_file()
            else []
        )
        if (submitit_dir / "shards.json").is_file():  # a scan's shards
            ids += [e["job_id"] for e in json.loads((submitit_dir / "shards.json").read_text())["shards"].values()]
        for job_id in ids:
            subprocess.run(["scancel", job_id], capture_output=True, timeout=30)
        pytest.fail(f"not done within {seconds} s; cancelled SLURM jobs {ids}; logs under {submitit_dir}")
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from helpers.data.corpora.synthetic import make_synthetic_corpus

    base = tmp_path_factory.mktemp("cluster")
    root = make_synthetic_corpus(
        base / "corpus", n_clips=40, seed=5, hidden_test_labels=False, class_proportions=[1, 1, 1, 1, 1]
    )
    return base, root


#: Fast polling and one CPU per job (the local scheduler below also gives each run one thread,
#: so both train with identical arithmetic). A new submitit folder per test (trap: stale results).
def _test_options(folder: Path) -> dict:
    return {"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 10, "poll_seconds": 1, "folder": str(folder)}


@pytest.mark.slow
@pytest.mark.slurm
def test_three_run_grid_gives_the_same_table_through_slurm_and_locally(slurm_cluster, corpus, tmp_path):
    base, root = corpus
    kinds = [dict(seed=0), dict(model="no_such_model", run_name="broken"), dict(seed=1)]
    on_slurm = [_config(tmp_path, "slurm", cache_dir=str(base / "cache"), **k) for k in kinds]
    local = [_config(tmp_path, "local", cache_dir=str(base / "cache"), **k) for k in kinds]
    folder = tmp_path / "submitit"
    t0 = time.monotonic()
    slurm_table = _within(
        240,
        lambda: grid.run_grid(
            on_slurm, executor="slurm", slurm=_test_options(folder), corpus_root=str(root), progress=False
        ),
        folder,
    )
    slurm_seconds = time.monotonic() - t0
    local_table = grid.run_grid(local, corpus_root=str(root), cpu_workers=2, threads_per_run=1, progress=False)

    assert list(slurm_table.status) == list(local_table.status) == ["finished", "failed", "finished"], list(
        slurm_table.error
    )
    assert slurm_table.error[1].splitlines()[0] == local_table.error[1].splitlines()[0]
    assert slurm_table.error[1].startswith("ValueError: unknown model 'no_such_model'")
    for i in (0, 2):
        metrics_slurm = json.loads((on_slurm[i].run_dir() / "metrics.json").read_text())
        metrics_local = json.loads((local[i].run_dir() / "metrics.json").read_text())
        assert metrics_slurm == metrics_local
        assert json.loads((on_slurm[i].run_dir() / "config.json").read_text())["num_threads"] == 1
    # the failed row names the job's logs, which hold the remote traceback
    saved = json.loads((on_slurm[1].run_dir() / "failed.json").read_text())
    stderr = Path(saved["logs"][0])
    assert str(stderr) in slurm_table.error[1] and stderr.is_file() and "no_such_model" in stderr.read_text()
    # a second call submits nothing for the finished runs
    before = read_job_map(folder)
    again = _within(
        60,
        lambda: grid.run_grid(
            [on_slurm[0], on_slurm[2]],
            executor="slurm",
            slurm=_test_options(folder),
            corpus_root=str(root),
            progress=False,
        ),
        folder,
    )
    assert list(again.status) == ["skipped", "skipped"] and read_job_map(folder) == before
    print(f"three runs through SLURM: {slurm_seconds:.1f} s")


@pytest.mark.slow
@pytest.mark.slurm
def test_a_preempted_job_is_requeued_and_resumes_with_identical_weights(slurm_cluster, corpus, tmp_path):
    import submitit

    from helpers.models.checkpoint import load_checkpoint

    base, root = corpus
    long = dict(iterations=30, checkpoint_every=5, eval_every=10, ema_start=5, seed=3, cache_dir=str(base / "cache"))
    interrupted, plain = _config(tmp_path, "slurm", **long), _config(tmp_path, "local", **long)
    folder = tmp_path / "submitit"
    result: dict = {}

    def run_and_interrupt():
        thread = threading.Thread(
            target=lambda: result.update(
                table=grid.run_grid(
                    [interrupted], executor="slurm", slurm=_test_options(folder), corpus_root=str(root), progress=False
                )
            ),
            daemon=True,
        )
        thread.start()
        last = interrupted.run_dir() / "checkpoints" / "last.pt"
        while not last.is_file():  # the first checkpoint (step 5 of 30): the job is mid-run
            assert thread.is_alive(), "run_grid ended before the job wrote its first checkpoint"
            time.sleep(0.2)
        entry = read_job_map(folder)[str(interrupted.run_dir().resolve())]
        job = submitit.SlurmJob(folder=entry["folder"], job_id=entry["job_id"])
        job._interrupt()  # what SLURM does on preemption: SIGTERM, then USR2
        thread.join()
        return job

    job = _within(300, run_and_interrupt, folder)
    assert list(result["table"].status) == ["finished"], list(result["table"].error)
    log = Path(job.paths.stdout).read_text()
    assert "Requeued job" in log, log[-2000:]
    assert f"resuming {interrupted.run_dir()}" in log and "at step 0" not in log, log[-2000:]
    grid.run_grid([plain], corpus_root=str(root), cpu_workers=1, threads_per_run=1, progress=False)
    a = load_checkpoint(interrupted.run_dir() / "checkpoints" / "last.pt")
    b = load_checkpoint(plain.run_dir() / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 30
    _assert_same(a["state_dict"], b["state_dict"], "state_dict")
    _assert_same(a["ema"], b["ema"], "ema")


def _assert_same(a, b, where: str) -> None:
    """``a`` and ``b`` equal, tensors bit for bit (torch.equal), through nested dicts and lists."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


#: A grid submitted by another process, which is then killed (a closed notebook): its config and options.
SUBMIT_AND_DIE = """
import sys
from helpers.experiments.grid import run_grid
from helpers.training.config import TrainConfig
config = TrainConfig.from_dict(__import__("json").loads(sys.argv[1]))
run_grid([config], executor="slurm", slurm=__import__("json").loads(sys.argv[2]), corpus_root=sys.argv[3],
         progress=False)
"""


@pytest.mark.slow
@pytest.mark.slurm
def test_a_second_call_attaches_to_the_job_a_closed_notebook_submitted(slurm_cluster, corpus, tmp_path):
    base, root = corpus
    config = _config(
        tmp_path, "slurm", iterations=20, eval_every=10, checkpoint_every=10, cache_dir=str(base / "cache")
    )
    folder = tmp_path / "submitit"
    options = _test_options(folder)
    first = subprocess.Popen(
        [sys.executable, "-c", SUBMIT_AND_DIE, json.dumps(config.to_dict()), json.dumps(options), str(root)],
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        while not (folder / cluster.JOB_MAP).is_file():
            assert first.poll() is None and time.monotonic() < deadline, "the first call submitted nothing"
            time.sleep(0.2)
    finally:
        first.kill()  # the notebook is closed: its job goes on
        first.wait()
    submitted = read_job_map(folder)
    table = _within(
        180,
        lambda: grid.run_grid([config], executor="slurm", slurm=options, corpus_root=str(root), progress=False),
        folder,
    )
    assert list(table.status) == ["finished"], list(table.error)
    assert read_job_map(folder) == submitted  # attached to that job, none submitted again
    assert len(list(folder.iterdir())) == 2  # jobs.json and the one submission's folder


# --- scanning an archive as SLURM shards -------------------------------------------------------------------


def _archive(root: Path, n: int = 6, seconds: float = 10.0) -> Path:
    """``n`` good 8-kHz recordings, one whose samples turn NaN (its header reads, its decoding fails in a
    shard) and one that is no audio at all (refused before any job)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(5)
    (root / "site").mkdir(parents=True)
    for i in range(n):
        sf.write(
            str(root / ("site" if i % 2 else "") / f"rec{i}.wav"),
            rng.normal(0, 0.1, int(seconds * 8000)).astype("float32"),
            8000,
        )
    bad = rng.normal(0, 0.1, 8000 * 3).astype("float32")
    bad[8000:] = np.nan
    sf.write(str(root / "nan.wav"), bad, 8000, subtype="FLOAT")
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return root


def _same_outputs(local: Path, slurm: Path, names: list[str]) -> None:
    import pandas as pd

    for name in names:
        for suffix in (".scores.csv", ".detections.csv", ".selections.txt", ".labels.txt"):
            assert (local / f"{name}{suffix}").read_bytes() == (slurm / f"{name}{suffix}").read_bytes(), name + suffix
    for table in ("detections.csv", "detections.selections.txt"):
        assert (local / table).read_text() == (slurm / table).read_text(), table
    errors = [
        pd.read_csv(f / "errors.csv").sort_values("path")[["path", "error"]].reset_index(drop=True)
        for f in (local, slurm)
    ]
    pd.testing.assert_frame_equal(*errors)


SCAN_ARGS = {"hop": 0.1, "threshold": 0.3, "device": "cpu", "progress": False, "decode_workers": 1}


@pytest.mark.slow
@pytest.mark.slurm
def test_an_archive_scans_through_slurm_shards_as_it_does_locally(slurm_cluster, scan_checkpoint, tmp_path):
    from helpers.recordings.scan import scan
    from helpers.recordings.scan_slurm import read_shard_map

    archive = _archive(tmp_path / "archive")
    local = scan(scan_checkpoint, archive, tmp_path / "local", **SCAN_ARGS)
    options = {"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 10, "poll_seconds": 1}
    result = _within(
        240,
        lambda: scan(
            scan_checkpoint,
            archive,
            tmp_path / "slurm",
            executor="slurm",
            slurm=options,
            hours_per_job=25 / 3600,
            **SCAN_ARGS,
        ),
        tmp_path / "slurm" / ".slurm",
    )
    names = sorted(local.recordings["recording"])
    assert sorted(result.recordings["recording"]) == names and len(names) == 6
    # 3 + 10 + 10, 10 + 10, 10 + 10 s: three shards of at most 25 s
    assert set(result.recordings["status"]) == {"scanned"} and result.settings["shards"] == 3
    _same_outputs(tmp_path / "local", tmp_path / "slurm", names)
    errors = result.errors.set_index(result.errors["path"].map(lambda p: Path(p).name))
    assert errors.loc["broken.wav", "shard"] == "" and errors.loc["nan.wav", "shard"] != ""  # met in its shard
    assert "NaN or Inf samples" in errors.loc["nan.wav", "error"]
    # a second call over the finished archive submits nothing, not even for the file a shard could not decode
    shards = read_shard_map(tmp_path / "slurm")["shards"].keys()
    again = scan(scan_checkpoint, archive, tmp_path / "slurm", executor="slurm", slurm=options, **SCAN_ARGS)
    assert set(again.recordings["status"]) == {"resumed"}
    assert set(read_shard_map(tmp_path / "slurm")["shards"]) <= set(shards)  # no shard submitted anew
    assert (
        "NaN or Inf samples"
        in again.errors.set_index(again.errors["path"].map(lambda p: Path(p).name)).loc["nan.wav", "error"]
    )


@pytest.mark.slow
@pytest.mark.slurm
def test_a_preempted_shard_resumes_and_ends_with_the_local_outputs(slurm_cluster, scan_checkpoint, tmp_path):
    import submitit

    from helpers.recordings.scan import scan
    from helpers.recordings.scan_slurm import read_shard_map

    archive = _archive(tmp_path / "archive", n=8, seconds=60.0)
    local = scan(scan_checkpoint, archive, tmp_path / "local", **SCAN_ARGS)
    out = tmp_path / "slurm"
    options = {"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 10, "poll_seconds": 1}
    result: dict = {}

    def run_and_preempt():
        thread = threading.Thread(
            target=lambda: result.update(
                scan=scan(
                    scan_checkpoint, archive, out, executor="slurm", slurm=options, hours_per_job=1.0, **SCAN_ARGS
                )
            ),
            daemon=True,
        )
        thread.start()
        while not list(out.rglob("*.scan.json")):  # the one shard is inside the archive
            assert thread.is_alive(), "the scan ended before its shard finished a recording"
            time.sleep(0.1)
        entry = next(iter(read_shard_map(out)["shards"].values()))
        job = submitit.SlurmJob(folder=entry["folder"], job_id=entry["job_id"])
        job._interrupt()  # what SLURM does on preemption
        thread.join()
        return job

    job = _within(300, run_and_preempt, out / ".slurm")
    assert "Requeued job" in Path(job.paths.stderr).read_text() + Path(job.paths.stdout).read_text()
    assert sorted(result["scan"].recordings["recording"]) == sorted(local.recordings["recording"])
    _same_outputs(tmp_path / "local", out, list(local.recordings["recording"]))


ATTACH_THEN_DIE = """
import json, sys
from helpers.recordings.scan import scan
scan(sys.argv[1], sys.argv[2], sys.argv[3], executor="slurm", slurm=json.loads(sys.argv[4]), hours_per_job=1.0,
     **json.loads(sys.argv[5]))
"""


@pytest.mark.slow
@pytest.mark.slurm
def test_a_second_scan_call_attaches_to_the_shards_a_closed_notebook_submitted(
    slurm_cluster, scan_checkpoint, tmp_path
):
    from helpers.recordings.scan import scan
    from helpers.recordings.scan_slurm import read_shard_map

    archive = _archive(tmp_path / "archive", n=4, seconds=60.0)
    out = tmp_path / "slurm"
    options = {"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 10, "poll_seconds": 1}
    first = subprocess.Popen(
        [
            sys.executable,
            "-c",
            ATTACH_THEN_DIE,
            str(scan_checkpoint),
            str(archive),
            str(out),
            json.dumps(options),
            json.dumps(SCAN_ARGS),
        ],
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / ".slurm" / "shards.json").is_file():
            assert first.poll() is None and time.monotonic() < deadline, "the first call submitted nothing"
            time.sleep(0.2)
    finally:
        first.kill()  # the notebook is closed: its shard goes on
        first.wait()
    submitted = read_shard_map(out)
    with pytest.raises(RuntimeError, match="still scan into it; attach to them with executor='slurm'"):
        scan(scan_checkpoint, archive, out, **SCAN_ARGS)  # a local scan must not write beside the shard
    again = _within(
        240,
        lambda: scan(scan_checkpoint, archive, out, executor="slurm", slurm=options, hours_per_job=1.0, **SCAN_ARGS),
        out / ".slurm",
    )
    assert read_shard_map(out)["shards"].keys() == submitted["shards"].keys()  # attached; nothing submitted again
    assert len(again.recordings) == 4 and again.settings["shards"] == 1
