"""The run-folder module: layout, status, loading, clearing, and the lock that keeps two processes
from writing one run folder at once (tested with real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from helpers.core import run_folder
from helpers.core.fileio import write_json_atomic
from tests.conftest import REPO_ROOT


def _fabricate(run_dir, finished=False, failed=False, steps=(10, 20)):
    run_dir.mkdir(parents=True)
    write_json_atomic(run_dir / run_folder.CONFIG, {"model": "cnn10"})
    (run_dir / run_folder.HISTORY).write_text("step,train_loss\n" + "".join(f"{s},0.5\n" for s in steps))
    if finished:
        write_json_atomic(run_dir / run_folder.METRICS, {"checkpoints": {}})
        write_json_atomic(run_dir / run_folder.RECORD, {"timings": {"training_loop": 1.0}})
    if failed:
        run_folder.write_failure(run_dir, {"error_type": "ValueError", "message": "bad"})
    return run_dir


def test_status_follows_the_files(tmp_path):
    done = _fabricate(tmp_path / "done", finished=True)
    broken = _fabricate(tmp_path / "broken", failed=True)
    running = _fabricate(tmp_path / "running")
    assert run_folder.status(done) == "finished" and run_folder.is_finished(done)
    assert run_folder.status(broken) == "failed" and run_folder.failure(broken)["message"] == "bad"
    assert run_folder.status(running) == "unfinished" and run_folder.failure(running) is None
    # metrics.json alone (a crash between the two last writes) is not finished
    write_json_atomic(running / run_folder.METRICS, {})
    assert run_folder.status(running) == "unfinished"
    # a later success wins over an old failed.json
    _fabricate(tmp_path / "retried", finished=True, failed=True)
    assert run_folder.status(tmp_path / "retried") == "finished"
    assert run_folder.last_step(done) == 20 and run_folder.last_step(tmp_path / "nowhere") is None


def test_load_finds_and_refuses(tmp_path):
    done = _fabricate(tmp_path / "a" / "done", finished=True)
    _fabricate(tmp_path / "b" / "running")
    loaded = run_folder.load(done)
    assert loaded["config"]["model"] == "cnn10" and list(loaded["history"]["step"]) == [10, 20]
    with pytest.raises(FileNotFoundError, match="running.*unfinished"):
        run_folder.load(tmp_path / "b" / "running")
    assert run_folder.find(tmp_path) == [done, tmp_path / "b" / "running"]
    assert run_folder.latest_finished(tmp_path) == done
    with pytest.raises(FileNotFoundError, match="no finished training run"):
        run_folder.latest_finished(tmp_path / "b")


def test_clear_removes_only_what_a_run_writes(tmp_path):
    run = _fabricate(tmp_path / "run", finished=True, failed=True)
    (run / run_folder.CHECKPOINT_DIR).mkdir()
    (run / run_folder.LAST_CHECKPOINT).write_bytes(b"x")
    (run / "my_notes.txt").write_text("keep me")
    run_folder.clear(run)
    assert sorted(p.name for p in run.iterdir()) == ["my_notes.txt"]


_HOLD = textwrap.dedent("""
    import sys, time
    from helpers.core import run_folder
    with run_folder.lock(sys.argv[1]):
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _holder(run_dir, seconds):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run_dir), str(seconds)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "holding"
    return proc


@pytest.mark.slow
def test_a_second_process_stops_or_waits(tmp_path):
    run_dir = tmp_path / "run"
    proc = _holder(run_dir, 3.0)
    held_from = time.monotonic()
    try:
        with pytest.raises(run_folder.RunFolderBusy, match=rf"pid {proc.pid}.*another run_name"):
            with run_folder.lock(run_dir, wait=False):
                pass
        with pytest.raises(run_folder.RunFolderBusy, match="still busy after 0.2 s"):
            with run_folder.lock(run_dir, timeout=0.2):
                pass
        messages = []
        start = time.monotonic()
        with run_folder.lock(run_dir, on_wait=messages.append):
            granted = time.monotonic()
        assert granted - held_from >= 2.9, "the lock was granted while the other process still held it"
        assert granted - start > 0.5 and len(messages) == 1 and "waiting" in messages[0]
    finally:
        proc.kill()
        proc.wait()
    # released: taken again at once, and a dead holder never blocks (the OS drops its lock)
    with run_folder.lock(run_dir, wait=False):
        pass


