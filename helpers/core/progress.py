"""Progress bars for the whole package, visible in a notebook and, during a headless run, in the terminal.

:func:`progress_bar` returns a :class:`ProgressBar`: in a notebook it shows the usual
``tqdm.auto`` bar (a widget), in a terminal the text bar. When the environment variable
:data:`PROGRESS_FILE_ENV` names a file, every bar also appends its state to that file as one JSON
line, at most one every :data:`FILE_INTERVAL_S` seconds per bar plus a last line when the bar is
closed. :func:`helpers.experiments.notebooks.run_notebook` sets the variable for the kernel it
starts and prints those lines while papermill executes the notebook, so a training loop deep
inside a headless notebook still says where it is.

A line (one ``os.write`` of a whole line to a file opened with ``O_APPEND``, so readers and other
writers never see half a line)::

    {"time": 1718000000.0, "pid": 4242, "bar": 1, "desc": "train cnn10", "n": 12400, "total": 60000,
     "unit": "step", "rate": 41.2, "elapsed": 301.0, "remaining": 1156.3,
     "postfix": {"loss": "0.123", "uar": "0.874"}, "done": false}

``rate`` is per second, averaged since the bar was created (``n - initial`` over ``elapsed``),
``remaining`` the seconds left at that rate (``null`` when unknown), ``done`` true on the closing
line. The variable may hold several paths separated by :data:`os.pathsep` (a nested run appends
its own file to its parent's); each gets every line. A file that cannot be written costs one
warning and never an exception in the caller.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import warnings
from typing import Any, Iterable, Iterator

#: Environment variable naming the file(s) that progress lines are appended to.
PROGRESS_FILE_ENV = "HELPERS_PROGRESS_FILE"
#: Least time between two file lines of one bar (the closing line is always written).
FILE_INTERVAL_S = 2.0

_clock = time.monotonic  # replaceable by tests
_bar_ids = itertools.count(1)
_warned: set[str] = set()
_warn_lock = threading.Lock()


def progress_files() -> list[str]:
    """The paths in :data:`PROGRESS_FILE_ENV` (empty when unset)."""
    return [p for p in os.environ.get(PROGRESS_FILE_ENV, "").split(os.pathsep) if p]


def append_line(path: str, line: str) -> bool:
    """Append ``line`` (one JSON record, no newline) plus a newline to ``path`` in one write.

    Returns False, after warning once per path, when the file cannot be written.
    """
    data = (line + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return True
    except OSError as exc:
        with _warn_lock:
            if path in _warned:
                return False
            _warned.add(path)
        warnings.warn(
            f"cannot append progress to {path} ({exc}); progress shows only in the bar itself",
            RuntimeWarning,
            stacklevel=3,
        )
        return False


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    try:  # numpy and torch scalars
        item = value.item()
        if isinstance(item, (int, float)):
            return _jsonable(item)
    except Exception:
        pass
    return str(value)


class ProgressBar:
    """A tqdm-like bar (``update``, ``set_postfix``, ``set_description``, ``close``, ``n``, ``total``,
    context manager, iteration when made with ``iterable``) that also reports to the progress file.

    Use :func:`progress_bar` to make one. ``display=False`` shows no bar but still reports to the
    progress file; ``enabled=False`` does neither (the object still counts).
    """

    def __init__(
        self,
        total: float | None,
        desc: str = "",
        unit: str = "it",
        initial: float = 0,
        enabled: bool = True,
        display: bool = True,
        iterable: Iterable | None = None,
        **tqdm_kwargs: Any,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.total = total
        self.desc = desc
        self.unit = unit
        self.initial = initial
        self.enabled = enabled
        self._iterable = iterable
        self._n = initial
        self._postfix: dict[str, Any] = {}
        self._closed = False
        self._lock = threading.Lock()
        self._id = next(_bar_ids)
        self._start = _clock()
        self._last_line = None  # clock time of the last file line
        self._bar = None
        if enabled and display:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, **tqdm_kwargs)
        self._files = progress_files() if enabled else []
        if self._files:
            self._report(force=True)

    # --- tqdm's interface -------------------------------------------------------------------
    @property
    def n(self) -> float:
        return self._n

    def update(self, n: float = 1) -> None:
        """Advance by ``n``."""
        with self._lock:
            self._n += n
        if self._bar is not None:
            self._bar.update(n)
        self._report()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Values shown after the bar (``loss=..., uar=...``); replaces the previous ones."""
        values = dict(ordered_dict or {})
        values.update(kwargs)
        with self._lock:
            self._postfix = {str(k): _jsonable(v) for k, v in values.items()}
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=refresh)
        self._report()

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""
        if self._bar is not None:
            self._bar.set_description(desc, refresh=refresh)

    def refresh(self) -> None:
        if self._bar is not None:
            self._bar.refresh()

    def close(self) -> None:
        """Close the bar and write the closing line (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._bar is not None:
            self._bar.close()
        if self._files:
            self._report(force=True, done=True)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator:
        if self._iterable is None:
            raise TypeError("this progress bar was made without an iterable")
        try:
            for item in self._iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("progress bar without a total")
        return int(self.total)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # --- the progress file ------------------------------------------------------------------
    def state(self, done: bool = False) -> dict[str, Any]:
        """The record written to the progress file now."""
        elapsed = max(0.0, _clock() - self._start)
        done_items = self._n - self.initial
        rate = done_items / elapsed if elapsed > 0 and done_items > 0 else None
        remaining = None
        if rate and self.total is not None:
            remaining = max(0.0, (self.total - self._n) / rate)
        return {
            "time": round(time.time(), 3),
            "pid": os.getpid(),
            "bar": self._id,
            "desc": self.desc,
            "n": _jsonable(self._n),
            "total": _jsonable(self.total),
            "unit": self.unit,
            "rate": None if rate is None else round(rate, 4),
            "elapsed": round(elapsed, 3),
            "remaining": None if remaining is None else round(remaining, 3),
            "postfix": dict(self._postfix),
            "done": done,
        }

    def _report(self, force: bool = False, done: bool = False) -> None:
        if not self._files:
            return
        now = _clock()
        with self._lock:
            if not force and self._last_line is not None and now - self._last_line < FILE_INTERVAL_S:
                return
            self._last_line = now
            line = json.dumps(self.state(done=done), separators=(",", ":"))
        for path in self._files:
            append_line(path, line)


def progress_bar(
    total: float | None,
    desc: str = "",
    unit: str = "it",
    initial: float = 0,
    enabled: bool = True,
    *,
    display: bool = True,
    iterable: Iterable | None = None,
    **tqdm_kwargs: Any,
) -> ProgressBar:
    """A progress bar for ``total`` items of ``unit`` (see the module docstring).

    ``enabled=False``: no bar and no progress-file lines (the object still counts, so callers
    need no ``if``). ``display=False``: no bar, but progress-file lines when the variable is set.
    ``iterable``: iterate over the bar to advance it by one per item (``total`` defaults to its
    length). Other keywords (``leave``, ``miniters``, ...) go to ``tqdm``.
    """
    return ProgressBar(
        total, desc=desc, unit=unit, initial=initial, enabled=enabled, display=display, iterable=iterable, **tqdm_kwargs
    )
