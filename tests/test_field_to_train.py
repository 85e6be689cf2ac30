"""From the field to a trained model, end to end: a real Raven table of the offline mirror becomes a
corpus through the command line (``python -m helpers corpus annotations``), and that corpus trains
through ``notebooks/03_train.ipynb`` unchanged (papermill, parameters only).

The mirror (``../shared/mirror/``, see its SOURCES.md) is only read: the recording and its table are
copied into tmp_path. The test skips, naming the folder, when the mirror is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from helpers.core import run_folder
from helpers.data.corpus import read_corpus
from helpers.experiments.notebooks import run_notebook
from tests.conftest import REPO_ROOT, SHARED_MIRROR

# Trains a model through papermill: part of `make test`, not of `make test-fast`.
pytestmark = pytest.mark.slow

OSS = SHARED_MIRROR / "kitzeslab/opensoundscape/4a782527f25aa26d70ac343e637c4e6ee76b80fb/docs/tutorials/resources"
GWWA_MP3 = OSS / "GWWA_XC" / "13738.mp3"  # xeno-canto XC13738, 44.1 kHz mono, 55.3 s
GWWA_TABLE = OSS / "GWWA_XC_AnnoTables" / "13738.Table.1.selections2.txt"  # 8 selections, all GWWA_song

needs_gwwa = pytest.mark.skipif(
    not (GWWA_MP3.is_file() and GWWA_TABLE.is_file()),
    reason=f"the XC13738 recording and its Raven table of the offline mirror are not under {SHARED_MIRROR} "
    "(see its SOURCES.md)",
)

# The CLI splits by recording (or by a --group-by column, which must hold one value per recording) and
# has no option for the split fractions, so a single recording can only fill train: devel and test
# come out empty (the cut says "split devel got no recordings"). So the mp3 and its table are copied
# under three names, table names matching the recordings as Raven names them ("<recording>.Table.1...").
# Each copy becomes one split. The three splits therefore hold the same audio: the scores below
# say the pipeline works, not how good the model is.
COPIES = ("13738", "13738b", "13738c")
LABEL = "GWWA_song"


def _field_folder(root: Path) -> tuple[Path, Path]:
    """Copies of the mirror's recording and table under ``root``: (audio folder, tables folder)."""
    audio, tables = root / "audio", root / "tables"
    audio.mkdir(parents=True)
    tables.mkdir()
    for stem in COPIES:
        shutil.copyfile(GWWA_MP3, audio / f"{stem}.mp3")
        shutil.copyfile(GWWA_TABLE, tables / GWWA_TABLE.name.replace("13738", stem, 1))
    return audio, tables


@needs_gwwa
def test_raven_table_from_the_mirror_becomes_a_corpus_that_trains_through_03_train(tmp_path):
    audio, tables = _field_folder(tmp_path / "field")
    corpus_dir = tmp_path / "corpus"

    # (1) the real command line
    cmd = [
        sys.executable,
        "-m",
        "helpers",
        "corpus",
        "annotations",
        "--annotations",
        str(tables),
        "--audio",
        str(audio),
        "--out",
        str(corpus_dir),
    ]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "0 excluded" in done.stdout and "split devel got no recordings" not in done.stdout, done.stdout

    corpus = read_corpus(corpus_dir)  # raises CorpusError on any error
    assert corpus.report.ok, corpus.report.format()
    assert sorted(corpus.classes) == ["GWWA_song", "background"]
    for split in ("train", "devel", "test"):
        labels = set(corpus.split(split)["label"])
        assert labels == {"GWWA_song", "background"}, (split, labels)
    manifest = pd.read_csv(corpus_dir / "manifest.csv")
    # every selection of every copy became a call clip; one recording per split, none shared
    assert (manifest["label"] == LABEL).sum() == 8 * len(COPIES)
    per_split = manifest.groupby("split")["recording"].unique()
    assert all(len(per_split[s]) == 1 for s in ("train", "devel", "test"))
    assert len({per_split[s][0] for s in ("train", "devel", "test")}) == 3
    for stem in COPIES:
        assert manifest["recording"].astype(str).str.contains(f"{stem}.mp3", regex=False).any(), stem

    # (2) 03_train, unchanged, through papermill; small enough for 2 CPU cores
    runs = tmp_path / "runs"
    params = {
        "corpus": str(corpus_dir),
        "data_dir": str(tmp_path / "data"),
        "cache_dir": str(tmp_path / "cache"),
        "out_dir": str(runs),
        "figures_dir": str(tmp_path / "figures"),
        "sample_rate": 8000,
        "model_options": {"channels": [8, 16, 32, 64]},
        "iterations": 40,
        "eval_every": 20,
        "ema_start": 20,
        "checkpoint_every": 20,
        "n_listen": 2,
    }
    executed = run_notebook("03_train", params, output_dir=tmp_path / "executed", progress=False, timeout=600)
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors

    # (3) a finished run folder with devel and test UAR for the two classes
    folders = run_folder.find(runs)
    assert len(folders) == 1, folders
    run = folders[0]
    assert run_folder.status(run) == "finished"
    metrics = json.loads((run / run_folder.METRICS).read_text())
    assert sorted(metrics["classes"]) == ["GWWA_song", "background"]
    assert metrics["checkpoints"], metrics
    for name, checkpoint in metrics["checkpoints"].items():
        for split in ("devel", "test"):
            uar = checkpoint["splits"][split]["uar"]
            assert isinstance(uar, float) and 0.0 <= uar <= 1.0, (name, split, uar)
    config = json.loads((run / run_folder.CONFIG).read_text())
    assert config["iterations"] == 40 and config["sample_rate"] == 8000
    submission = pd.read_csv(run / run_folder.SUBMISSION)
    assert len(submission) == len(corpus.split("test"))
    assert set(submission["prediction"]) <= {"GWWA_song", "background"}
    # the mirror was only read
    assert GWWA_TABLE.read_bytes() == (tables / GWWA_TABLE.name).read_bytes()
