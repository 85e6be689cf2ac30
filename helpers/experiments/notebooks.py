"""Running the notebook collection headless through papermill, saying where it is.

Executed copies go to ``runs/notebooks/<corpus>-<profile>/`` (:func:`output_dir_for`; committed
notebooks stay output-free), so a run on another corpus or profile never overwrites the demo's.
A failure raises :class:`NotebookError` naming the notebook and the failing cell.

While a notebook runs, the terminal shows one line per code cell as it starts and, for every
progress bar the kernel makes with :func:`helpers.core.progress.progress_bar` (feature
extraction, training, ...), a line such as::

    03_train  train cnn10  12,400/60,000 steps  41.2 steps/s  elapsed 5:01  left 19:16  loss=0.123 uar=0.874

at most one every ``progress_every`` seconds per bar, plus each bar's last line. The runner points
the kernel at a progress file through the environment variable
:data:`helpers.core.progress.PROGRESS_FILE_ENV` (papermill starts the kernel with this process's
``os.environ``; jupyter_client's provisioner copies it at launch), and a :class:`ProgressWatcher`
thread tails that file until the notebook ends, also when it fails. ``progress=False`` turns all
of this off (tests, CI).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from helpers.core.provenance import PROJECT_ROOT
from helpers.core.progress import PROGRESS_FILE_ENV

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
#: Where executed copies go, one folder per corpus and profile (see :func:`output_dir_for`).
RUNS_DIR = PROJECT_ROOT / "runs" / "notebooks"
#: The Jupyter kernel `make` registers for the project's virtual environment.
KERNEL_NAME = "primate-calls"
#: Corpus and profile assumed for the output folder when neither the parameters nor the notebooks name one.
#: The notebook that gathers every other one's results into the report: run after all of them.
REPORT_NOTEBOOK = "08_report"
DEFAULT_CORPUS = "demo"
DEFAULT_PROFILE = "demo"
#: Least seconds between two terminal lines of one progress bar (its last line always shows).
PROGRESS_EVERY_S = 10.0
#: How often the watcher looks at the progress file.
POLL_S = 0.5

_print_lock = threading.Lock()


class NotebookError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the executed copy."""


def list_notebooks(notebook_dir: str | Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks (``NN_topic.ipynb``) in execution order."""
    return sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))


def default_kernel() -> str:
    """The project's kernel when registered, else ``python3`` (the running interpreter's)."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"


