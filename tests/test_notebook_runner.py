"""The notebook runner says where a long run is: progress-file lines written by
helpers.core.progress, the runner's watcher that prints them, the per-corpus output folders, and
one real papermill execution of a tiny notebook."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import warnings
from pathlib import Path

import nbformat
import pytest

import helpers.core.progress as progress
import helpers.experiments.notebooks as nbmod
from helpers.core.progress import PROGRESS_FILE_ENV, progress_bar
from helpers.experiments.notebooks import (
    NotebookError,
    ProgressWatcher,
    format_progress,
    output_dir_for,
    run_collection,
    run_notebook,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def progress_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(path))
    return path


def read_lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


# --- helpers.core.progress ----------------------------------------------------------------------


def test_progress_lines_are_throttled_and_the_closing_line_is_written(progress_file, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress, "_clock", clock)
    bar = progress_bar(100, "train cnn10", unit="step", initial=10, display=False)
    for _ in range(3):  # t = 100.5, 101.0, 101.5: within the 2 s after the first line
        clock.now += 0.5
        bar.update(5)
    clock.now += 0.5  # t = 102: 2 s after the first line
    bar.update(5)
    clock.now += 0.5
    bar.set_postfix(loss=0.1234, uar="0.874")  # throttled: the closing line carries it
    clock.now += 0.5
    bar.close()
    bar.close()  # a second close writes nothing
    lines = read_lines(progress_file)
    assert [(r["n"], r["done"]) for r in lines] == [(10, False), (30, False), (30, True)]
    first, second, last = lines
    assert first["desc"] == "train cnn10" and first["unit"] == "step" and first["total"] == 100
    assert first["rate"] is None and first["remaining"] is None and first["postfix"] == {}
    assert second["elapsed"] == pytest.approx(2.0) and second["rate"] == pytest.approx(10.0)
    assert second["remaining"] == pytest.approx(7.0)
    assert last["elapsed"] == pytest.approx(3.0) and last["postfix"] == {"loss": 0.1234, "uar": "0.874"}
    assert last["pid"] == os.getpid() and last["bar"] == first["bar"]
    assert bar.n == 30


def test_progress_bar_is_tqdm_like(progress_file, capsys):
    with progress_bar(4, "demo corpus", unit="recording") as bar:  # displayed (text tqdm on stderr)
        bar.update(3)
        bar.update()
        assert bar.n == 4 and bar.total == 4
    assert "demo corpus" in capsys.readouterr().err
    assert read_lines(progress_file)[-1]["done"] is True
    items = list(progress_bar(None, "sha256", unit="file", iterable=range(5), display=False))
    assert items == list(range(5))
    last = read_lines(progress_file)[-1]
    assert last["desc"] == "sha256" and last["n"] == 5 and last["total"] == 5 and last["done"]


def test_disabled_bar_writes_nothing_and_unset_variable_means_no_file(progress_file, monkeypatch, tmp_path):
    bar = progress_bar(10, "quiet", enabled=False)
    bar.update(10)
    bar.close()
    assert bar.n == 10 and not progress_file.exists()
    monkeypatch.delenv(PROGRESS_FILE_ENV)
    with progress_bar(3, "no file", display=False) as bar:
        bar.update(3)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_progress_file_warns_once_and_never_fails(tmp_path, monkeypatch):
    bad = tmp_path / "missing-folder" / "progress.jsonl"
    good = tmp_path / "good.jsonl"
    monkeypatch.setenv(PROGRESS_FILE_ENV, f"{bad}{os.pathsep}{good}")
    monkeypatch.setattr(progress, "FILE_INTERVAL_S", 0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with progress_bar(5, "x", display=False) as bar:
            for _ in range(5):
                bar.update()
        with progress_bar(5, "y", display=False) as bar:
            bar.update(5)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and str(bad) in messages[0]
    assert not bad.exists()
    assert [r["desc"] for r in read_lines(good)].count("x") == 7  # first, five updates, closing line


def test_concurrent_writers_leave_only_whole_lines(progress_file, monkeypatch):
    monkeypatch.setattr(progress, "FILE_INTERVAL_S", 0.0)
    big = "z" * 20_000  # far above a pipe's atomic size: the O_APPEND single write still keeps lines whole

    def work(name: str) -> None:
        with progress_bar(50, name, display=False) as bar:
            for _ in range(50):
                bar.update()
                bar.set_postfix(note=big)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = read_lines(progress_file)  # every line parses
    assert len(lines) == 4 * (1 + 50 + 50 + 1)
    assert sorted(r["desc"] for r in lines if r["done"]) == ["w0", "w1", "w2", "w3"]


# --- the runner's watcher -----------------------------------------------------------------------


def test_format_progress_line():
    record = {
        "desc": "train cnn10",
        "n": 12400,
        "total": 60000,
        "unit": "step",
        "rate": 41.2,
        "elapsed": 301.0,
        "remaining": 1156.0,
        "postfix": {"loss": "0.123", "uar": "0.874"},
        "done": False,
    }
    assert format_progress(record, "03_train") == (
        "03_train  train cnn10  12,400/60,000 steps  41.2 steps/s  elapsed 5:01  left 19:16  loss=0.123 uar=0.874"
    )
    stopped = dict(record, done=True, elapsed=3725.0, postfix={"loss": 0.123456})
    assert format_progress(stopped, "03_train").endswith("elapsed 1:02:05  stopped  loss=0.1235")
    slow = {"desc": "eval", "n": 3, "total": None, "unit": "it", "rate": 0.25, "elapsed": 12, "done": True}
    assert format_progress(slow) == "eval  3 it  4.0 s/it  elapsed 0:12  done"
    runs = {
        "desc": "grid runs",
        "n": 3,
        "total": 12,
        "unit": "run",
        "rate": 1 / 1260,
        "elapsed": 3780,
        "remaining": 11340,
        "postfix": {},
        "done": False,
    }
    assert format_progress(runs, "04_model_comparison") == (
        "04_model_comparison  grid runs  3/12 runs  21:00 per run  elapsed 1:03:00  left 3:09:00"
    )


def _wait_for(predicate, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_watcher_prints_first_throttled_and_last_lines_from_another_thread(progress_file, monkeypatch):
    monkeypatch.setattr(progress, "FILE_INTERVAL_S", 0.0)
    out = io.StringIO()
    shown = threading.Event()
    watcher = ProgressWatcher(progress_file, "03_train", stream=out, every=3600, poll=0.02)

    def writer() -> None:
        bar = progress_bar(100, "train cnn10", unit="step", display=False)
        shown.wait(5)
        for _ in range(100):
            bar.update()
        bar.set_postfix(loss="0.123", uar="0.874")
        bar.close()

    with watcher:
        thread = threading.Thread(target=writer)
        thread.start()
        _wait_for(lambda: "0/100 steps" in out.getvalue())
        shown.set()
        thread.join()
    lines = out.getvalue().splitlines()
    assert lines[0] == "03_train  train cnn10  0/100 steps  elapsed 0:00"
    assert len(lines) == 2, lines  # the 101 lines in between are throttled away
    assert lines[1].startswith("03_train  train cnn10  100/100 steps  ")
    assert lines[1].endswith("done  loss=0.123 uar=0.874")


def test_watcher_waits_for_whole_lines_and_reports_unfinished_bars_when_stopped(tmp_path):
    path = tmp_path / "p.jsonl"
    out = io.StringIO()
    watcher = ProgressWatcher(path, "nb", stream=out, every=3600)
    assert watcher.check() == []  # no file yet
    record = {"pid": 1, "bar": 1, "desc": "log-mel 16 kHz", "n": 0, "total": 10, "unit": "clip", "elapsed": 0}
    text = json.dumps(record) + "\n"
    path.write_text(text[:20])
    assert watcher.check() == []
    with open(path, "a") as fh:
        fh.write(text[20:])
    assert watcher.check() == ["nb  log-mel 16 kHz  0/10 clips  elapsed 0:00"]
    with open(path, "a") as fh:
        fh.write(json.dumps(dict(record, n=4, elapsed=2, rate=2.0, remaining=3.0)) + "\n")
    assert watcher.check() == []  # throttled
    assert watcher.check(final=True) == ["nb  log-mel 16 kHz  4/10 clips  2.0 clips/s  elapsed 0:02  left 0:03"]


# --- where executed copies go -------------------------------------------------------------------


def test_output_folder_per_corpus_and_profile(monkeypatch, tmp_path):
    root = nbmod.RUNS_DIR
    assert output_dir_for("demo", "demo") == root / "demo-demo"
    assert output_dir_for("synthetic", "demo") == root / "synthetic-demo"
    assert output_dir_for("/data/dist", "paper") == root / "dist-paper"
    assert output_dir_for("/data/dist/", "paper") == root / "dist-paper"
    assert output_dir_for("/data/my corpus (v2)", "paper") == root / "my_corpus_v2-paper"
    assert output_dir_for("/data/.hidden", "paper", root=tmp_path) == tmp_path / "hidden-paper"

    seen = []
    monkeypatch.setattr(nbmod, "run_notebook", lambda path, params, **kw: seen.append(kw["output_dir"]) or path)
    run_collection({"corpus": "/data/dist", "profile": "paper", "data_dir": "x"}, notebooks=["00"], progress=False)
    run_collection({"corpus": "demo", "profile": "demo"}, notebooks=["00"], progress=False)
    run_collection({}, notebooks=["00"], progress=False)  # the notebooks' defaults
    run_collection({"corpus": "/data/dist"}, notebooks=["00"], output_dir=tmp_path / "mine", progress=False)
    assert seen == [root / "dist-paper", root / "demo-demo", root / "demo-demo", tmp_path / "mine"]
    assert not (root / "dist-paper").exists()  # the collection creates nothing itself


# --- one real execution ------------------------------------------------------------------------


def write_tiny_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# a loop with a progress bar"),
        nbformat.v4.new_code_cell("steps = 6\nfail = False", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import os, time\nfrom helpers.core.progress import PROGRESS_FILE_ENV, progress_bar\n"
            "print('file:', os.environ.get(PROGRESS_FILE_ENV))"
        ),
        nbformat.v4.new_code_cell(
            "# the loop\n"
            "bar = progress_bar(steps, 'count', unit='step')\n"
            "for i in range(steps):\n"
            "    time.sleep(0.1)\n"
            "    bar.update(1)\n"
            "    bar.set_postfix(loss=1 / (i + 1))\n"
            "    if fail and i == 2:\n"
            "        raise RuntimeError('boom in the loop')\n"
            "bar.close()"
        ),
    ]
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_real_execution_prints_cells_and_kernel_progress(tmp_path, monkeypatch, capfd):
    monkeypatch.delenv(PROGRESS_FILE_ENV, raising=False)
    monkeypatch.setattr(nbmod, "RUNS_DIR", tmp_path / "runs")
    path = write_tiny_notebook(tmp_path / "98_tiny.ipynb")
    out = run_notebook(path, {"steps": 6}, cwd=tmp_path, progress_every=0.5)
    assert out == tmp_path / "runs" / "demo-demo" / "98_tiny.ipynb"  # default folder: the default corpus and profile
    printed = capfd.readouterr()
    text = printed.out + printed.err
    assert "98_tiny  cell 3/4" in text and "import os, time" in text
    assert "98_tiny  count  6/6 steps  " in text and "done  loss=0.1667" in text
    assert PROGRESS_FILE_ENV not in os.environ  # restored
    kernel_said = "".join(
        "".join(o.get("text", "")) for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", [])
    )
    kernel_file = kernel_said.split("file:", 1)[1].split()[0]
    assert kernel_file.endswith(".jsonl") and not Path(kernel_file).exists()  # the kernel had it; removed after
    assert not [t for t in threading.enumerate() if t.name.startswith("progress-")]

    # a failing cell: the error names the cell, and the watcher still reports how far the bar got
    with pytest.raises(NotebookError, match="boom in the loop"):
        run_notebook(
            path, {"steps": 6, "fail": True}, output_dir=tmp_path / "failed", cwd=tmp_path, progress_every=3600
        )
    text = "".join(capfd.readouterr())
    assert "98_tiny  count  3/6 steps" in text and "done" not in text
    assert not [t for t in threading.enumerate() if t.name.startswith("progress-")]
    assert PROGRESS_FILE_ENV not in os.environ


def test_quiet_run_prints_nothing_but_the_collection_lines(tmp_path, monkeypatch, capsys):
    """progress=False: no watcher, no variable for the kernel (papermill itself is replaced)."""
    import papermill as pm

    seen = {}

    def fake_execute(input_path, output_path, **kwargs):
        seen.update(kwargs, env=os.environ.get(PROGRESS_FILE_ENV))
        Path(output_path).write_text("{}")

    monkeypatch.delenv(PROGRESS_FILE_ENV, raising=False)
    monkeypatch.setattr(pm, "execute_notebook", fake_execute)
    path = write_tiny_notebook(tmp_path / "98_tiny.ipynb")
    run_notebook(path, {}, output_dir=tmp_path / "out", progress=False)
    assert seen["env"] is None and "on_cell_execute" not in seen
    assert capsys.readouterr().out == ""
    run_notebook(path, {}, output_dir=tmp_path / "out")
    assert seen["env"].endswith(".jsonl") and callable(seen["on_cell_execute"])
    assert "98_tiny  done in" in capsys.readouterr().out


def test_nested_runner_adds_its_file_before_the_outer_one(tmp_path, monkeypatch):
    """A runner inside a watched kernel (a scheduler worker running 03_train) keeps the outer
    file, so the outer terminal still sees the inner run's bars; the variable is restored after."""
    outer, inner = tmp_path / "outer.jsonl", tmp_path / "inner.jsonl"
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(outer))
    with nbmod._progress_file_env(inner):
        assert os.environ[PROGRESS_FILE_ENV] == f"{inner}{os.pathsep}{outer}"
        with progress_bar(2, "train cnn6", display=False) as bar:
            bar.update(2)
    assert os.environ[PROGRESS_FILE_ENV] == str(outer)
    assert read_lines(inner) == read_lines(outer) and read_lines(outer)[-1]["done"]
