"""Every notebook runs headless through papermill; committed notebooks carry no outputs; the
runner names the failing cell."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from helpers.notebooks import NotebookError, list_notebooks, notebook_parameters, run_notebook, run_collection
from helpers.train import TrainConfig

NOTEBOOKS = list_notebooks()


def test_collection_is_numbered_and_complete():
    names = [p.stem for p in NOTEBOOKS]
    assert names[:4] == ["00_data", "01_data_exploration", "02_feature_extraction", "03_train"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_have_no_outputs_and_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def test_train_notebook_parameters_are_the_config():
    params = notebook_parameters(next(p for p in NOTEBOOKS if p.stem == "03_train"))
    missing = set(TrainConfig.field_names()) - set(params)
    assert not missing, f"03_train lacks parameters for {sorted(missing)}"


@pytest.fixture(scope="module")
def synthetic_params(tmp_path_factory):
    base = tmp_path_factory.mktemp("nb")
    return {
        "corpus": "synthetic", "n_clips": 60, "seed": 1, "data_dir": str(base / "data"),
        "cache_dir": str(base / "data" / "cache"), "figures_dir": str(base / "figures"),
        "out_dir": str(base / "runs"), "sample_rates": [8000],
        # 03_train: a narrow net for a few steps, enough to exercise every cell
        "sample_rate": 8000, "model_options": {"channels": [8, 16, 32, 64]}, "iterations": 6,
        "eval_every": 3, "ema_start": 3, "checkpoint_every": 6, "n_listen": 2,
        # 06_embeddings: the run 03 just made
        "runs_dir": str(base / "runs"), "perplexity": 5.0,
    }


def test_collection_runs_headless_on_synthetic_corpus(synthetic_params, tmp_path):
    out = tmp_path / "executed"
    done = run_collection(synthetic_params, notebooks=["00", "01", "02", "03", "06"], output_dir=out)
    assert [p.name for p in done] == [f"{p.stem}.ipynb" for p in NOTEBOOKS if p.stem[:2] in {"00", "01", "02", "03", "06"}]
    for path in done:
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors
    figures = {p.name for p in Path(synthetic_params["figures_dir"]).glob("*.png")}
    for name in ["01_class_counts.png", "01_example_logmels.png", "02_mean_logmel_per_class.png",
                 "03_learning_curves.png", "03_confusion_devel.png", "06_tsne.png", "06_svm_confusion.png"]:
        assert name in figures
    log = [json.loads(line) for line in (out / "executions.jsonl").read_text().splitlines()]
    assert [e["notebook"] for e in log] == [p.name for p in done]


def test_runner_names_the_failing_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# broken"),
                nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("y = 2"),
                nbformat.v4.new_code_cell("raise ValueError('boom at cell three')")]
    path = tmp_path / "99_broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(NotebookError, match=r"99_broken.ipynb: cell \d+ .*ValueError: boom at cell three"):
        run_notebook(path, {"x": 2}, output_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="unknown parameter"):
        run_notebook(path, {"z": 2}, output_dir=tmp_path / "out")