def read_notebook_parameters(path: str | Path) -> dict:
    """The names and default values assigned in a notebook's cell tagged ``parameters``.

    Values that are not Python literals are returned as their source text.
    """
    import ast

    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{Path(path).name}: expected exactly one code cell tagged 'parameters', found {len(cells)}.")
    params: dict = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and node.value is not None:
                    try:
                        params[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        params[target.id] = ast.get_source_segment(cells[0].source, node.value)
    return params


# --- where executed copies go -------------------------------------------------------------------


def _safe_name(text: str) -> str:
    """``text`` reduced to letters, digits, ``.``, ``_`` and ``-`` (no leading dot: not hidden)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")


def corpus_label(corpus: str | Path) -> str:
    """``demo`` or ``synthetic`` for a named corpus, else the corpus folder's name made safe."""
    from helpers.data.corpora.named import NAMED_CORPORA

    text = str(corpus)
    if text in NAMED_CORPORA:
        return text
    path = Path(text).expanduser()
    name = path.name
    if name in ("", ".", ".."):
        name = path.resolve().name
    return _safe_name(name) or "corpus"


def output_dir_for(
    corpus: str | Path = DEFAULT_CORPUS, profile: str = DEFAULT_PROFILE, root: str | Path | None = None
) -> Path:
    """``root/<corpus>-<profile>`` (``root`` defaults to :data:`RUNS_DIR`): e.g.
    ``runs/notebooks/demo-demo`` for ``make demo`` and ``runs/notebooks/dist-paper`` for
    ``make paper DATA=/data/dist``."""
    root = RUNS_DIR if root is None else root
    return Path(root) / f"{corpus_label(corpus)}-{_safe_name(str(profile)) or 'profile'}"


# --- what the terminal shows --------------------------------------------------------------------


def _say(text: str, stream: IO | None = None) -> None:
    with _print_lock:
        out = stream if stream is not None else sys.stdout
        try:
            out.write(text + "\n")
            out.flush()
        except (OSError, ValueError):  # closed or broken stream: progress is never worth a failure
            pass


def format_duration(seconds: float) -> str:
    """``m:ss`` below an hour, else ``h:mm:ss``."""
    seconds = int(round(max(0.0, float(seconds))))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _count(value: float) -> str:
    value = float(value)
    return f"{int(value):,}" if value.is_integer() else f"{value:,.1f}"


def _plural(unit: str) -> str:
    return unit + "s" if unit.isalpha() and len(unit) > 2 and not unit.endswith("s") else unit


def _postfix_value(value: Any) -> str:
    return format(value, ".4g") if isinstance(value, float) else str(value)


def format_progress(record: dict, label: str = "") -> str:
    """One terminal line for a progress-file record (see :mod:`helpers.core.progress`)."""
    unit = str(record.get("unit") or "it")
    units = _plural(unit)
    n, total = record.get("n") or 0, record.get("total")
    parts = [label, str(record.get("desc") or "")]
    parts.append(f"{_count(n)}/{_count(total)} {units}" if total is not None else f"{_count(n)} {units}")
    rate = record.get("rate")
    if rate:
        rate = float(rate)
        if rate >= 1:
            parts.append(f"{rate:,.0f} {units}/s" if rate >= 100 else f"{rate:.1f} {units}/s")
        elif 1 / rate < 60:
            parts.append(f"{1 / rate:.1f} s/{unit}")
        else:
            parts.append(f"{format_duration(1 / rate)} per {unit}")
    parts.append(f"elapsed {format_duration(record.get('elapsed') or 0)}")
    if record.get("done"):
        parts.append("done" if total is None or n >= total else "stopped")
    elif record.get("remaining") is not None:
        parts.append(f"left {format_duration(record['remaining'])}")
    postfix = record.get("postfix") or {}
    if postfix:
        parts.append(" ".join(f"{k}={_postfix_value(v)}" for k, v in postfix.items()))
    return "  ".join(p for p in parts if p)


class ProgressWatcher:
    """A thread that tails a progress file and prints :func:`format_progress` lines.

    Per bar (process id and bar number): its first line, then at most one line every ``every``
    seconds, and its closing line. :meth:`stop` (or leaving the ``with`` block) reads what is
    left and also prints the latest unprinted state of every bar, so a notebook that fails
    mid-training still says how far it got.
    """

    def __init__(
        self,
        path: str | Path,
        label: str = "",
        stream: IO | None = None,
        every: float = PROGRESS_EVERY_S,
        poll: float = POLL_S,
    ) -> None:
        self.path = Path(path)
        self.label = label
        self.stream = stream
        self.every = every
        self.poll = poll
        self._offset = 0
        self._rest = b""
        self._bars: dict[tuple, dict] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False

    def start(self) -> "ProgressWatcher":
        self._thread = threading.Thread(target=self._run, name=f"progress-{self.label}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> "ProgressWatcher":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self.check()
        self.check(final=True)

    def _read_records(self) -> list[dict]:
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self._offset:  # truncated or replaced: start over
                    self._offset, self._rest = 0, b""
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        lines = (self._rest + data).split(b"\n")
        self._rest = lines.pop()  # an incomplete last line waits for its end
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def check(self, final: bool = False) -> list[str]:
        """Read new lines and print what is due; returns the printed lines (never raises)."""
        try:
            records = self._read_records()
        except Exception as exc:  # a watcher problem must not stop the run
            if not self._failed:
                self._failed = True
                _say(f"{self.label}  (cannot read progress file {self.path}: {exc})", self.stream)
            return []
        for record in records:
            key = (record.get("pid"), record.get("bar"), record.get("desc") if record.get("bar") is None else None)
            bar = self._bars.setdefault(key, {"printed_at": None, "latest": None})
            bar["latest"] = record
        now = time.monotonic()
        printed = []
        for bar in self._bars.values():
            record = bar["latest"]
            if record is None:
                continue
            due = final or record.get("done") or bar["printed_at"] is None or now - bar["printed_at"] >= self.every
            if due:
                line = format_progress(record, self.label)
                _say(line, self.stream)
                printed.append(line)
                bar["printed_at"], bar["latest"] = now, None
        return printed


class _CellReporter:
    """papermill/nbclient hooks that print one line per code cell as it starts."""

    def __init__(self, label: str, stream: IO | None = None) -> None:
        self.label = label
        self.stream = stream
        self.total = 0
        self.count = 0
        self.start = time.perf_counter()

    def on_notebook_start(self, notebook: Any = None, **_: Any) -> None:
        try:
            cells = getattr(notebook, "cells", None) or []
            self.total = sum(1 for c in cells if c.get("cell_type") == "code" and str(c.get("source", "")).strip())
        except Exception:  # a hook that raises would fail the notebook
            self.total = 0
        self.start = time.perf_counter()

    def on_cell_execute(self, cell: Any = None, cell_index: int | None = None, **_: Any) -> None:
        try:
            self._report(cell)
        except Exception:  # a hook that raises would fail the notebook
            pass

    def _report(self, cell: Any) -> None:
        self.count += 1
        lines = [ln.strip() for ln in str(cell.get("source", "") if cell is not None else "").splitlines()]
        code = [ln for ln in lines if ln and not ln.startswith("#")]
        first = (code or [ln for ln in lines if ln] or [""])[0]
        if len(first) > 72:
            first = first[:69] + "..."
        total = f"/{self.total}" if self.total else ""
        _say(
            f"{self.label}  cell {self.count}{total}  {format_duration(time.perf_counter() - self.start)}  "
            f"{first}".rstrip(),
            self.stream,
        )


@contextmanager
def _progress_file_env(path: Path) -> Iterator[None]:
    """Point :data:`PROGRESS_FILE_ENV` at ``path`` (before any file already named there, so an
    outer runner watching its own file keeps seeing this run's bars) and restore it afterwards."""
    old = os.environ.get(PROGRESS_FILE_ENV)
    os.environ[PROGRESS_FILE_ENV] = str(path) if not old else f"{path}{os.pathsep}{old}"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(PROGRESS_FILE_ENV, None)
        else:
            os.environ[PROGRESS_FILE_ENV] = old


# --- running ------------------------------------------------------------------------------------


def run_notebook(
    notebook: str | Path,
    parameters: dict | None = None,
    output_dir: str | Path | None = None,
    kernel_name: str | None = None,
    cwd: str | Path | None = None,
    log_output: bool = False,
    timeout: int | None = None,
    progress: bool = True,
    progress_every: float = PROGRESS_EVERY_S,
    stream: IO | None = None,
) -> Path:
    """Execute one notebook with papermill and return the path of the executed copy.

    ``parameters`` are injected after the ``parameters`` cell; unknown names raise ``ValueError``
    (papermill would only warn, and a typo would silently run the defaults). The kernel is
    explicit (:func:`default_kernel` unless given) and the working directory is the notebook's
    folder, so relative paths in notebooks behave as in JupyterLab. ``output_dir`` defaults to
    :func:`output_dir_for` the ``corpus`` and ``profile`` in ``parameters`` (else the notebook's
    defaults). ``progress``: print a line per code cell and the kernel's progress bars to
    ``stream`` (default ``sys.stdout``; see the module docstring).
    """
    import papermill as pm

    notebook = Path(notebook)
    if not notebook.is_absolute() and not notebook.exists():
        notebook = NOTEBOOK_DIR / notebook
    if notebook.suffix != ".ipynb":
        notebook = notebook.with_suffix(".ipynb")
    parameters = dict(parameters or {})
    known = read_notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(
            f"{notebook.name}: unknown parameter(s) {unknown}; the parameters cell defines {sorted(known)}."
        )
    if output_dir is None:
        output_dir = output_dir_for(
            parameters.get("corpus", known.get("corpus", DEFAULT_CORPUS)),
            parameters.get("profile", known.get("profile", DEFAULT_PROFILE)),
        )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / notebook.name
    label = notebook.stem
    hooks: dict[str, Any] = {}
    progress_path = None
    start = time.perf_counter()
    try:
        with ExitStack() as stack:
            if progress:
                fd, name = tempfile.mkstemp(prefix=f"{label}-progress-", suffix=".jsonl")
                os.close(fd)
                progress_path = Path(name)
                reporter = _CellReporter(label, stream)
                hooks = {"on_notebook_start": reporter.on_notebook_start, "on_cell_execute": reporter.on_cell_execute}
                stack.enter_context(_progress_file_env(progress_path))
                stack.enter_context(ProgressWatcher(progress_path, label, stream=stream, every=progress_every))
            pm.execute_notebook(
                str(notebook),
                str(out),
                parameters=parameters,
                kernel_name=kernel_name or default_kernel(),
                language="python",
                cwd=str(cwd or notebook.parent),
                progress_bar=False,
                log_output=log_output,
                execution_timeout=timeout,
                **hooks,
            )
    except pm.PapermillExecutionError as exc:
        raise NotebookError(
            f"{notebook.name}: cell {exc.cell_index} (execution count {exc.exec_count}) failed with "
            f"{exc.ename}: {exc.evalue}\nThe executed copy with the full traceback is {out}."
        ) from None
    finally:
        if progress_path is not None:
            progress_path.unlink(missing_ok=True)
    elapsed = time.perf_counter() - start
    if progress:
        _say(f"{label}  done in {format_duration(elapsed)}; executed copy {out}", stream)
    _append_log(output_dir, {"notebook": notebook.name, "seconds": round(elapsed, 2), "parameters": parameters})
    return out


def _append_log(output_dir: Path, entry: dict) -> None:
    with open(output_dir / "executions.jsonl", "a") as fh:
        fh.write(json.dumps(entry, default=str) + "\n")


def run_collection(
    parameters: dict | None = None,
    notebooks: list[str] | None = None,
    output_dir: str | Path | None = None,
    kernel_name: str | None = None,
    log_output: bool = False,
    progress: bool = True,
    progress_every: float = PROGRESS_EVERY_S,
) -> list[Path]:
    """Execute the numbered notebooks in order, the report (:data:`REPORT_NOTEBOOK`) last, each with the
    ``parameters`` it defines.

    A parameter is passed to a notebook only if its ``parameters`` cell defines it, so one set
    (e.g. ``corpus``, ``data_dir``, ``profile``) can drive the whole collection. Stops at the first
    failure. Executed copies go to ``output_dir``, by default :func:`output_dir_for` the
    ``corpus`` and ``profile`` in ``parameters`` (the notebooks' defaults when absent), e.g.
    ``runs/notebooks/demo-demo/``. ``progress`` as in :func:`run_notebook`.
    """
    parameters = dict(parameters or {})
    paths = list_notebooks()
    if notebooks:
        wanted = set(notebooks)
        paths = [p for p in paths if p.stem in wanted or p.stem[:2] in wanted]
    # The report gathers what every other notebook wrote (11's comparison included): it runs last.
    paths = [p for p in paths if p.stem != REPORT_NOTEBOOK] + [p for p in paths if p.stem == REPORT_NOTEBOOK]
    own_parameters = {path: read_notebook_parameters(path) for path in paths}
    if output_dir is None:
        defaults = {"corpus": DEFAULT_CORPUS, "profile": DEFAULT_PROFILE}
        for key in defaults:
            declared = [own[key] for own in own_parameters.values() if key in own]
            defaults[key] = parameters.get(key, declared[0] if declared else defaults[key])
        output_dir = output_dir_for(defaults["corpus"], defaults["profile"])
    print(f"[notebooks] executed copies go to {output_dir}", flush=True)
    done = []
    for path in paths:
        own = own_parameters[path]
        chosen = {k: v for k, v in parameters.items() if k in own}
        print(f"[notebooks] {path.name} {chosen}", flush=True)
        done.append(
            run_notebook(
                path,
                chosen,
                output_dir=output_dir,
                kernel_name=kernel_name,
                log_output=log_output,
                progress=progress,
                progress_every=progress_every,
            )
        )
    return done
