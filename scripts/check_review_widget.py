"""Check the review widget in a real browser: JupyterLab and headless Chromium, three clicks, a screenshot.

    .venv/bin/python scripts/check_review_widget.py [--out runs/review-widget-check]

In a temporary folder it writes two tone recordings, a table of detections and a notebook that
shows :class:`helpers.reporting.review_widget.ReviewWidget`; it starts JupyterLab on a free local
port, opens the notebook in headless Chromium (installed from Debian's packages when missing),
runs its cells, clicks "call of this label", "another label" and "not a call", then saves
``OUT/review-widget.png`` and checks that the three decisions are in the review table. It drives
Chromium through its DevTools protocol (``websocket-client``, which JupyterLab's server installs).
Exit status 0 when the three decisions were written and the screenshot taken.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_CELLS = [
    "import sys; sys.path.insert(0, {root!r})",
    "import pandas as pd\n"
    "from helpers.evaluation.review import ReviewSession, ReviewTable, review_queue\n"
    "from helpers.reporting.review_widget import ReviewWidget\n"
    "events = pd.read_csv('events.csv')\n"
    "queue = review_queue(events, n=6, seed=0)\n"
    "widget = ReviewWidget(ReviewSession(queue, ReviewTable('scan', reviewer='browser')),\n"
    "                      {{'a.wav': 'a.wav', 'b.wav': 'b.wav'}}, classes=['gibbon', 'argus'])\n"
    "widget.widget",
]
BUTTONS = ["call of this label", "another label", "not a call"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    print("installing chromium from Debian's packages ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
    return shutil.which("chromium")


def write_inputs(folder: Path) -> None:
    import nbformat
    import numpy as np
    import pandas as pd
    import soundfile as sf

    rate = 16000
    t = np.arange(30 * rate) / rate
    for name, freq in (("a.wav", 700.0), ("b.wav", 1300.0)):
        wave = 0.02 * np.random.default_rng(1).normal(size=t.size)
        for start in (4.0, 12.0, 20.0):
            on = (t >= start) & (t < start + 1.5)
            wave[on] += 0.3 * np.sin(2 * np.pi * freq * t[on])
        sf.write(str(folder / name), wave, rate)
    rows = [
        {"recording": rec, "begin": b, "end": b + 3.0, "label": label, "score": s}
        for rec, label in (("a.wav", "gibbon"), ("b.wav", "argus"))
        for b, s in ((3.0, 0.95), (11.0, 0.6), (19.0, 0.4))
    ]
    pd.DataFrame(rows).to_csv(folder / "events.csv", index=False)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.format(root=str(ROOT))) for c in NOTEBOOK_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "review_check.ipynb")


class DevTools:
    """The smallest client of Chromium's DevTools protocol this check needs."""

    def __init__(self, port: int) -> None:
        import websocket

        for _ in range(100):
            try:
                pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json").read())
                page = next(p for p in pages if p.get("type") == "page")
                break
            except (OSError, StopIteration):
                time.sleep(0.2)
        else:
            raise RuntimeError("Chromium's DevTools endpoint did not answer")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                return message.get("result", {})

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 120.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


def click_button(tools: DevTools, text: str) -> bool:
    return bool(
        tools.js(
            f"(() => {{ const b = [...document.querySelectorAll('button')]"
            f".find(b => b.textContent.includes({json.dumps(text)})); if (!b) return false; "
            f"b.click(); return true; }})()"
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "review-widget-check"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    work = Path(tempfile.mkdtemp(prefix="review-check-"))
    write_inputs(work)
    lab_port, debug_port, token = free_port(), free_port(), "check"
    lab = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            f"--port={lab_port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={work}",
            "--LabApp.news_url=",
            "--ServerApp.allow_root=True",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(out / "jupyterlab.log", "w"),
    )
    chrome = None
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{lab_port}/api/status?token={token}")
                break
            except OSError:
                time.sleep(0.5)
        url = f"http://127.0.0.1:{lab_port}/lab/tree/review_check.ipynb?token={token}"
        chrome = subprocess.Popen(
            [
                browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                f"--remote-debugging-port={debug_port}",
                "--window-size=1300,1200",
                f"--user-data-dir={work / 'chrome'}",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        tools = DevTools(debug_port)
        tools.wait_for("document.querySelectorAll('.jp-Notebook .jp-Cell').length >= 2", "the notebook")
        tools.wait_for(
            "!!document.querySelector('.jp-Notebook-ExecutionIndicator[data-status=\"idle\"]') || "
            "document.title.length > 0",
            "the kernel",
            timeout=60,
        )
        time.sleep(3)
        tools.js("document.querySelector('.jp-Notebook').focus()")
        for _ in NOTEBOOK_CELLS:  # Shift+Enter in command mode: run the selected cell and select the next
            for kind in ("rawKeyDown", "keyUp"):
                tools.call(
                    "Input.dispatchKeyEvent",
                    type=kind,
                    key="Enter",
                    code="Enter",
                    modifiers=8,
                    windowsVirtualKeyCode=13,
                    nativeVirtualKeyCode=13,
                )
            time.sleep(2)
        try:
            tools.wait_for(
                f"[...document.querySelectorAll('button')].some(b => b.textContent.includes({json.dumps(BUTTONS[0])}))",
                "the widget's buttons",
                timeout=90,
            )
        except RuntimeError:
            shot = tools.call("Page.captureScreenshot", format="png")
            (out / "failure.png").write_bytes(base64.b64decode(shot["data"]))
            print("the page when the widget did not appear:", out / "failure.png")
            raise
        time.sleep(2)
        for text in BUTTONS:
            if not click_button(tools, text):
                raise RuntimeError(f"no button {text!r} in the page")
            time.sleep(2.5)
        tools.js(
            "document.querySelector('.jp-OutputArea-output') && "
            "document.querySelector('.jp-OutputArea-output').scrollIntoView()"
        )
        time.sleep(1)
        shot = tools.call("Page.captureScreenshot", format="png")
        (out / "review-widget.png").write_bytes(base64.b64decode(shot["data"]))
        table = work / "scan" / "review.csv"
        rows = table.read_text().splitlines()[1:] if table.is_file() else []
        (out / "review.csv").write_text(table.read_text() if table.is_file() else "")
        print(f"screenshot {out / 'review-widget.png'}; review table {len(rows)} decision(s):")
        for row in rows:
            print("  " + row)
        return 0 if len(rows) == 3 else 1
    finally:
        for proc in (chrome, lab):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