_TRAIN = textwrap.dedent("""
    import json, sys
    from helpers.data.corpus import read_corpus
    from helpers.training import TrainConfig, train
    cfg = TrainConfig(**json.loads(sys.argv[2]))
    result = train(cfg, corpus=read_corpus(sys.argv[1], name="tiny"), progress=False)
    print("RESULT", json.dumps({"uar": result.metrics["checkpoints"]["last_plain"]["splits"]["devel"]["uar"],
                                "loop": result.timings.get("training_loop")}), flush=True)
""")


@pytest.mark.slow
def test_two_processes_training_one_config_never_interleave(tmp_path):
    from tests.conftest import make_tiny_corpus

    corpus = make_tiny_corpus(tmp_path / "corpus", per_split=3)
    config = dict(
        corpus="unused",
        sample_rate=8000,
        model="cnn6",
        model_options={"channels": [4, 8, 16, 32]},
        iterations=30,
        eval_every=10,
        ema_start=10,
        checkpoint_every=10,
        batch_size=4,
        cache_dir=str(tmp_path / "cache"),
        out_dir=str(tmp_path / "runs"),
        device="cpu",
        num_threads=1,
    )
    # features first, so both processes start training at once instead of racing on the cache
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from helpers.data.corpus import read_corpus; "
            "from helpers.features import FeatureSettings, load_features; "
            "c = read_corpus(sys.argv[1], name='tiny'); "
            "[load_features(c.table, s, FeatureSettings(sample_rate=8000), sys.argv[2], 'tiny', progress=False) "
            "for s in c.splits]",
            str(corpus),
            str(tmp_path / "cache"),
        ],
        check=True,
        cwd=REPO_ROOT,
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TRAIN, str(corpus), json.dumps(config)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    waited = [o for o in outputs if "waiting for it to finish" in o]
    assert len(waited) == 1, outputs  # exactly one of them found the folder busy and waited
    results = [json.loads(o.split("RESULT ", 1)[1]) for o in outputs]
    assert results[0] == results[1]  # the waiting one loaded the other's results, timings included
    from helpers.training import TrainConfig

    run_dir = TrainConfig(**config).run_dir()
    history = run_folder.load(run_dir)["history"]
    assert list(history["step"]) == [10, 20, 30]  # one history, not two interleaved
    assert not (run_dir / run_folder.LOCK_OWNER).exists()


def test_checkpoint_file_and_run_metrics_by_name(tmp_path):
    from helpers.core.run_folder import RunMetrics, checkpoint_file

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best_plain.pt").write_bytes(b"x")
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    assert checkpoint_file(run, "best_ema").name == "best_plain.pt"  # no EMA: the preferred one
    assert checkpoint_file(run, "last").name == "last.pt" and checkpoint_file(run).name == "best_plain.pt"
    metrics = RunMetrics(
        {
            "classes": ["a", "b"],
            "checkpoints": {
                "best_plain": {"splits": {"devel": {"uar": 0.5}}},
                "last_plain": {"splits": {"devel": {"uar": 0.4}}},
            },
        }
    )
    assert metrics.preferred == "best_plain" and metrics.split("last_plain", "devel")["uar"] == 0.4
    assert set(metrics.splits("best_plain")) == {"devel"} and metrics.classes == ["a", "b"]
    with pytest.raises(KeyError, match="no test scores of best_plain"):
        metrics.split("best_plain", "test")
